"""Workflow updates: BatchUpdateFindings for findings the lifecycle owes a Workflow.Status (Config's RESOLVED).

An import can't set Workflow, so once Security Hub accepted a finding that is owed one, it is set with
BatchUpdateFindings: lane by lane, up to 100 identifiers a request, within that operation's own quota (10 requests a
second per account and Region, apart from the import's). The owed status is kept in the ledger until Security Hub
processed it, so nothing here is lost when it stops short: an update that a stop, a refused lane or a finding
Security Hub keeps failing leaves undone is taken up again by the next delivery of the finding or the next sweep.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import groupby
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

from defender_hub.codecs.asff_rules import MAX_FINDINGS_PER_UPDATE
from defender_hub.errors import LaneRefused, SinkStopped
from defender_hub.metrics import WORKFLOW_LEFT_OWED, WORKFLOW_PROCESSED, WORKFLOW_UPDATES
from defender_hub.sink.answers import is_throttling, is_transient, refuses_lane
from defender_hub.sink.lanes import Lane
from defender_hub.sink.outages import Outages
from defender_hub.sink.quota import Quota

__all__ = ["MAX_UPDATE_ATTEMPTS", "WorkflowReport", "WorkflowUpdate", "WorkflowUpdater"]

log = logging.getLogger(__name__)

MAX_UPDATE_ATTEMPTS = 5
"""Times one finding may come back unprocessed in one delivery before it is left owed for the next sweep. Security Hub
may not yet show a finding it just accepted, so a few tries a few seconds apart see most of those through."""


@dataclass(frozen=True, slots=True)
class WorkflowUpdate:
    """A Workflow.Status to set on one finding; `key` is the caller's name for it, given back when it is done."""

    key: str
    finding_id: str
    product_arn: str
    status: str
    lane: Lane


@dataclass
class WorkflowReport:
    """What a round of workflow updates did: the keys Security Hub processed, and how many were left owed."""

    processed: list[str] = field(default_factory=list)
    left_owed: int = 0
    superseded: int = 0
    """Updates no longer owed when their turn came (newer news of the finding owes its own, or none): not sent."""
    requests: int = 0


StillOwed = Callable[[list[WorkflowUpdate]], set[str]]
"""Says which of the updates are owed still, by key: asked right before each request."""


class WorkflowUpdater:
    """Sends workflow updates, each lane on its own; used by `SecurityHubSink.update_workflows`."""

    def __init__(
        self,
        clients: Callable[[Lane], Any],
        *,
        quota: Quota | None,
        stop: threading.Event,
        delay: Callable[[int, random.Random], float],
        parked: Callable[[Lane], bool],
        outages: Outages,
        seed: int | None = None,
    ) -> None:
        self._clients, self._quota, self._stop, self._delay, self._parked = clients, quota, stop, delay, parked
        self._outages = outages
        self._rng = random.Random(seed)  # noqa: S311 - jitter, not secrecy

    def update(self, updates: Iterable[WorkflowUpdate], still_owed: StillOwed | None = None) -> WorkflowReport:
        """Sets each update's Workflow.Status; returns once each was processed, left owed or no longer owed (as
        `still_owed` says right before each request), or raises SinkStopped."""
        report = WorkflowReport()
        ordered = sorted(updates, key=lambda u: (u.lane.partition, u.lane.account, u.lane.region, u.status))
        for (lane, status), group in groupby(ordered, key=lambda u: (u.lane, u.status)):
            items = list(group)
            if self._parked(lane):
                self._leave(report, items, lane, "its lane is parked")
                continue
            try:
                self._lane(lane, status, items, report, still_owed)
            except LaneRefused as refused:
                done = set(report.processed)
                left = [item for item in items if item.key not in done]
                self._leave(report, left, lane, f"Security Hub refuses it ({refused.code}): {refused.reason}")
        WORKFLOW_UPDATES.labels(WORKFLOW_PROCESSED).inc(len(report.processed))
        WORKFLOW_UPDATES.labels(WORKFLOW_LEFT_OWED).inc(report.left_owed)
        return report

    def _leave(self, report: WorkflowReport, items: Sequence[WorkflowUpdate], lane: Lane, why: str) -> None:
        report.left_owed += len(items)
        log.warning("lane %s: %d workflow updates left owed for the next sweep: %s", lane, len(items), why[:500])

    def _lane(
        self,
        lane: Lane,
        status: str,
        items: list[WorkflowUpdate],
        report: WorkflowReport,
        still_owed: StillOwed | None,
    ) -> None:
        """Updates one lane's findings to `status`, a request of up to 100 at a time; raises LaneRefused.

        Only what may pass with time is asked again for as long as it takes (throttling, a fault of the service, no
        connection), each wait longer; a request refused whole for what it holds is split until the identifier it is
        refused for stands alone, which is left owed, so that one bad identifier never holds up the shard.
        """
        client = self._clients(lane)
        attempts = dict.fromkeys((item.key for item in items), 0)
        queue = list(items)
        size, fruitless = MAX_FINDINGS_PER_UPDATE, 0
        while queue:
            if self._stop.is_set():
                raise SinkStopped("stop requested while workflow updates were still owed")
            batch, queue = queue[:size], queue[size:]
            if still_owed is not None:
                # A RESOLVED read as owed a while ago (by a sweep, say) must not land on news that came since: a
                # finding gone FAILED again, which Security Hub has just reset to NEW.
                owed_keys = still_owed(batch)
                owed = [item for item in batch if item.key in owed_keys]
                report.superseded += len(batch) - len(owed)
                batch = owed
                if not batch:
                    continue
            if self._quota is not None:
                self._quota.take(lane, self._wait)
            report.requests += 1
            retry, refused = self._request(lane, client, status, batch, attempts=attempts, report=report)
            if refused:  # asked again in halves, or (alone) left owed
                size = self._refused_whole(batch, attempts, refused)
                queue = batch + queue if size else queue
                size = size or MAX_FINDINGS_PER_UPDATE
            queue = retry + queue
            fruitless = fruitless + 1 if retry and len(retry) == len(batch) else 0
            if retry:
                self._wait(self._delay(max(1, fruitless), self._rng))
        report.left_owed += sum(1 for count in attempts.values() if count >= MAX_UPDATE_ATTEMPTS)

    def _request(
        self,
        lane: Lane,
        client: Any,
        status: str,
        batch: list[WorkflowUpdate],
        *,
        attempts: dict[str, int],
        report: WorkflowReport,
    ) -> tuple[list[WorkflowUpdate], str]:
        """Sends one request; returns what to ask again after a wait, and why the request was refused whole ("" when
        it was not). Raises LaneRefused, also once the lane has failed for as long as an outage takes."""
        sent_at = time.monotonic()
        try:
            answer = client.batch_update_findings(
                FindingIdentifiers=[{"Id": item.finding_id, "ProductArn": item.product_arn} for item in batch],
                Workflow={"Status": status},
            )
        except ClientError as exc:
            error = exc.response.get("Error", {})
            if refuses_lane(exc):
                raise LaneRefused(str(error.get("Message", ""))[:500], str(error.get("Code", ""))) from exc
            if not is_transient(exc):
                self._outages.answered(lane)
                return [], f"{error.get('Code')}: {error.get('Message', '')}"
            log.warning("BatchUpdateFindings answered %s; retrying %d updates", error.get("Code"), len(batch))
            if is_throttling(exc):  # an answer: the lane is up, only busy
                self._outages.answered(lane)
            else:
                self._failed(lane, str(error.get("Code")), sent_at)
            return batch, ""
        # Only a client that validates (not SecurityHubClients') refuses to send: no retry changes that.
        except ParamValidationError as exc:
            return [], f"refused by botocore's validation: {exc}"
        except BotoCoreError as exc:  # no connection, timeouts: Security Hub is unreachable
            log.warning("Security Hub unreachable (%s); retrying %d updates", type(exc).__name__, len(batch))
            self._failed(lane, type(exc).__name__, sent_at)
            return batch, ""
        self._outages.answered(lane)
        return self._unprocessed(batch, answer, attempts, report), ""

    def _failed(self, lane: Lane, code: str, sent_at: float) -> None:
        """Notes a request sent at `sent_at` that failed in a way that may pass; raises LaneRefused once the lane has
        failed for as long as an outage takes (its updates stay owed in the ledger for the parked sweep)."""
        out = self._outages.failed(lane, sent_at, code)
        if out is not None:
            raise LaneRefused(out, code)

    def _refused_whole(self, batch: list[WorkflowUpdate], attempts: dict[str, int], reason: str) -> int:
        """Returns the request size to split `batch` into, or 0 when it stands alone and is left owed."""
        if len(batch) > 1:
            return len(batch) // 2
        attempts[batch[0].key] = MAX_UPDATE_ATTEMPTS
        log.warning("BatchUpdateFindings refuses an update (%s); left owed for the next sweep", reason[:500])
        return 0

    def _unprocessed(
        self, batch: list[WorkflowUpdate], answer: dict[str, Any], attempts: dict[str, int], report: WorkflowReport
    ) -> list[WorkflowUpdate]:
        """Notes what Security Hub processed; returns what to try again (those it left unprocessed, a few times)."""
        failed = {
            (str(identifier.get("Id")), str(identifier.get("ProductArn"))): unprocessed
            for unprocessed in answer.get("UnprocessedFindings") or []
            if isinstance(identifier := unprocessed.get("FindingIdentifier") or {}, dict)
        }
        retry: list[WorkflowUpdate] = []
        for item in batch:
            unprocessed = failed.get((item.finding_id, item.product_arn))
            if unprocessed is None:
                report.processed.append(item.key)
                continue
            attempts[item.key] += 1
            if attempts[item.key] < MAX_UPDATE_ATTEMPTS:
                retry.append(item)
            else:
                log.warning(
                    "BatchUpdateFindings left a finding unprocessed %d times (%s: %s); left owed for the next sweep",
                    MAX_UPDATE_ATTEMPTS,
                    str(unprocessed.get("ErrorCode", ""))[:100],
                    str(unprocessed.get("ErrorMessage", ""))[:300],
                )
        return retry

    def _wait(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self._stop.wait(min(0.2, left)):
                raise SinkStopped("stop requested while workflow updates were still owed")
