"""The backoff formula: doubling from its base, capped, and its full jitter within 0 and that cap."""

from __future__ import annotations

import math
import random

import pytest

from defender_hub.backoff import exponential, full_jitter


def test_exponential_doubles_from_the_base_for_each_retry_after_the_first() -> None:
    assert [exponential(attempt, 0.5) for attempt in range(1, 6)] == [0.5, 1.0, 2.0, 4.0, 8.0]


def test_exponential_never_exceeds_the_cap() -> None:
    assert [exponential(attempt, 0.4, 10.0) for attempt in range(1, 9)] == [0.4, 0.8, 1.6, 3.2, 6.4, 10.0, 10.0, 10.0]


def test_exponential_without_a_cap_keeps_doubling() -> None:
    assert exponential(10, 0.05) == 0.05 * 512
    assert exponential(10, 0.05, math.inf) == exponential(10, 0.05)


@pytest.mark.parametrize(("base", "cap"), [(0.5, 30.0), (0.2, 5.0), (1.0, 1.0)])
def test_full_jitter_stays_within_zero_and_the_capped_exponential(base: float, cap: float) -> None:
    rng = random.Random(7)
    for attempt in range(1, 12):
        ceiling = min(cap, base * 2 ** (attempt - 1))
        waits = [full_jitter(attempt, base, cap, rng) for _ in range(200)]
        assert all(0 <= wait <= ceiling for wait in waits)
        # Full jitter spreads the waits over the whole range, not only near its top or its bottom.
        assert min(waits) < ceiling / 4
        assert max(waits) > ceiling * 3 / 4


def test_full_jitter_draws_from_the_rng_given() -> None:
    waits = [full_jitter(3, 0.5, 30.0, random.Random(1)) for _ in range(2)]
    assert waits[0] == waits[1] == random.Random(1).uniform(0, 2.0)
