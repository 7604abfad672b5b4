"""Outages on a clock of the test's own: a lane is out once it has failed for the limit, until it answers."""

from __future__ import annotations

from defender_hub.sink import Lane
from defender_hub.sink.outages import Outages

LANE, OTHER = Lane("aws", "123456789012", "eu-west-1"), Lane("aws", "123456789012", "us-east-1")


class Clock:
    """Seconds that pass only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def failing(outages: Outages, clock: Clock, seconds_each: float, times: int, lane: Lane = LANE) -> str | None:
    """`times` requests of `lane` that each fail after `seconds_each`; what the last one was told."""
    said = None
    for _ in range(times):
        sent_at = clock.now
        clock.now += seconds_each
        said = outages.failed(lane, sent_at, "InternalException")
    return said


def test_a_lane_is_out_once_it_has_failed_for_the_limit_from_its_first_failed_request_sent() -> None:
    clock = Clock()
    outages = Outages(300, clock, longest_wait_seconds=30)

    assert failing(outages, clock, 60, 4) is None  # 240 s
    said = failing(outages, clock, 60, 1)  # a request sent at 240 s fails at 300 s: the first was sent at 0 s

    assert said == "Security Hub failed every request for 300 s (last: InternalException)"
    assert outages.failed(OTHER, clock.now, "InternalException") is None  # each lane its own


def test_an_answer_ends_the_spell() -> None:
    clock = Clock()
    outages = Outages(300, clock, longest_wait_seconds=30)
    failing(outages, clock, 60, 4)

    outages.answered(LANE)

    assert failing(outages, clock, 60, 4) is None


def test_a_lane_out_is_out_at_its_first_failure_however_long_it_was_left_alone() -> None:
    clock = Clock()
    outages = Outages(300, clock, longest_wait_seconds=30)
    assert failing(outages, clock, 100, 3) is not None
    clock.now += 3600  # parked; its next finding comes an hour later

    assert failing(outages, clock, 1, 1) is not None


def test_a_spell_not_yet_out_is_over_after_as_long_as_the_limit_without_a_request() -> None:
    clock = Clock()
    outages = Outages(300, clock, longest_wait_seconds=30)
    failing(outages, clock, 100, 2)  # 200 s of failure
    clock.now += 301

    assert failing(outages, clock, 100, 2) is None  # a new spell: 200 s
    assert failing(outages, clock, 100, 1) is not None  # 300 s


def test_a_spell_goes_on_across_the_sinks_own_waits_however_short_the_limit() -> None:
    clock = Clock()
    outages = Outages(1, clock, longest_wait_seconds=30)
    assert failing(outages, clock, 0.1, 1) is None
    clock.now += 30  # the sink's longest wait between two attempts

    assert failing(outages, clock, 0.1, 1) is not None  # 30.2 s of failure: past the limit of 1 s
    outages.answered(LANE)
    failing(outages, clock, 0.1, 1)
    clock.now += 61  # longer than twice the longest wait: no news, so the next failure starts another spell
    assert failing(outages, clock, 0.1, 1) is None
