"""Parked lanes: the accounts and Regions a sink asks nothing of for a while, after a refusal or an outage."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from defender_hub.sink.lanes import Lane

__all__ = ["ParkedLanes"]


@dataclass(frozen=True, slots=True)
class _Park:
    since: float
    until: float
    reason: str
    code: str


class ParkedLanes:
    """The lanes parked now, each until its park ends, with the reason and the code; and how many findings were parked
    in each. Thread-safe: the lanes of a delivery are sent at once."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._seconds, self._clock = seconds, clock
        self._parks: dict[Lane, _Park] = {}
        self._findings: Counter[Lane] = Counter()
        self._lock = threading.Lock()

    def park(self, lane: Lane, reason: str, code: str) -> None:
        """Parks `lane` for the park's length, for `reason` (with the error's `code`)."""
        with self._lock:
            now = self._clock()
            self._parks[lane] = _Park(now, now + self._seconds, reason, code)

    def unpark(self, lane: Lane, asked_at: float) -> None:
        """Ends `lane`'s park, once a request sent at `asked_at` (on this clock) got through: a park that began
        after, from a request refused meanwhile, stays."""
        with self._lock:
            park = self._parks.get(lane)
            if park is not None and park.since <= asked_at:
                del self._parks[lane]

    def clock(self) -> float:
        """Now, on the clock the parks are kept by."""
        return self._clock()

    def why(self, lane: Lane) -> tuple[str, str] | None:
        """The reason and the code `lane` is parked for, while it is; else None."""
        with self._lock:
            park = self._parks.get(lane)
            if park is None or park.until <= self._clock():
                self._parks.pop(lane, None)
                return None
            return park.reason, park.code

    def now(self) -> dict[Lane, str]:
        """The lanes parked now, with the reason."""
        with self._lock:
            now = self._clock()
            return {lane: park.reason for lane, park in self._parks.items() if park.until > now}

    def count(self, lane: Lane, findings: int) -> None:
        """Notes that `findings` of `lane` were parked."""
        with self._lock:
            self._findings[lane] += findings

    def findings(self) -> Counter[Lane]:
        """How many findings were parked, by lane, so far."""
        with self._lock:
            return Counter(self._findings)
