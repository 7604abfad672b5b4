"""Load for the consumer: generated events put on a stream, as a backlog or at a steady rate."""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any

from defender_hub.forwarder import PUT_RECORDS, Record, put_records
from defender_hub.synthetic import EventMix, generate_events, partition_key

__all__ = ["events_of_accounts", "generated", "put_events", "put_lines"]


def _with_account(event: dict[str, Any], accounts: int) -> None:
    """Moves a decoded event to one of `accounts` accounts, chosen by what owns it: its thing (Detect), task (audits),
    resource (Config) or Health event, so that the events of one finding stay one account's."""
    detail = event.get("detail")
    if isinstance(detail, dict) and event.get("source") in ("aws.config", "aws.health"):
        owner = str(detail.get("resourceId") or detail.get("eventArn") or "")
        account = f"{zlib.crc32(owner.encode()) % accounts + 1:012d}"
        event["account"] = account
        for key in ("awsAccountId", "affectedAccount"):
            if key in detail:
                detail[key] = account
        rule_arn = detail.get("configRuleARN")
        if isinstance(rule_arn, str) and rule_arn.count(":") >= 5:  # the rule is the account's own
            parts = rule_arn.split(":", 5)
            detail["configRuleARN"] = ":".join([*parts[:4], account, parts[5]])
        return
    owner = str(event.get("thingName") or event.get("taskId") or "")
    event["accountId"] = f"{zlib.crc32(owner.encode()) % accounts + 1:012d}"


def events_of_accounts(events: Iterable[bytes], accounts: int) -> Iterator[bytes]:
    """The events spread over `accounts` accounts (…000000000001 on): by thing for Detect, by task for audits, so a
    task's findings and notification stay one account's, by resource for Config and by event for Health."""
    for event in events:
        if accounts <= 1:
            yield event
            continue
        decoded = json.loads(event)
        _with_account(decoded, accounts)
        yield json.dumps(decoded).encode()


def put_events(
    kinesis: Any,
    stream: str,
    events: Iterable[bytes],
    *,
    rate: float | None = None,
    progress: Callable[[int], None] = lambda _: None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Puts `events` on `stream`, at most `rate` a second (else as fast as Kinesis takes them); returns how many."""
    started, put = clock(), 0
    batch: list[Record] = []
    step = max(1, int(rate / 10)) if rate else PUT_RECORDS  # at a rate, ten puts a second
    for event in events:
        batch.append(Record(event, partition_key(event)))
        if len(batch) == step:
            put += put_records(kinesis, stream, batch, sleep=sleep)
            batch = []
            progress(put)
            if rate:
                sleep(max(0.0, started + put / rate - clock()))
    if batch:
        put += put_records(kinesis, stream, batch, sleep=sleep)
        progress(put)
    return put


def put_lines(kinesis: Any, stream: str, sources: Iterable[IO[bytes]], problems: IO[str]) -> tuple[int, int]:
    """Puts each JSON-object line of `sources` on `stream`, skipping blank lines and naming each other line to
    `problems`; returns how many were put and how many were not."""
    skipped = 0

    def events() -> Iterator[bytes]:
        nonlocal skipped
        for source in sources:
            for number, line in enumerate(source, start=1):
                if not line.strip():
                    continue
                try:
                    is_object = isinstance(json.loads(line), dict)
                except ValueError:
                    is_object = False
                if is_object:
                    yield line.strip()
                else:
                    skipped += 1
                    print(
                        f"{getattr(source, 'name', 'stdin')}: line {number}: not a JSON object; not put", file=problems
                    )

    return put_events(kinesis, stream, events()), skipped


def generated(count: int, seed: int, accounts: int, mix: EventMix | None = None) -> Iterator[bytes]:
    """`count` generated events of `mix` (the default: Device Defender's alone) over `accounts` accounts."""
    return events_of_accounts(generate_events(count, seed=seed, mix=mix or EventMix()), accounts)
