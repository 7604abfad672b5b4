"""What the sink's parts share: the clients by lane, the retry policy, the report of a delivery, the `Sink` seam.

Kept apart from `securityhub.py`, which sends, so that what depends on the seam (the ledgered sink, the processor,
`import`) need not read how the sending is done.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from typing import Any, Protocol

from defender_hub.backoff import full_jitter
from defender_hub.settings import OUTAGE_LIMIT_SECONDS
from defender_hub.sink.batching import EncodedFinding, MappedFinding
from defender_hub.sink.deadletters import DeadLetters
from defender_hub.sink.lanes import Lane
from defender_hub.sink.workflow import StillOwed, WorkflowReport, WorkflowUpdate

__all__ = ["Accepted", "Clients", "DeliveryReport", "RetryPolicy", "Sender", "Sink"]


class Clients(Protocol):
    """The Security Hub client of each lane (`lanes.SecurityHubClients`, or a test's own)."""

    def __call__(self, lane: Lane) -> Any:
        """The client of `lane`; raises LaneRefused when it can have none."""
        ...

    def hint(self, lane: Lane) -> str:
        """What to look at when Security Hub refuses `lane`."""
        ...


Accepted = Callable[[list[EncodedFinding]], None]
"""Hears of the findings Security Hub accepted, one request at a time."""


@dataclass(frozen=True)
class RetryPolicy:
    """How long to wait between attempts that botocore gave up on: capped exponential, full jitter."""

    base_seconds: float = 0.5
    max_seconds: float = 30.0
    park_seconds: float = 60.0
    """How long a sink parks a refused lane's findings without asking Security Hub again."""
    outage_seconds: float = OUTAGE_LIMIT_SECONDS
    """How long a lane may fail every request before it is parked (`outages.py`)."""

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Returns the wait before retry number `attempt` (from 1)."""
        return full_jitter(attempt, self.base_seconds, self.max_seconds, rng)


@dataclass
class DeliveryReport:
    """What one or more deliveries did."""

    accepted: int = 0
    dead_lettered: int = 0
    superseded: int = 0
    """Findings replaced by a later version of themselves in the same delivery, delivered with it."""
    requests: int = 0
    throttled: int = 0
    retried: int = 0
    unchanged: int = 0
    """Left out because Security Hub has them already, or something newer (the ledger says so)."""
    archived: int = 0
    """Sent ARCHIVED by the lifecycle: resources a later audit no longer reported, late findings of older audits."""
    parked: int = 0
    """Findings of refused lanes: kept in the dead letters to be sent again once their lane answers (or, for a
    sweep's own work, left owed)."""
    workflow_updated: int = 0
    """Findings whose owed Workflow.Status (Config's RESOLVED) Security Hub set."""
    workflow_owed: int = 0
    """Workflow updates left owed in the ledger for the next delivery or sweep (a parked lane, a stubborn finding)."""

    def add(self, other: DeliveryReport) -> None:
        """Adds `other`'s counts to this report."""
        for counted in fields(DeliveryReport):
            setattr(self, counted.name, getattr(self, counted.name) + getattr(other, counted.name))


class Sink(Protocol):
    """Where findings go: `deliver` returns once every one was accepted or durably dead-lettered, or raises SinkError.

    The processor, `import`, `redrive` and the sweeps depend on this, not on what is behind it.
    """

    def deliver(self, findings: Iterable[MappedFinding]) -> DeliveryReport:
        """Delivers `findings`; raises SinkError when that can't be done, and nothing past it may be checkpointed."""
        ...


class Sender(Protocol):
    """What the ledgered sink needs of the sink that sends (`SecurityHubSink`, or a test's own): findings already
    planned and coalesced sent lane by lane, workflow updates and the dead letters."""

    @property
    def dead_letters(self) -> DeadLetters:
        """Where rejected findings go."""
        ...

    def deliver_encoded(
        self, encoded: list[EncodedFinding], on_accepted: Accepted | None = None, *, park: bool = True
    ) -> DeliveryReport:
        """Delivers `encoded`, one per finding; `on_accepted` hears of each request's accepted findings; without
        `park`, a refused lane's findings are only counted (left owed). Raises SinkError."""
        ...

    def update_workflows(
        self, updates: Iterable[WorkflowUpdate], still_owed: StillOwed | None = None
    ) -> WorkflowReport:
        """Sets the Workflow.Status of `updates`; returns what was processed and left owed. Raises SinkStopped."""
        ...
