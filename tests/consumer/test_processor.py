"""The consumer end to end: the real KCL MultiLangDaemon, moto's Kinesis and DynamoDB, the strict local Security Hub."""

from __future__ import annotations

import base64
import contextlib
import copy
import gc
import hashlib
import io
import json
import logging
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from amazon_kclpy import kcl
from amazon_kclpy.checkpoint_error import CheckpointError
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from defender_hub.checkpoints import SqliteLedger
from defender_hub.consumer import processor
from defender_hub.consumer.processor import FindingsProcessor
from defender_hub.consumer.protocol import fast_records
from defender_hub.convert import EventConverter
from defender_hub.local.aws import LocalAws, free_port
from defender_hub.local.securityhub import LocalSecurityHub
from defender_hub.local.stack import LocalStack, consumer_command
from defender_hub.mapping import MappingOptions
from defender_hub.sink import JsonlDeadLetters, SecurityHubSink
from defender_hub.synthetic import EventMix, generate_events, partition_key
from tests.helpers import (
    ACCOUNT,
    DAY_MS,
    Pipeline,
    config_change,
    health_event,
    holds_latest,
    hub_clients,
    latest_versions,
    local_client,
    violation,
    wait_for,
)

POISON = [b'{"violationId": "truncated', b"\xff\xfe not UTF-8"]
KPL_MAGIC = b"\xf3\x89\x9a\xc2"


def _key(data: bytes) -> str:
    if data in POISON:
        return "poison"
    if data.startswith(KPL_MAGIC):
        return "kpl"
    return partition_key(data)


class Stream:
    """A fresh stream and application: records put, lease table read."""

    def __init__(self, local_aws: LocalAws, shards: int, *, leases: bool = True) -> None:
        self.name, self.application = f"defender-{uuid.uuid4().hex[:8]}", f"app-{uuid.uuid4().hex[:8]}"
        self._kinesis = local_client("kinesis", local_aws.endpoint_url)
        self._dynamodb = local_client("dynamodb", local_aws.endpoint_url)
        self._kinesis.create_stream(StreamName=self.name, ShardCount=shards)
        wait_for("the stream", lambda: self._describe()["StreamStatus"] == "ACTIVE", 30)
        if leases:
            self._create_leases()

    def fresh_application(self) -> Stream:
        """The same stream under a new application, whose leases start at TRIM_HORIZON: a replay."""
        replay = copy.copy(self)
        replay.application = f"app-{uuid.uuid4().hex[:8]}"
        replay._create_leases()
        return replay

    def _create_leases(self) -> None:
        """Writes the lease table as the KCL would on its first start: one unowned TRIM_HORIZON lease per shard.

        A KCL that finds the table empty waits a random 1-30 s before it syncs shards; with leases present it starts
        at once. The resharding test and the demo start from nothing.
        """
        self._dynamodb.create_table(
            TableName=self.application,
            KeySchema=[{"AttributeName": "leaseKey", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "leaseKey", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        for shard in self._kinesis.list_shards(StreamName=self.name)["Shards"]:
            keys = shard["HashKeyRange"]
            item = {
                "leaseKey": shard["ShardId"], "leaseCounter": 0, "checkpoint": "TRIM_HORIZON",
                "checkpointSubSequenceNumber": 0, "ownerSwitchesSinceCheckpoint": 0,
                "startingHashKey": keys["StartingHashKey"], "endingHashKey": keys["EndingHashKey"],
            }  # fmt: skip
            self._dynamodb.put_item(
                TableName=self.application,
                Item={k: {"N": str(v)} if isinstance(v, int) else {"S": v} for k, v in item.items()},
            )

    def _describe(self) -> dict[str, Any]:
        description: dict[str, Any] = self._kinesis.describe_stream(StreamName=self.name)["StreamDescription"]
        return description

    def put(self, payloads: list[bytes]) -> list[tuple[str, str]]:
        """Puts `payloads` in order; returns each one's (shard, sequence number)."""
        return self.put_keyed([(data, _key(data)) for data in payloads])

    def put_keyed(self, records: list[tuple[bytes, str]]) -> list[tuple[str, str]]:
        """Puts (data, partition key) `records` in order; returns each one's (shard, sequence number)."""
        entries = [{"Data": data, "PartitionKey": key} for data, key in records]
        answer = self._kinesis.put_records(StreamName=self.name, Records=entries)
        assert answer["FailedRecordCount"] == 0
        return [(entry["ShardId"], entry["SequenceNumber"]) for entry in answer["Records"]]

    def split(self, shard: str) -> None:
        """Splits `shard` in two halves of its hash key range."""
        shards = self._kinesis.list_shards(StreamName=self.name)["Shards"]
        keys = next(s["HashKeyRange"] for s in shards if s["ShardId"] == shard)
        middle = (int(keys["StartingHashKey"]) + int(keys["EndingHashKey"])) // 2 + 1
        self._kinesis.split_shard(StreamName=self.name, ShardToSplit=shard, NewStartingHashKey=str(middle))

    def owners(self) -> dict[str, str]:
        """Shard → the worker holding its lease."""
        return {shard: item.get("leaseOwner", {}).get("S", "") for shard, item in self._leases().items()}

    def checkpoints(self) -> dict[str, str]:
        """Shard → its checkpoint's sequence number."""
        return {shard: item.get("checkpoint", {}).get("S", "") for shard, item in self._leases().items()}

    def sub_sequence_checkpoints(self) -> dict[str, str]:
        """Shard → its checkpoint's sub-sequence number: the user record within a KPL-aggregated record."""
        return {
            shard: item.get("checkpointSubSequenceNumber", {}).get("N", "") for shard, item in self._leases().items()
        }

    def _leases(self) -> dict[str, dict[str, Any]]:
        try:
            items = self._dynamodb.scan(TableName=self.application)["Items"]
        except self._dynamodb.exceptions.ResourceNotFoundException:
            return {}
        return {item["leaseKey"]["S"]: item for item in items}


def start_consumer(
    stream: Stream,
    local_aws: LocalAws,
    hub: LocalSecurityHub,
    dead_letters: Path,
    log: Path,
    *flags: str,
    worker: str = "worker-1",
    ledger: str | None = None,
) -> Any:
    """Starts `defender-hub run` in a session of its own, so the daemon and its processors can be killed together.

    The ledger is a SQLite file beside the dead letters unless `ledger` names another.
    """
    env = os.environ | LocalStack(local_aws, hub).environment()
    ledger = ledger or f"sqlite:///{dead_letters.parent / 'ledger.sqlite3'}"
    command = consumer_command(stream.name, stream.application, worker, dead_letters, ledger, *flags)
    return subprocess.Popen(command, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)


def stop(consumer: Any, log: Path) -> None:
    """Stops the consumer as a unit's stop does and asserts it exited 0; one that does not stop in time is killed
    with its daemon and shard processes, so that none of them is left to slow or confuse the next test."""
    consumer.send_signal(signal.SIGTERM)
    try:
        status = consumer.wait(timeout=90)
    except subprocess.TimeoutExpired:
        kill_all(consumer)
        raise
    assert status == 0, log.read_text()[-3000:]


def test_every_record_reaches_security_hub_and_each_shard_is_checkpointed_at_its_end(
    local_aws: LocalAws, hub: LocalSecurityHub, tmp_path: Path
) -> None:
    stream = Stream(local_aws, shards=2)
    events = list(generate_events(60, seed=5))
    payloads = [*events[:10], POISON[0], *events[10:40], POISON[1], *events[40:]]
    placed = stream.put(payloads)
    last_in_shard = dict(placed)  # the last record put to each shard wins
    dead_letters, log = tmp_path / "dead-letters.jsonl", tmp_path / "run.log"

    consumer = start_consumer(stream, local_aws, hub, dead_letters, log)
    try:
        expected = latest_versions(events)
        wait_for("every finding's latest version", lambda: holds_latest(hub, expected), 180)
        wait_for("checkpoints at each shard's last record", lambda: stream.checkpoints() == last_in_shard, 60)
        letters = [json.loads(line) for line in dead_letters.read_text().splitlines()]
        assert {(d["origin"]["shard_id"], d["origin"]["sequence_number"]) for d in letters} == {placed[10], placed[41]}
        assert all(letter["record"] and letter["reason"] for letter in letters)
    finally:
        stop(consumer, log)
    text = log.read_text()  # the processor's lines once, as they are: not again as the daemon's ERRORs
    assert text.count("processing shardId-000000000000 from TRIM_HORIZON") == 1
    assert "Received error line from subprocess" not in text
    # Text logs a person can read: defender-hub's lines, one a batch; of the daemon's, none at INFO; a clean stop
    # says so, and no lease "lost".
    lines = text.splitlines()
    assert [line for line in lines if "] INFO " in line] == []  # the daemon's INFO lines: `--verbose` only
    batches = [line for line in lines if " records, " in line and "findings accepted" in line]
    assert batches and all(" INFO defender-hub: shardId-" in line for line in batches)
    assert "lost" not in text
    assert lines[-1].endswith("INFO defender-hub: stopped: each shard checkpointed at what was delivered")


def test_when_dead_letters_cannot_be_kept_the_job_stops_and_nothing_is_skipped(
    local_aws: LocalAws, hub: LocalSecurityHub, tmp_path: Path
) -> None:
    stream = Stream(local_aws, shards=1)
    events = list(generate_events(10, seed=8))
    placed = stream.put([*events[:5], POISON[0], *events[5:]])
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")
    ledger = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    log = tmp_path / "run.log"

    consumer = start_consumer(stream, local_aws, hub, blocked / "dead-letters.jsonl", log, ledger=ledger)
    status = consumer.wait(timeout=180)

    assert status != 0  # stopped loudly, for a supervisor to restart once the dead letters are fixed
    assert hub.findings() == []  # the batch with the poison record was not half delivered
    assert stream.checkpoints() in ({}, {placed[0][0]: "TRIM_HORIZON"})
    blocked.unlink()
    blocked.mkdir()
    consumer = start_consumer(stream, local_aws, hub, blocked / "dead-letters.jsonl", log, ledger=ledger)
    try:
        expected = latest_versions(events)
        wait_for("every finding after the fix", lambda: holds_latest(hub, expected), 180)
        wait_for("the checkpoint at the end", lambda: stream.checkpoints() == {placed[-1][0]: placed[-1][1]}, 60)
        assert len((blocked / "dead-letters.jsonl").read_text().splitlines()) == 1
    finally:
        stop(consumer, log)


def wait_until_all_delivered(
    stream: Stream, hub: LocalSecurityHub, events: list[bytes], placed: list[tuple[str, str]]
) -> None:
    """Waits until Security Hub holds every finding the events make and each shard is checkpointed at its end (the
    last of `placed`, which may hold poison records too)."""
    expected = set(latest_versions(events))
    wait_for("every finding in Security Hub", lambda: {f["Id"] for f in hub.findings()} == expected, 300)
    wait_for("the checkpoints at each shard's end", lambda: stream.checkpoints() == dict(placed), 60)


def findings_by_record(payloads: list[bytes], placed: list[tuple[str, str]]) -> dict[tuple[str, int], set[str]]:
    """(shard, sequence number) → the Ids of the findings that record makes."""
    converter = EventConverter(MappingOptions())
    return {
        (shard, int(sequence)): {finding.id for finding in converter.findings(data)}
        for data, (shard, sequence) in zip(payloads, placed, strict=True)
    }


def assert_checkpoints_behind_delivery(
    stream: Stream, hub: LocalSecurityHub, made: dict[tuple[str, int], set[str]]
) -> dict[str, str]:
    """Checks that every record at or before each shard's checkpoint has its findings stored; returns the
    checkpoints it checked."""
    checkpoints = stream.checkpoints()  # read first: findings are only ever added after it
    stored = {finding["Id"] for finding in hub.findings()}
    for shard, checkpoint in checkpoints.items():
        if not checkpoint.isdigit():
            continue  # TRIM_HORIZON: no record is covered yet
        for (record_shard, sequence), ids in made.items():
            if record_shard == shard and sequence <= int(checkpoint):
                missing = ids - stored
                assert not missing, f"checkpoint {checkpoint} of {shard} passed record {sequence}, missing {missing}"
    return checkpoints


def covered(made: dict[tuple[str, int], set[str]], checkpoints: dict[str, str]) -> set[tuple[str, int]]:
    """The records the checkpoints are past."""
    return {
        (shard, sequence)
        for shard, sequence in made
        if checkpoints.get(shard, "").isdigit() and sequence <= int(checkpoints[shard])
    }


def test_a_security_hub_outage_holds_the_checkpoints_and_loses_nothing(local_aws: LocalAws, tmp_path: Path) -> None:
    stream = Stream(local_aws, shards=2)
    payloads = list(generate_events(120, seed=9))
    placed = stream.put(payloads)
    made = findings_by_record(payloads, placed)
    log = tmp_path / "run.log"
    with LocalSecurityHub(rate=4, burst=4) as hub:
        consumer = start_consumer(stream, local_aws, hub, tmp_path / "dl.jsonl", log, "--max-records", "10")
        try:
            wait_for("the first findings", lambda: len(hub.findings()) > 0, 120)
            hub.outage(10)
            outage_ends = time.monotonic() + 10
            while time.monotonic() < outage_ends:
                assert_checkpoints_behind_delivery(stream, hub, made)
                time.sleep(0.5)
            wait_until_all_delivered(stream, hub, payloads, placed)
            assert_checkpoints_behind_delivery(stream, hub, made)
        finally:
            stop(consumer, log)


def test_sigterm_mid_stream_checkpoints_what_was_delivered_and_a_restart_resends_only_the_rest(
    local_aws: LocalAws, tmp_path: Path
) -> None:
    stream = Stream(local_aws, shards=2)
    # No task notifications: their archivals would be sends no record of the window made (tests/checkpoints).
    payloads = list(generate_events(200, seed=10, mix=EventMix(audit_task=0)))
    placed = stream.put(payloads)
    made = findings_by_record(payloads, placed)
    log = tmp_path / "run.log"
    with LocalSecurityHub(rate=2, burst=2) as hub:  # slow enough to stop half-way
        consumer = start_consumer(stream, local_aws, hub, tmp_path / "dl.jsonl", log, "--max-records", "10")
        wait_for("some findings", lambda: len(hub.findings()) >= 20, 120)
        stop(consumer, log)
        at_stop = assert_checkpoints_behind_delivery(stream, hub, made)
        done = covered(made, at_stop)
        assert 0 < len(done) < len(payloads), "the stop should land mid-stream"
        sent_before = sum(r.findings for r in hub.requests("BatchImportFindings") if r.status == 200)
        window = sum(len(ids) for record, ids in made.items() if record not in done)

        consumer = start_consumer(stream, local_aws, hub, tmp_path / "dl.jsonl", log, "--max-records", "10")
        try:
            wait_until_all_delivered(stream, hub, payloads, placed)
        finally:
            stop(consumer, log)
        sent_after = sum(r.findings for r in hub.requests("BatchImportFindings") if r.status == 200) - sent_before
        assert sent_after <= window  # only the unacknowledged window is sent again


def kill_all(consumer: Any) -> None:
    """SIGKILLs the consumer, its daemon and every processor: no drain, no checkpoint, nothing said."""
    os.killpg(consumer.pid, signal.SIGKILL)
    consumer.wait(timeout=30)


def test_sigkills_at_random_points_lose_nothing(local_aws: LocalAws, tmp_path: Path) -> None:
    stream = Stream(local_aws, shards=2)
    payloads = list(generate_events(240, seed=11))
    placed = stream.put(payloads)
    made = findings_by_record(payloads, placed)
    log, dead_letters = tmp_path / "run.log", tmp_path / "dl.jsonl"
    chance = random.Random(11)
    with LocalSecurityHub(rate=3, burst=3) as hub:
        for _ in range(3):
            consumer = start_consumer(stream, local_aws, hub, dead_letters, log, "--max-records", "10")
            before = len(hub.findings())
            wait_for("progress", lambda before=before: len(hub.findings()) > before, 120)
            time.sleep(chance.uniform(0, 3))
            kill_all(consumer)
            assert_checkpoints_behind_delivery(stream, hub, made)
        consumer = start_consumer(stream, local_aws, hub, dead_letters, log, "--max-records", "10")
        try:
            wait_until_all_delivered(stream, hub, payloads, placed)
        finally:
            stop(consumer, log)


def test_two_workers_share_the_leases_and_one_takes_over_when_the_other_dies(
    local_aws: LocalAws, hub: LocalSecurityHub, tmp_path: Path
) -> None:
    stream = Stream(local_aws, shards=4)
    first = list(generate_events(80, seed=12))
    stream.put(first)
    log, dead_letters = tmp_path / "run.log", tmp_path / "dl.jsonl"
    shared = f"dynamodb://ledger-{stream.application}"  # several workers: the shared ledger
    one = start_consumer(stream, local_aws, hub, dead_letters, log, worker="worker-1", ledger=shared)
    two = start_consumer(stream, local_aws, hub, dead_letters, log, worker="worker-2", ledger=shared)
    try:
        wait_for("both workers holding leases", lambda: set(stream.owners().values()) == {"worker-1", "worker-2"}, 180)
        kill_all(one)
        second = list(generate_events(80, seed=13))
        placed = stream.put(second)
        expected = latest_versions([*first, *second])
        wait_for("every finding through the survivor", lambda: {f["Id"] for f in hub.findings()} == set(expected), 180)
        wait_for("the survivor holding every lease", lambda: set(stream.owners().values()) == {"worker-2"}, 60)
        wait_for("checkpoints at each shard's last record", lambda: _at_least(stream.checkpoints(), dict(placed)), 60)
    finally:
        if one.poll() is None:
            kill_all(one)
        stop(two, log)


def _at_least(checkpoints: dict[str, str], last: dict[str, str]) -> bool:
    return all(
        checkpoints.get(shard, "").isdigit() and int(checkpoints[shard]) >= int(seq) for shard, seq in last.items()
    )


def test_a_split_shard_is_finished_before_its_children_start_and_nothing_is_lost(
    local_aws: LocalAws, hub: LocalSecurityHub, tmp_path: Path
) -> None:
    stream = Stream(local_aws, shards=1, leases=False)  # the KCL's start from an empty application, too
    before, after = list(generate_events(100, seed=14)), list(generate_events(100, seed=15))
    parent = stream.put(before)[-1]
    log = tmp_path / "run.log"
    consumer = start_consumer(stream, local_aws, hub, tmp_path / "dl.jsonl", log, "--max-records", "10")
    try:
        wait_for("the first findings", lambda: len(hub.findings()) > 0, 120)
        stream.split(parent[0])
        children = dict(stream.put(after))
        assert set(children) == {"shardId-000000000001", "shardId-000000000002"}

        expected = latest_versions([*before, *after])
        wait_for("every finding", lambda: holds_latest(hub, expected), 240)
        wait_for(
            "the parent at SHARD_END, each child at its end",
            lambda: stream.checkpoints() == {parent[0]: "SHARD_END", **children},
            60,
        )
        text = log.read_text()
        parent_ended = text.index(f"{parent[0]} ended: checkpointed at its end")
        assert all(parent_ended < text.index(f"processing {child} from") for child in children)
    finally:
        stop(consumer, log)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def kpl_aggregate(partition_key: str, payloads: list[bytes]) -> bytes:
    """The KPL's aggregated record: magic, an AggregatedRecord protobuf of the user records, the MD5 of the protobuf."""
    body = _field(1, partition_key.encode())  # partition_key_table[0]
    for data in payloads:
        body += _field(3, _varint(1 << 3) + _varint(0) + _field(3, data))  # Record{partition_key_index=0, data}
    return KPL_MAGIC + body + hashlib.md5(body).digest()  # the KPL format's checksum


def test_kpl_aggregated_records_are_deaggregated_and_checkpointed_by_sub_sequence_number(
    local_aws: LocalAws, hub: LocalSecurityHub, tmp_path: Path
) -> None:
    stream = Stream(local_aws, shards=1)
    events = list(generate_events(60, seed=16))
    payloads = [
        kpl_aggregate("batch-1", [*events[:25], POISON[0], *events[25:30]]),
        kpl_aggregate("batch-2", events[30:]),
    ]
    placed = stream.put(payloads)
    dead_letters, log = tmp_path / "dl.jsonl", tmp_path / "run.log"
    consumer = start_consumer(stream, local_aws, hub, dead_letters, log, "--max-records", "1")
    try:
        expected = latest_versions(events)
        wait_for("every finding", lambda: holds_latest(hub, expected), 180)
        wait_for("the checkpoint at the last record", lambda: stream.checkpoints() == dict(placed[-1:]), 60)
        [letter] = [json.loads(line) for line in dead_letters.read_text().splitlines()]
        assert letter["origin"]["sequence_number"] == placed[0][1]
        assert letter["origin"]["sub_sequence_number"] == 25
        assert stream.sub_sequence_checkpoints() == {placed[0][0]: str(len(events) - 30 - 1)}
    finally:
        stop(consumer, log)


def test_an_unexpected_error_in_a_delivery_stops_the_job_without_a_checkpoint(
    local_aws: LocalAws, hub: LocalSecurityHub, tmp_path: Path
) -> None:
    ledger_file = tmp_path / "ledger.sqlite3"
    t0 = int(time.time() * 1000) - 10 * DAY_MS
    Pipeline(hub, SqliteLedger(ledger_file), tmp_path / "dl.jsonl").deliver(violation("in-alarm", t0, t0))
    with sqlite3.connect(ledger_file) as database:  # a ledger row no defender-hub writes: sent in the year 11476
        database.execute("UPDATE findings SET sent_ms = 300000000000000")
    stream = Stream(local_aws, shards=1)
    later = violation("in-alarm", t0, t0, "violation-2")
    placed = stream.put([violation("alarm-cleared", t0 + 60_000, t0), later])
    log = tmp_path / "run.log"

    consumer = start_consumer(
        stream, local_aws, hub, tmp_path / "dl.jsonl", log, "--max-records", "1", ledger=f"sqlite:///{ledger_file}"
    )
    try:
        status = consumer.wait(timeout=180)
    finally:
        if consumer.poll() is None:
            kill_all(consumer)

    assert status != 0, log.read_text()[-3000:]
    assert "delivery failed unexpectedly" in log.read_text()
    assert stream.checkpoints() in ({}, {placed[0][0]: "TRIM_HORIZON"})  # not past the failed record
    assert hub.finding("violation-2") is None  # nor on to the next one


def year_old_violations(count: int) -> list[bytes]:
    """`count` violations from a year ago: each raised, then (after every raise) cleared ten days later."""
    start = int(time.time() * 1000) - 365 * 86_400_000
    events: list[bytes] = []
    for event_type, offset in (("in-alarm", 0), ("alarm-cleared", 10 * 86_400_000)):
        for n in range(count):
            events.append(json.dumps({
                "accountId": "123456789012", "region": "us-east-1", "violationId": f"old-{n:04d}",
                "thingName": f"thing-{n:04d}", "securityProfileName": "profile",
                "behavior": {"name": "disconnects", "metric": "aws:num-disconnects",
                             "criteria": {"comparisonOperator": "greater-than", "value": {"count": 5}}},
                "violationEventType": event_type, "violationEventTime": start + offset + n * 1000,
                "violationStartTime": start + n * 1000,
            }).encode())  # fmt: skip
    return events


def test_a_year_old_stream_ends_in_its_final_states_across_a_restart_and_its_refresh(
    local_aws: LocalAws, tmp_path: Path
) -> None:
    stream = Stream(local_aws, shards=2)
    payloads = year_old_violations(150)
    placed = stream.put(payloads)
    log, dead_letters = tmp_path / "run.log", tmp_path / "dl.jsonl"
    with LocalSecurityHub(rate=4, burst=4) as hub:
        consumer = start_consumer(stream, local_aws, hub, dead_letters, log, "--max-records", "10")
        wait_for("some findings", lambda: len(hub.findings()) >= 40, 120)
        kill_all(consumer)  # the restart's refresh sweep finds every ACTIVE finding a year old: all due
        consumer = start_consumer(stream, local_aws, hub, dead_letters, log, "--max-records", "10")
        try:

            def all_cleared() -> bool:
                findings = hub.findings()
                return len(findings) == 150 and all(f["RecordState"] == "ARCHIVED" for f in findings)

            wait_for("every violation cleared in Security Hub", all_cleared, 240)
            wait_for("the checkpoints at each shard's end", lambda: stream.checkpoints() == dict(placed), 60)
        finally:
            stop(consumer, log)
        assert "refresh sweep" in log.read_text()  # the sweep did run in between
        assert all(f["ProductFields"]["ViolationEventType"] == "alarm-cleared" for f in hub.findings())


def test_three_accounts_on_one_stream_each_import_as_itself_and_a_disabled_one_parks_then_arrives(
    local_aws: LocalAws, tmp_path: Path
) -> None:
    own, member, disabled = "123456789012", "210987654321", "333333333333"
    events = [
        violation("in-alarm", 1_790_000_000_000 + n, 1_790_000_000_000, f"{account}-{n}", account=account)
        for n in range(40)
        for account in (own, member, disabled)
    ]
    stream = Stream(local_aws, shards=1)
    placed = stream.put(events)
    dead_letters, log = tmp_path / "dead-letters.jsonl", tmp_path / "run.log"
    expected = latest_versions(events)
    with LocalSecurityHub(sts_endpoint=local_aws.endpoint_url) as hub:
        hub.disable(disabled, "us-east-1")
        flags = ("--assume-role", "defender-hub-import", "--external-id", "org-1234", "--parked-retry-seconds", "3")
        consumer = start_consumer(stream, local_aws, hub, dead_letters, log, *flags)
        try:

            def by_account() -> dict[str, int]:
                return dict(Counter(f["AwsAccountId"] for f in hub.findings()))

            wait_for("the enabled accounts' findings", lambda: by_account() == {own: 40, member: 40}, 180)
            wait_for("the checkpoint at the shard's end", lambda: stream.checkpoints() == dict(placed), 60)
            said = f"lane {disabled}/us-east-1 is parked: 40 findings wait in the dead letters"
            wait_for("run to say which lane is parked", lambda: said in log.read_text(), 30)
            parked = [json.loads(line) for line in dead_letters.read_text().splitlines()]
            assert {(p["lane"], p["error_code"]) for p in parked} == {
                (f"{disabled}/us-east-1", "InvalidAccessException")
            }
            assert {p["finding"]["AwsAccountId"] for p in parked} == {disabled} and len(parked) >= 40

            hub.enable(disabled, "us-east-1")
            wait_for("the parked findings, on their own", lambda: holds_latest(hub, expected), 60)
            wait_for("no parked letter left", lambda: not dead_letters.read_text().strip(), 30)
        finally:
            stop(consumer, log)
    callers = {r.caller for r in hub.requests("BatchImportFindings") if r.accepted}
    assert callers == {own, member, disabled}
    assert all(f["ProductArn"].split(":")[4] == f["AwsAccountId"] for f in hub.findings())


def test_the_worker_serves_metrics_summed_over_its_shard_processes(local_aws: LocalAws, tmp_path: Path) -> None:
    stream = Stream(local_aws, shards=2)
    events = list(generate_events(80, seed=31, mix=EventMix(audit_task=0)))
    payloads = [*events[:40], POISON[0], *events[40:]]
    placed = stream.put(payloads)
    port = free_port()
    with LocalSecurityHub() as hub:
        log = tmp_path / "run.log"
        flags = ("--metrics-port", str(port), "--metrics-address", "127.0.0.1")
        consumer = start_consumer(stream, local_aws, hub, tmp_path / "dl.jsonl", log, *flags)
        try:
            wait_for("every finding", lambda: holds_latest(hub, latest_versions(events)), 180)
            wait_for("the checkpoints at each shard's end", lambda: stream.checkpoints() == dict(placed), 60)
            page = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        finally:
            stop(consumer, log)
    samples = [sample for family in text_string_to_metric_families(page) for sample in family.samples]

    def total(name: str, **labels: str) -> float:
        return sum(s.value for s in samples if s.name == name and labels.items() <= s.labels.items())

    assert total("defender_hub_records_total") == len(payloads)  # both shards' processes, summed
    assert total("defender_hub_findings_total", outcome="accepted") >= len(latest_versions(events))
    requests = [s for s in samples if s.name == "defender_hub_requests_total"]
    assert all(set(s.labels) == {"account", "region"} for s in requests)
    assert total("defender_hub_requests_total", account=ACCOUNT) >= 2
    assert total("defender_hub_delivery_seconds_count") >= 2
    lags = {s.labels["shard"]: s.value for s in samples if s.name == "defender_hub_seconds_behind_latest"}
    assert lags.keys() == dict(placed).keys()
    assert total("defender_hub_set_aside_total", what="dead_lettered", reason="event_decode_error") == 1
    assert ("defender_hub_set_aside_total", {"what": "parked", "reason": "access_denied_exception"}, 0.0) in [
        (s.name, s.labels, s.value) for s in samples
    ]  # known from the start: a dashboard sees a zero
    assert "1 dead-lettered (1 bad records, " in log.read_text()


class _Checkpoints:
    """The KCL's checkpointer, as the processor sees it: notes where it was told to checkpoint, and what the hub
    held then."""

    def __init__(self, hub: LocalSecurityHub) -> None:
        self.hub, self.taken = hub, list[tuple[str | None, int]]()

    def checkpoint(self, sequence_number: str | None, sub_sequence: int | None) -> None:
        self.taken.append((sequence_number, len(self.hub.requests("BatchImportFindings"))))


def kcl_records(events: list[bytes]) -> list[SimpleNamespace]:
    """The events as the KCL hands records to a processor, numbered from 0."""
    return [
        SimpleNamespace(sequence_number=str(n), sub_sequence_number=None, binary_data=e) for n, e in enumerate(events)
    ]


def kcl_batch(records: list[SimpleNamespace], checkpointer: Any) -> SimpleNamespace:
    """A processRecords call's input, as the KCL gives it, for records at the tip of the stream."""
    return SimpleNamespace(records=records, millis_behind_latest=0, checkpointer=checkpointer)


def processor_of(hub: LocalSecurityHub, tmp_path: Path, health: Path | None = None) -> FindingsProcessor:
    """A shard's processor, as `main` makes it, delivering to the local hub; initialized for shard 0."""
    dead_letters = JsonlDeadLetters(tmp_path / "dl.jsonl")
    sink = SecurityHubSink(hub_clients(hub), dead_letters)
    findings = FindingsProcessor(EventConverter(MappingOptions()), sink, dead_letters, health)
    findings.count_letters_of(sink)
    findings.initialize(SimpleNamespace(shard_id="shardId-000000000000", sequence_number="0"))
    return findings


def test_a_large_batch_is_delivered_and_checkpointed_in_parts(
    hub: LocalSecurityHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(processor, "DELIVERY_RECORDS", 500)  # parts of any size will do: small ones are quick
    count = 2 * processor.DELIVERY_RECORDS + 1
    events = [violation("in-alarm", 1_700_000_000_000 + n, 1_700_000_000_000, f"thing-{n % 3}") for n in range(count)]
    records = kcl_records(events)
    findings = processor_of(hub, tmp_path)
    checkpoints = _Checkpoints(hub)

    findings.process_records(kcl_batch(records, checkpoints))

    ends = [str(processor.DELIVERY_RECORDS - 1), str(2 * processor.DELIVERY_RECORDS - 1), str(count - 1)]
    assert [sequence for sequence, _ in checkpoints.taken] == ends
    assert [requests for _, requests in checkpoints.taken] == [1, 2, 3]  # each after its part was imported


class _NotingTheCollector(_Checkpoints):
    """Notes, at each checkpoint, whether the garbage collector runs of itself."""

    def __init__(self, hub: LocalSecurityHub) -> None:
        super().__init__(hub)
        self.collecting: list[bool] = []

    def checkpoint(self, sequence_number: str | None, sub_sequence: int | None) -> None:
        self.collecting.append(gc.isenabled())
        super().checkpoint(sequence_number, sub_sequence)


def test_the_collector_waits_while_each_part_is_delivered_and_runs_again_after_the_batch(
    hub: LocalSecurityHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(processor, "DELIVERY_RECORDS", 500)
    events = [violation("in-alarm", 1_700_000_000_000 + n, 1_700_000_000_000, f"thing-{n}") for n in range(1_001)]
    findings = processor_of(hub, tmp_path)
    checkpoints = _NotingTheCollector(hub)

    findings.process_records(kcl_batch(kcl_records(events), checkpoints))

    assert checkpoints.collecting == [False, False, False]
    assert gc.isenabled()


def test_a_shard_at_the_tip_notes_its_progress_now_and_then_and_a_change_of_lag_at_once(
    hub: LocalSecurityHub, tmp_path: Path
) -> None:
    findings = processor_of(hub, tmp_path, health=tmp_path / "health")
    noted = tmp_path / "health" / "shard-shardId-000000000000.json"

    def poll(behind_ms: int) -> dict[str, Any]:
        """An empty poll, as the KCL makes one every second at the tip; what the shard has noted after it."""
        findings.process_records(SimpleNamespace(records=[], millis_behind_latest=behind_ms, checkpointer=None))
        return dict(json.loads(noted.read_text()))

    first = poll(0)
    assert [poll(0) for _ in range(5)] == [first] * 5  # within NOTE_SECONDS: not noted again
    assert poll(9_000)["behind_ms"] == 9_000


class _ShuttingDown(_Checkpoints):
    """A checkpointer whose shard was handed on: every checkpoint is refused as the KCL refuses it then."""

    def checkpoint(self, sequence_number: str | None, sub_sequence: int | None) -> None:
        super().checkpoint(sequence_number, sub_sequence)
        raise CheckpointError("ShutdownException")


def test_once_the_shard_is_handed_on_the_rest_of_the_batch_is_not_delivered(
    hub: LocalSecurityHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(processor, "DELIVERY_RECORDS", 500)
    count = 2 * processor.DELIVERY_RECORDS
    events = [violation("in-alarm", 1_700_000_000_000 + n, 1_700_000_000_000, f"thing-{n}") for n in range(count)]
    records = kcl_records(events)
    findings = processor_of(hub, tmp_path)
    checkpoints = _ShuttingDown(hub)

    findings.process_records(kcl_batch(records, checkpoints))

    assert [sequence for sequence, _ in checkpoints.taken] == [str(processor.DELIVERY_RECORDS - 1)]
    assert hub.count() == processor.DELIVERY_RECORDS  # the second part is the new owner's to send


class _Daemon:
    """The MultiLangDaemon's side of the protocol, for a processor run by the real `KCLProcess`: hands it `messages`
    one after another, answers each checkpoint as done, and calls `on_checkpoint` with its sequence number."""

    def __init__(self, messages: list[dict[str, Any]], on_checkpoint: Callable[[str], None]) -> None:
        self._messages, self._on_checkpoint = list(messages), on_checkpoint
        self._asked: dict[str, Any] | None = None
        self.checkpoints: list[str] = []

    def write(self, text: str) -> None:  # the processor's output: remember what it last asked for
        for line in filter(str.strip, text.splitlines()):
            self._asked = json.loads(line)

    def flush(self) -> None:
        pass

    def readline(self) -> str:  # the processor's input: the answer to what it asked, else the next message
        asked, self._asked = self._asked, None
        if asked is not None and asked.get("action") == "checkpoint":
            self.checkpoints.append(asked["sequenceNumber"])
            self._on_checkpoint(asked["sequenceNumber"])
            answer = {"action": "checkpoint", "sequenceNumber": asked["sequenceNumber"], "subSequenceNumber": None}
            return json.dumps(answer | {"error": None}) + "\n"
        return json.dumps(self._messages.pop(0)) + "\n" if self._messages else ""


def _process_records(events: list[bytes], first: int) -> dict[str, Any]:
    records = [
        {"action": "record", "data": base64.b64encode(e).decode(), "partitionKey": "k",
         "sequenceNumber": str(first + n),
         "subSequenceNumber": None, "approximateArrivalTimestamp": 0}
        for n, e in enumerate(events)
    ]  # fmt: skip
    return {"action": "processRecords", "records": records, "millisBehindLatest": 0}


@pytest.mark.parametrize("reader", [lambda process: process, fast_records], ids=["kclpy-decoding", "msgspec-decoding"])
def test_a_health_note_failing_between_a_batch_s_parts_never_lets_a_checkpoint_pass_an_undelivered_record(
    hub: LocalSecurityHub,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    reader: Callable[[kcl.KCLProcess], kcl.KCLProcess],
) -> None:
    monkeypatch.setattr(processor, "DELIVERY_RECORDS", 500)  # parts of any size will do: small ones are quick
    count = 2 * processor.DELIVERY_RECORDS + 1
    events = [violation("in-alarm", 1_700_000_000_000 + n, 1_700_000_000_000, f"v-{n}") for n in range(count)]
    health = tmp_path / "health"
    health.mkdir()
    findings = processor_of(hub, tmp_path, health=health)

    def disk_fills_up(_: str) -> None:  # after the first part's checkpoint, the health folder can't be written
        if health.is_dir():
            shutil.rmtree(health)
            health.write_text("")

    daemon = _Daemon(
        [
            {"action": "initialize", "shardId": "shardId-000000000000", "sequenceNumber": "0", "subSequenceNumber": 0},
            _process_records(events[: count - 1], 0),  # two parts
            _process_records(events[count - 1 :], count - 1),
        ],
        disk_fills_up,
    )
    with contextlib.suppress(SystemExit):
        reader(kcl.KCLProcess(findings, input_file=daemon, output_file=daemon, error_file=io.StringIO())).run()

    stored = {f["Id"] for f in hub.findings()}
    made = [EventConverter(MappingOptions()).findings(e)[0].id for e in events]
    last = max(map(int, daemon.checkpoints), default=-1)
    assert all(finding_id in stored for finding_id in made[: last + 1]), "a checkpoint passed an undelivered record"
    assert daemon.checkpoints  # the first part was delivered and checkpointed before the disk filled up


def test_findings_and_skipped_events_are_counted_by_source(hub: LocalSecurityHub, tmp_path: Path) -> None:
    def counted() -> tuple[float, float, float]:
        value = REGISTRY.get_sample_value
        return (
            value("defender_hub_skipped_events_total", {"source": "health"}) or 0.0,
            value("defender_hub_source_findings_total", {"source": "config"}) or 0.0,
            value("defender_hub_source_findings_total", {"source": "device_defender"}) or 0.0,
        )

    events = [
        health_event("AWS_EC2_INSTANCE_STORE_DRIVE_PERFORMANCE_DEGRADED", "open", 1_790_000_000_000, service="EC2"),
        config_change("counted", "NON_COMPLIANT", 1_790_000_000_000),
        *(violation("in-alarm", 1_790_000_000_000, 1_790_000_000_000, f"v-{n}") for n in range(3)),
    ]
    before = counted()

    processor_of(hub, tmp_path).process_records(kcl_batch(kcl_records(events), _Checkpoints(hub)))

    after = counted()
    assert [a - b for a, b in zip(after, before, strict=True)] == [1, 1, 3]


def test_the_batch_log_line_counts_a_bad_record_among_the_dead_lettered(
    hub: LocalSecurityHub, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    events = [violation("in-alarm", 1_790_000_000_000, 1_790_000_000_000), POISON[0]]
    findings = processor_of(hub, tmp_path)

    with caplog.at_level(logging.INFO, logger="defender_hub.consumer"):
        findings.process_records(kcl_batch(kcl_records(events), _Checkpoints(hub)))

    [line] = [record for record in caplog.records if " records, " in record.getMessage()]
    assert len((tmp_path / "dl.jsonl").read_text().splitlines()) == 1
    assert ", 1 dead-lettered (1 bad records, 0 findings)," in line.getMessage()
    assert line.__dict__["dead_lettered"] == 1
