"""What tests share: local clients and environments, the in-process pipeline, events with chosen times, and the
checks of what Security Hub ends up holding. Fixtures live in the conftest files; everything else is here."""

from __future__ import annotations

import copy
import email.utils
import io
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import boto3
import botocore.loaders
import botocore.session
import msgspec
from botocore.config import Config

from defender_hub.checkpoints import DynamoDbLedger, Ledger, SqliteLedger
from defender_hub.checkpoints.opening import DeliverySettings, open_delivery
from defender_hub.cli import main
from defender_hub.convert import EventConverter
from defender_hub.errors import EventSkipped
from defender_hub.lifecycle import LedgerEntry
from defender_hub.local.securityhub import LocalSecurityHub
from defender_hub.mapping import MappingOptions
from defender_hub.sink import (
    DeliveryReport,
    MappedFinding,
    RecordOrigin,
    RetryPolicy,
    SecurityHubClients,
)
from defender_hub.timestamps import format_iso

GOLDEN = Path(__file__).parent / "golden"
Convert = Callable[..., list[dict[str, Any]]]


ACCOUNT = "123456789012"
DAY_MS = 86_400_000
CHECK = "DEVICE_CERTIFICATE_KEY_QUALITY_CHECK"
TESTS_NOW_MS = 1_893_456_000_000
"""The pipeline's clock, 2030-01-01: the events of these tests are from before it, and one "from 2100" after it."""


def unique(name: str) -> str:
    """`name` made unique in the session's one local AWS (tests/conftest.py), which every test shares."""
    return f"{name}-{uuid.uuid4().hex[:8]}"


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


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


def cli(*args: str, stdin: bytes = b"", env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    """Runs `defender-hub` in this process, a second sooner than `run_cli`: `env` is its whole environment, and the
    environment, standard streams, log handlers, stop signals and boto3's default session are put back after; a
    command that leaves a thread running fails."""
    streams, threads = (sys.stdin, sys.stdout, sys.stderr), set(threading.enumerate())
    saved_env, handlers, levels = dict(os.environ), logging.root.handlers[:], _log_levels()
    signals = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    out, err = io.BytesIO(), io.BytesIO()
    if env is not None:
        os.environ.clear()
        os.environ.update(env)
    boto3.DEFAULT_SESSION = None  # it keeps the environment it was made in
    sys.stdin = io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8")
    sys.stdout = io.TextIOWrapper(out, encoding="utf-8", write_through=True)
    sys.stderr = io.TextIOWrapper(err, encoding="utf-8", write_through=True)
    try:
        try:
            status = main(list(args))
        except SystemExit as exited:  # argparse's refusals and --help
            status = exited.code if isinstance(exited.code, int) else 1
        sys.stdout.flush()
        sys.stderr.flush()
        # A thread the command left would go on in the environment put back: run such a command with run_cli. The
        # local hub's threads that serve its connections (socketserver's) are the hub's, not the command's.
        new = set(threading.enumerate()) - threads
        left = [thread.name for thread in new if "process_request_thread" not in thread.name and thread.is_alive()]
        assert not left, f"`defender-hub {' '.join(args[:1])}` left threads running: {left}"
        return subprocess.CompletedProcess(["defender-hub", *args], status, out.getvalue(), err.getvalue())
    finally:
        sys.stdin, sys.stdout, sys.stderr = streams
        os.environ.clear()
        os.environ.update(saved_env)
        boto3.DEFAULT_SESSION = None
        logging.root.handlers[:] = handlers
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        for number, handler in signals.items():
            signal.signal(number, handler)


def _log_levels() -> dict[str, int]:
    """The levels of the loggers a command sets: the root logger's and defender-hub's."""
    return {name: logging.getLogger(name).level for name in ("", "defender_hub")}


FAST = RetryPolicy(base_seconds=0.05, max_seconds=0.5, park_seconds=0.3)


def hub_clients(hub: LocalSecurityHub, **lanes: Any) -> SecurityHubClients:
    """Security Hub clients by lane, all pointed at the local hub, as the sink takes them; `lanes` as
    SecurityHubClients takes them (assume_role, own_account…)."""
    retries = Config(retries={"mode": "adaptive", "total_max_attempts": 3}, connect_timeout=1, read_timeout=10)
    core = botocore.session.Session()
    core.register_component("data_loader", _LOADER)
    session = boto3.Session(
        aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1", botocore_session=core
    )
    return SecurityHubClients(session, config=retries, endpoint_url=hub.endpoint_url, **lanes)


_LOADER = botocore.loaders.create_loader()
"""The service models, loaded once for every test's session rather than once a session (a tenth of a second each)."""


def many(template: dict[str, Any], count: int, **changes: Any) -> list[MappedFinding]:
    """`count` distinct findings, each from its own record."""
    return [
        MappedFinding(
            copy.deepcopy(template) | {"Id": f"finding-{i}"} | changes, RecordOrigin("shard-1", str(1000 + i))
        )
        for i in range(count)
    ]


def another_connection(ledger: Ledger) -> Ledger:
    """The same ledger opened again, as another process would."""
    if isinstance(ledger, SqliteLedger):
        return SqliteLedger(ledger.path)
    assert isinstance(ledger, DynamoDbLedger)
    return DynamoDbLedger(ledger.table, ledger.client)


class Pipeline:
    """Events → the converter → the ledgered sink → the local Security Hub, in process, as the processor does it."""

    def __init__(self, hub: LocalSecurityHub, ledger: Ledger, dead_letters: Path) -> None:
        self.hub, self.ledger = hub, ledger
        self.stop = threading.Event()
        settings = DeliverySettings(str(dead_letters), None, clients=hub_clients(hub))
        self.delivery = open_delivery(settings, self.stop, lambda: TESTS_NOW_MS / 1000, ledger=ledger, policy=FAST)
        assert self.delivery.ledgered is not None
        self.sink = self.delivery.ledgered
        self._converter = EventConverter(MappingOptions())
        self._sequence = 0

    def deliver(self, *events: bytes) -> DeliveryReport:
        """Delivers the events' findings as one batch of records."""
        findings = []
        for event in events:
            self._sequence += 1
            origin = RecordOrigin("shard-1", str(self._sequence))
            findings += [MappedFinding(finding, origin) for finding in self._converter.findings(event)]
        return self.sink.deliver(findings)

    def finding_ids(self, event: bytes) -> list[str]:
        """The Ids of the findings `event` makes."""
        return [finding.id for finding in self._converter.findings(event)]

    def ledger_owed(self) -> list[LedgerEntry]:
        """The ledger's entries still owed a Workflow.Status."""
        return self.ledger.owed_workflows(1000)

    def sent(self) -> int:
        """Findings Security Hub has accepted over all requests so far."""
        return sum(r.findings for r in self.hub.requests("BatchImportFindings") if r.status == 200)

    def stored(self) -> dict[str, dict[str, Any]]:
        """Security Hub's findings by Id."""
        return {finding["Id"]: finding for finding in self.hub.findings()}


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


def violation(
    event_type: str,
    at_ms: int,
    started_ms: int,
    violation_id: str = "violation-1",
    *,
    account: str = ACCOUNT,
    region: str = "us-east-1",
) -> bytes:
    """A Detect violation event of `violation_id` in `account` and `region`, which started at `started_ms`."""
    return _json({
        "accountId": account, "region": region, "violationId": violation_id, "thingName": "thing-1",
        "securityProfileName": "profile", "behavior": {
            "name": "disconnects", "metric": "aws:num-disconnects",
            "criteria": {"comparisonOperator": "greater-than", "value": {"count": 5}, "durationSeconds": 300},
        },
        "metricValue": {"count": 9}, "violationEventType": event_type, "violationEventTime": at_ms,
        "violationStartTime": started_ms,
    })  # fmt: skip


def wait_for(what: str, condition: Callable[[], object], timeout: float, every: float = 1.0) -> None:
    """Returns once `condition()` is true, asking every `every` seconds; fails the test, naming `what`, when it is
    not within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def holds_latest(hub: LocalSecurityHub, expected: dict[str, str]) -> bool:
    """Security Hub holds exactly the expected findings, each at its latest version or later.

    Later: the lifecycle archives audit findings a later task no longer reported, as of that task's time.
    """
    stored = {f["Id"]: f["UpdatedAt"] for f in hub.findings()}
    return stored.keys() == expected.keys() and all(stored[i] >= updated for i, updated in expected.items())


def latest_versions(events: list[bytes]) -> dict[str, str]:
    """Finding Id → the UpdatedAt of its newest version, what Security Hub must hold at least in the end. Newest as
    the lifecycle orders news: an audit finding's task first (a later task's report wins, though it found it sooner
    than an overlapping older task did), then its time."""
    converter = EventConverter(MappingOptions())
    latest: dict[str, tuple[int, str]] = {}
    for event in events:
        fields = msgspec.json.decode(event)
        task_ms = fields.get("taskStartTime", 0) if "findingId" in fields else 0  # an audit finding's
        try:
            findings = converter.findings(event)
        except EventSkipped:
            continue
        for finding in findings:
            if (task_ms, finding.updated_at) > latest.get(finding.id, (0, "")):
                latest[finding.id] = (task_ms, finding.updated_at)
    return {finding_id: updated_at for finding_id, (_, updated_at) in latest.items()}


def config_change(
    resource: str, compliance: str, at_ms: int, *, rule: str = "s3-bucket-public-read-prohibited", before: str = ""
) -> bytes:
    """An AWS Config compliance change of S3 bucket `resource` under `rule`, as EventBridge puts it on the stream."""
    rule_arn = f"arn:aws:config:us-east-1:{ACCOUNT}:config-rule/config-rule-{rule[:6]}"

    def result(status: str) -> dict[str, Any]:
        return {
            "evaluationResultIdentifier": {
                "evaluationResultQualifier": {
                    "configRuleName": rule, "resourceType": "AWS::S3::Bucket", "resourceId": resource,
                },
                "orderingTimestamp": format_iso(at_ms),
            },
            "complianceType": status, "resultRecordedTime": format_iso(at_ms),
            "configRuleInvokedTime": format_iso(at_ms - 1000),
        }  # fmt: skip

    return _json({
        "version": "0", "id": str(uuid.uuid4()), "detail-type": "Config Rules Compliance Change",
        "source": "aws.config", "account": ACCOUNT, "time": format_iso(at_ms), "region": "us-east-1",
        "resources": [], "detail": {
            "resourceId": resource, "awsRegion": "us-east-1", "awsAccountId": ACCOUNT, "configRuleName": rule,
            "recordVersion": "1.0", "configRuleARN": rule_arn, "messageType": "ComplianceChangeNotification",
            "resourceType": "AWS::S3::Bucket", "notificationCreationTime": format_iso(at_ms),
            "newEvaluationResult": result(compliance), "oldEvaluationResult": result(before) if before else None,
        },
    })  # fmt: skip


def health_event(
    code: str, status: str, at_ms: int, *, service: str = "GUARDDUTY", start_ms: int | None = None
) -> bytes:
    """An AWS Health event of `service` and `code` in state `status`, sent at `at_ms`, as EventBridge puts it."""
    start = format_rfc1123(start_ms if start_ms is not None else at_ms)
    arn = f"arn:aws:health:us-east-1::event/{service}/{code}/{code}_{start_ms or at_ms}"
    return _json({
        "version": "0", "id": str(uuid.uuid4()), "detail-type": "AWS Health Event", "source": "aws.health",
        "account": ACCOUNT, "time": format_iso(at_ms), "region": "us-east-1", "resources": [],
        "detail": {
            "eventArn": arn, "service": service, "eventTypeCode": code, "eventTypeCategory": "accountNotification",
            "eventScopeCode": "ACCOUNT_SPECIFIC", "communicationId": "c1", "startTime": start,
            "lastUpdatedTime": format_rfc1123(at_ms), "statusCode": status,
            "eventRegion": "us-east-1",
            "eventDescription": [{"language": "en_US", "latestDescription": f"{service} says {code}."}],
            "affectedAccount": ACCOUNT,
        },
    })  # fmt: skip


def format_rfc1123(epoch_ms: int) -> str:
    """`Fri, 7 Jan 2022 16:34:04 GMT`: the form of AWS Health's times."""
    return email.utils.formatdate(epoch_ms / 1000, usegmt=True)
