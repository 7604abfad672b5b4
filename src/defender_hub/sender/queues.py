"""What waits in the worker's sender to be sent: each lane's findings as the shards handed them, oldest first, taken a
request at a time."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

from defender_hub.codecs.asff_rules import MAX_FINDINGS_PER_REQUEST, MAX_REQUEST_BYTES
from defender_hub.sink import EncodedFinding
from defender_hub.sink.batching import REQUEST_OVERHEAD, SEPARATOR

if TYPE_CHECKING:
    from defender_hub.sender.server import Ticket

__all__ = ["Handed", "LaneQueue"]


@dataclass(slots=True)
class Handed:
    """A finding a shard handed over: its place in the shard's delivery, and when it came."""

    item: EncodedFinding
    key: str
    """The finding's key in the ledger (`lifecycle.finding_key`): a request carries no finding twice."""
    ticket: Ticket
    index: int
    at: float


class LaneQueue:
    """What waits to be sent in one lane (with or without parking), oldest first."""

    def __init__(self) -> None:
        self.pending: deque[Handed] = deque()
        self.size = 0
        self.in_flight = 0
        self.taken_at = 0.0
        """When the lane's last request was taken from the queue, on time.monotonic."""

    def full(self) -> bool:
        """Whether a whole request is waiting."""
        return len(self.pending) >= MAX_FINDINGS_PER_REQUEST or self.size + REQUEST_OVERHEAD >= MAX_REQUEST_BYTES

    def take(self) -> list[Handed]:
        """Takes one request's findings from the front: as many as fit, no finding twice (two shards may hand two
        versions of one; the later waits for the next request)."""
        batch: list[Handed] = []
        kept: list[Handed] = []
        keys: set[str] = set()
        size = REQUEST_OVERHEAD
        while self.pending:
            handed = self.pending[0]
            item_size = len(handed.item.body) + SEPARATOR
            if batch and (len(batch) == MAX_FINDINGS_PER_REQUEST or size + item_size > MAX_REQUEST_BYTES):
                break
            self.pending.popleft()
            if handed.key in keys:
                kept.append(handed)
                continue
            keys.add(handed.key)
            batch.append(handed)
            size += item_size
            self.size -= len(handed.item.body) + SEPARATOR
        self.pending.extendleft(reversed(kept))
        return batch
