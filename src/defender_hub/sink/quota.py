"""A worker's share of Security Hub's quota: one token bucket per lane, shared by all its shard processes.

Security Hub allows 10 BatchImportFindings requests a second per account and Region, with a burst of 30. A worker runs
one process per shard, and each would otherwise find the quota by being throttled. The bucket of each lane is a small
file that the processes read and write under an exclusive lock, so together they ask no faster than the quota.
botocore's adaptive retries stay the safety net across workers.
"""

from __future__ import annotations

import fcntl
import re
import time
from collections.abc import Callable
from pathlib import Path

from defender_hub.codecs.asff_rules import IMPORT_BURST, IMPORT_RATE
from defender_hub.sink.lanes import Lane

__all__ = ["BURST_SLACK", "SharedQuota"]

BURST_SLACK = 5
"""Requests of the burst a worker leaves unasked. Both buckets refill at the same rate, so Security Hub's then holds at
least this many tokens more than the worker's: a request that arrives up to half a second off the moment it was let go
still finds one. (Asking for 90 % of the rate instead cost 10 % of the throughput.)"""
MAX_BOOKED_AHEAD_SECONDS = 60.0
"""How far past its burst a lane can be booked: a slot each for 600 waiting requests, far more than a worker's shard
processes hold (one each a lane). A booking further off is garbage and is dropped."""
BUSY_RESERVE_SECONDS = 1.0
"""A lane is busy while less than a second of its quota is left unbooked. A shard's small batch then waits for its
next rather than take one of the last slots for a few findings: with sixteen shards on one lane this took the 99th
percentile of latency from 2.8 s to 2.2 s (and 45 s before small batches waited at all)."""
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
_ROUNDING = 1e-9
"""A wait shorter than this is a rounding error, not a wait."""


class SharedQuota:
    """Token buckets by lane in `folder`, one file each, shared by every process given the same folder.

    Each bucket is kept as the generic cell rate algorithm keeps one: a file holds the moment the bucket will be
    empty of requests already let go (its theoretical arrival time). A taker reserves the next slot under the lock and
    waits for it alone, so takers are served in the order they asked, and none is sent back to race for a slot.
    """

    def __init__(
        self,
        folder: Path,
        rate: float = IMPORT_RATE,
        burst: int = IMPORT_BURST - BURST_SLACK,
        clock: Callable[[], float] = time.monotonic,  # one clock for every process of the host, never stepped
    ) -> None:
        self.folder, self._interval, self._clock = folder, 1.0 / rate, clock
        self._tolerance = (burst - 1) * self._interval  # how far ahead of now the bucket may be booked: the burst
        folder.mkdir(parents=True, exist_ok=True)

    def busy(self, lane: Lane) -> bool:
        """Whether `lane` has less than BUSY_RESERVE_SECONDS of its quota left unbooked."""
        try:
            with self._path(lane).open("rb") as file:
                fcntl.flock(file, fcntl.LOCK_SH)
                booked_until = float(file.read())
        except (OSError, ValueError):  # no bucket yet (full), or one torn by a crash
            return False
        now = self._clock()
        return (
            now
            < booked_until - self._tolerance + BUSY_RESERVE_SECONDS
            <= now + MAX_BOOKED_AHEAD_SECONDS + BUSY_RESERVE_SECONDS
        )

    def take(self, lane: Lane, wait: Callable[[float], None]) -> None:
        """Takes one request's slot of `lane`; calls `wait` with the time until the slot when it is not now."""
        with self._path(lane).open("a+b") as file:
            fcntl.flock(file, fcntl.LOCK_EX)
            file.seek(0)
            now = self._clock()
            try:
                booked_until = float(file.read())
            except ValueError:  # a new bucket (or one torn by a crash): empty of bookings, so full
                booked_until = now
            if not now <= booked_until <= now + self._tolerance + MAX_BOOKED_AHEAD_SECONDS:
                booked_until = now  # in the past (idle, so full), or no booking a worker's processes could make
            slot = max(now, booked_until - self._tolerance)
            file.seek(0)
            file.truncate()
            file.write(repr(booked_until + self._interval).encode())
            file.flush()  # a rate, not a record: no fsync
        if slot - now > _ROUNDING:
            wait(slot - now)

    def _path(self, lane: Lane) -> Path:
        return self.folder / _UNSAFE.sub("_", f"{lane.account}-{lane.region}")
