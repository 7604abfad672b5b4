"""Parked lanes: asked nothing of for a while, until a probe gets through."""

from __future__ import annotations

from defender_hub.sink import Lane
from defender_hub.sink.parked import ParkedLanes

LANE = Lane("aws", "123456789012", "us-east-1")


def test_a_probe_ends_the_park_it_found_but_not_one_begun_while_it_was_sent() -> None:
    now = [0.0]
    parked = ParkedLanes(60, clock=lambda: now[0])
    parked.park(LANE, "refused", "InvalidAccessException")
    asked_at = now[0] = 5.0  # a probe is sent; another request is refused meanwhile, and parks the lane anew
    now[0] = 6.0
    parked.park(LANE, "refused again", "InvalidAccessException")

    parked.unpark(LANE, asked_at)

    assert parked.why(LANE) == ("refused again", "InvalidAccessException")
    parked.unpark(LANE, now[0])
    assert parked.why(LANE) is None
