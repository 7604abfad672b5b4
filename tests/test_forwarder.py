"""The forwarder against moto's Kinesis and the local Device Defender audit API, with SNS's real event shapes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from botocore.config import Config

from defender_hub import forwarder as forwarder_module
from defender_hub.errors import ForwardError
from defender_hub.forwarder import Forwarder, sns_messages
from defender_hub.local.aws import LocalAws
from defender_hub.local.iot_audit import LocalIotAudit
from defender_hub.local.securityhub import LocalSecurityHub
from tests.consumer.test_processor import Stream as ConsumerStream
from tests.consumer.test_processor import start_consumer, stop, wait_for
from tests.helpers import ACCOUNT, CHECK, cli, holds_latest, latest_versions, local_aws_env, local_client, unique

TOPIC = f"arn:aws:sns:us-east-1:{ACCOUNT}:device-defender-audit"
TASK_START_S = 1_790_000_000


def lambda_event(message: dict[str, Any], topic: str = TOPIC) -> dict[str, Any]:
    """An SNS event as Lambda receives it."""
    return {"Records": [{
        "EventSource": "aws:sns", "EventVersion": "1.0", "EventSubscriptionArn": f"{topic}:0b6941c3",
        "Sns": {
            "Type": "Notification", "MessageId": "95df01b4-ee98-5cb9-9903-4c221d41eb5e", "TopicArn": topic,
            "Subject": None, "Message": json.dumps(message), "Timestamp": "2026-09-21T14:13:20.000Z",
            "SignatureVersion": "1", "Signature": "EXAMPLE", "MessageAttributes": {},
        },
    }]}  # fmt: skip


def detect_alarm(violation_id: str, thing: str) -> dict[str, Any]:
    """A Detect alarm as its SNS message carries it: no account or Region of its own."""
    return {
        "violationId": violation_id, "thingName": thing, "securityProfileName": "p", "violationEventType": "in-alarm",
        "violationEventTime": TASK_START_S * 1000, "violationStartTime": TASK_START_S * 1000,
        "behavior": {"name": "disconnects", "metric": "aws:num-disconnects"}, "metricValue": {"count": 9},
    }  # fmt: skip


def audit_findings(task: str, count: int) -> list[dict[str, Any]]:
    """`count` findings of `task` as ListAuditFindings answers them (times in epoch seconds on the wire)."""
    return [
        {
            "findingId": f"{task}-{n:05d}", "taskId": task, "checkName": CHECK, "taskStartTime": TASK_START_S,
            "findingTime": TASK_START_S + 60, "severity": "CRITICAL", "isSuppressed": False,
            "nonCompliantResource": {
                "resourceType": "DEVICE_CERTIFICATE", "resourceIdentifier": {"deviceCertificateId": f"cert{n:05d}"},
            },
            "reasonForNonCompliance": "Certificate uses a weak key.", "reasonForNonComplianceCode": "WEAK_KEY",
        }
        for n in range(count)
    ]  # fmt: skip


def notification(task: str, status: str = "COMPLETED", non_compliant: int = 0) -> dict[str, Any]:
    """An audit task notification (`auditnotification/1.0`), without the suppressed count DescribeAuditTask has."""
    return {
        "accountId": ACCOUNT, "taskId": task, "taskStatus": status, "taskType": "SCHEDULED_AUDIT_TASK",
        "scheduledAuditName": "daily", "failedChecksCount": 0, "canceledChecksCount": int(status == "CANCELED"),
        "nonCompliantChecksCount": 1, "compliantChecksCount": 0, "totalChecksCount": 1,
        "taskStartTime": TASK_START_S * 1000,
        "auditDetails": [{
            "checkName": CHECK, "checkRunStatus": "COMPLETED_NON_COMPLIANT",
            "nonCompliantResourcesCount": non_compliant, "totalResourcesCount": non_compliant + 10,
        }],
    }  # fmt: skip


class Stream:
    """A fresh one-shard stream: one shard keeps the order the forwarder put records in."""

    def __init__(self, aws: LocalAws) -> None:
        self.name = unique("forwarded")
        self.kinesis = local_client("kinesis", aws.endpoint_url)
        self.kinesis.create_stream(StreamName=self.name, ShardCount=1)
        self.kinesis.get_waiter("stream_exists").wait(StreamName=self.name, WaiterConfig={"Delay": 0.2})

    def records(self) -> list[tuple[str, dict[str, Any]]]:
        """(partition key, data) of every record, in order."""
        shard = self.kinesis.list_shards(StreamName=self.name)["Shards"][0]["ShardId"]
        iterator = self.kinesis.get_shard_iterator(
            StreamName=self.name, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        records: list[tuple[str, dict[str, Any]]] = []
        while True:
            answer = self.kinesis.get_records(ShardIterator=iterator, Limit=10_000)
            records += [(r["PartitionKey"], json.loads(r["Data"])) for r in answer["Records"]]
            if not answer["Records"]:
                return records
            iterator = answer["NextShardIterator"]


def forwarder(stream: Stream, audit: LocalIotAudit, kinesis: Any = None) -> Forwarder:
    retries = Config(retries={"mode": "standard", "total_max_attempts": 10})
    iot = local_client("iot", audit.endpoint_url, config=retries)
    return Forwarder(stream.name, kinesis or stream.kinesis, iot, sleep=lambda _: None)


def forward_event(forwarder: Forwarder, event: dict[str, Any]) -> int:
    return sum(forwarder.forward(message, topic) for message, topic in sns_messages([json.dumps(event)]))


def test_a_detect_alarm_is_one_record_keyed_by_its_thing_with_the_topics_account_and_region(
    local_aws: LocalAws,
) -> None:
    stream = Stream(local_aws)
    alarm = detect_alarm("v-1", "thermostat-7")
    with LocalIotAudit() as audit:
        put = forward_event(forwarder(stream, audit), lambda_event(alarm, "arn:aws:sns:eu-west-1:210987654321:alarms"))

    assert put == 1
    [(key, record)] = stream.records()
    assert key == "thermostat-7"
    assert record == alarm | {"accountId": "210987654321", "region": "eu-west-1"}
    assert audit.requests == []


def test_a_completed_task_puts_every_finding_in_order_then_its_notification_with_suppressed_counts(
    local_aws: LocalAws,
) -> None:
    stream = Stream(local_aws)
    with LocalIotAudit(throttle_every=7) as audit:  # ListAuditFindings throttled now and then: botocore retries
        audit.findings["task-1"] = audit_findings("task-1", 2_500)
        audit.tasks["task-1"] = {
            "taskStatus": "COMPLETED", "taskType": "SCHEDULED_AUDIT_TASK", "taskStartTime": TASK_START_S,
            "auditDetails": {CHECK: {"checkRunStatus": "COMPLETED_NON_COMPLIANT", "nonCompliantResourcesCount": 2_500,
                                     "suppressedNonCompliantResourcesCount": 3}},
        }  # fmt: skip
        put = forward_event(forwarder(stream, audit), lambda_event(notification("task-1", non_compliant=2_500)))
        listed = sum(request == "POST /audit/findings" for request in audit.requests)

    records = stream.records()
    assert put == len(records) == 2_501 and listed >= 10  # pages of 250, and the throttled tries again
    assert {key for key, _ in records} == {f"audit/{ACCOUNT}"}
    findings, (_, last) = [data for _, data in records[:-1]], records[-1]
    assert [f["findingId"] for f in findings] == [f"task-1-{n:05d}" for n in range(2_500)]
    assert all(
        (f["accountId"], f["region"], f["taskType"], f["scheduledAuditName"], f["taskStartTime"])
        == (ACCOUNT, "us-east-1", "SCHEDULED_AUDIT_TASK", "daily", TASK_START_S * 1000)
        for f in findings
    )
    assert last["taskId"] == "task-1" and last["auditDetails"][0]["suppressedNonCompliantResourcesCount"] == 3


@pytest.mark.parametrize("status", ["FAILED", "CANCELED"])
def test_a_task_that_did_not_complete_puts_its_notification_alone(local_aws: LocalAws, status: str) -> None:
    stream = Stream(local_aws)
    with LocalIotAudit() as audit:
        put = forward_event(forwarder(stream, audit), lambda_event(notification("task-2", status)))

    assert put == 1 and [data["taskStatus"] for _, data in stream.records()] == [status]
    assert audit.requests == []


class FlakyKinesis:
    """moto's Kinesis, but the first PutRecords reports every third record throttled, as Kinesis does when a shard is
    over its limit: the records reported failed were not stored."""

    def __init__(self, kinesis: Any) -> None:
        self._kinesis, self.calls = kinesis, []

    def put_records(self, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803 - boto3's
        self.calls.append(len(Records))
        if len(self.calls) > 1:
            return self._kinesis.put_records(StreamName=StreamName, Records=Records)  # type: ignore[no-any-return]
        kept = [r for n, r in enumerate(Records) if n % 3]
        answer = iter(self._kinesis.put_records(StreamName=StreamName, Records=kept)["Records"])
        return {"Records": [
            {"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "Rate exceeded"} if n % 3 == 0
            else next(answer)
            for n in range(len(Records))
        ]}  # fmt: skip


def test_only_the_records_kinesis_refused_are_put_again_and_the_notification_waits_for_them(
    local_aws: LocalAws,
) -> None:
    stream = Stream(local_aws)
    kinesis = FlakyKinesis(stream.kinesis)
    with LocalIotAudit() as audit:
        audit.findings["task-3"] = audit_findings("task-3", 30)
        audit.tasks["task-3"] = {"taskStatus": "COMPLETED", "auditDetails": {}}
        forward_event(forwarder(stream, audit, kinesis), lambda_event(notification("task-3", non_compliant=30)))

    assert kinesis.calls == [30, 10, 1]  # all, the refused third, then the notification
    records = [data for _, data in stream.records()]
    assert sorted(r["findingId"] for r in records[:-1]) == [f"task-3-{n:05d}" for n in range(30)]
    assert records[-1]["taskId"] == "task-3"


@pytest.mark.parametrize(
    "line",
    [
        b'{"Type": "Notification", "TopicArn": "t", "Message": "not json"}',
        b'{"Type": "Notification", "TopicArn": "t", "Message": "{\\"hello\\": 1}"}',
        b'{"Type": "SubscriptionConfirmation"}',
    ],
)
def test_a_poison_message_raises_for_lambdas_on_failure_destination(local_aws: LocalAws, line: bytes) -> None:
    stream = Stream(local_aws)
    with LocalIotAudit() as audit, pytest.raises(ForwardError):
        for message, topic in sns_messages([line]):
            forwarder(stream, audit).forward(message, topic)
    assert stream.records() == []


def test_sns_to_security_hub_a_task_forwarded_twice_arrives_once_through_run(
    local_aws: LocalAws, tmp_path: Path
) -> None:
    stream = ConsumerStream(local_aws, shards=1)
    alarm = detect_alarm("v-9", "thermostat-9")
    with LocalIotAudit(throttle_every=11) as audit, LocalSecurityHub() as hub:
        audit.findings["task-9"] = audit_findings("task-9", 2_500)
        audit.tasks["task-9"] = {"taskStatus": "COMPLETED", "auditDetails": {}}
        retries = Config(retries={"mode": "standard", "total_max_attempts": 10})
        iot = local_client("iot", audit.endpoint_url, config=retries)
        kinesis = local_client("kinesis", local_aws.endpoint_url)
        forwarding = Forwarder(stream.name, kinesis, iot)
        for _ in range(2):  # SNS delivered it twice, or Lambda retried it
            forward_event(forwarding, lambda_event(notification("task-9", non_compliant=2_500)))
        forward_event(forwarding, lambda_event(alarm))
        shard = kinesis.list_shards(StreamName=stream.name)["Shards"][0]["ShardId"]
        iterator = kinesis.get_shard_iterator(StreamName=stream.name, ShardId=shard, ShardIteratorType="TRIM_HORIZON")
        payloads = [r["Data"] for r in kinesis.get_records(ShardIterator=iterator["ShardIterator"])["Records"]]
        assert len(payloads) == 2 * 2_501 + 1
        expected = latest_versions(payloads)

        log = tmp_path / "run.log"
        consumer = start_consumer(stream, local_aws, hub, tmp_path / "dl.jsonl", log)
        try:
            wait_for("the task's findings, its summary and the alarm", lambda: holds_latest(hub, expected), 180)
        finally:
            stop(consumer, log)
        imported = sum(r.accepted for r in hub.requests("BatchImportFindings"))
    assert len(expected) == 2_500 + 2  # the findings, the check's summary and the alarm
    assert imported < len(expected) + 10  # the second delivery of the task was no news: not sent again


def test_the_lambda_handler_and_the_forward_command_put_what_the_forwarder_puts(
    local_aws: LocalAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream = Stream(local_aws)
    alarm = detect_alarm("v-2", "pump-2")
    with LocalIotAudit() as audit:
        environment = local_aws_env(
            DEFENDER_HUB_STREAM=stream.name,
            AWS_ENDPOINT_URL_KINESIS=local_aws.endpoint_url,
            AWS_ENDPOINT_URL_IOT=audit.endpoint_url,
        )
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setattr(forwarder_module, "_lambda_forwarder", None)

        assert forwarder_module.handler(lambda_event(alarm), None) == {"records": 1}
        with pytest.raises(ForwardError):
            forwarder_module.handler(lambda_event({"hello": "world"}), None)
        sns_line = json.dumps(lambda_event(notification("task-4", "FAILED"))["Records"][0]["Sns"]).encode()
        done = cli("forward", stdin=sns_line + b"\n" + b"not json\n")

    assert done.returncode == 1 and b"line 2" in done.stderr and b"1 records put" in done.stderr
    assert [key for key, _ in stream.records()] == ["pump-2", f"audit/{ACCOUNT}"]
