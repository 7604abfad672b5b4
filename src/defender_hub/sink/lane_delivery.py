"""One lane's part of a delivery: its findings sent request by request until each is accepted, dead-lettered or
parked.

A lane delivery is given what it needs (`LaneKit`), not the sink that made it: the clients, the quota, the dead
letters, the retry policy, the stop, the parked lanes and the outages, all shared by the lanes of the sink.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

from defender_hub.errors import LaneRefused, SinkStopped
from defender_hub.sink.answers import ACCESS_CODES, INPUT_CODES, is_throttling, refuses_lane
from defender_hub.sink.base import Accepted, Clients, DeliveryReport, RetryPolicy
from defender_hub.sink.batching import EncodedFinding, take_request
from defender_hub.sink.deadletters import DeadLetter, DeadLetters
from defender_hub.sink.lanes import EncodedFindings, Lane
from defender_hub.sink.outages import Outages
from defender_hub.sink.parked import ParkedLanes
from defender_hub.sink.quota import Quota

__all__ = ["MAX_FINDING_FAILURES", "LaneDelivery", "LaneKit"]

log = logging.getLogger("defender_hub.sink.securityhub")  # one logger for the sink, whichever module says it

NOT_RETRYABLE_CODES = frozenset({"InvalidInput"})
MAX_FINDING_FAILURES = 10
"""Times Security Hub may fail one finding (in FailedFindings, with a code that may pass) before it is dead-lettered
with that code: a redrive can send it again, and the shard does not wait behind it forever."""


@dataclass(frozen=True, slots=True)
class LaneKit:
    """What the lane deliveries of a sink share."""

    clients: Clients
    client: Callable[[Lane, DeliveryReport], Any]
    """The lane's client, whose requests count into the report given; raises LaneRefused when it can have none."""
    quota: Quota | None
    dead_letters: DeadLetters
    policy: RetryPolicy
    stop: threading.Event
    parked: ParkedLanes
    outages: Outages


class _Refused(Exception):
    """Security Hub refused a lane, or has failed it for too long (`outage`): `items` are the findings still to
    deliver in it."""

    def __init__(self, reason: str, code: str, items: list[EncodedFinding], *, outage: bool = False) -> None:
        super().__init__(reason)
        self.reason, self.code, self.items, self.outage = reason, code, items, outage


class LaneDelivery:
    """One lane's part of a delivery: sent request by request until each finding is accepted, dead-lettered or
    parked."""

    def __init__(
        self,
        kit: LaneKit,
        lane: Lane,
        items: list[EncodedFinding],
        *,
        accepted: Accepted,
        dead_lettered: Accepted,
        park: bool,
        abort: threading.Event,
        rng: random.Random,
        probe: bool = False,
    ) -> None:
        self._kit, self.lane, self._items, self._accepted = kit, lane, items, accepted
        self._dead_lettered = dead_lettered
        self._park, self._abort, self._rng, self._probe = park, abort, rng, probe
        self.report = DeliveryReport()

    def run(self) -> None:
        """Delivers the lane's findings; the first failure stops the delivery's other lanes too."""
        try:
            self._run()
        except BaseException:
            self._abort.set()
            raise

    def _run(self) -> None:
        parked = self._kit.parked.why(self.lane)
        if parked is not None and not self._probe:
            self._parked(self._items, *parked)
            return
        queue = deque(self._items)
        asked_at = self._kit.parked.clock()
        try:
            self._drain(queue)
            if parked is not None and self.report.accepted:  # a probe got through: the lane answers, for everyone
                self._kit.parked.unpark(self.lane, asked_at)
                log.info("lane %s answers again: no longer parked", self.lane)
        except _Refused as refused:
            if refused.outage:
                reason = f"lane {self.lane} is down: {refused.reason}; sent again once it answers"
            else:
                hint = self._kit.clients.hint(self.lane)
                reason = f"Security Hub refuses lane {self.lane}: {refused.reason}; {hint}"
            self._kit.parked.park(self.lane, reason, refused.code)
            log.error(
                "lane %s parked for %.0f s (%s): %s", self.lane, self._kit.policy.park_seconds, refused.code, reason
            )
            self._parked([*refused.items, *queue], reason, refused.code)

    def _drain(self, queue: deque[EncodedFinding]) -> None:
        """Sends the queue's findings, each request filled to the limits: findings to retry go back to its front, to
        ride with the next request. Waits only after a request that got nothing through; raises _Refused (the
        findings in hand in it, the rest left in `queue`) when the lane is refused."""
        fruitless = 0
        while queue:
            if self._kit.stop.is_set() or self._abort.is_set():
                raise SinkStopped("stop requested while findings were still undelivered")
            batch = take_request(queue)
            retry, progressed = self._attempt(batch)
            queue.extendleft(reversed(retry))
            fruitless = 0 if progressed else fruitless + 1
            if fruitless:
                self._wait(self._kit.policy.delay(fruitless, self._rng))

    def _parked(self, items: list[EncodedFinding], reason: str, code: str) -> None:
        """Parks `items`: kept in the dead letters with their lane, to be sent again once it answers."""
        if self._park:
            letters = [
                letter for item in items for letter in DeadLetter.for_finding(item, reason, code, str(self.lane))
            ]
            self._kit.dead_letters.put(letters)
        self.report.parked += len(items)
        self._kit.parked.count(self.lane, len(items))
        log.warning(
            "lane %s is parked: %d findings %s",
            self.lane,
            len(items),
            "kept in the dead letters until it answers" if self._park else "left owed until it answers",
        )

    def _wait(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self._abort.is_set():
            if self._kit.stop.wait(min(0.2, max(0.0, deadline - time.monotonic()))):
                break
            if time.monotonic() >= deadline:
                return
        raise SinkStopped("stop requested while findings were still undelivered")

    def _attempt(self, batch: list[EncodedFinding]) -> tuple[list[EncodedFinding], bool]:
        """Sends one request; returns the findings to try again and whether any finding got through (accepted or
        dead-lettered). Raises _Refused when Security Hub refuses the lane."""
        sent_at = time.monotonic()  # a client made first may fail too (STS, for its own account)
        try:
            client = self._kit.client(self.lane, self.report)
            if self._kit.quota is not None:
                self._kit.quota.take(self.lane, self._wait)
                sent_at = time.monotonic()  # the wait for the quota is no failure
            answer = client.batch_import_findings(Findings=EncodedFindings(item.body for item in batch))
        except LaneRefused as exc:
            raise _Refused(exc.reason, exc.code, batch) from exc
        except ClientError as exc:
            return self._request_failed(batch, exc, sent_at)
        # Only a client that validates (not SecurityHubClients') refuses to send: no retry will change that.
        except ParamValidationError as exc:
            return self._refused_whole(batch, f"refused by botocore's validation: {exc}", "InvalidInput"), True
        except BotoCoreError as exc:  # no connection, timeouts: Security Hub is unreachable
            log.warning("Security Hub unreachable (%s); retrying %d findings", type(exc).__name__, len(batch))
            self.report.retried += 1
            return self._failed(batch, type(exc).__name__, sent_at), False
        self._kit.outages.answered(self.lane)
        return self._partly_failed(batch, answer)

    def _failed(self, batch: list[EncodedFinding], code: str, sent_at: float) -> list[EncodedFinding]:
        """Notes a request sent at `sent_at` that failed in a way that may pass (5xx, no connection); returns the
        findings to try again, or raises _Refused once the lane has failed for as long as an outage takes."""
        out = self._kit.outages.failed(self.lane, sent_at, code)
        if out is not None:
            raise _Refused(out, code, batch, outage=True)
        return batch

    def _request_failed(
        self, batch: list[EncodedFinding], exc: ClientError, sent_at: float
    ) -> tuple[list[EncodedFinding], bool]:
        error = exc.response.get("Error", {})
        code, message = error.get("Code", ""), str(error.get("Message", ""))[:500]
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        self.report.retried += 1
        if code in INPUT_CODES:
            self._kit.outages.answered(self.lane)
            return self._refused_whole(batch, f"refused by Security Hub: {message}", code), True
        if refuses_lane(exc):
            raise _Refused(f"{exc.operation_name} answered {code or status}: {message}", code or str(status), batch)
        log.warning("Security Hub answered %s (%s); retrying %d findings", code, status, len(batch))
        if is_throttling(exc):  # an answer: the lane is up, only busy
            self._kit.outages.answered(self.lane)
            return batch, False
        return self._failed(batch, code or str(status), sent_at), False

    def _refused_whole(self, batch: list[EncodedFinding], reason: str, code: str) -> list[EncodedFinding]:
        """Handles a request refused as a whole, though each finding passed the strict check: halves find the one
        refused, which is dead-lettered; returns what is still to send."""
        if len(batch) > 1:
            middle = len(batch) // 2
            half = deque(batch[:middle])
            try:
                self._drain(half)
            except _Refused as refused:
                refused.items += [*half, *batch[middle:]]
                raise
            return batch[middle:]
        letters = DeadLetter.for_finding(batch[0], reason, code)
        self._kit.dead_letters.put(letters)
        self.report.dead_lettered += 1
        self._dead_lettered(batch)
        return []

    def _partly_failed(self, batch: list[EncodedFinding], answer: dict[str, Any]) -> tuple[list[EncodedFinding], bool]:
        failures = {failure.get("Id"): failure for failure in answer.get("FailedFindings") or []}
        accepted = [item for item in batch if item.id not in failures]
        self.report.accepted += len(accepted)
        if accepted:
            self._accepted(accepted)
        if not failures:
            return [], True
        retry: list[EncodedFinding] = []
        rejected: list[DeadLetter] = []
        refused: list[EncodedFinding] = []
        refusal: dict[str, Any] | None = None
        left_owed = 0
        for item in batch:
            failure = failures.get(item.id)
            if failure is None:
                continue
            code = failure.get("ErrorCode", "")
            item.failures += 1
            stubborn = code not in ACCESS_CODES and item.failures >= MAX_FINDING_FAILURES
            if stubborn and code not in NOT_RETRYABLE_CODES and not self._park:
                # Work the ledger keeps owed (an archival, a refresh) is given again by the next sweep: a letter would
                # only be a second copy of it, and a finding failed by a brownout would be written one each sweep.
                left_owed += 1
            elif code in NOT_RETRYABLE_CODES or stubborn:
                times = "" if code in NOT_RETRYABLE_CODES else f" {item.failures} times"
                rejected += DeadLetter.for_finding(
                    item, f"refused by Security Hub{times}: {failure.get('ErrorMessage', '')}", code
                )
                refused.append(item)
                self.report.dead_lettered += 1
            else:
                refusal = refusal or (failure if code in ACCESS_CODES else None)
                retry.append(item)
        if rejected:
            self._kit.dead_letters.put(rejected)
        if refused:
            self._dead_lettered(refused)
        if left_owed:
            self.report.parked += left_owed
            log.warning(
                "Security Hub failed %d findings %d times; left owed for the next sweep",
                left_owed,
                MAX_FINDING_FAILURES,
            )
        if refusal is not None:
            raise _Refused(
                f"{refusal.get('ErrorCode')}: {str(refusal.get('ErrorMessage', ''))[:500]}",
                str(refusal.get("ErrorCode")),
                retry,
            )
        if retry:
            self.report.retried += 1
            log.warning("Security Hub failed %d findings; they go again with the next request", len(retry))
        return retry, len(retry) < len(batch)
