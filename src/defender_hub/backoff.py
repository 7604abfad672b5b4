"""Capped exponential backoff, with or without full jitter: the one formula that every retry loop here waits by."""

from __future__ import annotations

import math
import random

__all__ = ["exponential", "full_jitter"]


def exponential(attempt: int, base: float, cap: float = math.inf) -> float:
    """Returns the wait before retry number `attempt` (from 1): `base`, doubled for each retry after the first, and
    never more than `cap`."""
    return min(cap, base * 2.0 ** (attempt - 1))


def full_jitter(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Returns a wait drawn from `rng` uniformly between 0 and `exponential(attempt, base, cap)`."""
    # Full jitter spreads out the clients that failed together, so that they do not all retry at the same moment.
    return rng.uniform(0, exponential(attempt, base, cap))
