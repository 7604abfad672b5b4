"""Delivering findings to Security Hub: nothing reported delivered that Security Hub did not accept.

botocore's adaptive retry mode does what it does well: it retries throttling, 5xx and connection errors a few times
and runs a client-side token bucket whose rate follows throttling (CUBIC), one per lane's client. The sink adds what
botocore lacks: it delivers each lane (account and Region) on its own, several at once; it keeps retrying, with
capped exponential backoff and full jitter, while Security Hub is down for a while; it retries only the findings a
response lists as failed; it bisects a request Security Hub refuses whole; it dead-letters what can never be accepted;
and it parks the findings of a lane Security Hub refuses (not enabled, access denied, no endpoint, any other client
error) or that has failed every request for `RetryPolicy.outage_seconds` (`outages.py`), so one account or Region
never holds up the others for long.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

from defender_hub.codecs.asff_rules import finding_problems
from defender_hub.errors import LaneRefused, SinkStopped
from defender_hub.metrics import LANE_FINDINGS, REQUESTS, THROTTLED
from defender_hub.sink.answers import ACCESS_CODES, INPUT_CODES, THROTTLING_CODES, is_throttling, refuses_lane
from defender_hub.sink.base import Accepted, Clients, DeliveryReport, RetryPolicy
from defender_hub.sink.batching import Outbound, Pending, coalesce, take_request
from defender_hub.sink.deadletters import DeadLetter, DeadLetters
from defender_hub.sink.lanes import Lane
from defender_hub.sink.outages import Outages
from defender_hub.sink.quota import SharedQuota
from defender_hub.sink.workflow import StillOwed, WorkflowReport, WorkflowUpdate, WorkflowUpdater

__all__ = ["SecurityHubSink"]

log = logging.getLogger(__name__)

NOT_RETRYABLE_CODES = frozenset({"InvalidInput"})
MAX_FINDING_FAILURES = 10
"""Times Security Hub may fail one finding (in FailedFindings, with a code that may pass) before it is dead-lettered
with that code: a redrive can send it again, and the shard does not wait behind it forever."""
_DEFAULT_POLICY = RetryPolicy()
MAX_LANES_AT_ONCE = 8
"""Lanes delivered at once: each has its own quota, so a delivery of several lanes runs them side by side."""


class SecurityHubSink:
    """Delivers findings to Security Hub, lane by lane; `deliver` is the seam the consumer checkpoints on."""

    def __init__(
        self,
        clients: Clients,
        dead_letters: DeadLetters,
        *,
        policy: RetryPolicy = _DEFAULT_POLICY,
        stop: threading.Event | None = None,
        seed: int | None = None,
        quota: SharedQuota | None = None,
        update_quota: SharedQuota | None = None,
        outages: Outages | None = None,
    ) -> None:
        self._clients = clients
        self._quota = quota
        self.dead_letters = dead_letters
        self._policy = policy
        self._stop = stop or threading.Event()
        self._rng = random.Random(seed)  # noqa: S311 - jitter, not secrecy
        self._lock = threading.Lock()
        self._reports: dict[int, DeliveryReport] = {}
        self._lanes: dict[int, Lane] = {}
        """By client: the report of the lane delivery using it now, and its lane, which botocore's events count into."""
        self._parked: dict[Lane, tuple[float, str, str]] = {}
        self.outages = outages or Outages(policy.outage_seconds)
        self.parked_findings: Counter[Lane] = Counter()
        """The findings this sink parked, by lane."""
        self._workflow = WorkflowUpdater(
            clients,
            quota=update_quota,
            stop=self._stop,
            delay=policy.delay,
            parked=lambda lane: self._parked_now(lane) is not None,
            outages=self.outages,
            seed=seed,
        )

    def update_workflows(
        self, updates: Iterable[WorkflowUpdate], still_owed: StillOwed | None = None
    ) -> WorkflowReport:
        """Sets the Workflow.Status of findings Security Hub accepted (BatchUpdateFindings), lane by lane; returns
        what was processed and how much was left owed (a parked lane's, say). `still_owed`, asked before each
        request, drops what is no longer owed. Raises SinkStopped on a stop."""
        return self._workflow.update(updates, still_owed)

    def busy(self, lanes: Iterable[Lane]) -> bool:
        """Whether a request to any of `lanes` would now wait for this worker's share of the quota."""
        return self._quota is not None and any(self._quota.busy(lane) for lane in lanes)

    def parked_lanes(self) -> dict[Lane, str]:
        """The lanes this sink parks now, with the reason."""
        with self._lock:
            now = time.monotonic()
            return {lane: reason for lane, (until, reason, _) in self._parked.items() if until > now}

    def deliver(self, outbound: Iterable[Outbound], on_accepted: Accepted | None = None) -> DeliveryReport:
        """Returns once every finding was accepted by Security Hub, durably dead-lettered or parked.

        Several versions of a finding are coalesced into its latest. `on_accepted` hears of each request's accepted
        findings as Security Hub accepts them. Raises SinkStopped when a stop is requested first, DeadLetterError
        when a rejected finding can't be kept: in either case nothing past these findings may be checkpointed.
        """
        pending = coalesce(outbound)
        report = self.deliver_pending(pending, on_accepted)
        report.superseded = sum(len(item.origins) - 1 for item in pending)
        return report

    def deliver_pending(
        self, pending: list[Pending], on_accepted: Accepted | None = None, *, park: bool = True
    ) -> DeliveryReport:
        """Delivers findings already coalesced, one per finding, as `deliver` does: each lane on its own, several at
        once. A refused lane's findings are parked in the dead letters, or, without `park`, only counted (for work
        the ledger keeps owed, such as a sweep's)."""
        report = DeliveryReport()
        by_lane: dict[Lane, list[Pending]] = {}
        for item in self._screen(pending, report):
            by_lane.setdefault(Lane.of(item.doc), []).append(item)
        heard = threading.Lock()

        def accepted(docs: list[dict[str, Any]]) -> None:
            if on_accepted is not None:
                with heard:  # the ledger behind it is written one request at a time
                    on_accepted(docs)

        abort = threading.Event()
        lanes = [
            _LaneDelivery(
                self,
                lane,
                items,
                accepted=accepted,
                park=park,
                abort=abort,
                rng=random.Random(self._rng.random()),  # noqa: S311
            )
            for lane, items in by_lane.items()
        ]
        errors: list[BaseException] = []
        if len(lanes) == 1:
            lanes[0].run()
        elif lanes:
            with ThreadPoolExecutor(min(len(lanes), MAX_LANES_AT_ONCE), thread_name_prefix="lane") as pool:
                futures = [pool.submit(lane.run) for lane in lanes]
            errors = [error for future in futures if (error := future.exception()) is not None]
        for lane in lanes:
            report.add(lane.report)
            for outcome in ("accepted", "dead_lettered", "parked"):
                LANE_FINDINGS.labels(lane.lane.account, lane.lane.region, outcome).inc(getattr(lane.report, outcome))
        if errors:  # the cause, rather than the stops it made of the other lanes
            raise next((e for e in errors if not isinstance(e, SinkStopped)), errors[0])
        return report

    def _screen(self, pending: list[Pending], report: DeliveryReport) -> list[Pending]:
        """Dead-letters what Security Hub would refuse, so it is not sent to fail; returns the rest."""
        rejected: list[DeadLetter] = []
        valid: list[Pending] = []
        for item in pending:
            problems = finding_problems(
                item.doc, encoded_size=len(item.body), account_id=Lane.of(item.doc).account or None
            )
            if problems:
                reason = "invalid finding: " + "; ".join(problems)
                rejected += DeadLetter.for_finding(item, reason, "InvalidInput")
            else:
                valid.append(item)
        if rejected:
            self.dead_letters.put(rejected)
            report.dead_lettered += len(pending) - len(valid)
        return valid

    def _client(self, lane: Lane, report: DeliveryReport) -> Any:
        """The lane's client, whose requests count into `report`; raises LaneRefused when it can have none."""
        client = self._clients(lane)
        with self._lock:
            if id(client) not in self._reports:
                # botocore's own attempts are counted through its events: they never reach the sink otherwise.
                client.meta.events.register(
                    "before-send.securityhub.BatchImportFindings", lambda **_: self._counted(client, "requests")
                )
                client.meta.events.register("needs-retry.securityhub.BatchImportFindings", self._throttled(client))
            self._reports[id(client)] = report
            self._lanes[id(client)] = lane
        return client

    def _counted(self, client: Any, name: str) -> None:
        report = self._reports[id(client)]
        setattr(report, name, getattr(report, name) + 1)
        lane = self._lanes[id(client)]
        (REQUESTS if name == "requests" else THROTTLED).labels(lane.account, lane.region).inc()

    def _throttled(self, client: Any) -> Callable[..., None]:
        def count(response: Any = None, **_: Any) -> None:
            if response is not None and response[1].get("Error", {}).get("Code") in THROTTLING_CODES:
                self._counted(client, "throttled")

        return count

    def _parked_now(self, lane: Lane) -> tuple[str, str] | None:
        """Why `lane` is parked, and the code, while it is."""
        with self._lock:
            parked = self._parked.get(lane)
            if parked is None or parked[0] <= time.monotonic():
                self._parked.pop(lane, None)
                return None
            return parked[1], parked[2]

    def _park_lane(self, lane: Lane, reason: str, code: str) -> None:
        with self._lock:
            self._parked[lane] = (time.monotonic() + self._policy.park_seconds, reason, code)


class _Refused(Exception):
    """Security Hub refused a lane, or has failed it for too long (`outage`): `items` are the findings still to
    deliver in it."""

    def __init__(self, reason: str, code: str, items: list[Pending], *, outage: bool = False) -> None:
        super().__init__(reason)
        self.reason, self.code, self.items, self.outage = reason, code, items, outage


class _LaneDelivery:
    """One lane's part of a delivery: sent request by request until each finding is accepted, dead-lettered or
    parked."""

    def __init__(
        self,
        sink: SecurityHubSink,
        lane: Lane,
        items: list[Pending],
        *,
        accepted: Accepted,
        park: bool,
        abort: threading.Event,
        rng: random.Random,
    ) -> None:
        self._sink, self.lane, self._items, self._accepted = sink, lane, items, accepted
        self._park, self._abort, self._rng = park, abort, rng
        self.report = DeliveryReport()

    def run(self) -> None:
        """Delivers the lane's findings; the first failure stops the delivery's other lanes too."""
        try:
            self._run()
        except BaseException:
            self._abort.set()
            raise

    def _run(self) -> None:
        parked = self._sink._parked_now(self.lane)
        if parked is not None:
            self._parked(self._items, *parked)
            return
        queue = deque(self._items)
        try:
            self._drain(queue)
        except _Refused as refused:
            if refused.outage:
                reason = f"lane {self.lane} is down: {refused.reason}; sent again once it answers"
            else:
                hint = self._sink._clients.hint(self.lane)
                reason = f"Security Hub refuses lane {self.lane}: {refused.reason}; {hint}"
            self._sink._park_lane(self.lane, reason, refused.code)
            log.error(
                "lane %s parked for %.0f s (%s): %s", self.lane, self._sink._policy.park_seconds, refused.code, reason
            )
            self._parked([*refused.items, *queue], reason, refused.code)

    def _drain(self, queue: deque[Pending]) -> None:
        """Sends the queue's findings, each request filled to the limits: findings to retry go back to its front, to
        ride with the next request. Waits only after a request that got nothing through; raises _Refused (the
        findings in hand in it, the rest left in `queue`) when the lane is refused."""
        fruitless = 0
        while queue:
            if self._sink._stop.is_set() or self._abort.is_set():
                raise SinkStopped("stop requested while findings were still undelivered")
            batch = take_request(queue)
            retry, progressed = self._attempt(batch)
            queue.extendleft(reversed(retry))
            fruitless = 0 if progressed else fruitless + 1
            if fruitless:
                self._wait(self._sink._policy.delay(fruitless, self._rng))

    def _parked(self, items: list[Pending], reason: str, code: str) -> None:
        """Parks `items`: kept in the dead letters with their lane, to be sent again once it answers."""
        if self._park:
            letters = [
                letter for item in items for letter in DeadLetter.for_finding(item, reason, code, str(self.lane))
            ]
            self._sink.dead_letters.put(letters)
        self.report.parked += len(items)
        with self._sink._lock:
            self._sink.parked_findings[self.lane] += len(items)
        log.warning(
            "lane %s is parked: %d findings %s",
            self.lane,
            len(items),
            "kept in the dead letters until it answers" if self._park else "left owed until it answers",
        )

    def _wait(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self._abort.is_set():
            if self._sink._stop.wait(min(0.2, max(0.0, deadline - time.monotonic()))):
                break
            if time.monotonic() >= deadline:
                return
        raise SinkStopped("stop requested while findings were still undelivered")

    def _attempt(self, batch: list[Pending]) -> tuple[list[Pending], bool]:
        """Sends one request; returns the findings to try again and whether any finding got through (accepted or
        dead-lettered). Raises _Refused when Security Hub refuses the lane."""
        sent_at = time.monotonic()  # a client made first may fail too (STS, for its own account)
        try:
            client = self._sink._client(self.lane, self.report)
            if self._sink._quota is not None:
                self._sink._quota.take(self.lane, self._wait)
                sent_at = time.monotonic()  # the wait for the quota is no failure
            answer = client.batch_import_findings(Findings=[item.doc for item in batch])
        except LaneRefused as exc:
            raise _Refused(exc.reason, exc.code, batch) from exc
        except ClientError as exc:
            return self._request_failed(batch, exc, sent_at)
        except ParamValidationError as exc:  # botocore refused to send it: no retry will change that
            return self._refused_whole(batch, f"refused by botocore's validation: {exc}", "InvalidInput"), True
        except BotoCoreError as exc:  # no connection, timeouts: Security Hub is unreachable
            log.warning("Security Hub unreachable (%s); retrying %d findings", type(exc).__name__, len(batch))
            self.report.retried += 1
            return self._failed(batch, type(exc).__name__, sent_at), False
        self._sink.outages.answered(self.lane)
        return self._partly_failed(batch, answer)

    def _failed(self, batch: list[Pending], code: str, sent_at: float) -> list[Pending]:
        """Notes a request sent at `sent_at` that failed in a way that may pass (5xx, no connection); returns the
        findings to try again, or raises _Refused once the lane has failed for as long as an outage takes."""
        out = self._sink.outages.failed(self.lane, sent_at, code)
        if out is not None:
            raise _Refused(out, code, batch, outage=True)
        return batch

    def _request_failed(self, batch: list[Pending], exc: ClientError, sent_at: float) -> tuple[list[Pending], bool]:
        error = exc.response.get("Error", {})
        code, message = error.get("Code", ""), str(error.get("Message", ""))[:500]
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        self.report.retried += 1
        if code in INPUT_CODES:
            self._sink.outages.answered(self.lane)
            return self._refused_whole(batch, f"refused by Security Hub: {message}", code), True
        if refuses_lane(exc):
            raise _Refused(f"{exc.operation_name} answered {code or status}: {message}", code or str(status), batch)
        log.warning("Security Hub answered %s (%s); retrying %d findings", code, status, len(batch))
        if is_throttling(exc):  # an answer: the lane is up, only busy
            self._sink.outages.answered(self.lane)
            return batch, False
        return self._failed(batch, code or str(status), sent_at), False

    def _refused_whole(self, batch: list[Pending], reason: str, code: str) -> list[Pending]:
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
        self._sink.dead_letters.put(letters)
        self.report.dead_lettered += 1
        return []

    def _partly_failed(self, batch: list[Pending], answer: dict[str, Any]) -> tuple[list[Pending], bool]:
        failures = {failure.get("Id"): failure for failure in answer.get("FailedFindings") or []}
        accepted = [item for item in batch if item.id not in failures]
        self.report.accepted += len(accepted)
        if accepted:
            self._accepted([item.doc for item in accepted])
        if not failures:
            return [], True
        retry: list[Pending] = []
        rejected: list[DeadLetter] = []
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
                self.report.dead_lettered += 1
            else:
                refusal = refusal or (failure if code in ACCESS_CODES else None)
                retry.append(item)
        if rejected:
            self._sink.dead_letters.put(rejected)
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
