"""Both ledgers (SQLite in a temporary folder, DynamoDB on moto), and Device Defender events with chosen times."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from defender_hub.checkpoints import DynamoDbLedger, Ledger, SqliteLedger
from defender_hub.local.aws import LocalAws
from defender_hub.local.securityhub import LocalSecurityHub
from tests.helpers import Pipeline, local_client, unique


@pytest.fixture(scope="session")
def local_dynamodb(local_aws: LocalAws) -> Any:
    return local_client("dynamodb", local_aws.endpoint_url)


@pytest.fixture(params=["sqlite", "dynamodb"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Ledger]:
    """Each ledger back end in turn, empty."""
    opened: Ledger
    if request.param == "sqlite":
        opened = SqliteLedger(tmp_path / "ledger.sqlite3")
    else:
        opened = DynamoDbLedger(unique("ledger"), request.getfixturevalue("local_dynamodb"))
    yield opened
    opened.close()


@pytest.fixture
def pipeline(hub: LocalSecurityHub, ledger: Ledger, tmp_path: Path) -> Pipeline:
    return Pipeline(hub, ledger, tmp_path / "dead-letters.jsonl")
