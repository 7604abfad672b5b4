"""The consumer end to end: the real KCL MultiLangDaemon, moto's Kinesis and DynamoDB, the strict local Security Hub."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from defender_hub.convert import EventConverter
from defender_hub.demo import LocalStack, consumer_command
from defender_hub.local.aws import LocalAws
from defender_hub.local.securityhub import LocalSecurityHub
from defender_hub.mapping import MappingOptions
from defender_hub.synthetic import generate_events, partition_key
from tests.conftest import local_client

POISON = [b'{"violationId": "truncated', b"\xff\xfe not UTF-8"]


@pytest.fixture(scope="session")
def local_aws() -> Iterator[LocalAws]:
    with LocalAws() as stack:
        yield stack


@pytest.fixture
def hub() -> Iterator[LocalSecurityHub]:
    with LocalSecurityHub() as running:
        yield running


def wait_for(what: str, condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def latest_versions(events: list[bytes]) -> dict[str, str]:
    """Finding Id → the UpdatedAt of its newest version: what Security Hub must hold in the end."""
    converter = EventConverter(MappingOptions())
    latest: dict[str, str] = {}
    for event in events:
        for finding in converter.findings(event):
            if finding.updated_at > latest.get(finding.id, ""):
                latest[finding.id] = finding.updated_at
    return latest


class Stream:
    """A fresh stream and application: records put, lease table read."""

    def __init__(self, local_aws: LocalAws, shards: int) -> None:
        self.name, self.application = f"defender-{uuid.uuid4().hex[:8]}", f"app-{uuid.uuid4().hex[:8]}"
        self._kinesis = local_client("kinesis", local_aws.endpoint_url)
        self._dynamodb = local_client("dynamodb", local_aws.endpoint_url)
        self._kinesis.create_stream(StreamName=self.name, ShardCount=shards)
        wait_for("the stream", lambda: self._describe()["StreamStatus"] == "ACTIVE", 30)

    def _describe(self) -> dict[str, Any]:
        description: dict[str, Any] = self._kinesis.describe_stream(StreamName=self.name)["StreamDescription"]
        return description

    def put(self, payloads: list[bytes]) -> list[tuple[str, str]]:
        """Puts `payloads` in order; returns each one's (shard, sequence number)."""
        records = [
            {"Data": data, "PartitionKey": partition_key(data) if data not in POISON else "poison"} for data in payloads
        ]
        answer = self._kinesis.put_records(StreamName=self.name, Records=records)
        assert answer["FailedRecordCount"] == 0
        return [(entry["ShardId"], entry["SequenceNumber"]) for entry in answer["Records"]]

    def owners(self) -> dict[str, str]:
        """Shard → the worker holding its lease."""
        try:
            items = self._dynamodb.scan(TableName=self.application)["Items"]
        except self._dynamodb.exceptions.ResourceNotFoundException:
            return {}
        return {item["leaseKey"]["S"]: item.get("leaseOwner", {}).get("S", "") for item in items}

    def checkpoints(self) -> dict[str, str]:
        try:
            items = self._dynamodb.scan(TableName=self.application)["Items"]
        except self._dynamodb.exceptions.ResourceNotFoundException:
            return {}
        return {item["leaseKey"]["S"]: item.get("checkpoint", {}).get("S", "") for item in items}


def start_consumer(
    stream: Stream,
    local_aws: LocalAws,
    hub: LocalSecurityHub,
    dead_letters: Path,
    log: Path,
    *flags: str,
    worker: str = "worker-1",
) -> Any:
    """Starts `defender-hub run` in a session of its own, so the daemon and its processors can be killed together."""
    env = os.environ | LocalStack(local_aws, hub).environment()
    command = consumer_command(stream.name, stream.application, worker, dead_letters, *flags)
    return subprocess.Popen(command, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)


def stop(consumer: Any, log: Path) -> None:
    consumer.send_signal(signal.SIGTERM)
    status = consumer.wait(timeout=90)
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
        wait_for(
            "every finding's latest version", lambda: {f["Id"]: f["UpdatedAt"] for f in hub.findings()} == expected, 180
        )
        wait_for("checkpoints at each shard's last record", lambda: stream.checkpoints() == last_in_shard, 60)
        letters = [json.loads(line) for line in dead_letters.read_text().splitlines()]
        assert {(d["origin"]["shard_id"], d["origin"]["sequence_number"]) for d in letters} == {placed[10], placed[41]}
        assert all(letter["record"] and letter["reason"] for letter in letters)
    finally:
        stop(consumer, log)


def test_when_dead_letters_cannot_be_kept_the_job_stops_and_nothing_is_skipped(
    local_aws: LocalAws, hub: LocalSecurityHub, tmp_path: Path
) -> None:
    stream = Stream(local_aws, shards=1)
    events = list(generate_events(10, seed=8))
    placed = stream.put([*events[:5], POISON[0], *events[5:]])
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")
    log = tmp_path / "run.log"

    consumer = start_consumer(stream, local_aws, hub, blocked / "dead-letters.jsonl", log)
    status = consumer.wait(timeout=180)

    assert status != 0  # stopped loudly, for a supervisor to restart once the dead letters are fixed
    assert hub.findings() == []  # the batch with the poison record was not half delivered
    assert stream.checkpoints() in ({}, {placed[0][0]: "TRIM_HORIZON"})
    blocked.unlink()
    blocked.mkdir()
    consumer = start_consumer(stream, local_aws, hub, blocked / "dead-letters.jsonl", log)
    try:
        expected = latest_versions(events)
        wait_for(
            "every finding after the fix", lambda: {f["Id"]: f["UpdatedAt"] for f in hub.findings()} == expected, 180
        )
        wait_for("the checkpoint at the end", lambda: stream.checkpoints() == {placed[-1][0]: placed[-1][1]}, 60)
        assert len((blocked / "dead-letters.jsonl").read_text().splitlines()) == 1
    finally:
        stop(consumer, log)


def wait_until_all_delivered(
    stream: Stream, hub: LocalSecurityHub, payloads: list[bytes], placed: list[tuple[str, str]]
) -> None:
    """Waits until Security Hub holds every finding the payloads make and each shard is checkpointed at its end."""
    expected = set(latest_versions(payloads))
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
    payloads = list(generate_events(200, seed=10))
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
    one = start_consumer(stream, local_aws, hub, dead_letters, log, worker="worker-1")
    two = start_consumer(stream, local_aws, hub, dead_letters, log, worker="worker-2")
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
