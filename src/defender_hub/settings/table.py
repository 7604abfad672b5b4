"""This module holds the table of every setting. Each row gives a setting's flag, its environment variable
(`DEFENDER_HUB_` and its name in capitals), whether the settings file's `[run]` table may set it, its type, its
default, its check and its help.

A setting that only `run` takes is a row here, its name in `run`'s list of flags and its use. A delivery setting also
needs its field in `DeliverySettings`, which `worker.delivery_settings` fills.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from defender_hub.errors import ConfigError
from defender_hub.logs import LOG_FORMATS

__all__ = [
    "DEAD_LETTERS_FILE",
    "INITIAL_POSITIONS",
    "LEDGER_FILE",
    "MAX_CLOCK_SKEW_MINUTES",
    "MAX_RECORDS",
    "OUTAGE_LIMIT_SECONDS",
    "PARKED_RETRY_SECONDS",
    "POLL_MILLIS",
    "PREFIX",
    "REFRESH_HOURS",
    "RETRIEVAL_MODES",
    "ROWS",
    "SEND_WAIT_MILLIS",
    "SETTINGS",
    "Setting",
    "from_environment",
    "named",
    "said",
    "variable",
]

DEAD_LETTERS_FILE = "dead-letters.jsonl"
"""Where rejected findings and records go unless told otherwise: this file of the state directory."""
LEDGER_FILE = "ledger.sqlite3"
"""The findings ledger unless told otherwise: this SQLite file of the state directory."""

PREFIX = "DEFENDER_HUB_"
"""What every variable of defender-hub starts with."""

MAX_RECORDS = 10_000
"""The most records a GetRecords call returns, and what the KCL asks for by default. Each batch ends in a partial
BatchImportFindings request per lane, so a backlog read in the largest batches fills its requests best."""
INITIAL_POSITIONS = ("LATEST", "TRIM_HORIZON", "AT_TIMESTAMP")
"""Where a shard without a checkpoint may start."""
RETRIEVAL_MODES = ("POLLING", "FANOUT")
"""How the KCL may read the stream: GetRecords, or enhanced fan-out."""
POLL_MILLIS = 1000
"""The KCL's own default wait between GetRecords calls of a shard (`idleTimeBetweenReadsInMillis`)."""
MAX_CLOCK_SKEW_MINUTES = 15
"""How far in the future an event's time may be (by default) before it is refused as from a bad clock."""
OUTAGE_LIMIT_SECONDS = 300
"""How long a lane may fail every request (5xx, no connection) before its findings are parked as a refused lane's
are (`sink.outages`)."""
PARKED_RETRY_SECONDS = 60
"""How often `run` sends parked lanes' findings again."""
REFRESH_HOURS = 24
"""Hours between `run`'s sweeps that refresh findings near Security Hub's 90-day expiry."""
SEND_WAIT_MILLIS = 250
"""How long the worker's sender waits at most for a lane's request to fill with what its shard processes hand it."""

Check = Callable[[str, Any], str | None]
"""Says what is wrong with a setting's value, given the setting's name in words; None when nothing is."""


def _at_least(low: int, unit: str) -> Check:
    """A check that the value is a whole number of `unit`, `low` or more."""

    def check(words: str, value: Any) -> str | None:
        if isinstance(value, int) and not isinstance(value, bool) and value >= low:
            return None
        return f"{words} {value!r} is not a whole number of {unit}, {low} or more"

    return check


def _path(text: str) -> Path | None:
    """The path `text` names; None for an empty text, which names none (not the working directory)."""
    return Path(text) if text else None


def _between(low: int, high: int, unit: str) -> Check:
    """A check that the value is a whole number of `unit`, from `low` to `high`."""

    def check(words: str, value: Any) -> str | None:
        if isinstance(value, int) and not isinstance(value, bool) and low <= value <= high:
            return None
        return f"{words} {value!r} is not a whole number of {unit}, {low} to {high}"

    return check


def _max_records(words: str, value: Any) -> str | None:
    if not isinstance(value, int) or isinstance(value, bool):
        return f"{words} {value!r} is not a whole number"
    return None if 1 <= value <= MAX_RECORDS else f"--max-records must be 1..{MAX_RECORDS}"


def _port(words: str, value: Any) -> str | None:
    good = isinstance(value, int) and not isinstance(value, bool) and 0 < value < 65536
    return None if good else f"{words} {value!r} is not a port number"


def _address(_words: str, value: Any) -> str | None:
    from defender_hub.metrics import check_address  # noqa: PLC0415 - prometheus_client only when metrics are asked

    try:
        check_address(value)
    except ConfigError as exc:
        return str(exc)
    return None


@dataclass(frozen=True)
class Setting:
    """One setting: where its value may come from, its type, its default, its check and its help."""

    name: str
    """The setting's name, as in the `[run]` table and, in capitals after `DEFENDER_HUB_`, its variable."""
    help: str
    """What it is, for the flag's help; the variable and the default are added to it."""
    kind: Callable[[str], Any] = str
    """Turns the text of a flag or a variable into the value."""
    default: Any = None
    """The value when nothing gives one; a function is called for it, once it is needed."""
    default_help: str | None = None
    """How the help says the default, where the default's own value would not say it well."""
    choices: Sequence[str] | None = None
    metavar: str | None = None
    check: Check | None = None
    in_file: bool = False
    """Whether the settings file's `[run]` table may set it."""
    to_shards: bool = False
    """Whether `run` hands it to its shard processes (`shard_environment`)."""
    flag: bool = True
    """Whether a command may take it as a flag; a setting without one is read from its variable alone."""
    former: str | None = None
    """A variable (after the prefix) that once had this meaning: still read after this one, with a warning."""

    @property
    def variable(self) -> str:
        """The setting's environment variable."""
        return PREFIX + self.name.upper()

    @property
    def former_variable(self) -> str | None:
        """The variable that once had this setting's meaning, if any."""
        return PREFIX + self.former if self.former else None

    @property
    def option(self) -> str:
        """The setting's flag."""
        return "--" + self.name.replace("_", "-")

    @property
    def words(self) -> str:
        """The setting's name as the messages say it."""
        return self.name.replace("_", " ")

    def value_of(self, text: str, where: str) -> Any:
        """The value `text` (of `where`) stands for; raises ConfigError when it stands for none."""
        try:
            return self.kind(text)
        except ValueError:
            kind = "whole number" if self.kind is int else getattr(self.kind, "__name__", "value")
            raise ConfigError(f"{where}: {text[:80]!r} is not a {kind}") from None

    def fallback(self) -> Any:
        """The default value."""
        return self.default() if callable(self.default) else self.default


ROWS = (
    # Where the stream is, and how the KCL reads it: `run`'s.
    Setting("stream", "the Kinesis stream", in_file=True),
    Setting(
        "application",
        "the KCL application: the name of its lease table, shared by its workers",
        in_file=True,
    ),
    Setting(
        "initial_position",
        "where a shard without a checkpoint starts: its oldest record, its newest, or --timestamp",
        default="TRIM_HORIZON",
        choices=INITIAL_POSITIONS,
        in_file=True,
    ),
    Setting(
        "timestamp",
        "with AT_TIMESTAMP: where shards without a checkpoint start, ISO 8601 (2026-12-01T08:00:00Z; UTC without an "
        "offset) or epoch seconds, within the stream's retention for a new application",
        in_file=True,
    ),
    Setting("worker_id", "stable per worker", default=socket.gethostname, default_help="the host name", in_file=True),
    Setting(
        "retrieval_mode",
        "GetRecords polling, or enhanced fan-out (a dedicated 2 MB/s a shard, billed)",
        default="POLLING",
        choices=RETRIEVAL_MODES,
        in_file=True,
    ),
    Setting(
        "max_records",
        f"records a GetRecords call (1..{MAX_RECORDS})",
        kind=int,
        default=MAX_RECORDS,
        check=_max_records,
        in_file=True,
    ),
    Setting(
        "poll_millis",
        "milliseconds between a shard's GetRecords calls when the last brought nothing new: Kinesis allows 5 a second "
        "a shard, shared by every consumer of the stream that polls",
        kind=int,
        default=POLL_MILLIS,
        metavar="MILLISECONDS",
        check=_at_least(200, "milliseconds"),
        in_file=True,
    ),
    Setting(
        "refresh_hours",
        "hours between refresh sweeps of findings near expiry; 0: none",
        kind=int,
        default=REFRESH_HOURS,
        check=_at_least(0, "hours"),
        in_file=True,
    ),
    Setting(
        "parked_retry_seconds",
        "seconds between tries of parked lanes' findings",
        kind=int,
        default=PARKED_RETRY_SECONDS,
        check=_at_least(1, "seconds"),
        in_file=True,
    ),
    Setting(
        "send_wait_millis",
        "milliseconds the worker's sender waits at most for a busy account and Region's request to fill (100 "
        "findings or 6 MB) with what the shard processes hand it; an idle one's goes at once",
        kind=int,
        default=SEND_WAIT_MILLIS,
        metavar="MILLISECONDS",
        check=_between(0, 10_000, "milliseconds"),
        in_file=True,
        to_shards=True,
    ),
    Setting(
        "log_format",
        "text, or json: one object a line",
        default="text",
        choices=LOG_FORMATS,
        in_file=True,
        to_shards=True,
    ),
    Setting(
        "health_dir",
        "the folder of the daemon's and the shards' progress: `run` writes it, `defender-hub health` reads it",
        kind=_path,
        metavar="DIR",
        in_file=True,
        to_shards=True,
    ),
    Setting(
        "metrics_port",
        "serve Prometheus metrics, summed over the shard processes",
        kind=int,
        check=_port,
        in_file=True,
    ),
    Setting(
        "metrics_address",
        "where to serve the metrics: 0.0.0.0 for a scraper elsewhere",
        default_help="127.0.0.1, this host only",
        metavar="IP",
        check=_address,
        in_file=True,
    ),
    # Where findings go and what is kept of them: `run`'s, and the delivering commands'.
    Setting(
        "state_dir",
        "where state files go unless told otherwise: the ledger and the dead letters",
        default_help="defender-hub in $XDG_STATE_HOME, else ~/.local/state/defender-hub; /var/lib/defender-hub in "
        "the image",
        metavar="DIR",
        in_file=True,
        to_shards=True,
    ),
    Setting(
        "dead_letter",
        "where rejected findings and records go: a JSON-lines file or an SQS queue URL",
        default_help=f"{DEAD_LETTERS_FILE} in the state directory",
        metavar="PATH|SQS_URL",
        in_file=True,
        to_shards=True,
    ),
    Setting(
        "dead_letter_overflow",
        "s3://BUCKET/PREFIX for dead letters too large for the SQS queue (a pointer goes in the queue)",
        metavar="S3_URI",
        in_file=True,
        to_shards=True,
    ),
    Setting(
        "ledger",
        "the findings ledger: sqlite:///PATH (one machine) or dynamodb://TABLE (several workers)",
        default_help=f"{LEDGER_FILE} in the state directory",
        metavar="URL",
        in_file=True,
        to_shards=True,
    ),
    Setting(
        "assume_role",
        "import each other account's findings as that account, through this role in it: a name, or an ARN template "
        "arn:{partition}:iam::{account}:role/NAME",
        default_help="none; such findings are parked",
        metavar="NAME|ARN",
        in_file=True,
        to_shards=True,
    ),
    Setting("external_id", "the external ID the member accounts' roles require", in_file=True, to_shards=True),
    Setting(
        "outage_limit",
        "park the findings of an account and Region that has failed every request (5xx, no connection) for this "
        "long, so that it holds up no other; they are sent again once it answers",
        kind=int,
        default=OUTAGE_LIMIT_SECONDS,
        metavar="SECONDS",
        check=_at_least(1, "seconds"),
        in_file=True,
        to_shards=True,
    ),
    Setting(
        "max_clock_skew",
        "refuse events timed further in the future than this",
        kind=int,
        default=MAX_CLOCK_SKEW_MINUTES,
        metavar="MINUTES",
        check=_at_least(0, "minutes"),
        in_file=True,
        to_shards=True,
    ),
    Setting(
        "import_account",
        "the account imported into without a role",
        default_help="STS says",
        metavar="ACCOUNT",
        to_shards=True,
        former="ACCOUNT_ID",
    ),
    Setting(
        "sender_socket",
        "the Unix socket of the worker's sender, which the shard processes send through: in the worker's own folder",
        to_shards=True,
        flag=False,
    ),
    # What shapes findings: the account and Region of events that carry none, the settings file.
    Setting(
        "default_account",
        "the account of events that carry none",
        default_help="none, such events are refused",
        metavar="ACCOUNT",
        to_shards=True,
        former="ACCOUNT_ID",
    ),
    Setting("region", "Region for events that carry none, e.g. us-east-1", to_shards=True),
    Setting("partition", "aws, aws-cn or aws-us-gov", default_help="the Region's", to_shards=True),
    Setting("config", "TOML settings file", kind=_path, metavar="FILE", to_shards=True),
    # Read from the environment alone: where the KCL is, what else the daemon is told, how much it logs.
    Setting("kcl_jars", "the folder of the KCL jars", default_help="those amazon-kclpy ships", flag=False),
    Setting("kcl_properties", "further daemon properties, NAME=VALUE;NAME=VALUE", flag=False),
    Setting("daemon_log_level", "the KCL daemon's log level", default="WARN", to_shards=True, flag=False),
    Setting(
        "daemon_start_log_level",
        "the log level of the KCL daemon's noisy start",
        default="ERROR",
        to_shards=True,
        flag=False,
    ),
)

SETTINGS: Mapping[str, Setting] = MappingProxyType({row.name: row for row in ROWS})
"""Every setting, by name."""


def named(name: str) -> Setting:
    """The setting called `name`; raises KeyError for a name the table does not have."""
    return SETTINGS[name]


def variable(name: str) -> str:
    """The environment variable of the setting called `name`."""
    return named(name).variable


def said(name: str) -> str:
    """How a message names where setting `name` is given: its flag (where it has one) or its variable."""
    row = named(name)
    return f"{row.option} (or {row.variable})" if row.flag else row.variable


def from_environment(name: str, environment: Mapping[str, str] | None = None) -> Any:
    """The value of setting `name` in `environment` (this process's by default); None when it is unset or empty."""
    row = named(name)
    text = (os.environ if environment is None else environment).get(row.variable)
    return row.value_of(text, row.variable) if text else None
