"""Where findings go and what is kept of them, and the pipeline's output end built from that in one place.

`run`'s processors, the sweeps, `import`, `redrive` and `refresh` all build their sink with `open_delivery`, so none
bypasses the ledger.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from defender_hub.checkpoints import open_ledger
from defender_hub.checkpoints.delivery import Clock, LedgeredSink
from defender_hub.codecs.asff_rules import UPDATE_BURST, UPDATE_RATE
from defender_hub.config import OUTAGE_LIMIT_SECONDS, default_dead_letters, default_ledger
from defender_hub.lifecycle import MAX_CLOCK_SKEW_MINUTES
from defender_hub.sink import Clients, DeadLetters, SecurityHubSink, Sink, open_dead_letters, securityhub_clients
from defender_hub.sink.base import RetryPolicy
from defender_hub.sink.outages import Outages
from defender_hub.sink.quota import BURST_SLACK, SharedQuota

__all__ = ["Delivery", "DeliverySettings", "open_delivery"]


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
    quota_dir: str | None = None
    """Where the worker's processes share each lane's quota (`sink.quota`); None: each finds it by being throttled."""
    outage_limit_seconds: float = OUTAGE_LIMIT_SECONDS
    """How long a lane may fail every request before its findings are parked (`sink.outages`)."""
    outages: Outages | None = None
    """The lanes' spells of failure, shared by the sinks opened with these settings (a long-lived process's sweeps);
    None: each sink its own."""

    def environment(self) -> dict[str, str]:
        """These settings as the variables `run` gives its shard processes, which read them with `of_environment`;
        one that is not set is written empty, which reads as not set."""
        # The daemon passes `run`'s own environment on beneath these: a variable left out would reach the shards from
        # there (an import account `run` does not take, say) in place of what `run` decided.
        values = ((variable, getattr(self, name)) for name, variable in _ENVIRONMENT.items())
        return {variable: "" if value is None else str(value) for variable, value in values}

    @classmethod
    def of_environment(cls, environment: Mapping[str, str]) -> DeliverySettings:
        """The settings `environment` carries (as `environment()` made it), with the state directory's files where
        it names no dead letters or ledger."""

        def given(name: str) -> str | None:
            return environment.get(_ENVIRONMENT[name]) or None

        skew, outage_limit = given("max_clock_skew_minutes"), given("outage_limit_seconds")
        return cls(
            dead_letter=given("dead_letter") or default_dead_letters(),
            ledger=given("ledger") or default_ledger(),
            account_id=given("account_id"),
            max_clock_skew_minutes=float(skew) if skew else MAX_CLOCK_SKEW_MINUTES,
            dead_letter_overflow=given("dead_letter_overflow"),
            assume_role=given("assume_role"),
            external_id=given("external_id"),
            quota_dir=given("quota_dir"),
            outage_limit_seconds=float(outage_limit) if outage_limit else OUTAGE_LIMIT_SECONDS,
        )


_ENVIRONMENT: Mapping[str, str] = {
    "dead_letter": "DEFENDER_HUB_DEAD_LETTER",
    "ledger": "DEFENDER_HUB_LEDGER",
    "account_id": "DEFENDER_HUB_IMPORT_ACCOUNT",
    "max_clock_skew_minutes": "DEFENDER_HUB_MAX_CLOCK_SKEW",
    "dead_letter_overflow": "DEFENDER_HUB_DEAD_LETTER_OVERFLOW",
    "assume_role": "DEFENDER_HUB_ASSUME_ROLE",
    "external_id": "DEFENDER_HUB_EXTERNAL_ID",
    "quota_dir": "DEFENDER_HUB_QUOTA_DIR",
    "outage_limit_seconds": "DEFENDER_HUB_OUTAGE_LIMIT",
}
"""Each setting's variable (`clients` has none: a shard process makes its own)."""


@dataclass
class Delivery:
    """The pipeline's output end, built in one place: the sink every entry point sends through, and its dead
    letters."""

    hub: SecurityHubSink
    dead_letters: DeadLetters
    ledgered: LedgeredSink | None
    """The sink behind the ledger, when there is a ledger (sweeps need it)."""

    @property
    def sink(self) -> Sink:
        """What to deliver to: the ledgered sink when there is a ledger, else Security Hub itself."""
        return self.ledgered if self.ledgered is not None else self.hub

    def close(self) -> None:
        """Closes the ledger, if any."""
        if self.ledgered is not None:
            self.ledgered.close()


def open_delivery(settings: DeliverySettings, stop: threading.Event, clock: Clock = time.time) -> Delivery:
    """Builds the sink for `settings`: Security Hub behind the ledger (when there is one), with dead letters.

    Raises ConfigError when the dead letters, the ledger or the credentials can't be had.
    """
    dead_letters = open_dead_letters(settings.dead_letter, overflow=settings.dead_letter_overflow)
    clients = settings.clients or securityhub_clients(
        assume_role=settings.assume_role, external_id=settings.external_id, own_account=settings.account_id
    )
    quota = update_quota = None
    if settings.quota_dir:
        quota = SharedQuota(Path(settings.quota_dir))
        update_quota = SharedQuota(Path(settings.quota_dir) / "batch-update", UPDATE_RATE, UPDATE_BURST - BURST_SLACK)
    policy = RetryPolicy(outage_seconds=settings.outage_limit_seconds)
    hub = SecurityHubSink(
        clients,
        dead_letters,
        policy=policy,
        stop=stop,
        quota=quota,
        update_quota=update_quota,
        outages=settings.outages,
    )
    if settings.ledger is None:
        return Delivery(hub, dead_letters, None)
    ledgered = LedgeredSink(
        hub, open_ledger(settings.ledger), clock=clock, max_clock_skew_minutes=settings.max_clock_skew_minutes
    )
    return Delivery(hub, dead_letters, ledgered)
