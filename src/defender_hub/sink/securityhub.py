"""Delivering findings to Security Hub: nothing reported delivered that Security Hub did not accept.

botocore's adaptive retry mode does what it does well: it retries throttling, 5xx and connection errors a few times
and runs a client-side token bucket whose rate follows throttling (CUBIC), which is what keeps several processes
sharing one account's quota from stampeding. The sink adds what botocore lacks: it keeps retrying, with capped
exponential backoff and full jitter, for as long as Security Hub is down; it retries only the findings a response
lists as failed; it bisects a request Security Hub refuses whole; and it dead-letters what can never be accepted.
"""

from __future__ import annotations

import logging
import os
import random
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from typing import Any, Protocol

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

from defender_hub.codecs.asff_rules import finding_problems
from defender_hub.errors import ConfigError, SinkStopped
from defender_hub.sink.batching import Outbound, Pending, coalesce, requests
from defender_hub.sink.deadletters import DeadLetter, DeadLetters

__all__ = [
    "Accepted",
    "Clients",
    "DeliveryReport",
    "RetryPolicy",
    "SecurityHubSink",
    "Sink",
    "securityhub_clients",
]

log = logging.getLogger(__name__)

THROTTLING_CODES = frozenset({"TooManyRequestsException", "LimitExceededException", "ThrottlingException"})
ACCESS_CODES = frozenset({"InvalidAccess", "InvalidAccessException", "AccessDeniedException"})
NOT_RETRYABLE_CODES = frozenset({"InvalidInput"})


Clients = Callable[[str], Any]
"""Gives the Security Hub client of a Region: findings are imported in the Region their ProductArn names."""
Accepted = Callable[[list[dict[str, Any]]], None]
"""Hears of the findings Security Hub accepted, one request at a time."""


def securityhub_clients(**overrides: Any) -> Clients:
    """Returns Security Hub clients by Region, made once each, with the standard AWS configuration and adaptive retries.

    Endpoint and credentials come from the usual places (AWS_ENDPOINT_URL_SECURITYHUB or AWS_ENDPOINT_URL, the
    credential chain). Raises ConfigError when there are no credentials, rather than retrying what no retry can fix.
    """
    session = boto3.Session(region_name=os.environ.get("AWS_REGION") or None)
    if session.get_credentials() is None:
        raise ConfigError("no AWS credentials found in the credential chain (environment, config files, role)")
    config = Config(retries={"mode": "adaptive", "total_max_attempts": 4}, connect_timeout=5, read_timeout=60)
    made: dict[str, Any] = {}

    def client_for(region: str) -> Any:
        if region not in made:
            made[region] = session.client("securityhub", region_name=region, config=config, **overrides)
        return made[region]

    return client_for


@dataclass(frozen=True)
class RetryPolicy:
    """How long to wait between attempts that botocore gave up on: capped exponential, full jitter."""

    base_seconds: float = 0.5
    max_seconds: float = 30.0
    access_seconds: float = 60.0
    """The wait after InvalidAccess: Security Hub or the integration is not enabled, which takes a person to fix."""

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Returns the wait before retry number `attempt` (from 1)."""
        return rng.uniform(0, min(self.max_seconds, self.base_seconds * 2 ** (attempt - 1)))


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

    def add(self, other: DeliveryReport) -> None:
        """Adds `other`'s counts to this report."""
        for counted in fields(DeliveryReport):
            setattr(self, counted.name, getattr(self, counted.name) + getattr(other, counted.name))


class Sink(Protocol):
    """Where findings go: `deliver` returns once every one was accepted or durably dead-lettered, or raises SinkError.

    The processor, `import`, `redrive` and the sweeps depend on this, not on what is behind it.
    """

    def deliver(self, outbound: Iterable[Outbound]) -> DeliveryReport:
        """Delivers `outbound`; raises SinkError when that can't be done, and nothing past it may be checkpointed."""
        ...


class SecurityHubSink:
    """Delivers findings to Security Hub; `deliver` is the seam the consumer checkpoints on."""

    def __init__(
        self,
        clients: Clients,
        dead_letters: DeadLetters,
        *,
        account_id: str | None = None,
        policy: RetryPolicy = RetryPolicy(),
        stop: threading.Event | None = None,
        seed: int | None = None,
    ) -> None:
        self._clients = clients
        self._counted: set[int] = set()
        self.dead_letters = dead_letters
        self._account_id = account_id
        self._policy = policy
        self._stop = stop or threading.Event()
        self._rng = random.Random(seed)  # noqa: S311 - jitter, not secrecy
        self._report = DeliveryReport()
        self._on_accepted: Accepted | None = None

    def _client(self, region: str) -> Any:
        client = self._clients(region)
        if id(client) not in self._counted:
            # botocore's own attempts are counted through its events: they never reach the sink otherwise.
            self._counted.add(id(client))
            client.meta.events.register("before-send.securityhub.BatchImportFindings", self._count_request)
            client.meta.events.register("needs-retry.securityhub.BatchImportFindings", self._count_throttle)
        return client

    def _count_request(self, **_: Any) -> None:
        self._report.requests += 1

    def _count_throttle(self, response: Any = None, **_: Any) -> None:
        if response is not None and response[1].get("Error", {}).get("Code") in THROTTLING_CODES:
            self._report.throttled += 1

    def deliver(self, outbound: Iterable[Outbound], on_accepted: Accepted | None = None) -> DeliveryReport:
        """Returns once every finding was accepted by Security Hub or durably dead-lettered.

        Several versions of a finding are coalesced into its latest. `on_accepted` hears of each request's accepted
        findings as Security Hub accepts them. Raises SinkStopped when a stop is requested first, DeadLetterError
        when a rejected finding can't be kept: in either case nothing past these findings may be checkpointed.
        """
        pending = coalesce(outbound)
        report = self.deliver_pending(pending, on_accepted)
        report.superseded = sum(len(item.origins) - 1 for item in pending)
        return report

    def deliver_pending(self, pending: list[Pending], on_accepted: Accepted | None = None) -> DeliveryReport:
        """Delivers findings already coalesced, one per finding, as `deliver` does."""
        self._report = report = DeliveryReport()
        self._on_accepted = on_accepted
        by_region: dict[str, list[Pending]] = {}
        for item in self._screen(pending):
            by_region.setdefault(item.doc["ProductArn"].split(":")[3], []).append(item)
        for region, items in by_region.items():
            client = self._client(region)
            for batch in requests(items):
                self._send(client, batch)
        return report

    def _screen(self, pending: list[Pending]) -> list[Pending]:
        """Dead-letters what Security Hub would refuse, so it is not sent to fail; returns the rest."""
        rejected: list[DeadLetter] = []
        valid: list[Pending] = []
        for item in pending:
            problems = finding_problems(item.doc, encoded_size=len(item.body), account_id=self._account_id)
            if problems:
                reason = "invalid finding: " + "; ".join(problems)
                rejected += DeadLetter.for_finding(item, reason, "InvalidInput")
            else:
                valid.append(item)
        self._dead_letter(rejected, len(pending) - len(valid))
        return valid

    def _dead_letter(self, letters: list[DeadLetter], findings: int) -> None:
        if letters:
            self.dead_letters.put(letters)
            self._report.dead_lettered += findings

    def _wait(self, seconds: float) -> None:
        if self._stop.wait(seconds):
            raise SinkStopped("stop requested while findings were still undelivered")

    def _send(self, client: Any, batch: list[Pending]) -> None:
        """Sends one request's findings until each is accepted or dead-lettered."""
        attempt = 0
        while batch:
            if self._stop.is_set():
                raise SinkStopped("stop requested while findings were still undelivered")
            attempt += 1
            try:
                answer = client.batch_import_findings(Findings=[item.doc for item in batch])
            except ClientError as exc:
                batch = self._request_failed(client, batch, exc, attempt)
                continue
            except ParamValidationError as exc:  # botocore refused to send it: no retry will change that
                batch = self._refused_whole(client, batch, f"refused by botocore's validation: {exc}", "InvalidInput")
                continue
            except BotoCoreError as exc:  # no connection, timeouts: Security Hub is unreachable
                log.warning("Security Hub unreachable (%s); retrying %d findings", type(exc).__name__, len(batch))
                self._report.retried += 1
                self._wait(self._policy.delay(attempt, self._rng))
                continue
            batch = self._partly_failed(batch, answer, attempt)

    def _request_failed(self, client: Any, batch: list[Pending], exc: ClientError, attempt: int) -> list[Pending]:
        code = exc.response.get("Error", {}).get("Code", "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        self._report.retried += 1
        if code == "InvalidInputException":
            message = exc.response.get("Error", {}).get("Message", "")
            return self._refused_whole(client, batch, f"refused by Security Hub: {message}", code)
        if code in ACCESS_CODES or status in (401, 403):
            log.error(
                "Security Hub refuses access (%s): is Security Hub enabled and the integration accepted in this "
                "account and Region? Retrying %d findings in %.0f s",
                code or status,
                len(batch),
                self._policy.access_seconds,
            )
            self._wait(self._policy.access_seconds)
            return batch
        log.warning("Security Hub answered %s (%s); retrying %d findings", code, status, len(batch))
        self._wait(self._policy.delay(attempt, self._rng))
        return batch

    def _refused_whole(self, client: Any, batch: list[Pending], reason: str, code: str) -> list[Pending]:
        """Handles a request refused as a whole, though each finding passed the strict check: halves find the one
        refused, which is dead-lettered; returns what is still to send."""
        if len(batch) > 1:
            middle = len(batch) // 2
            self._send(client, batch[:middle])
            return batch[middle:]
        item = batch[0]
        self._dead_letter(DeadLetter.for_finding(item, reason, code), 1)
        return []

    def _partly_failed(self, batch: list[Pending], answer: dict[str, Any], attempt: int) -> list[Pending]:
        failures = {failure.get("Id"): failure for failure in answer.get("FailedFindings") or []}
        accepted = [item for item in batch if item.id not in failures]
        self._report.accepted += len(accepted)
        if self._on_accepted is not None and accepted:
            self._on_accepted([item.doc for item in accepted])
        if not failures:
            return []
        retry: list[Pending] = []
        rejected: list[DeadLetter] = []
        rejected_findings = 0
        access_denied = False
        for item in batch:
            failure = failures.get(item.id)
            if failure is None:
                continue
            code = failure.get("ErrorCode", "")
            if code in NOT_RETRYABLE_CODES:
                reason = f"refused by Security Hub: {failure.get('ErrorMessage', '')}"
                rejected += DeadLetter.for_finding(item, reason, code)
                rejected_findings += 1
            else:
                access_denied = access_denied or code in ACCESS_CODES
                retry.append(item)
        self._dead_letter(rejected, rejected_findings)
        if retry:
            self._report.retried += 1
            if access_denied:
                log.error(
                    "Security Hub refused %d findings with InvalidAccess: is the integration enabled? "
                    "Retrying in %.0f s",
                    len(retry),
                    self._policy.access_seconds,
                )
                self._wait(self._policy.access_seconds)
            else:
                log.warning("Security Hub failed %d findings; retrying them", len(retry))
                self._wait(self._policy.delay(attempt, self._rng))
        return retry
