"""Where findings go and what is kept of them, and the pipeline's output end built from that in one place.

`run`'s processors, the sweeps, `import`, `redrive` and `refresh` all build their sink with `open_delivery`, so none
bypasses the ledger.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

from defender_hub.checkpoints import Ledger, open_ledger
from defender_hub.checkpoints.delivery import Clock, LedgeredSink
from defender_hub.codecs.asff_rules import UPDATE_BURST, UPDATE_RATE
from defender_hub.errors import ConfigError
from defender_hub.sender.client import SenderClient
from defender_hub.settings import MAX_CLOCK_SKEW_MINUTES, OUTAGE_LIMIT_SECONDS
from defender_hub.sink import (
    Clients,
    DeadLetters,
    SecurityHubSink,
    Sender,
    Sink,
    open_dead_letters,
    securityhub_clients,
)
from defender_hub.sink.base import RetryPolicy
from defender_hub.sink.quota import BURST_SLACK, Quota

__all__ = ["Delivery", "DeliverySettings", "open_delivery", "open_hub"]


@dataclass(frozen=True)
class DeliverySettings:
    """Where findings go and what is kept of them: the same for `run`'s processors, sweeps, `import` and `redrive`."""

    dead_letter: str
    """A JSON-lines file or an SQS queue URL."""
    ledger: str | None
    """A ledger URL (`sqlite:///PATH`, `dynamodb://TABLE`); None only for `import` without one."""
    account_id: str | None = None
    """The caller's own account, imported into without a role; None: STS says, when a role is to be assumed."""
    max_clock_skew_minutes: float = MAX_CLOCK_SKEW_MINUTES
    clients: Clients | None = None
    """Security Hub clients by lane; None: boto3's, from the environment, with `assume_role`."""
    dead_letter_overflow: str | None = None
    """`s3://bucket/prefix` for letters too large for an SQS dead-letter queue."""
    assume_role: str | None = None
    """The role to import other accounts' findings with: a name, or an ARN template with {partition} and {account}."""
    external_id: str | None = None
    """The external ID the member accounts' roles require."""
    outage_limit_seconds: float = OUTAGE_LIMIT_SECONDS
    """How long a lane may fail every request before its findings are parked (`sink.outages`)."""
    sender_socket: str | None = None
    """Where the worker's sender listens (`defender_hub.sender`), for a shard process to send through it; None: this
    process sends itself."""


@dataclass
class Delivery:
    """The pipeline's output end, built in one place: the sink every entry point sends through, and its dead
    letters."""

    hub: SecurityHubSink | None
    """This process's own Security Hub sink; None when it sends through the worker's sender."""
    dead_letters: DeadLetters
    ledgered: LedgeredSink | None
    """The sink behind the ledger, when there is a ledger (sweeps need it)."""
    sender: Sender
    """What sends: `hub`, or the client of the worker's sender."""

    @property
    def sink(self) -> Sink:
        """What to deliver to: the ledgered sink when there is a ledger, else Security Hub itself."""
        if self.ledgered is not None:
            return self.ledgered
        if self.hub is None:
            raise ConfigError("a delivery through the worker's sender needs a ledger")
        return self.hub

    def close(self) -> None:
        """Closes the ledger, if any, and the connection to the worker's sender."""
        if self.ledgered is not None:
            self.ledgered.close()
        if isinstance(self.sender, SenderClient):
            self.sender.close()


def open_delivery(
    settings: DeliverySettings,
    stop: threading.Event,
    clock: Clock = time.time,
    *,
    ledger: Ledger | None = None,
    policy: RetryPolicy | None = None,
    probe: bool = False,
) -> Delivery:
    """Builds the sink for `settings`: Security Hub behind the ledger (when there is one), with dead letters.

    `ledger`, when given, is used in place of opening the settings' own (a test's ledger, wrapped to fail or to race);
    `policy` in place of the default retry policy with the settings' outage limit (a test's quicker one). Raises
    ConfigError when the dead letters, the ledger or the credentials can't be had.
    """
    dead_letters = open_dead_letters(settings.dead_letter, overflow=settings.dead_letter_overflow)
    hub: SecurityHubSink | None = None
    if settings.sender_socket:
        sender: Sender = SenderClient(Path(settings.sender_socket), dead_letters, stop, probe=probe)
    else:
        sender = hub = open_hub(settings, dead_letters, stop, policy)
    if ledger is None and settings.ledger is not None:
        ledger = open_ledger(settings.ledger)
    if ledger is None:
        return Delivery(hub, dead_letters, None, sender)
    ledgered = LedgeredSink(sender, ledger, clock=clock, max_clock_skew_minutes=settings.max_clock_skew_minutes)
    return Delivery(hub, dead_letters, ledgered, sender)


def open_hub(
    settings: DeliverySettings,
    dead_letters: DeadLetters,
    stop: threading.Event,
    policy: RetryPolicy | None = None,
    *,
    paced: bool = False,
) -> SecurityHubSink:
    """The Security Hub sink of `settings`, keeping its letters in `dead_letters`. `paced`: it books each lane's quota
    before each request, as the worker's sender does, the one sink of its worker. Raises ConfigError when there are no
    credentials."""
    clients = settings.clients or securityhub_clients(
        assume_role=settings.assume_role, external_id=settings.external_id, own_account=settings.account_id
    )
    return SecurityHubSink(
        clients,
        dead_letters,
        policy=policy or RetryPolicy(outage_seconds=settings.outage_limit_seconds),
        stop=stop,
        quota=Quota() if paced else None,
        update_quota=Quota(UPDATE_RATE, UPDATE_BURST - BURST_SLACK) if paced else None,
    )
