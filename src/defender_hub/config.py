"""Configuration from flags and a TOML file, validated before any event is read."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from defender_hub.codecs.asff_rules import ACCOUNT_ID, PARTITIONS, SEVERITY_LABELS, Limits
from defender_hub.errors import ConfigError
from defender_hub.mapping.aws import REGION, region_problem
from defender_hub.mapping.options import DEFAULT_COMPANY_NAME, DEFAULT_DETECT_SEVERITY, MappingOptions
from defender_hub.settings.table import DEAD_LETTERS_FILE, LEDGER_FILE

__all__ = [
    "default_dead_letters",
    "default_ledger",
    "load_mapping_options",
    "read_settings_file",
    "refuse_former_defaults",
    "state_dir",
]

_TOP_KEYS = frozenset({"account_id", "region", "partition", "company_name", "detect", "run"})
_DETECT_KEYS = frozenset({"severity", "security_profile_severity", "behavior_severity"})


def state_dir(given: str | Path | None = None) -> Path:
    """The state directory, made if missing (readable by its owner only): `given` (the `state_dir` setting), else
    defender-hub under the user's state directory."""
    chosen = given
    if not chosen:
        base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
        chosen = Path(base) / "defender-hub"
    folder = Path(chosen).expanduser()
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"the state directory {folder} can't be made: {exc.strerror}") from None
    return folder


_FORMER_DEFAULTS = (
    ("defender-hub-ledger.sqlite3", "--ledger sqlite:///defender-hub-ledger.sqlite3", LEDGER_FILE),
    ("dead-letters.jsonl", "--dead-letter dead-letters.jsonl", DEAD_LETTERS_FILE),
)
"""The state files' defaults before the state directory: files in the working directory."""


def refuse_former_defaults(*, ledger_given: bool, dead_letter_given: bool, state: str | Path | None) -> None:
    """Raises ConfigError when a state file is where its former default put it and the new default would be taken
    instead: a ledger swapped unseen sends everything again and archives nothing it knew; dead letters, no redrive."""
    for (name, flag, new_name), given in zip(_FORMER_DEFAULTS, (ledger_given, dead_letter_given), strict=True):
        if not given and Path(name).exists():
            raise ConfigError(
                f"{name} is here, where it was by default before the state directory: go on with it ({flag}), or "
                f"move it to {state_dir(state) / new_name}"
            )


def default_dead_letters(state: str | Path | None = None) -> str:
    """The dead-letter file of the state directory."""
    return str(state_dir(state) / DEAD_LETTERS_FILE)


def default_ledger(state: str | Path | None = None) -> str:
    """The SQLite ledger of the state directory, as a ledger URL."""
    return f"sqlite:///{state_dir(state) / LEDGER_FILE}"


def read_settings_file(path: Path) -> dict[str, Any]:
    """The TOML settings file at `path`, read; raises ConfigError naming the file when it can't be read."""
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def _unknown(keys: Any, allowed: frozenset[str], where: str) -> None:
    extra = sorted(set(keys) - allowed)
    if extra:
        raise ConfigError(f"{where}: unknown setting {', '.join(extra)} (known: {', '.join(sorted(allowed))})")


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}: must be a non-empty string")
    return value


def _label(value: Any, where: str) -> str:
    if value not in SEVERITY_LABELS:
        raise ConfigError(f"{where}: {value!r} is not a severity label ({', '.join(SEVERITY_LABELS)})")
    return str(value)


def _labels(table: Any, where: str) -> Mapping[str, str]:
    if not isinstance(table, dict):
        raise ConfigError(f'{where}: must be a table of name = "LABEL"')
    return MappingProxyType({str(name): _label(label, f"{where}.{name}") for name, label in table.items()})


def load_mapping_options(
    *,
    account_id: str | None = None,
    region: str | None = None,
    partition: str | None = None,
    config_file: Path | None = None,
) -> MappingOptions:
    """Returns the mapping options from flags over the file's settings; raises ConfigError naming what is wrong."""
    settings = read_settings_file(config_file) if config_file is not None else {}
    where = str(config_file)
    _unknown(settings, _TOP_KEYS, where)
    detect = settings.get("detect", {})
    if not isinstance(detect, dict):
        raise ConfigError(f"{where}: detect must be a table")
    _unknown(detect, _DETECT_KEYS, f"{where}: [detect]")

    account_id = account_id or settings.get("account_id")
    region = region or settings.get("region")
    partition = partition or settings.get("partition")
    if account_id is not None and not (isinstance(account_id, str) and ACCOUNT_ID.fullmatch(account_id)):
        raise ConfigError(f"account id {account_id!r} is not 12 digits")
    if region is not None and not (isinstance(region, str) and REGION.fullmatch(region)):
        raise ConfigError(f"region {region!r} is not an AWS Region name such as us-east-1")
    if partition is not None and partition not in PARTITIONS:
        raise ConfigError(f"partition {partition!r} is not one of {', '.join(PARTITIONS)}")
    if region is not None and (problem := region_problem(region, partition)) is not None:
        raise ConfigError(problem)
    company = _string(settings.get("company_name", DEFAULT_COMPANY_NAME), f"{where}: company_name")
    if len(company) > Limits.NAME:
        raise ConfigError(f"{where}: company_name is longer than {Limits.NAME} characters")
    return MappingOptions(
        account_id=account_id,
        region=region,
        partition=partition,
        company_name=company,
        detect_severity=_label(detect.get("severity", DEFAULT_DETECT_SEVERITY), f"{where}: detect.severity"),
        security_profile_severity=_labels(
            detect.get("security_profile_severity", {}), f"{where}: detect.security_profile_severity"
        ),
        behavior_severity=_labels(detect.get("behavior_severity", {}), f"{where}: detect.behavior_severity"),
    )
