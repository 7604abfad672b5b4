"""Fixtures shared by every test: reference events and findings, the converter, a local Security Hub."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, settings

from defender_hub.codecs.asff import encode_finding
from defender_hub.convert import EventConverter
from defender_hub.local.securityhub import LocalSecurityHub
from defender_hub.mapping import MappingOptions
from tests.helpers import GOLDEN, Convert, read_jsonl

# HYPOTHESIS_PROFILE=deep for a longer hunt; the default keeps the suite quick.
_SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large]
settings.register_profile("default", max_examples=300, deadline=None, suppress_health_check=_SLOW_OK)
settings.register_profile("deep", max_examples=5_000, deadline=None, suppress_health_check=_SLOW_OK)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture
def reference_events() -> list[dict[str, Any]]:
    return read_jsonl(GOLDEN / "reference-events.jsonl")


@pytest.fixture
def reference_findings() -> list[dict[str, Any]]:
    return read_jsonl(GOLDEN / "reference-findings.jsonl")


@pytest.fixture
def convert() -> Convert:
    """Converts one event (a dict, or raw bytes) to its findings as the JSON `convert` writes, parsed."""

    def run(event: dict[str, Any] | bytes, **options: Any) -> list[dict[str, Any]]:
        data = event if isinstance(event, bytes) else msgspec.json.encode(event)
        findings = EventConverter(MappingOptions(**options)).findings(data)
        return [json.loads(encode_finding(finding)) for finding in findings]

    return run


@pytest.fixture
def hub() -> Iterator[LocalSecurityHub]:
    """A strict local Security Hub of the test's own."""
    with LocalSecurityHub() as running:
        yield running
