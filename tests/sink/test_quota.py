"""A lane's quota kept by the worker's one sink: its threads together ask no faster than Security Hub allows."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from defender_hub.local.securityhub import LocalSecurityHub
from defender_hub.sink import JsonlDeadLetters, Lane, SecurityHubSink
from defender_hub.sink.quota import Quota
from tests.helpers import ACCOUNT, FAST, hub_clients, many

LANE = Lane("aws", ACCOUNT, "us-east-1")


def test_the_burst_goes_at_once_then_the_rate_holds_and_each_lane_has_its_own_bucket() -> None:
    now = [0.0]

    def wait(seconds: float) -> None:
        now[0] += seconds

    quota = Quota(rate=10, burst=30, clock=lambda: now[0])
    for _ in range(80):
        quota.take(LANE, wait)

    assert abs(now[0] - 5.0) < 1e-6  # 80 requests: 30 at once, then 50 at 10 a second
    other = Lane("aws", "210987654321", "us-east-1")
    quota.take(other, wait)  # another lane's bucket is full still
    assert abs(now[0] - 5.0) < 1e-6


def test_deliveries_of_several_threads_through_one_sink_are_never_throttled(
    tmp_path: Path, template: dict[str, Any]
) -> None:
    with LocalSecurityHub(rate=10, burst=30) as hub:
        sink = SecurityHubSink(hub_clients(hub), JsonlDeadLetters(tmp_path / "dl.jsonl"), policy=FAST, quota=Quota())
        shards = [threading.Thread(target=sink.deliver, args=(many(template, 2_500),)) for _ in range(2)]
        for shard in shards:
            shard.start()
        for shard in shards:
            shard.join()
        statuses = [r.status for r in hub.requests("BatchImportFindings")]

    assert statuses.count(200) == 50 and 429 not in statuses


def test_takers_past_the_burst_are_given_successive_slots_in_the_order_they_asked() -> None:
    # Sixteen requests waiting for one lane: each must be given a slot of its own when it asks, not all told to come
    # back in 0.1 s and race for it (the one that keeps losing waited 48 s in the load test).
    waits: list[float] = []

    def wait(seconds: float) -> None:  # the clock does not move: nobody has come back yet
        waits.append(seconds)
        if len(waits) > 10:
            raise RuntimeError("told to come back for the same slot again")

    quota = Quota(rate=10, burst=2, clock=lambda: 100.0)
    for _ in range(5):
        quota.take(LANE, wait)

    assert waits == pytest.approx([0.1, 0.2, 0.3])


def test_a_lane_is_busy_while_less_than_a_second_of_its_quota_is_unbooked() -> None:
    now = [100.0]
    quota = Quota(rate=10, burst=25, clock=lambda: now[0])
    assert not quota.busy(LANE)  # no bucket yet: full
    for _ in range(14):
        quota.take(LANE, lambda _: None)
    assert not quota.busy(LANE)  # eleven slots left

    quota.take(LANE, lambda _: None)
    assert quota.busy(LANE)  # ten left: a second's worth
    now[0] += 0.2
    assert not quota.busy(LANE)
