"""moto's Kinesis made to reshard as Kinesis does, so the KCL's shard-end handling can run locally.

moto 5 differs from Kinesis in three ways that matter to a consumer across a split or a merge:
- it moves a closed shard's records into its children (Kinesis keeps them in the parent until they expire);
- it keeps routing new records to the closed parent (it looks at every shard, open or not);
- GetRecords on a closed shard never ends: it always returns a NextShardIterator and no ChildShards, so the KCL never
  reaches SHARD_END (and KCL 2.3+ refuses an end without ChildShards).
`apply()` mends these on moto's classes; the moto version is pinned in uv.lock, and tests/local/test_moto_kinesis.py
checks the behaviour against boto3.

A shard's first and last sequence numbers are read off the ends of its records. moto made a list of all of them for
each call, so each put cost more than the one before it: 12,500 records put on one shard took 2.48 CPU s of moto, and
0.94 with the ends read.

GetRecords is answered in JSON written here rather than through moto's generic serializer, which decodes each record's
data from the base64 moto keeps it in only to encode it again, and walks the service model field by field: some 70 µs
a record of the cores the consumer shares with the stand-ins, more than a shard process spends on a record it replays.
"""

from __future__ import annotations

import calendar
import json
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from moto.kinesis.models import Record, Shard, Stream
from moto.kinesis.responses import KinesisResponse
from moto.kinesis.utils import decompose_shard_iterator
from moto.utilities.utils import md5_hash

__all__ = ["apply"]

_APPLIED = False
_any_shard_for_key = Stream.get_shard_for_key  # moto's own, for its checks of the key


def apply() -> None:
    """Mends moto's Kinesis resharding in this process; calling it again does nothing."""
    global _APPLIED  # noqa: PLW0603 - patching moto is process-wide by nature
    if _APPLIED:
        return
    _APPLIED = True
    split, merge = Stream.split_shard, Stream.merge_shards

    def split_shard(self: Stream, shard_to_split: str, new_starting_hash_key: str) -> None:
        with _records_kept(self.shards.get(shard_to_split)):
            split(self, shard_to_split, new_starting_hash_key)

    def merge_shards(self: Stream, shard_to_merge: str, adjacent_shard_to_merge: str) -> None:
        with _records_kept(self.shards.get(shard_to_merge)), _records_kept(self.shards.get(adjacent_shard_to_merge)):
            merge(self, shard_to_merge, adjacent_shard_to_merge)

    Stream.split_shard = split_shard  # type: ignore[method-assign]
    Stream.merge_shards = merge_shards  # type: ignore[method-assign]
    Stream.get_shard_for_key = _open_shard_for_key  # type: ignore[method-assign]
    Shard.get_min_sequence_number = _first_sequence_number  # type: ignore[method-assign]
    Shard.get_max_sequence_number = _last_sequence_number  # type: ignore[method-assign]
    KinesisResponse.get_records = _get_records  # type: ignore[method-assign,assignment]  # a JSON answer, as moto takes one


@contextmanager
def _records_kept(shard: Shard | None) -> Iterator[None]:
    """Hides a shard's records while moto splits or merges it, then gives them back: the parent keeps its data."""
    if shard is None:
        yield
        return
    records, shard.records = shard.records, OrderedDict()
    try:
        yield
    finally:
        shard.records = records


def _open_shard_for_key(self: Stream, partition_key: str, explicit_hash_key: str) -> Shard | None:
    """The open shard whose hash key range holds the record's key; both ends of a range are inclusive in Kinesis."""
    first_match = _any_shard_for_key(self, partition_key, explicit_hash_key)
    if first_match is not None and first_match.is_open:
        return first_match
    key = _hash_key(partition_key, explicit_hash_key)
    return next((s for s in self.shards.values() if s.is_open and s.starting_hash <= key <= s.ending_hash), None)


def _first_sequence_number(self: Shard) -> int:
    """The sequence number of the shard's first record (moto keeps them in order), or 0 when it has none."""
    return next(iter(self.records), 0)


def _last_sequence_number(self: Shard) -> int:
    """The sequence number of the shard's last record, or 0 when it has none."""
    return next(reversed(self.records), 0)


def _hash_key(partition_key: str, explicit_hash_key: str) -> int:
    if explicit_hash_key:
        return int(explicit_hash_key)
    return int(md5_hash(partition_key.encode("utf-8")).hexdigest(), 16)


def _get_records(self: KinesisResponse) -> str:
    """GetRecords that ends a closed shard once it is read to the end: no NextShardIterator, and its ChildShards."""
    stream_arn, iterator, limit = (self._get_param(name) for name in ("StreamARN", "ShardIterator", "Limit"))
    stream_name, shard_id, _ = decompose_shard_iterator(iterator)
    next_iterator, records, millis_behind = self.kinesis_backend.get_records(stream_arn, iterator, limit)
    stream = self.kinesis_backend.describe_stream(stream_arn=stream_arn, stream_name=stream_name)
    shard = stream.get_shard(shard_id)
    answer: dict[str, Any] = {"Records": [_record(record) for record in records], "MillisBehindLatest": millis_behind}
    read_to = int(decompose_shard_iterator(next_iterator)[2])
    if shard.is_open or read_to < shard.get_max_sequence_number():
        answer["NextShardIterator"] = next_iterator
    else:
        answer["ChildShards"] = [_child_shard(child) for child in stream.shards.values() if _is_child(child, shard)]
    self.response_headers["Content-Type"] = "application/x-amz-json-1.1"  # as moto's serializer would say it
    return json.dumps(answer)


def _record(record: Record) -> dict[str, Any]:
    """A record as GetRecords' JSON carries it: its data in the base64 moto keeps, its arrival in epoch seconds to the
    millisecond (as moto's serializer writes a timestamp)."""
    arrived = record.created_at_datetime
    return {
        "Data": record.data,
        "PartitionKey": record.partition_key,
        "SequenceNumber": str(record.sequence_number),
        "ApproximateArrivalTimestamp": calendar.timegm(arrived.timetuple()) + arrived.microsecond // 1000 / 1000,
    }


def _is_child(candidate: Shard, parent: Shard) -> bool:
    return parent.shard_id in (candidate.parent, candidate.adjacent_parent)


def _child_shard(child: Shard) -> dict[str, Any]:
    parents = [parent for parent in (child.parent, child.adjacent_parent) if parent]
    hash_range = {"StartingHashKey": str(child.starting_hash), "EndingHashKey": str(child.ending_hash)}
    return {"ShardId": child.shard_id, "ParentShards": parents, "HashKeyRange": hash_range}
