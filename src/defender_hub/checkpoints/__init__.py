"""How far things are: each finding's and each shard's checkpoint, and what decides and records them.

- The findings ledger (`ledger`; SQLite on one machine, DynamoDB shared) is the findings' checkpoint: what Security
  Hub accepted last of each finding, and which archivals and workflow updates are still owed.
- `delivery` is the sink behind the ledger: it plans each delivery against it and records what was accepted;
  `opening` builds that sink from the settings; `sweeps` refresh what nears expiry and send parked findings again.
- `shards` takes each shard's KCL checkpoint, once its records are delivered: the consumer's only way to say how far
  a shard is.

`delivery` and `opening` are imported on their own: they bring boto3, which the commands that only read the ledger's
settings needn't load.
"""

from __future__ import annotations

import re
from pathlib import Path

from defender_hub.checkpoints.dynamodb import DynamoDbLedger
from defender_hub.checkpoints.ledger import Ledger
from defender_hub.checkpoints.sqlite import SqliteLedger
from defender_hub.errors import ConfigError

__all__ = ["DynamoDbLedger", "Ledger", "SqliteLedger", "open_ledger", "parse_ledger_url"]


def parse_ledger_url(url: str) -> tuple[str, str]:
    """Returns ("sqlite", PATH) or ("dynamodb", TABLE) for a ledger URL; raises ConfigError for anything else."""
    if url.startswith("sqlite:///") and len(url) > len("sqlite:///"):
        return "sqlite", url.removeprefix("sqlite:///")
    table = url.removeprefix("dynamodb://")
    if url.startswith("dynamodb://") and re.fullmatch(r"[A-Za-z0-9_.-]{3,255}", table):
        return "dynamodb", table
    raise ConfigError(f"ledger: expected sqlite:///PATH or dynamodb://TABLE, got {url[:200]!r}")


def open_ledger(url: str) -> Ledger:
    """Opens the ledger `url` names: `sqlite:///PATH` (relative; `sqlite:////abs/path` absolute) or `dynamodb://TABLE`."""
    kind, target = parse_ledger_url(url)
    return SqliteLedger(Path(target)) if kind == "sqlite" else DynamoDbLedger(target)
