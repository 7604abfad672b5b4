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
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from defender_hub.codecs.asff_rules import finding_problems
from defender_hub.errors import SinkStopped
from defender_hub.metrics import LANE_FINDINGS, REQUESTS, THROTTLED
from defender_hub.sink.answers import THROTTLING_CODES
from defender_hub.sink.base import Accepted, Clients, DeliveryReport, RetryPolicy
from defender_hub.sink.batching import EncodedFinding, MappedFinding, coalesce
from defender_hub.sink.deadletters import DeadLetter, DeadLetters
from defender_hub.sink.lane_delivery import LaneDelivery, LaneKit
from defender_hub.sink.lanes import Lane
from defender_hub.sink.outages import Outages
from defender_hub.sink.parked import ParkedLanes
from defender_hub.sink.quota import Quota
from defender_hub.sink.shapes import shape_problem
from defender_hub.sink.workflow import StillOwed, WorkflowReport, WorkflowUpdate, WorkflowUpdater

__all__ = ["SecurityHubSink", "screen"]

log = logging.getLogger(__name__)

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
        quota: Quota | None = None,
        update_quota: Quota | None = None,
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
        self._parked = ParkedLanes(policy.park_seconds)
        self.outages = outages or Outages(policy.outage_seconds, longest_wait_seconds=policy.max_seconds)
        self._workflow = WorkflowUpdater(
            clients,
            quota=update_quota,
            stop=self._stop,
            delay=policy.delay,
            parked=lambda lane: self._parked.why(lane) is not None,
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
        return self._parked.now()

    @property
    def parked_findings(self) -> Counter[Lane]:
        """The findings this sink parked, by lane."""
        return self._parked.findings()

    def deliver(self, findings: Iterable[MappedFinding], on_accepted: Accepted | None = None) -> DeliveryReport:
        """Returns once every finding was accepted by Security Hub, durably dead-lettered or parked.

        Several versions of a finding are coalesced into its latest. `on_accepted` hears of each request's accepted
        findings as Security Hub accepts them. Raises SinkStopped when a stop is requested first, DeadLetterError
        when a rejected finding can't be kept: in either case nothing past these findings may be checkpointed.
        """
        coalesced = coalesce(findings)
        report = self.deliver_encoded(coalesced, on_accepted)
        report.superseded = sum(len(item.origins) - 1 for item in coalesced)
        return report

    def deliver_encoded(
        self,
        encoded: list[EncodedFinding],
        on_accepted: Accepted | None = None,
        *,
        park: bool = True,
        screened_of: Lane | None = None,
        probe: bool = False,
        on_dead_lettered: Accepted | None = None,
    ) -> DeliveryReport:
        """Delivers findings already coalesced, one per finding, as `deliver` does: each lane on its own, several at
        once. A refused lane's findings are parked in the dead letters, or, without `park`, only counted (for work
        the ledger keeps owed, such as a sweep's). `screened_of` says the findings were screened already (`screen`),
        and are all of that lane: the worker's sender's, which come as bodies, are sent without being decoded. With
        `probe`, a parked lane is asked again (the sweeps' findings), and is no longer parked if it answers.
        `on_dead_lettered` hears, as `on_accepted` does, of the findings Security Hub refused, each dead-lettered:
        what is neither was parked (or, without `park`, left owed)."""
        report = DeliveryReport()
        by_lane: dict[Lane, list[EncodedFinding]] = {}
        if screened_of is not None:
            by_lane = {screened_of: encoded} if encoded else {}
        else:
            valid, rejected = screen(encoded)
            if rejected:
                self.dead_letters.put(rejected)
                report.dead_lettered += len(encoded) - len(valid)
                if on_dead_lettered is not None:
                    valid_ids = {id(item) for item in valid}
                    on_dead_lettered([item for item in encoded if id(item) not in valid_ids])
            for item in valid:
                by_lane.setdefault(Lane.of(item.doc), []).append(item)
        heard = threading.Lock()

        def accepted(items: list[EncodedFinding]) -> None:
            if on_accepted is not None:
                with heard:  # lanes answer from threads of their own: the caller hears of one request at a time
                    on_accepted(items)

        def dead_lettered(items: list[EncodedFinding]) -> None:
            if on_dead_lettered is not None:
                with heard:
                    on_dead_lettered(items)

        abort = threading.Event()
        kit = LaneKit(
            self._clients,
            self._client,
            self._quota,
            self.dead_letters,
            self._policy,
            self._stop,
            self._parked,
            self.outages,
        )
        lanes = [
            LaneDelivery(
                kit,
                lane,
                items,
                accepted=accepted,
                dead_lettered=dead_lettered,
                park=park,
                abort=abort,
                rng=random.Random(self._rng.random()),  # noqa: S311
                probe=probe,
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


def screen(encoded: Iterable[EncodedFinding]) -> tuple[list[EncodedFinding], list[DeadLetter]]:
    """Splits what Security Hub would refuse or botocore would not send (so it is not sent to fail) from the rest:
    returns the rest, and the dead letters of what it refused."""
    rejected: list[DeadLetter] = []
    valid: list[EncodedFinding] = []
    for item in encoded:
        problems = finding_problems(item.doc, encoded_size=len(item.body), account_id=Lane.of(item.doc).account or None)
        # The clients send with botocore's validation off (lanes.py), so the shape it checked is checked here.
        shape = shape_problem(item.doc)
        if shape is not None:
            problems.append(shape)
        if problems:
            rejected += DeadLetter.for_finding(item, "invalid finding: " + "; ".join(problems), "InvalidInput")
        else:
            valid.append(item)
    return valid, rejected
