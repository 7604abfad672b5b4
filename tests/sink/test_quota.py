"""A lane's quota shared by a worker's processes: together they ask no faster than Security Hub allows."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from defender_hub.local.securityhub import LocalSecurityHub
from defender_hub.sink import JsonlDeadLetters, Lane, SecurityHubSink
from defender_hub.sink.quota import SharedQuota
from tests.helpers import ACCOUNT, FAST, hub_clients, many

LANE = Lane("aws", ACCOUNT, "us-east-1")


def test_two_holders_of_one_folder_share_one_bucket(tmp_path: Path) -> None:
    now = [0.0]

    def wait(seconds: float) -> None:
        now[0] += seconds

    first, second = (SharedQuota(tmp_path, rate=10, burst=30, clock=lambda: now[0]) for _ in range(2))
    for _ in range(40):
        first.take(LANE, wait)
        second.take(LANE, wait)

    assert abs(now[0] - 5.0) < 1e-6  # 80 requests: 30 at once, then 50 at 10 a second, whoever asks
    other = Lane("aws", "210987654321", "us-east-1")
    first.take(other, wait)  # another lane's bucket is full still
    assert abs(now[0] - 5.0) < 1e-6


def test_shard_processes_sharing_the_quota_are_never_throttled(tmp_path: Path, template: dict[str, Any]) -> None:
    with LocalSecurityHub(rate=10, burst=30) as hub:
        quota = SharedQuota(tmp_path / "quota")
        sinks = [
            SecurityHubSink(hub_clients(hub), JsonlDeadLetters(tmp_path / "dl.jsonl"), policy=FAST, quota=quota)
            for _ in range(2)
        ]
        shards = [threading.Thread(target=sink.deliver, args=(many(template, 2_500),)) for sink in sinks]
        for shard in shards:
            shard.start()
        for shard in shards:
            shard.join()
        statuses = [r.status for r in hub.requests("BatchImportFindings")]

    assert statuses.count(200) == 50 and 429 not in statuses


def test_takers_past_the_burst_are_given_successive_slots_in_the_order_they_asked(tmp_path: Path) -> None:
    # Sixteen shard processes waiting for one lane: each must be given a slot of its own when it asks, not all told
    # to come back in 0.1 s and race for it (the one that keeps losing waited 48 s in the load test).
    waits: list[float] = []

    def wait(seconds: float) -> None:  # the clock does not move: nobody has come back yet
        waits.append(seconds)
        if len(waits) > 10:
            raise RuntimeError("told to come back for the same slot again")

    quota = SharedQuota(tmp_path, rate=10, burst=2, clock=lambda: 100.0)
    for _ in range(5):
        quota.take(LANE, wait)

    assert waits == pytest.approx([0.1, 0.2, 0.3])


@pytest.mark.parametrize("booked", ["1e30", "inf", "nan", "-inf"])
def test_a_booking_far_off_or_no_number_does_not_hold_the_lane(tmp_path: Path, booked: str) -> None:
    # A clock stepped back, or a file written by a broken process: the lane must not wait for a slot hours away.
    waits: list[float] = []
    quota = SharedQuota(tmp_path, rate=10, burst=2, clock=lambda: 100.0)
    quota.take(LANE, waits.append)
    next(tmp_path.iterdir()).write_text(booked)

    quota.take(LANE, waits.append)

    assert waits == []


def test_a_lane_is_busy_while_less_than_a_second_of_its_quota_is_unbooked(tmp_path: Path) -> None:
    now = [100.0]
    quota = SharedQuota(tmp_path, rate=10, burst=25, clock=lambda: now[0])
    for _ in range(14):
        quota.take(LANE, lambda _: None)
    assert not quota.busy(LANE)  # eleven slots left

    quota.take(LANE, lambda _: None)
    assert quota.busy(LANE)  # ten left: a second's worth
    now[0] += 0.2
    assert not quota.busy(LANE)
