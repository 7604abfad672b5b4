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
    """When the spell's first failed request was sent."""
    last: float
    """When its last failed request ended."""
    out: bool = False
    """Whether it lasted the limit: then the lane is out until it answers, however long between its requests."""


class Outages:
    """The spells of failure of each lane, on a monotonic clock; thread-safe, since lanes are delivered at once.

    A sink has one, which its lanes and its workflow updates share. `longest_wait_seconds` is the longest the sink
    waits between two attempts of a lane (`RetryPolicy.max_seconds`), which it must say: see `failed`.
    """

    def __init__(
        self, limit_seconds: float, clock: Callable[[], float] = time.monotonic, *, longest_wait_seconds: float
    ) -> None:
        self._limit, self._clock = limit_seconds, clock
        # A pause between two requests of a failing lane as long as the sink's own wait between attempts is no want
        # of news. Were it to end the spell, a limit shorter than the waits would never be reached, and the lane would
        # hold its delivery for good. Twice the longest wait leaves room for what comes between the wait and the
        # request: the lane's client, the quota.
        self._quiet = max(limit_seconds, 2 * longest_wait_seconds)
        self._spells: dict[Lane, _Spell] = {}
        self._lock = threading.Lock()

    def failed(self, lane: Lane, sent_at: float, code: str) -> str | None:
        """Notes a request of `lane` sent at `sent_at` (on this clock) that failed with `code`; returns why the lane
        is out once it has failed for the limit, else None.

        A lane out is out until it answers: tried again after its park and failing still, it is out again at once,
        rather than holding another delivery for the whole limit. A spell not yet out that has seen no request for
        longer than the limit or twice the longest wait between attempts, whichever is longer, is over for want of
        news: the next failure starts another.
        """
        now = self._clock()
        with self._lock:
            spell = self._spells.get(lane)
            if spell is None or (not spell.out and sent_at - spell.last > self._quiet):
                spell = self._spells[lane] = _Spell(sent_at, now)
            spell.last = now
            failing = now - spell.first
            spell.out = spell.out or failing >= self._limit
            out = spell.out
        return f"Security Hub failed every request for {failing:.0f} s (last: {code})" if out else None

    def answered(self, lane: Lane) -> None:
        """Notes that `lane` answered (throttling among the answers): its spell of failure, if any, is over."""
        with self._lock:
            self._spells.pop(lane, None)
