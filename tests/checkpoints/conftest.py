"""Both ledgers (SQLite in a temporary folder, DynamoDB on moto), and Device Defender events with chosen times."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from defender_hub.checkpoints import DynamoDbLedger, Ledger, SqliteLedger
from defender_hub.checkpoints.delivery import LedgeredSink
from defender_hub.convert import EventConverter
from defender_hub.local.aws import LocalAws
from defender_hub.local.securityhub import LocalSecurityHub
from defender_hub.mapping import MappingOptions
from defender_hub.sink import DeliveryReport, JsonlDeadLetters, Outbound, RecordOrigin, SecurityHubSink
from tests.conftest import local_client
from tests.sink.conftest import FAST, hub_clients

ACCOUNT = "123456789012"
DAY_MS = 86_400_000
CHECK = "DEVICE_CERTIFICATE_KEY_QUALITY_CHECK"
TESTS_NOW_MS = 1_893_456_000_000
"""The pipeline's clock, 2030-01-01: the events of these tests are from before it, and one "from 2100" after it."""


@pytest.fixture(scope="session")
def local_dynamodb() -> Iterator[Any]:
    with LocalAws() as aws:
        yield local_client("dynamodb", aws.endpoint_url)


@pytest.fixture(params=["sqlite", "dynamodb"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Ledger]:
    """Each ledger back end in turn, empty."""
    opened: Ledger
    if request.param == "sqlite":
        opened = SqliteLedger(tmp_path / "ledger.sqlite3")
    else:
        opened = DynamoDbLedger(f"ledger-{uuid.uuid4().hex[:8]}", request.getfixturevalue("local_dynamodb"))
    yield opened
    opened.close()


def another_connection(ledger: Ledger) -> Ledger:
    """The same ledger opened again, as another process would."""
    if isinstance(ledger, SqliteLedger):
        return SqliteLedger(ledger.path)
    assert isinstance(ledger, DynamoDbLedger)
    return DynamoDbLedger(ledger.table, ledger.client)


class Pipeline:
    """Events → the converter → the ledgered sink → the local Security Hub, in process, as the processor does it."""

    def __init__(self, hub: LocalSecurityHub, ledger: Ledger, dead_letters: Path) -> None:
        self.hub = hub
        self.stop = threading.Event()
        sink = SecurityHubSink(
            hub_clients(hub), JsonlDeadLetters(dead_letters), account_id=ACCOUNT, policy=FAST, stop=self.stop
        )
        self.sink = LedgeredSink(sink, ledger, clock=lambda: TESTS_NOW_MS / 1000)
        self._converter = EventConverter(MappingOptions())
        self._sequence = 0

    def deliver(self, *events: bytes) -> DeliveryReport:
        """Delivers the events' findings as one batch of records."""
        outbound = []
        for event in events:
            self._sequence += 1
            origin = RecordOrigin("shard-1", str(self._sequence))
            outbound += [Outbound(finding, origin) for finding in self._converter.findings(event)]
        return self.sink.deliver(outbound)

    def sent(self) -> int:
        """Findings Security Hub has accepted over all requests so far."""
        return sum(r.findings for r in self.hub.requests("BatchImportFindings") if r.status == 200)

    def stored(self) -> dict[str, dict[str, Any]]:
        """Security Hub's findings by Id."""
        return {finding["Id"]: finding for finding in self.hub.findings()}


@pytest.fixture
def pipeline(hub: LocalSecurityHub, ledger: Ledger, tmp_path: Path) -> Pipeline:
    return Pipeline(hub, ledger, tmp_path / "dead-letters.jsonl")


def _json(value: dict[str, Any]) -> bytes:
    return msgspec.json.encode(value)


def audit_finding(task: str, start_ms: int, certificate: str, check: str = CHECK) -> bytes:
    """An audit finding of `task`: the device certificate `certificate` fails `check`."""
    return _json({
        "accountId": ACCOUNT, "region": "us-east-1", "taskType": "SCHEDULED_AUDIT_TASK",
        "findingId": f"{task}-{certificate}", "taskId": task, "checkName": check, "taskStartTime": start_ms,
        "findingTime": start_ms + 60_000, "severity": "CRITICAL",
        "nonCompliantResource": {
            "resourceType": "DEVICE_CERTIFICATE", "resourceIdentifier": {"deviceCertificateId": certificate}
        },
        "reasonForNonCompliance": "Certificate uses a weak key.", "reasonForNonComplianceCode": "WEAK_KEY",
    })  # fmt: skip


def audit_task(task: str, start_ms: int, non_compliant: int, check: str = CHECK, status: str = "COMPLETED") -> bytes:
    """The notification of `task`, which ran `check` and found `non_compliant` resources."""
    run_status = "CANCELED" if status == "CANCELED" else (
        "COMPLETED_NON_COMPLIANT" if non_compliant else "COMPLETED_COMPLIANT"
    )  # fmt: skip
    return _json({
        "accountId": ACCOUNT, "region": "us-east-1", "taskId": task, "taskStatus": status,
        "taskType": "SCHEDULED_AUDIT_TASK", "scheduledAuditName": "daily", "failedChecksCount": 0,
        "canceledChecksCount": int(status == "CANCELED"), "nonCompliantChecksCount": int(non_compliant > 0),
        "compliantChecksCount": int(non_compliant == 0), "totalChecksCount": 1, "taskStartTime": start_ms,
        "auditDetails": [{
            "checkName": check, "checkRunStatus": run_status, "nonCompliantResourcesCount": non_compliant,
            "totalResourcesCount": 10,
        }],
    })  # fmt: skip


def violation(event_type: str, at_ms: int, started_ms: int, violation_id: str = "violation-1") -> bytes:
    """A Detect violation event of `violation_id`, which started at `started_ms`."""
    return _json({
        "accountId": ACCOUNT, "region": "us-east-1", "violationId": violation_id, "thingName": "thing-1",
        "securityProfileName": "profile", "behavior": {
            "name": "disconnects", "metric": "aws:num-disconnects",
            "criteria": {"comparisonOperator": "greater-than", "value": {"count": 5}, "durationSeconds": 300},
        },
        "metricValue": {"count": 9}, "violationEventType": event_type, "violationEventTime": at_ms,
        "violationStartTime": started_ms,
    })  # fmt: skip
