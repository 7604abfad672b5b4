"""This module resolves settings: it adds their flags to a command, gives each its value (the flag, then the
variable, then the settings file, then the default), and writes and reads the environment `run` hands its shard
processes, which nothing else writes or reads."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from defender_hub.config import read_settings_file
from defender_hub.errors import ConfigError
from defender_hub.settings.table import ROWS, SETTINGS, Setting, from_environment, named

__all__ = ["add_flags", "resolve", "say_deprecated", "shard_environment", "shard_settings"]


def say_deprecated(former: str, current: str, meaning: str) -> None:
    """Says on stderr, in one line, that `former` (a flag or a variable) is deprecated and `current` is the name to
    use."""
    print(f"defender-hub: warning: {former} is deprecated here: use {current} ({meaning})", file=sys.stderr)


def add_flags(
    parser: argparse.ArgumentParser,
    *names: str,
    from_file: bool = False,
    required: Collection[str] = (),
    default_help: Mapping[str, str] | None = None,
) -> None:
    """Adds the flags of the settings `names` to `parser`, with their help from the table; `resolve` gives each its
    value once parsed. With `from_file`, the settings file's `[run]` table may set this command's settings too.
    The help says `required` for the settings this command can't go without (it says so itself when one is
    missing), and says a default in the words of `default_help` where this command's default differs."""
    for name in names:
        row = named(name)
        if not row.flag:
            raise ValueError(f"setting {name} is read from its variable alone: it has no flag")
        shown = (
            "required"
            if name in required
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
    """The default as the help says it; a default worked out when needed (the host name) has its own words."""
    return "none" if row.default is None or callable(row.default) else str(row.default)


def resolve(args: argparse.Namespace) -> argparse.Namespace:
    """Gives each setting `add_flags` added to the command its value in `args`: the flag, else the variable, else the
    settings file's `[run]` table (where the command reads it), else the default, each checked. Raises ConfigError
    naming what is wrong: the variable or the file when their text can't be read, else the setting."""
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
        expected = int if row.kind is int else str  # the TOML type of the key
        if not isinstance(value, expected) or isinstance(value, bool):
            raise ConfigError(f"{where}.{key} must be a {expected.__name__}")
        values[key] = value if isinstance(value, int) else row.kind(value)
    return values


def shard_environment(values: Mapping[str, Any]) -> dict[str, str]:
    """Returns the variables `run` gives its shard processes: each setting they read, from `values` by name, with a
    setting that has no value written empty, which `shard_settings` reads as unset."""
    # The daemon passes `run`'s own environment on beneath these: a variable left out would reach the shards from
    # there (an import account `run` does not take, say) in place of what `run` decided.
    return {
        row.variable: "" if (value := values.get(row.name)) is None else str(value) for row in ROWS if row.to_shards
    }


def shard_settings(environment: Mapping[str, str]) -> dict[str, Any]:
    """The settings `shard_environment` wrote into `environment`, by name; the default for each one it wrote empty."""
    values = {row.name: from_environment(row.name, environment) for row in ROWS if row.to_shards}
    return {name: named(name).fallback() if value is None else value for name, value in values.items()}
