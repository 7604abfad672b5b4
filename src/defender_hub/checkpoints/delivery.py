"""The sink behind the ledger: sends only what changes Security Hub, and records what it accepted.

Each finding is planned against the ledger (`lifecycle.plan`), sent, and recorded with the revision it was planned
on. When another writer (a sweep, another worker) changed the entry in between, `lifecycle.reconcile` says what
Security Hub must show now, and that goes too. Archivals are owed work: a completed check is recorded as owing its
archival before anything is sent, and only once every page of it was accepted is it marked done; what was
interrupted is taken up again by the next delivery for that check, or by the next sweep.
"""

from __future__ import annotations

import functools
import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import cast

import msgspec

from defender_hub.checkpoints.ledger import ARCHIVAL_PAGE, Ledger
from defender_hub.codecs.asff_rules import RETENTION_DAYS
from defender_hub.errors import LedgerError
from defender_hub.lifecycle import (
    CheckCompletion,
    Facts,
    LedgerEntry,
    PlannedFinding,
    archived_by,
    facts_of,
    from_the_future,
    latest_per_check,
    newness,
    plan,
    reconcile,
    refreshed,
)
from defender_hub.metrics import LEDGER_SECONDS
from defender_hub.settings import MAX_CLOCK_SKEW_MINUTES
from defender_hub.sink import (
    DeadLetter,
    DeliveryReport,
    EncodedFinding,
    Lane,
    MappedFinding,
    Sender,
    WorkflowUpdate,
    as_document,
    coalesce,
)

__all__ = ["Clock", "LedgeredSink", "RefreshReport"]

log = logging.getLogger("defender_hub.ledger")

DAY_MS = 86_400_000
REFRESH_PAGE = 500
WORKFLOW_PAGE = 500
"""Owed workflow updates a sweep reads and sends at a time."""
CLAIM_MS = 15 * 60_000  # how long a sweep holds what it re-sends: far longer than one page takes
RECONCILE_ROUNDS = 10
"""Rounds of reconciling with other writers before a delivery gives up (and is tried again from its records)."""

Clock = Callable[[], float]
"""Seconds since the epoch: time.time, or a test's own."""


@contextmanager
def _ledger_errors(action: str) -> Iterator[None]:
    """Turns any failure of the ledger's storage into LedgerError, which stops the delivery before a checkpoint; times
    the operation, under `action` in snake_case."""
    try:
        with LEDGER_SECONDS.labels(_operation(action)).time():
            yield
    except LedgerError:
        raise
    except Exception as exc:
        raise LedgerError(f"the ledger failed while {action}: {type(exc).__name__}: {exc}") from exc


@dataclass
class RefreshReport(DeliveryReport):
    """What a refresh sweep did."""

    due: int = 0
    claimed_elsewhere: int = 0
    unreadable: int = 0
    """Ledger entries whose finding could not be read back: left for the next sweep, and logged."""


class LedgeredSink:
    """Plans each delivery against the ledger (lifecycle.plan), delivers it, then records what Security Hub accepted."""

    def __init__(
        self,
        sink: Sender,
        ledger: Ledger,
        *,
        clock: Clock = time.time,
        max_clock_skew_minutes: float = MAX_CLOCK_SKEW_MINUTES,
    ) -> None:
        self._sink, self._ledger, self._clock = sink, ledger, clock
        self._max_skew_ms = int(max_clock_skew_minutes * 60_000)

    def deliver(self, findings: Iterable[MappedFinding]) -> DeliveryReport:
        """Delivers what changes Security Hub and records it; returns once all of it was accepted or dead-lettered.

        Raises SinkError (LedgerError among them) when that can't be done: nothing past these findings may be
        checkpointed.
        """
        timely, refused = self._screened(findings)
        coalesced = coalesce(timely, newness, own=True)
        to_plan = [(item.doc, cast("Facts", item.tag)) for item in coalesced]
        keys = [facts.key for _, facts in to_plan]
        checks = list({facts.check for _, facts in to_plan} - {""})
        with _ledger_errors("reading"):
            entries = self._ledger.entries(keys)
            completions = self._ledger.completions(checks)
        batch_completions = [facts.completion for item in timely if (facts := cast("Facts", item.tag)).completion]
        decided = plan(to_plan, entries, completions, batch_completions)
        with _ledger_errors("recording completed checks"):
            self._ledger.record_completions(decided.completions)  # owed from now on, before anything is sent
        report = DeliveryReport()
        written: dict[str, LedgerEntry] = {}
        report.add(self._send(decided.planned, dict(zip(keys, coalesced, strict=True)), written=written))
        owed = latest_per_check([*(c for c in completions.values() if not c.archived), *decided.completions])
        reports_by_check: dict[str, list[Facts]] = {}  # an archival reads its own check's findings alone
        for _, facts in to_plan:
            reports_by_check.setdefault(facts.check, []).append(facts)
        owed_with_current: list[tuple[CheckCompletion, set[str]]] = []
        for completion in owed.values():
            # What the batch reports of the completing task or a later one is current, whatever the ledger says (a
            # parked lane's is not in it yet); a replay of an older task's report is not, and is archived with the rest.
            reports = reports_by_check.get(completion.check, [])
            owed_with_current.append(
                (completion, {facts.key for facts in reports if facts.task_ms >= completion.task_ms})
            )
        self._archive(owed_with_current, report)
        # What this delivery owes Security Hub's workflow, and what earlier ones left owed for these findings (a kill
        # between the import and the update, a replay of it): the update is part of the delivery, before any
        # checkpoint.
        left = [entry for key, entry in entries.items() if entry.workflow and key not in written]
        self._update_workflows([*(e for e in written.values() if e.workflow), *left], report)
        report.superseded = sum(len(item.origins) - 1 for item in coalesced)
        report.unchanged = decided.stale + decided.unchanged
        report.archived += decided.archived_late
        report.dead_lettered += refused
        return report

    def _screened(self, findings: Iterable[MappedFinding]) -> tuple[list[MappedFinding], int]:
        """Dead-letters findings whose news is from the future (beyond the clock skew allowed), each version on its
        own, before coalescing lets one outrank the others; returns the rest as documents, each tagged with its
        facts, and how many were refused."""
        latest_ms = int(self._clock() * 1000) + self._max_skew_ms
        timely: list[MappedFinding] = []
        letters: list[DeadLetter] = []
        for item in findings:
            doc = as_document(item.finding)
            facts = facts_of(doc)
            reason = from_the_future(facts, latest_ms)
            if reason is None:
                timely.append(MappedFinding(doc, item.origin, facts))
            else:
                letters += DeadLetter.for_finding(EncodedFinding.of(doc, [item.origin]), reason, "FutureEventTime")
        if letters:
            self._sink.dead_letters.put(letters)
        return timely, len(letters)

    def _update_workflows(self, owed: Sequence[LedgerEntry], report: DeliveryReport) -> None:
        """Sets each owed Workflow.Status, then clears it in the ledger; what is left stays owed."""
        if not owed:
            return
        by_key = {entry.key: entry for entry in owed}

        def still_owed(batch: list[WorkflowUpdate]) -> set[str]:
            with _ledger_errors("reading what is owed still"):
                current = self._ledger.entries([update.key for update in batch])
            return {
                key
                for key, entry in current.items()
                if entry.workflow == by_key[key].workflow and entry.version_ms == by_key[key].version_ms
            }

        done = self._sink.update_workflows([_workflow_update(entry) for entry in owed], still_owed)
        with _ledger_errors("recording workflow updates"):
            self._ledger.workflow_done([by_key[key] for key in done.processed])
        report.workflow_updated += len(done.processed)
        report.workflow_owed += len(owed) - len(done.processed) - done.superseded

    def finish_workflows(self, report: DeliveryReport) -> None:
        """Sets every Workflow.Status still owed: ones a stop, a kill, a parked lane or a failing finding left. One
        owed for a finding Security Hub has deleted by now (its last update over 90 days ago) is given up."""
        expired_before_ms = int(self._clock() * 1000) - RETENTION_DAYS * DAY_MS
        seen: set[str] = set()
        while True:
            with _ledger_errors("listing owed workflow updates"):
                owed = [e for e in self._ledger.owed_workflows(WORKFLOW_PAGE + len(seen)) if e.key not in seen]
            if not owed:
                return
            seen.update(entry.key for entry in owed)  # one try a sweep: what is left owed waits for the next
            expired = [entry for entry in owed if max(entry.updated_ms, entry.sent_ms) < expired_before_ms]
            if expired:
                log.warning(
                    "%d workflow updates given up: Security Hub has deleted their findings, last updated over %d "
                    "days ago",
                    len(expired),
                    RETENTION_DAYS,
                )
                with _ledger_errors("giving up workflow updates"):
                    self._ledger.workflow_done(expired)
            self._update_workflows([entry for entry in owed if entry not in expired], report)

    def finish_archivals(self, report: DeliveryReport) -> None:
        """Works through every archival still owed: ones a stop, a kill or a failure interrupted."""
        with _ledger_errors("listing owed archivals"):
            owed = self._ledger.owed_archivals()
        self._archive([(completion, set()) for completion in owed], report)

    def _archive(self, owed: Sequence[tuple[CheckCompletion, set[str]]], report: DeliveryReport) -> None:
        """Archives the ACTIVE findings each completed check's task no longer reported, ARCHIVAL_PAGE at a time, then
        marks done each check whose archivals were all accepted or dead-lettered.

        Each completion comes with the keys the batch reports of the completing task or a later one: those are current,
        whatever the ledger says. The archivals of every check go together: a task completes dozens of checks, often
        with a finding or two each to archive, and a request of each check's few would spend a slot of the lane's quota
        apiece.
        """
        pending: list[PlannedFinding] = []
        left: set[str] = set()  # the checks with archivals left owed

        def send(archivals: list[PlannedFinding]) -> None:
            sent = self._send(archivals, park=False)
            report.add(sent)
            report.archived += len(archivals) - sent.parked - sent.dead_lettered
            # An archival is done once Security Hub accepted it. A parked lane's, or one Security Hub kept failing (a
            # brownout), is left owed for the next sweep; one it refuses for good is in the dead letters, with its
            # reason, for a person and a redrive: asking again would only write it there again. The send tells how
            # many it parked, not which, so every check with archivals in it stays owed and is asked again.
            if sent.parked:
                left.update(item.facts.check for item in archivals)

        for completion, reported in owed:
            cursor = ""
            while True:
                with _ledger_errors("reading a check's findings"):
                    page, cursor = self._ledger.archivable(completion.check, completion.task_ms, cursor, ARCHIVAL_PAGE)
                pending += [
                    archived
                    for entry in page
                    if entry.key not in reported
                    and (archived := _from_ledger(functools.partial(archived_by, completion, entry), entry, "archival"))
                ]
                while len(pending) >= ARCHIVAL_PAGE:  # whole pages go; the rest waits for the next check's
                    send(pending[:ARCHIVAL_PAGE])
                    del pending[:ARCHIVAL_PAGE]
                if not cursor:
                    break
        send(pending)
        for completion, _ in owed:
            if completion.check in left:  # the next delivery for the check, or the next sweep, takes it up
                log.warning(
                    "archival of %s left owed: a lane of its findings is parked, or Security Hub kept failing some",
                    completion.check,
                )
                continue
            with _ledger_errors("marking an archival done"):
                self._ledger.archival_done(completion)

    def _send(
        self,
        planned: Sequence[PlannedFinding],
        coalesced: dict[str, EncodedFinding] | None = None,
        *,
        park: bool = True,
        written: dict[str, LedgerEntry] | None = None,
    ) -> DeliveryReport:
        """Sends what is to be sent and records what Security Hub accepted, reconciling with other writers.

        With `park`, a refused lane's findings are parked in the dead letters; without, they are left owed (work the
        ledger gives again: archivals, refreshes). `written` collects the entries recorded, by key."""
        report = DeliveryReport()
        written = {} if written is None else written
        for _ in range(RECONCILE_ROUNDS):
            if not planned:
                return report
            conflicts = self._send_once(planned, coalesced, report, park, written)
            if not conflicts:
                return report
            with _ledger_errors("reading what another writer changed"):
                current = self._ledger.entries([item.facts.key for item in conflicts])
            planned = [again for item in conflicts if (again := reconcile(item, current.get(item.facts.key)))]
            coalesced = None
        raise LedgerError(f"other writers kept changing {len(planned)} findings; the delivery is tried again")

    def _send_once(
        self,
        planned: Sequence[PlannedFinding],
        coalesced: dict[str, EncodedFinding] | None,
        report: DeliveryReport,
        park: bool,
        written: dict[str, LedgerEntry],
    ) -> list[PlannedFinding]:
        """Sends and records `planned` once; returns what another writer changed in the ledger meanwhile.

        What Security Hub accepted is recorded in one write once the sink returns or fails, not one a request: each
        write is a transaction the disk must hold (SQLite's are synchronous), and the checkpoint waits for the sink's
        return anyway. A kill in between loses no finding, only the note that it was sent: it is sent again.
        """
        by_key = {item.facts.key: item for item in planned}
        conflicts: list[PlannedFinding] = []

        def record(accepted: Iterable[tuple[PlannedFinding, bytes | None]]) -> None:
            entries = [item.entry(finding_json) for item, finding_json in accepted]
            if not entries:
                return
            with _ledger_errors("recording accepted findings"):
                taken = self._ledger.write(entries)
            conflicts.extend(by_key[key] for key in taken)
            written.update((entry.key, entry) for entry in entries if entry.key not in taken)

        record((item, None) for item in planned if not item.to_send)
        to_send = [item for item in planned if item.to_send]
        sends = [_encoded(item, coalesced) for item in to_send]
        by_send = {id(sent): item for sent, item in zip(sends, to_send, strict=True)}
        # Each accepted finding with the compact JSON its body was made from, of the very document it was planned
        # with: the ledger keeps that, rather than have the finding encoded once more.
        accepted: list[tuple[PlannedFinding, bytes | None]] = []
        try:
            sent = self._sink.deliver_encoded(
                sends, lambda items: accepted.extend((by_send[id(i)], i.compact) for i in items), park=park
            )
        except BaseException:
            # What was accepted before the failure is recorded too (sending it again would be for nothing), unless
            # the ledger fails as well: the delivery's own failure is what the caller must hear of.
            try:
                record(accepted)
            except LedgerError as exc:
                log.warning("%d accepted findings not recorded after the delivery failed: %s", len(accepted), exc)
            raise
        report.add(sent)
        record(accepted)
        return conflicts

    def close(self) -> None:
        """Closes the ledger."""
        self._ledger.close()

    def refresh(self, now_ms: int, after_days: float) -> RefreshReport:
        """Finishes owed archivals, then re-sends every ACTIVE finding not updated for `after_days` with UpdatedAt
        `now_ms` (its version unchanged); one sweep."""
        total = RefreshReport()
        self.finish_archivals(total)
        self.finish_workflows(total)
        cutoff = now_ms - int(after_days * DAY_MS)
        unreadable: set[str] = set()
        while True:
            with _ledger_errors("finding what is due"):
                due = self._ledger.due_for_refresh(cutoff, now_ms, REFRESH_PAGE + len(unreadable))
            due = [entry for entry in due if entry.key not in unreadable]
            if not due:
                return total
            planned, held_elsewhere = [], 0
            for entry in due:
                again = _from_ledger(functools.partial(refreshed, entry, now_ms), entry, "refresh")
                if again is None:
                    unreadable.add(entry.key)
                    continue
                with _ledger_errors("claiming what is due"):
                    claimed = self._ledger.claim(entry, now_ms, now_ms + CLAIM_MS, again.updated_ms)
                if claimed is None:
                    held_elsewhere += 1
                else:
                    planned.append(replace(again, read=claimed))
            total.due += len(due)
            total.claimed_elsewhere += held_elsewhere
            total.unreadable = len(unreadable)
            total.add(self._send(planned, park=False))
            log.info("refresh: %d due, %d re-sent, %d held by another sweep", len(due), len(planned), held_elsewhere)


@functools.cache  # one of this module's few fixed phrases: worked out once each
def _operation(action: str) -> str:
    """The `operation` label of `action`: its words in snake_case ("reading a check's findings":
    reading_a_check_findings)."""
    return "_".join(re.findall(r"[a-z]+", re.sub(r"'s\b", "", action.lower())))


def _from_ledger(make: Callable[[], PlannedFinding | None], entry: LedgerEntry, action: str) -> PlannedFinding | None:
    """`make()`, or None when the ledger's copy of the finding can't be read: logged, and one bad row stops nothing."""
    try:
        return make()
    except msgspec.DecodeError as exc:
        log.error("%s: the ledger's copy of %s can't be read (%s); left as it is", action, entry.key, exc)
        return None


def _workflow_update(entry: LedgerEntry) -> WorkflowUpdate:
    """The update that sets `entry`'s owed Workflow.Status; its key is the ledger's (ProductArn|Id)."""
    product_arn, _, finding_id = entry.key.partition("|")
    return WorkflowUpdate(entry.key, finding_id, product_arn, entry.workflow, Lane.of({"ProductArn": product_arn}))


def _encoded(item: PlannedFinding, coalesced: dict[str, EncodedFinding] | None) -> EncodedFinding:
    """`item` encoded as the request carries it, standing for the records its coalesced version came from; encoded
    again only if the plan changed it."""
    source = coalesced.get(item.facts.key) if coalesced is not None else None
    if source is None:  # an archival, a refresh, a reconciliation: no record of this batch
        return EncodedFinding.of(item.doc, [None], item.facts.version_ms)
    if item.doc is source.doc:
        return source  # as mapped: its UpdatedAt is its version
    return EncodedFinding.of(item.doc, source.origins, item.facts.version_ms)
