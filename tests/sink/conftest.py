"""A running local Security Hub and findings to send it."""

from __future__ import annotations

import copy
import threading
from pathlib import Path
from typing import Any

import pytest
from botocore.config import Config

from defender_hub.local.securityhub import LocalSecurityHub
from defender_hub.sink import Clients, JsonlDeadLetters, Outbound, RecordOrigin, RetryPolicy, SecurityHubSink
from tests.conftest import Convert, local_client

FAST = RetryPolicy(base_seconds=0.05, max_seconds=0.5, access_seconds=0.3)


def hub_clients(hub: LocalSecurityHub) -> Clients:
    """Security Hub clients by Region, all pointed at the local hub, as the sink takes them."""
    made: dict[str, Any] = {}

    def client_for(region: str) -> Any:
        if region not in made:
            retries = Config(retries={"mode": "adaptive", "total_max_attempts": 3}, connect_timeout=1, read_timeout=10)
            made[region] = local_client("securityhub", hub.endpoint_url, region, retries)
        return made[region]

    return client_for


@pytest.fixture
def dead_letters(tmp_path: Path) -> JsonlDeadLetters:
    return JsonlDeadLetters(tmp_path / "dead-letters.jsonl")


@pytest.fixture
def sink(hub: LocalSecurityHub, dead_letters: JsonlDeadLetters) -> SecurityHubSink:
    return SecurityHubSink(
        hub_clients(hub), dead_letters, account_id=hub.account_id, policy=FAST, stop=threading.Event()
    )


@pytest.fixture
def template(convert: Convert, reference_events: list[dict[str, Any]]) -> dict[str, Any]:
    return convert(reference_events[2] | {"region": "us-east-1"})[0]


def many(template: dict[str, Any], count: int, **changes: Any) -> list[Outbound]:
    """`count` distinct findings, each from its own record."""
    return [
        Outbound(copy.deepcopy(template) | {"Id": f"finding-{i}"} | changes, RecordOrigin("shard-1", str(1000 + i)))
        for i in range(count)
    ]
