"""The findings ledger (SQLite on one machine, DynamoDB shared) and, in `delivery`, the sink behind it.

`delivery` is imported on its own (`defender_hub.checkpoints.delivery`): it brings boto3, which the commands that
only read the ledger's settings needn't load.
"""

from __future__ import annotations

from pathlib import Path

from defender_hub.checkpoints.dynamodb import DynamoDbLedger
from defender_hub.checkpoints.ledger import Ledger
from defender_hub.checkpoints.sqlite import SqliteLedger
from defender_hub.errors import ConfigError

__all__ = ["DEFAULT_LEDGER", "DynamoDbLedger", "Ledger", "SqliteLedger", "open_ledger"]

DEFAULT_LEDGER = "sqlite:///defender-hub-ledger.sqlite3"


def open_ledger(url: str) -> Ledger:
    """Opens the ledger `url` names: `sqlite:///PATH` (relative; `sqlite:////abs/path` absolute) or `dynamodb://TABLE`."""
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///")
        if path:
            return SqliteLedger(Path(path))
    elif url.startswith("dynamodb://"):
        table = url.removeprefix("dynamodb://")
        if table and "/" not in table:
            return DynamoDbLedger(table)
    raise ConfigError(f"--ledger: expected sqlite:///PATH or dynamodb://TABLE, got {url[:200]!r}")
