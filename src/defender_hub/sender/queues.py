"""What waits in the worker's sender to be sent: each lane's findings as the shards handed them, oldest first, taken a
request at a time."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

from defender_hub.codecs.asff_rules import MAX_FINDINGS_PER_REQUEST, MAX_REQUEST_BYTES
from defender_hub.sink import EncodedFinding
from defender_hub.sink.batching import REQUEST_OVERHEAD, SEPARATOR, take_fitting

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
        batch = take_fitting(self.pending, _body_of, _key_of)
        self.size -= sum(len(handed.item.body) + SEPARATOR for handed in batch)
        return batch


def _body_of(handed: Handed) -> bytes:
    return handed.item.body


def _key_of(handed: Handed) -> str:
    return handed.key
