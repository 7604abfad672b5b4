"""Shared helpers: events as dicts in, findings as parsed JSON out, through the real decode → map → encode path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import msgspec
import pytest
from botocore.config import Config
from hypothesis import HealthCheck, settings

from defender_hub.codecs.asff import encode_finding
from defender_hub.convert import EventConverter
from defender_hub.local.securityhub import LocalSecurityHub
from defender_hub.mapping import MappingOptions

GOLDEN = Path(__file__).parent / "golden"

# HYPOTHESIS_PROFILE=deep for a longer hunt; the default keeps the suite quick.
_SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large]
settings.register_profile("default", max_examples=300, deadline=None, suppress_health_check=_SLOW_OK)
settings.register_profile("deep", max_examples=5_000, deadline=None, suppress_health_check=_SLOW_OK)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

Convert = Callable[..., list[dict[str, Any]]]


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


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


def local_client(service: str, endpoint_url: str, region: str = "us-east-1", config: Config | None = None) -> Any:
    """A boto3 client of a local stand-in on loopback, with throw-away credentials."""
    return boto3.client(
        service,
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=config,
    )


def local_aws_env(**extra: str) -> dict[str, str]:
    """The environment of a child process that may reach only local endpoints, never AWS itself."""
    return (
        os.environ
        | {
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        }
        | extra
    )


def run_cli(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    """Runs `defender-hub` as a separate process, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "defender_hub", *args], input=stdin, capture_output=True, timeout=120, check=False
    )
