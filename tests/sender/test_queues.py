"""A lane's queue in the worker's sender: taken a request at a time, full, no finding twice in one."""

from __future__ import annotations

from typing import Any, cast

from defender_hub.codecs.asff_rules import MAX_FINDINGS_PER_REQUEST
from defender_hub.sender.queues import Handed, LaneQueue
from defender_hub.sink import EncodedFinding
from defender_hub.sink.batching import SEPARATOR


def handed(key: str, index: int) -> Handed:
    item = EncodedFinding(None, b'{"Id": "%s"}' % key.encode(), finding_id=key)
    return Handed(item, key, cast(Any, None), index, 0.0)


def queue_of(*items: Handed) -> LaneQueue:
    lane_queue = LaneQueue()
    for item in items:
        lane_queue.pending.append(item)
        lane_queue.size += len(item.item.body) + SEPARATOR
    return lane_queue


def test_a_request_takes_the_oldest_hundred_and_leaves_the_rest_counted() -> None:
    lane_queue = queue_of(*(handed(f"f{n}", n) for n in range(150)))

    first = lane_queue.take()

    assert [one.index for one in first] == list(range(MAX_FINDINGS_PER_REQUEST))
    assert lane_queue.size == sum(len(one.item.body) + SEPARATOR for one in lane_queue.pending)
    assert [one.index for one in lane_queue.take()] == list(range(100, 150))
    assert lane_queue.size == 0 and not lane_queue.pending


def test_a_second_version_of_a_finding_waits_at_the_front_for_the_next_request() -> None:
    lane_queue = queue_of(handed("a", 0), handed("b", 1), handed("a", 2), handed("c", 3))

    assert [one.index for one in lane_queue.take()] == [0, 1, 3]
    assert [one.index for one in lane_queue.pending] == [2]
    assert lane_queue.size == len(lane_queue.pending[0].item.body) + SEPARATOR  # what was put back is counted still
    assert [one.index for one in lane_queue.take()] == [2]
    assert lane_queue.size == 0
