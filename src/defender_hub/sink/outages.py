"""Outages: how long each lane has failed every request, so that one Region's outage is parked, not waited out.

A lane whose requests all fail with errors that may pass with time (5xx, no connection, timeouts) is retried, since
most such spells are short. But a delivery returns only once each of its lanes is done, so a Region down for an hour
would hold the shard, and every healthy account and Region behind it, for that hour. Once a lane has failed for
`RetryPolicy.outage_seconds` with no answer in between, the sink parks it as it parks a refused lane: its findings
wait in the dead letters and are sent again by the parked sweep. Throttling is an answer, not an outage, and does not
count.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from defender_hub.sink.lanes import Lane

__all__ = ["Outages"]


@dataclass(slots=True)
class _Spell:
    first: float
    last: float


class Outages:
    """The spells of failure of each lane, on a monotonic clock; thread-safe, since lanes are delivered at once."""

    def __init__(self, limit_seconds: float, gap_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        """`limit_seconds`: how long a lane may fail before it counts as out. `gap_seconds`: how long a pause
        between failures still belongs to one spell (a parked lane is tried again after a pause that long)."""
        self._limit, self._gap, self._clock = limit_seconds, gap_seconds, clock
        self._spells: dict[Lane, _Spell] = {}
        self._lock = threading.Lock()

    def failed(self, lane: Lane) -> float | None:
        """Notes a failed request of `lane`; returns for how many seconds it has failed once that reaches the limit,
        else None.

        A lane parked for an outage is tried again after its park; failing still, it is out again at once, rather
        than holding another delivery for the whole limit.
        """
        now = self._clock()
        with self._lock:
            spell = self._spells.get(lane)
            if spell is None or now - spell.last > self._gap:
                spell = self._spells[lane] = _Spell(now, now)
            spell.last = now
            failing = now - spell.first
        return failing if failing >= self._limit else None

    def answered(self, lane: Lane) -> None:
        """Notes that `lane` answered (throttling aside): its spell of failure, if any, is over."""
        with self._lock:
            self._spells.pop(lane, None)
