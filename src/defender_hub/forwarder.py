"""The producer: Device Defender's SNS notifications onto the Kinesis stream the consumer reads.

A Detect alarm becomes one record, keyed by its thing. A COMPLETED audit task's notification becomes every finding of
the task (ListAuditFindings, paged), then the notification itself with the suppressed counts DescribeAuditTask
knows, all keyed `audit/{accountId}`: the notification goes only once Kinesis has every finding, so the consumer sees
a task's findings before the completion that archives what they no longer report. A FAILED or CANCELED task's
notification goes alone. Each record carries the context the consumer reads (accountId, region, and for findings
taskType and scheduledAuditName). The same code is the Lambda handler and `defender-hub forward`.

A message sent twice (a Lambda retry, an SNS redelivery) puts its records twice, which the consumer's ledger makes
harmless. A message that is no Device Defender notification raises ForwardError: Lambda retries it twice, then hands
it to the on-failure destination, rather than forever.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from defender_hub.aws_config import aws_config
from defender_hub.backoff import full_jitter
from defender_hub.codecs.decoding import arn_context
from defender_hub.errors import ConfigError, ForwardError
from defender_hub.settings import from_environment, variable

__all__ = ["MAX_PUT_ATTEMPTS", "PUT_RECORDS", "Forwarder", "Record", "handler", "put_records", "sns_messages"]

log = logging.getLogger("defender_hub.forwarder")

PUT_RECORDS = 500
"""Kinesis' limit on the records of one PutRecords."""
PUT_BYTES = 5 * 1024 * 1024
"""Kinesis' limit on one PutRecords' data and partition keys."""
MAX_PARTITION_KEY = 256
MAX_PUT_ATTEMPTS = 12
"""PutRecords tries of one record before the message fails (and Lambda tries the whole message again)."""
_FIRST_PAUSE_SECONDS = 0.2  # the most a first retry waits; doubled for each one that follows
_MAX_PAUSE_SECONDS = 5.0
FINDINGS_PAGE = 250
"""ListAuditFindings' largest page."""


@dataclass(frozen=True)
class Record:
    """One record for the stream: its data and its partition key."""

    data: bytes
    key: str


def _epoch_ms(value: Any) -> Any:
    """botocore's datetimes as the epoch milliseconds Device Defender's notifications use."""
    return int(value.timestamp() * 1000) if isinstance(value, datetime) else value


def _record(event: dict[str, Any], key: str) -> Record:
    data = json.dumps(event, default=_epoch_ms, separators=(",", ":")).encode()
    return Record(data, key[:MAX_PARTITION_KEY] or "-")


def _parsed(message: str) -> dict[str, Any]:
    try:
        event = json.loads(message)
    except ValueError as exc:
        raise ForwardError(f"the SNS message is not JSON: {exc}") from None
    if not isinstance(event, dict):
        raise ForwardError("the SNS message is not a JSON object")
    return event


class Forwarder:
    """Puts Device Defender's notifications on `stream`, with `kinesis` and, for audit findings, `iot` clients."""

    def __init__(
        self,
        stream: str,
        kinesis: Any,
        iot: Any,
        *,
        sleep: Callable[[float], None] = time.sleep,
        seed: int | None = None,
    ) -> None:
        self._stream, self._kinesis, self._iot, self._sleep = stream, kinesis, iot, sleep
        self._rng = random.Random(seed)  # noqa: S311 - jitter, not secrecy

    def forward(self, message: str, topic_arn: str | None = None) -> int:
        """Puts the records of one SNS message; returns how many. Raises ForwardError for a message that is none of
        Device Defender's, or whose records Kinesis keeps refusing."""
        event = _parsed(message)
        account, region = arn_context(topic_arn)
        event.setdefault("accountId", account)
        event.setdefault("region", region or os.environ.get("AWS_REGION"))
        if "violationId" in event:
            return self._put([_record(event, str(event.get("thingName") or event["violationId"]))])
        if "taskId" in event and "taskStatus" in event:
            return self._audit(event)
        raise ForwardError("the SNS message is neither a Detect alarm nor an audit task notification")

    def _audit(self, notification: dict[str, Any]) -> int:
        key = f"audit/{notification.get('accountId') or '-'}"
        put = 0
        if notification["taskStatus"] == "COMPLETED":
            context = {
                name: notification[name]
                for name in ("accountId", "region", "taskType", "scheduledAuditName")
                if notification.get(name) is not None
            }
            batch: list[Record] = []
            for finding in self._findings(str(notification["taskId"])):
                batch.append(_record(context | finding, key))
                if len(batch) == PUT_RECORDS:
                    put += self._put(batch)
                    batch = []
            put += self._put(batch)
            self._add_suppressed(notification)
        return put + self._put([_record(notification, key)])  # after every finding: never before one of them

    def _findings(self, task_id: str) -> Iterator[dict[str, Any]]:
        pages = self._iot.get_paginator("list_audit_findings").paginate(
            taskId=task_id, PaginationConfig={"PageSize": FINDINGS_PAGE}
        )
        for page in pages:
            yield from page.get("findings", [])

    def _add_suppressed(self, notification: dict[str, Any]) -> None:
        """Adds DescribeAuditTask's suppressed counts to the checks whose notification entry lacks them."""
        details = notification.get("auditDetails")
        if not isinstance(details, list) or all(
            "suppressedNonCompliantResourcesCount" in check for check in details if isinstance(check, dict)
        ):
            return
        described = self._iot.describe_audit_task(taskId=str(notification["taskId"])).get("auditDetails", {})
        for check in details:
            if isinstance(check, dict) and "suppressedNonCompliantResourcesCount" not in check:
                count = described.get(check.get("checkName"), {}).get("suppressedNonCompliantResourcesCount")
                if count is not None:
                    check["suppressedNonCompliantResourcesCount"] = count

    def _put(self, records: list[Record]) -> int:
        return put_records(self._kinesis, self._stream, records, sleep=self._sleep, rng=self._rng)


def put_records(
    kinesis: Any,
    stream: str,
    records: list[Record],
    *,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
) -> int:
    """Puts `records` on `stream` in requests within Kinesis' limits, retrying only the failed ones (jittered, at most
    MAX_PUT_ATTEMPTS times, then ForwardError); returns how many."""
    rng = rng or random.Random()  # noqa: S311 - jitter, not secrecy
    for request in _requests(records):
        pending, attempt = request, 0
        while pending:
            attempt += 1
            answer = kinesis.put_records(
                StreamName=stream, Records=[{"Data": r.data, "PartitionKey": r.key} for r in pending]
            )
            failed = [r for r, entry in zip(pending, answer["Records"], strict=True) if "ErrorCode" in entry]
            if failed and attempt >= MAX_PUT_ATTEMPTS:
                codes = {entry["ErrorCode"] for entry in answer["Records"] if "ErrorCode" in entry}
                raise ForwardError(f"Kinesis refused {len(failed)} records {attempt} times ({', '.join(codes)})")
            if failed:
                log.warning("Kinesis refused %d of %d records; retrying them", len(failed), len(pending))
                sleep(full_jitter(attempt, _FIRST_PAUSE_SECONDS, _MAX_PAUSE_SECONDS, rng))
            pending = failed
    return len(records)


def _requests(records: list[Record]) -> Iterator[list[Record]]:
    batch: list[Record] = []
    size = 0
    for record in records:
        record_size = len(record.data) + len(record.key.encode())
        if batch and (len(batch) == PUT_RECORDS or size + record_size > PUT_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(record)
        size += record_size
    if batch:
        yield batch


def sns_messages(lines: Iterable[bytes | str]) -> Iterator[tuple[str, str | None]]:
    """The (message, topic ARN) of SNS notifications, one JSON object a line: as SNS delivers them to SQS or HTTP,
    or as a Lambda event; raises ForwardError for a line that is none."""
    for line in lines:
        if not line.strip():
            continue
        notification = _parsed(line.decode() if isinstance(line, bytes) else line)
        if "Records" in notification:  # a Lambda event
            for record in notification["Records"]:
                yield record["Sns"]["Message"], record["Sns"].get("TopicArn")
        elif notification.get("Type") == "Notification" and isinstance(notification.get("Message"), str):
            yield notification["Message"], notification.get("TopicArn")
        else:
            raise ForwardError("not an SNS notification: no Type Notification with a Message")


def forwarder_from_environment(stream: str | None = None) -> Forwarder:
    """A forwarder for `stream`, else the stream setting's variable, with clients from the standard AWS configuration
    and botocore's adaptive retries (ListAuditFindings is throttled at a few requests a second)."""
    import boto3  # noqa: PLC0415 - the Lambda loads it once, at its first invocation

    stream = stream or from_environment("stream")
    if not stream:
        raise ConfigError(f"the forwarder needs {variable('stream')}: the Kinesis stream to put records on")
    config = aws_config(attempts=10, read_timeout=30)
    region = os.environ.get("AWS_REGION") or None
    return Forwarder(
        stream,
        boto3.client("kinesis", region_name=region, config=config),
        boto3.client("iot", region_name=region, config=config),
    )


_lambda_forwarder: Forwarder | None = None


def handler(event: dict[str, Any], context: Any) -> dict[str, int]:
    """The Lambda handler for the SNS topics' events: puts each message's records; raises on a poison message."""
    global _lambda_forwarder  # noqa: PLW0603 - clients kept across invocations, as Lambda intends
    if _lambda_forwarder is None:
        _lambda_forwarder = forwarder_from_environment()
    put = 0
    for message, topic_arn in sns_messages([json.dumps(event)]):
        put += _lambda_forwarder.forward(message, topic_arn)
    log.info("forwarded %d records", put, extra={"records": put})
    return {"records": put}
