"""The worker's metrics as a scraper sees them: a real shard process's, summed from its folder; the sink's; `run`'s
address."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from defender_hub.cli import main
from defender_hub.convert import EventConverter
from defender_hub.local.aws import free_port
from defender_hub.local.securityhub import LocalSecurityHub
from defender_hub.mapping import MappingOptions
from defender_hub.metrics import reason_label, serve, worker_registry
from defender_hub.settings.resolving import shard_environment
from defender_hub.sink import JsonlDeadLetters, MappedFinding, SecurityHubSink
from tests.helpers import ACCOUNT, health_event, hub_clients, violation

SHARD = "shardId-000000000000"
NOW_MS = int(time.time() * 1000)


class ShardProcess:
    """A shard's processor as the daemon runs it (`python -m defender_hub.consumer`), delivering to the
    local hub with a SQLite ledger, its metrics written to `folder`; spoken to in the daemon's protocol."""

    def __init__(self, hub: LocalSecurityHub, tmp_path: Path) -> None:
        self.folder, self.log = tmp_path / "metrics", tmp_path / "shard.log"
        self.folder.mkdir()
        environment = os.environ | {
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_ENDPOINT_URL_SECURITYHUB": hub.endpoint_url,
            "PROMETHEUS_MULTIPROC_DIR": str(self.folder),
        }
        # As `run` hands them on: the shard process reads its settings through the same contract.
        environment |= shard_environment(
            {"dead_letter": tmp_path / "dl.jsonl", "ledger": f"sqlite:///{tmp_path / 'ledger.sqlite3'}"}
        )
        self._process = subprocess.Popen(
            [sys.executable, "-m", "defender_hub.consumer"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log.open("wb"),
            env=environment,
            text=True,
        )
        self._watchdog = threading.Timer(120, self._process.kill)  # a hung processor fails the test, not the run
        self._watchdog.start()
        self._said({"action": "initialize", "shardId": SHARD, "sequenceNumber": "TRIM_HORIZON", "subSequenceNumber": 0})

    def _said(self, message: dict[str, Any]) -> None:
        """Hands the processor `message`, answers each checkpoint it asks for as done, and returns once it is done."""
        assert self._process.stdin is not None and self._process.stdout is not None
        self._process.stdin.write(json.dumps(message) + "\n")
        self._process.stdin.flush()
        while True:
            line = self._process.stdout.readline()
            assert line, self.log.read_text()
            if not line.strip():
                continue  # kclpy writes a blank line before each message
            asked = json.loads(line)
            if asked["action"] == "status":
                return
            answer = {"action": "checkpoint", "sequenceNumber": asked["sequenceNumber"], "error": None}
            self._process.stdin.write(json.dumps(answer | {"subSequenceNumber": None}) + "\n")
            self._process.stdin.flush()

    def process(self, events: list[bytes], behind_ms: int = 0) -> None:
        """Hands the processor `events` as one batch, `behind_ms` behind the tip of the stream."""
        records = [
            {"action": "record", "data": base64.b64encode(event).decode(), "partitionKey": "k",
             "sequenceNumber": str(n), "subSequenceNumber": None, "approximateArrivalTimestamp": 0}
            for n, event in enumerate(events)
        ]  # fmt: skip
        self._said({"action": "processRecords", "records": records, "millisBehindLatest": behind_ms})

    def end(self) -> None:
        """Stops the processor as the daemon does: a shutdown request, then its input closed."""
        self._said({"action": "shutdownRequested"})
        assert self._process.stdin is not None
        self._process.stdin.close()
        assert self._process.wait(timeout=60) == 0, self.log.read_text()
        self._watchdog.cancel()

    def kill(self) -> None:
        """Kills the processor, if it still runs."""
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        self._watchdog.cancel()

    def sample(self, name: str, **labels: str) -> float | None:
        """A sample of the metrics as `run --metrics-port` serves them: summed over the folder's processes."""
        return worker_registry(self.folder).get_sample_value(name, labels)


@pytest.fixture
def shard(hub: LocalSecurityHub, tmp_path: Path) -> Iterator[ShardProcess]:
    """A shard process, initialized for SHARD."""
    process = ShardProcess(hub, tmp_path)
    yield process
    process.kill()


def test_a_shard_s_lag_is_in_seconds_while_its_process_lives_and_gone_once_it_ends(shard: ShardProcess) -> None:
    shard.process([violation("in-alarm", NOW_MS, NOW_MS)], behind_ms=9_500)
    lag = shard.sample("defender_hub_seconds_behind_latest", shard=SHARD)

    shard.end()

    assert lag == 9.5
    assert shard.sample("defender_hub_seconds_behind_latest", shard=SHARD) is None  # no stale lag of a dead process
    assert shard.sample("defender_hub_records_total", shard=SHARD) == 1  # what it did stays counted
    assert shard.sample("defender_hub_millis_behind_latest", shard=SHARD) is None


def test_the_lag_of_a_shard_process_killed_is_not_served(shard: ShardProcess) -> None:
    shard.process([violation("in-alarm", NOW_MS, NOW_MS)], behind_ms=9_500)
    assert shard.sample("defender_hub_seconds_behind_latest", shard=SHARD) == 9.5

    shard.kill()  # SIGKILL, the OOM killer: it never says it ended

    assert shard.sample("defender_hub_seconds_behind_latest", shard=SHARD) is None
    assert shard.sample("defender_hub_records_total", shard=SHARD) == 1


def test_the_label_sets_a_dashboard_needs_are_there_at_start_at_zero(shard: ShardProcess) -> None:
    zeros = {
        "defender_hub_records_total": [{"shard": SHARD}],
        "defender_hub_findings_total": [
            {"outcome": outcome}
            for outcome in ("accepted", "unchanged", "archived", "dead_lettered", "parked", "superseded")
        ],
        "defender_hub_source_findings_total": [{"source": s} for s in ("device_defender", "config", "health")],
        "defender_hub_skipped_events_total": [{"source": s} for s in ("config", "health")],
        "defender_hub_set_aside_total": [
            {"what": "skipped", "reason": "not_about_security"},
            {"what": "skipped", "reason": "service_linked_rule"},
            {"what": "dead_lettered", "reason": "event_decode_error"},
            {"what": "dead_lettered", "reason": "unknown_event_error"},
            {"what": "dead_lettered", "reason": "event_mapping_error"},
            {"what": "dead_lettered", "reason": "mapping_defect"},
            {"what": "parked", "reason": "invalid_access_exception"},
            {"what": "parked", "reason": "access_denied_exception"},
        ],
        "defender_hub_workflow_updates_total": [{"outcome": o} for o in ("processed", "left_owed")],
    }

    found = {name: [shard.sample(name, **labels) for labels in sets] for name, sets in zeros.items()}

    assert found == {name: [0.0] * len(sets) for name, sets in zeros.items()}


def test_what_is_skipped_dead_lettered_and_parked_is_counted_by_why(hub: LocalSecurityHub, shard: ShardProcess) -> None:
    hub.disable(ACCOUNT, "eu-west-1")
    events = [
        violation("in-alarm", NOW_MS, NOW_MS, "delivered"),
        violation("in-alarm", NOW_MS, NOW_MS, "refused-lane", region="eu-west-1"),
        violation("in-alarm", NOW_MS + 3 * 86_400_000, NOW_MS, "from-the-future"),
        health_event("AWS_EC2_INSTANCE_STORE_DRIVE_PERFORMANCE_DEGRADED", "open", NOW_MS, service="EC2"),
        b'{"violationId": "truncated',
        b'{"neither": "an event", "nor": "a finding"}',
    ]

    shard.process(events)
    shard.end()

    def set_aside(what: str, reason: str) -> float | None:
        return shard.sample("defender_hub_set_aside_total", what=what, reason=reason)

    assert set_aside("skipped", "not_about_security") == 1
    assert set_aside("dead_lettered", "event_decode_error") == 1
    assert set_aside("dead_lettered", "unknown_event_error") == 1
    assert set_aside("dead_lettered", "future_event_time") == 1
    assert set_aside("parked", "invalid_access_exception") == 1
    assert shard.sample("defender_hub_findings_total", outcome="accepted") == 1


def test_the_sink_counts_by_account_and_region(hub: LocalSecurityHub, tmp_path: Path) -> None:
    lane = {"account": ACCOUNT, "region": "us-east-1"}

    def counted(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, lane | labels) or 0.0

    before = counted("defender_hub_lane_findings_total", outcome="accepted"), counted("defender_hub_requests_total")
    finding = EventConverter(MappingOptions()).findings(violation("in-alarm", NOW_MS, NOW_MS, "by-lane"))[0]

    SecurityHubSink(hub_clients(hub), JsonlDeadLetters(tmp_path / "dl.jsonl")).deliver([MappedFinding(finding, None)])

    after = counted("defender_hub_lane_findings_total", outcome="accepted"), counted("defender_hub_requests_total")
    assert [a - b for a, b in zip(after, before, strict=True)] == [1, 1]


def test_the_sum_is_served_at_the_address_given_and_only_there(shard: ShardProcess) -> None:
    shard.process([violation("in-alarm", NOW_MS, NOW_MS)])
    shard.end()
    port = free_port()

    server = serve(port, shard.folder, "127.0.0.2")  # a loopback address of its own, not 127.0.0.1's
    try:
        page = urllib.request.urlopen(f"http://127.0.0.2:{port}/metrics", timeout=5).read().decode()
        with pytest.raises(urllib.error.URLError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5)
    finally:
        server.shutdown()
    assert f'defender_hub_records_total{{shard="{SHARD}"}} 1.0' in page.splitlines()


@pytest.mark.parametrize("given", ["flag", "variable"])
def test_run_refuses_a_metrics_address_that_is_not_an_ip_address_in_one_line(
    given: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    for name, value in {
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",  # nothing is asked of AWS before the settings are checked
    }.items():
        monkeypatch.setenv(name, value)
    flags = ["run", "--stream", "s", "--application", "a", "--metrics-port", str(free_port())]
    if given == "flag":
        flags += ["--metrics-address", "metrics.example"]
    else:
        monkeypatch.setenv("DEFENDER_HUB_METRICS_ADDRESS", "metrics.example")

    status = main(flags)

    said = capsys.readouterr().err.splitlines()
    assert status == 2
    assert said == ["defender-hub: configuration error: metrics address 'metrics.example' is not an IP address"]


@pytest.mark.parametrize(
    ("reason", "label"),
    [
        ("InvalidAccessException", "invalid_access_exception"),
        ("FutureEventTime", "future_event_time"),
        ("not an AWS Health event or abuse event", "not_an_aws_health_event_or_abuse_event"),
        ("403", "http_403"),
        (None, "other"),
        ("refused by Security Hub: Finding arn:aws:iot:us-east-1:123456789012:thing/x is invalid", "other"),
        ("a code\nwith a line of its own", "other"),
    ],
)
def test_a_reason_becomes_a_snake_case_label_and_free_text_none(reason: str | None, label: str) -> None:
    assert reason_label(reason) == label
