"""A worker's share of Security Hub's quota: one token bucket per lane, kept by the one sink that sends for the worker.

Security Hub allows 10 BatchImportFindings requests a second per account and Region, with a burst of 30. Every request
of a worker, its shard processes' and its sweeps', goes through its sender (`defender_hub.sender`), whose sink books
each request's slot here before sending, so together they ask no faster than the quota. botocore's adaptive retries
stay the safety net across workers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from defender_hub.codecs.asff_rules import IMPORT_BURST, IMPORT_RATE
from defender_hub.sink.lanes import Lane

__all__ = ["BURST_SLACK", "Quota"]

BURST_SLACK = 5
"""Requests of the burst a worker leaves unasked. Both buckets refill at the same rate, so Security Hub's then holds at
least this many tokens more than the worker's: a request that arrives up to half a second off the moment it was let go
still finds one. (Asking for 90 % of the rate instead cost 10 % of the throughput.)"""
BUSY_RESERVE_SECONDS = 1.0
"""A lane is busy while less than a second of its quota is left unbooked. The sender's partial request then fills for a
while (`SenderServer._due`) rather than take one of the last slots for a few findings: when each shard process sent
on its own, its small batch waiting so took the 99th percentile of latency with sixteen shards on one lane from 2.8 s
to 2.2 s (and 45 s before small batches waited at all)."""
_ROUNDING = 1e-9
"""A wait shorter than this is a rounding error, not a wait."""


class Quota:
    """Token buckets by lane, shared by the threads of one process.

    Each bucket is kept as the generic cell rate algorithm keeps one: the moment the bucket will be empty of requests
    already let go (its theoretical arrival time). A taker reserves the next slot under the lock and waits for it
    alone, so takers are served in the order they asked, and none is sent back to race for a slot.
    """

    def __init__(
        self,
        rate: float = IMPORT_RATE,
        burst: int = IMPORT_BURST - BURST_SLACK,
        clock: Callable[[], float] = time.monotonic,  # never stepped: a booking is never far off
    ) -> None:
        self._interval, self._clock = 1.0 / rate, clock
        self._tolerance = (burst - 1) * self._interval  # how far ahead of now the bucket may be booked: the burst
        self._booked_until: dict[Lane, float] = {}
        self._lock = threading.Lock()

    def busy(self, lane: Lane) -> bool:
        """Whether `lane` has less than BUSY_RESERVE_SECONDS of its quota left unbooked."""
        with self._lock:
            booked_until = self._booked_until.get(lane)
        if booked_until is None:  # no bucket yet: full
            return False
        return self._clock() < booked_until - self._tolerance + BUSY_RESERVE_SECONDS

    def take(self, lane: Lane, wait: Callable[[float], None]) -> None:
        """Takes one request's slot of `lane`; calls `wait` with the time until the slot when it is not now."""
        with self._lock:
            now = self._clock()
            booked_until = max(now, self._booked_until.get(lane, now))  # in the past: idle, so full
            slot = max(now, booked_until - self._tolerance)
            self._booked_until[lane] = booked_until + self._interval
        if slot - now > _ROUNDING:
            wait(slot - now)
