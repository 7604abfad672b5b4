"""The one resolver of settings (flag, then variable, then the settings file, then the default), the flags it
resolves, and the environment `run` hands its shard processes, written and read here alone."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

from defender_hub.config import read_settings_file
from defender_hub.errors import ConfigError
from defender_hub.settings.table import ROWS, SETTINGS, Setting, from_environment, named

__all__ = ["add_flags", "resolve", "said", "say_deprecated", "shard_environment", "shard_settings"]


def said(name: str) -> str:
    """How a message names where setting `name` is given: its flag (where it has one) or its variable."""
    row = named(name)
    return f"{row.option} (or {row.variable})" if row.flag else row.variable


def say_deprecated(former: str, current: str, meaning: str) -> None:
    """Says on stderr, in one line, that `former` (a flag or a variable) is deprecated and `current` is the name to
    use."""
    print(f"defender-hub: warning: {former} is deprecated here: use {current} ({meaning})", file=sys.stderr)


def add_flags(
    parser: argparse.ArgumentParser,
    *names: str,
    from_file: bool = False,
    default_help: Mapping[str, str] | None = None,
) -> None:
    """Adds the flags of the settings `names` to `parser`, with their help from the table; `resolve` gives each its
    value once parsed. `from_file`: the settings file's `[run]` table may set them too. `default_help` says a
    default in other words where this command's differs (or has none)."""
    for name in names:
        row = named(name)
        shown = (
            "required"
            if row.required
            else "default: " + ((default_help or {}).get(name) or row.default_help or _default_words(row))
        )
        parser.add_argument(
            row.option,
            type=row.kind,
            choices=row.choices,
            metavar=row.metavar,
            help=f"{row.help} ({row.variable}; {shown})",
        )
    parser.set_defaults(_settings=(*(parser.get_default("_settings") or ()), *names))
    if from_file:
        parser.set_defaults(_settings_from_file=True)


def _default_words(row: Setting) -> str:
    default = row.fallback() if not callable(row.default) else None
    return "none" if default is None else str(default)


def resolve(args: argparse.Namespace) -> argparse.Namespace:
    """Gives each setting `add_flags` added to the command its value in `args`: the flag, else the variable, else the
    settings file's `[run]` table (where the command reads it), else the default, each checked. Raises ConfigError
    naming what is wrong and where it came from."""
    names: Sequence[str] = getattr(args, "_settings", ())
    if "config" in names:  # first: the file may set the others
        args.config = _resolved(named("config"), args.config, {})
    from_file = (
        _file_values(args.config) if getattr(args, "_settings_from_file", False) and args.config is not None else {}
    )
    for name in names:
        if name != "config":
            setattr(args, name, _resolved(named(name), getattr(args, name), from_file))
    return args


def _resolved(row: Setting, given: Any, from_file: Mapping[str, Any]) -> Any:
    value = given
    if value is None and (text := os.environ.get(row.variable)):
        value = row.value_of(text, row.variable)
    former = row.former_variable
    if value is None and former is not None and (text := os.environ.get(former)):
        say_deprecated(former, row.variable, row.help)
        value = row.value_of(text, former)
    if value is None and row.name in from_file:
        value = from_file[row.name]
    if value is None:
        value = row.fallback()
    if value is not None and row.choices is not None and value not in row.choices:
        raise ConfigError(f"{row.words} {value!r} is not one of {', '.join(row.choices)}")
    if value is not None and row.check is not None and (problem := row.check(row.words, value)) is not None:
        raise ConfigError(problem)
    return value


_FILE_TYPES: Mapping[Callable[[str], Any], type] = MappingProxyType({str: str, int: int, Path: str})
"""The TOML type a `[run]` key of each kind holds."""


def _file_values(config_file: Path) -> dict[str, Any]:
    """The `[run]` table of the settings file; raises ConfigError for an unknown key or a value of the wrong type."""
    table = read_settings_file(config_file).get("run", {})
    where = f"{config_file}: [run]"
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table")
    known = sorted(name for name, row in SETTINGS.items() if row.in_file)
    if extra := sorted(set(table) - set(known)):
        raise ConfigError(f"{where}: unknown setting {', '.join(extra)} (known: {', '.join(known)})")
    values: dict[str, Any] = {}
    for key, value in table.items():
        row = named(key)
        expected = _FILE_TYPES[row.kind]
        if not isinstance(value, expected) or isinstance(value, bool):
            raise ConfigError(f"{where}.{key} must be a {expected.__name__}")
        values[key] = Path(str(value)) if row.kind is Path else value
    return values


def shard_environment(values: Mapping[str, Any]) -> dict[str, str]:
    """The variables `run` gives its shard processes: each setting they read, from `values` by name, one without a
    value written empty, which `shard_settings` reads as unset."""
    # The daemon passes `run`'s own environment on beneath these: a variable left out would reach the shards from
    # there (an import account `run` does not take, say) in place of what `run` decided.
    return {
        row.variable: "" if (value := values.get(row.name)) is None else str(value) for row in ROWS if row.to_shards
    }


def shard_settings(environment: Mapping[str, str]) -> dict[str, Any]:
    """The settings `shard_environment` wrote into `environment`, by name; the default for each one it wrote empty."""
    values = {row.name: from_environment(row.name, environment) for row in ROWS if row.to_shards}
    return {name: named(name).fallback() if value is None else value for name, value in values.items()}
