"""`run --initial-position AT_TIMESTAMP --timestamp T`: a new application reads each shard from T on, through the real
daemon, moto's Kinesis and the local hub."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from defender_hub.convert import EventConverter
from defender_hub.local.aws import LocalAws
from defender_hub.local.securityhub import LocalSecurityHub
from defender_hub.mapping import MappingOptions
from tests.consumer.test_processor import Stream, start_consumer, stop
from tests.helpers import violation, wait_for

T0 = 1_790_000_000_000  # 2026-09-21: when the violations happened, not when they were put
KEYS = [f"thing-{i}" for i in range(6)]
"""The partition keys of the records before the timestamp and after it alike: each shard holding one before it holds
one after it too, so its checkpoint at its last record says it was read."""


def put_violations(stream: Stream, label: str) -> tuple[set[str], dict[str, str]]:
    """Puts one violation a key; returns their findings' Ids and each shard's last sequence number."""
    events = [violation("in-alarm", T0, T0, f"{label}-{key}") for key in KEYS]
    converter = EventConverter(MappingOptions())
    ids = {finding.id for event in events for finding in converter.findings(event)}
    return ids, dict(stream.put_keyed(list(zip(events, KEYS, strict=True))))


def test_a_new_application_started_at_a_timestamp_sends_only_what_was_put_after_it(
    local_aws: LocalAws, hub: LocalSecurityHub, tmp_path: Path
) -> None:
    stream = Stream(local_aws, shards=2, leases=False)  # no leases: the KCL makes them, at the timestamp
    before, _ = put_violations(stream, "before")
    time.sleep(1.5)  # the KCL takes whole seconds: T, rounded down, is still after these records
    start = datetime.now(timezone(timedelta(hours=-5)))  # with an offset, as an operator elsewhere writes it
    time.sleep(1.5)
    after, last_in_shard = put_violations(stream, "after")
    dead_letters, log = tmp_path / "dead-letters.jsonl", tmp_path / "run.log"

    consumer = start_consumer(
        stream, local_aws, hub, dead_letters, log,
        "--initial-position", "AT_TIMESTAMP", "--timestamp", start.isoformat(timespec="milliseconds"),
    )  # fmt: skip
    try:
        wait_for("the findings put after the timestamp", lambda: alive(consumer, log) and stored(hub) >= after, 180)
        wait_for(
            "checkpoints at each shard's last record",
            lambda: all(stream.checkpoints().get(shard) == last for shard, last in last_in_shard.items()),
            60,
        )
    finally:
        stop(consumer, log)
    assert stored(hub) == after
    assert not stored(hub) & before


def alive(consumer: Any, log: Path) -> bool:
    """True while `run` runs; fails the test with its log's end once it has ended."""
    assert consumer.poll() is None, log.read_text()[-3000:]
    return True


def stored(hub: LocalSecurityHub) -> set[str]:
    return {finding["Id"] for finding in hub.findings()}
