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

from defender_hub.sink.lanes import Lane

__all__ = ["BURST_SLACK", "IMPORT_BURST", "IMPORT_RATE", "SharedQuota"]

IMPORT_RATE = 10.0
"""BatchImportFindings requests a second, per account and Region."""
IMPORT_BURST = 30
BURST_SLACK = 5
"""Requests of the burst a worker leaves unasked. Both buckets refill at the same rate, so Security Hub's then holds at
least this many tokens more than the worker's: a request that arrives up to half a second off the moment it was let go
still finds one. (Asking for 90 % of the rate instead cost 10 % of the throughput.)"""
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
_ROUNDING = 1e-9
"""A token short by less than this is a whole one: waiting for it would wait for a rounding error."""


class SharedQuota:
    """Token buckets by lane in `folder`, one file each, shared by every process given the same folder."""

    def __init__(
        self,
        folder: Path,
        rate: float = IMPORT_RATE,
        burst: int = IMPORT_BURST - BURST_SLACK,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.folder, self._rate, self._burst, self._clock = folder, rate, float(burst), clock
        folder.mkdir(parents=True, exist_ok=True)

    def take(self, lane: Lane, wait: Callable[[float], None]) -> None:
        """Takes one request's token of `lane`; while there is none, calls `wait` with the time until there is."""
        path = self.folder / _UNSAFE.sub("_", f"{lane.account}-{lane.region}")
        while True:
            with path.open("a+b") as file:
                fcntl.flock(file, fcntl.LOCK_EX)
                file.seek(0)
                now = self._clock()
                try:
                    tokens, stamp = (float(part) for part in file.read().split())
                except ValueError:  # a new bucket (or one torn by a crash): full
                    tokens, stamp = self._burst, now
                tokens = min(self._burst, tokens + max(0.0, now - stamp) * self._rate)
                short = 1.0 - tokens
                if short <= _ROUNDING:
                    tokens = max(0.0, tokens - 1.0)
                file.seek(0)
                file.truncate()
                file.write(f"{tokens} {now}".encode())
                file.flush()  # a rate, not a record: no fsync
            if short <= _ROUNDING:
                return
            wait(short / self._rate)
