"""A running local Security Hub and findings to send it."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from defender_hub.local.securityhub import LocalSecurityHub
from defender_hub.sink import JsonlDeadLetters, SecurityHubSink
from tests.helpers import FAST, Convert, hub_clients


@pytest.fixture
def dead_letters(tmp_path: Path) -> JsonlDeadLetters:
    return JsonlDeadLetters(tmp_path / "dead-letters.jsonl")


@pytest.fixture
def sink(hub: LocalSecurityHub, dead_letters: JsonlDeadLetters) -> SecurityHubSink:
    return SecurityHubSink(hub_clients(hub), dead_letters, policy=FAST, stop=threading.Event())


@pytest.fixture
def template(convert: Convert, reference_events: list[dict[str, Any]]) -> dict[str, Any]:
    return convert(reference_events[2] | {"region": "us-east-1"})[0]
