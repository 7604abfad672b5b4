"""moto's Kinesis, mended: a split or merged shard keeps its records, takes no new ones, and ends with its children."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from defender_hub.local.aws import LocalAws
from tests.helpers import local_client, unique

HALF = str(2**127)


@pytest.fixture(scope="module")
def kinesis(local_aws: LocalAws) -> Any:
    return local_client("kinesis", local_aws.endpoint_url)


def put(kinesis: Any, stream: str, count: int, prefix: str) -> dict[str, list[bytes]]:
    """Puts `count` records spread over the hash key space; returns shard → data, in order."""
    placed: dict[str, list[bytes]] = {}
    for index in range(count):
        data = f"{prefix}-{index}".encode()
        answer = kinesis.put_record(StreamName=stream, Data=data, PartitionKey=f"key-{index}")
        placed.setdefault(answer["ShardId"], []).append(data)
    return placed


def read_to_end(kinesis: Any, stream: str, shard: str) -> tuple[list[bytes], list[dict[str, Any]] | None]:
    """Reads a shard from TRIM_HORIZON until it ends or has nothing more; returns the data and the ChildShards."""
    iterator = kinesis.get_shard_iterator(StreamName=stream, ShardId=shard, ShardIteratorType="TRIM_HORIZON")
    next_iterator, data = iterator["ShardIterator"], []
    while next_iterator:
        answer = kinesis.get_records(ShardIterator=next_iterator, Limit=7)
        data += [record["Data"] for record in answer["Records"]]
        if not answer["Records"] and "NextShardIterator" in answer:
            return data, None  # an open shard, read to its tip
        next_iterator = answer.get("NextShardIterator")
    return data, answer["ChildShards"]


def new_stream(kinesis: Any, name: str, shards: int) -> str:
    """Makes a stream named after `name`, made unique; returns its name."""
    stream = unique(name)
    kinesis.create_stream(StreamName=stream, ShardCount=shards)
    return stream


def test_a_split_shard_keeps_its_records_and_ends_with_both_children(kinesis: Any) -> None:
    split = new_stream(kinesis, "split", 1)
    before = put(kinesis, split, 20, "before")
    kinesis.split_shard(StreamName=split, ShardToSplit="shardId-000000000000", NewStartingHashKey=HALF)
    after = put(kinesis, split, 40, "after")

    data, children = read_to_end(kinesis, split, "shardId-000000000000")

    assert data == before["shardId-000000000000"]
    assert children is not None
    assert sorted(c["ShardId"] for c in children) == ["shardId-000000000001", "shardId-000000000002"]
    assert all(c["ParentShards"] == ["shardId-000000000000"] for c in children)
    assert set(after) == {"shardId-000000000001", "shardId-000000000002"}  # nothing new for the closed parent
    for child in children:
        child_data, grandchildren = read_to_end(kinesis, split, child["ShardId"])
        assert child_data == after[child["ShardId"]]
        assert grandchildren is None


def test_merged_shards_keep_their_records_and_end_with_the_one_child(kinesis: Any) -> None:
    merge = new_stream(kinesis, "merge", 2)
    before = put(kinesis, merge, 20, "before")
    kinesis.merge_shards(
        StreamName=merge, ShardToMerge="shardId-000000000000", AdjacentShardToMerge="shardId-000000000001"
    )
    after = put(kinesis, merge, 10, "after")

    for parent in ("shardId-000000000000", "shardId-000000000001"):
        data, children = read_to_end(kinesis, merge, parent)
        assert data == before[parent]
        assert children is not None
        assert [c["ShardId"] for c in children] == ["shardId-000000000002"]
    assert list(after) == ["shardId-000000000002"]
    assert read_to_end(kinesis, merge, "shardId-000000000002") == (after["shardId-000000000002"], None)


def test_a_closed_shard_with_no_records_ends_at_once(kinesis: Any) -> None:
    empty = new_stream(kinesis, "empty", 1)
    kinesis.split_shard(StreamName=empty, ShardToSplit="shardId-000000000000", NewStartingHashKey=HALF)

    data, children = read_to_end(kinesis, empty, "shardId-000000000000")

    assert data == []
    assert children is not None
    assert len(children) == 2


def test_get_records_gives_each_record_as_it_was_put_and_its_arrival_to_the_millisecond(kinesis: Any) -> None:
    stream = new_stream(kinesis, "records", 1)
    payloads = [bytes(range(256)), b"\xff\xfe not UTF-8", '{"thingName": "caf\u00e9"}'.encode()]
    before = datetime.now(UTC) - timedelta(milliseconds=1)  # moto's clock, read to the millisecond
    put = [kinesis.put_record(StreamName=stream, Data=payloads[0], PartitionKey="key-0")]
    put += kinesis.put_records(  # as the load generator and the forwarder put them
        StreamName=stream, Records=[{"Data": data, "PartitionKey": f"key-{n}"} for n, data in enumerate(payloads) if n]
    )["Records"]
    after = datetime.now(UTC)
    iterator = kinesis.get_shard_iterator(
        StreamName=stream, ShardId="shardId-000000000000", ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]

    answer = kinesis.get_records(ShardIterator=iterator)

    records = answer["Records"]
    assert [r["Data"] for r in records] == payloads
    assert [r["PartitionKey"] for r in records] == ["key-0", "key-1", "key-2"]
    assert [r["SequenceNumber"] for r in records] == [p["SequenceNumber"] for p in put]
    arrivals = [r["ApproximateArrivalTimestamp"] for r in records]
    assert all(before <= arrival <= after and arrival.microsecond % 1000 == 0 for arrival in arrivals)
    assert answer["MillisBehindLatest"] >= 0 and answer["NextShardIterator"]
    assert answer["ResponseMetadata"]["HTTPHeaders"]["content-type"] == "application/x-amz-json-1.1"


def test_a_shards_range_starts_at_its_first_record_and_latest_reads_only_what_comes_after(kinesis: Any) -> None:
    """Both ends of a shard's records, which moto reads off a list of every record and the stack off the ends."""
    stream = new_stream(kinesis, "ends", 1)
    shard = "shardId-000000000000"
    put = [kinesis.put_record(StreamName=stream, Data=b"before", PartitionKey=f"key-{n}") for n in range(3)]
    latest = kinesis.get_shard_iterator(StreamName=stream, ShardId=shard, ShardIteratorType="LATEST")["ShardIterator"]
    kinesis.put_record(StreamName=stream, Data=b"after", PartitionKey="key-3")

    described = kinesis.describe_stream(StreamName=stream)["StreamDescription"]["Shards"][0]
    assert described["SequenceNumberRange"]["StartingSequenceNumber"] == put[0]["SequenceNumber"]
    assert int(put[0]["SequenceNumber"]) < int(put[1]["SequenceNumber"]) < int(put[2]["SequenceNumber"])
    assert [record["Data"] for record in kinesis.get_records(ShardIterator=latest)["Records"]] == [b"after"]
