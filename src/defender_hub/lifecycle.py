"""The finding lifecycle: what to send given what Security Hub already accepted (the ledger). Pure, no I/O, no clock.

A finding's **version** is the time of the news it carries (the event's time: an alarm raised or cleared, a task's
start); its **UpdatedAt** is what goes on the wire. Security Hub ignores an import whose UpdatedAt is not newer than
the one it holds, so the two must differ: a refresh moves UpdatedAt to now without changing the news, and news that
arrives late (a lagging or replayed stream) must still reach Security Hub past that. Hence:
- News is stale when its version is not newer than the ledger's (for audit findings: its task, then its time), or
  its content is unchanged. Stale news is not sent.
- What is sent carries `UpdatedAt = max(version, the highest UpdatedAt ever sent for it + 1 ms)`, and the CreatedAt
  it was first accepted with.
- An audit finding from a task older than the last one that completed its check is sent ARCHIVED (never revived).
- A check summary of a completed check archives that check's ACTIVE findings from older tasks (`archived_by`), with
  Compliance PASSED, as news of the completing task's time: the resources the task no longer reported are compliant.
- An ACTIVE finding not updated for a while is re-sent with a new UpdatedAt, its version unchanged (`refreshed`).
- When a ledger write finds that another writer came first, `reconcile` says what Security Hub must hold now.

Each source keeps rules of its own (what is kept alive, Config's RESOLVED): `source_rules` holds them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import msgspec

from defender_hub.codecs.asff import encode_document
from defender_hub.errors import EventDecodeError
from defender_hub.source_rules import RESOLVED, kept_alive, resolved_owed
from defender_hub.text import one_of
from defender_hub.timestamps import format_iso, to_epoch_ms

__all__ = [
    "ACTIVE",
    "ARCHIVED",
    "REFRESH_AFTER_DAYS",
    "RESOLVED",
    "CheckCompletion",
    "Facts",
    "LedgerEntry",
    "Plan",
    "PlannedFinding",
    "archived_by",
    "facts_of",
    "finding_key",
    "fingerprint",
    "from_the_future",
    "latest_per_check",
    "newness",
    "plan",
    "reconcile",
    "refreshed",
    "workflow_owed",
]

ACTIVE, ARCHIVED = "ACTIVE", "ARCHIVED"
REFRESH_AFTER_DAYS = 80.0
"""Re-send an ACTIVE finding this long after its last update: ten days before Security Hub would delete it."""
AUDIT_FINDING, CHECK_SUMMARY = "AuditFinding", "CheckSummary"
_COMPLETED_RUNS = frozenset({"COMPLETED_COMPLIANT", "COMPLETED_NON_COMPLIANT"})
_NOT_CONTENT = frozenset({"CreatedAt", "UpdatedAt"})
_encode_sorted = msgspec.json.Encoder(order="sorted").encode
_decode = msgspec.json.Decoder(dict[str, Any]).decode


@dataclass(frozen=True, slots=True)
class CheckCompletion:
    """The latest audit task that completed a check, per ProductArn (account and Region)."""

    check: str
    """ProductArn and check name, as `Facts.check`."""
    task_id: str
    task_ms: int
    archived: bool = False
    """Whether every finding the task no longer reported was archived; until then the archival is owed."""


@dataclass(frozen=True, slots=True)
class Facts:
    """What the lifecycle reads of a finding, taken from it once."""

    key: str
    """ProductArn and Id: Security Hub's identity of a finding."""
    version_ms: int
    """The time of the news the finding carries."""
    record_state: str
    report_type: str
    """AuditFinding, CheckSummary, or "" for Detect and anything else."""
    check: str
    """For audit findings and check summaries, the ProductArn and check name; "" otherwise."""
    task_ms: int
    """For audit findings and check summaries, the start of their task; 0 otherwise."""
    completion: CheckCompletion | None
    """For the check summary of a completed check, that completion."""
    refresh: bool = True
    """Whether the finding is re-sent before it expires while ACTIVE (its source's rule)."""

    @property
    def order(self) -> tuple[int, int]:
        """What makes news newer: an audit finding's task first (a later task's report wins), then its time."""
        return (self.task_ms if self.report_type == AUDIT_FINDING else 0), self.version_ms


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """What Security Hub accepted last for one finding, and how far its UpdatedAt has gone."""

    key: str
    created_at: str
    version_ms: int
    """The version (news time) of the content accepted."""
    updated_ms: int
    """The UpdatedAt Security Hub accepted it with: a refresh falls due from here."""
    sent_ms: int
    """The highest UpdatedAt sent for it or about to be (a sweep's claim): the next send must go past it."""
    record_state: str
    fingerprint: str
    """A digest of the content, timestamps aside."""
    check: str
    """For audit findings, the ProductArn and check name the archival looks them up by; "" otherwise."""
    task_ms: int
    """For audit findings, the start of the task that reported it; 0 otherwise."""
    finding: bytes
    """The finding as accepted, JSON: what a refresh or an archival sends again."""
    revision: int = 0
    """Grows with every write: a write names the revision it read, so no writer overwrites what it did not see."""
    refresh: bool = True
    """Whether a refresh sweep re-sends it while it is ACTIVE (`Facts.refresh`)."""
    workflow: str = ""
    """A Workflow.Status owed to the finding once its import was accepted (RESOLVED), "" when none is owed. It is
    written with the acceptance and cleared once Security Hub processed the update, so a kill in between loses
    nothing."""

    @property
    def order(self) -> tuple[int, int]:
        """As `Facts.order`, for what the ledger holds."""
        return (self.task_ms if self.check else 0), self.version_ms

    def claimed(self, sending_ms: int) -> LedgerEntry:
        """This entry once a sweep claimed it to send at `sending_ms`: the revision after it."""
        return replace(self, sent_ms=max(self.sent_ms, sending_ms), revision=self.revision + 1)


@dataclass(slots=True)
class PlannedFinding:
    """The lifecycle's decision for one finding: the finding to send (or, with `to_send` False, only to record), the
    facts it carries and the ledger revision it was decided on."""

    doc: dict[str, Any]
    """The finding with the UpdatedAt it goes out with, or (not sent) the one Security Hub shows it with."""
    facts: Facts
    read: LedgerEntry | None
    """The ledger entry the decision was made on; None when the ledger had none."""
    updated_ms: int
    """The finding's UpdatedAt."""
    to_send: bool = True
    """Whether it goes to Security Hub; when False, only the ledger moves on (Security Hub shows its content
    already)."""
    workflow: str = ""
    """The Workflow.Status owed once it is accepted (`LedgerEntry.workflow`)."""

    def entry(self, finding_json: bytes | None = None) -> LedgerEntry:
        """The ledger entry that records it as accepted: the revision after the one it read. `finding_json` is its
        document as msgspec's compact JSON, where the caller has that already (`EncodedFinding.compact`)."""
        read, doc, facts, updated_ms = self.read, self.doc, self.facts, self.updated_ms
        return LedgerEntry(
            key=facts.key,
            created_at=str(doc.get("CreatedAt", "")),
            version_ms=facts.version_ms,
            updated_ms=updated_ms,
            sent_ms=max(updated_ms, read.sent_ms if read is not None else 0),
            record_state=facts.record_state,
            fingerprint=fingerprint(doc),
            check=facts.check if facts.report_type == AUDIT_FINDING else "",
            task_ms=facts.task_ms if facts.report_type == AUDIT_FINDING else 0,
            finding=encode_document(doc) if finding_json is None else finding_json,
            revision=(read.revision if read is not None else 0) + 1,
            refresh=facts.refresh,
            workflow=self.workflow,
        )


@dataclass(slots=True)
class Plan:
    """What to send, and what was left out."""

    planned: list[PlannedFinding] = field(default_factory=list)
    """What to send, and to record once accepted; also (`to_send` False) newer news Security Hub already shows."""
    completions: list[CheckCompletion] = field(default_factory=list)
    """Checks completed by the batch's check summaries (every version of them, sent or not), newer than the ledger's:
    their archivals are owed."""
    stale: int = 0
    """Not newer than what Security Hub has."""
    unchanged: int = 0
    """Newer, with the same content."""
    archived_late: int = 0
    """Audit findings of a task older than the check's last completed one, sent ARCHIVED."""


def finding_key(doc: Mapping[str, Any]) -> str:
    """The ledger key of a finding: its ProductArn and Id."""
    return f"{doc.get('ProductArn', '')}|{doc.get('Id', '')}"


def _ms(value: Any) -> int:
    """Epoch ms of an ISO time or epoch number; 0 when it is none."""
    try:
        return to_epoch_ms(int(value) if isinstance(value, str) and value.isdigit() else value, "time")
    except (EventDecodeError, TypeError, ValueError):
        return 0


def newness(_doc: Mapping[str, Any], facts: Facts) -> tuple[int, int]:
    """What makes one version of a finding newer than another for the lifecycle: its facts' order."""
    return facts.order


def facts_of(doc: Mapping[str, Any]) -> Facts:
    """The lifecycle's facts of a finding as mapped (or imported): its UpdatedAt is the time of its news."""
    fields = doc.get("ProductFields")
    fields = fields if isinstance(fields, Mapping) else {}
    report_type = str(fields.get("ReportType", ""))
    version_ms = _ms(doc.get("UpdatedAt"))
    if report_type not in (AUDIT_FINDING, CHECK_SUMMARY):
        record_state = str(doc.get("RecordState", ACTIVE))
        return Facts(finding_key(doc), version_ms, record_state, "", "", 0, None, kept_alive(doc, fields))
    check = f"{doc.get('ProductArn', '')}|{fields.get('CheckName', '')}"
    task_ms = _ms(fields.get("TaskStartTime")) or version_ms  # no task time: the finding's own
    completion = None
    if report_type == CHECK_SUMMARY and one_of(fields.get("CheckRunStatus"), _COMPLETED_RUNS):
        completion = CheckCompletion(check, str(fields.get("TaskId", "")), version_ms)
    record_state = str(doc.get("RecordState", ACTIVE))
    return Facts(finding_key(doc), version_ms, record_state, report_type, check, task_ms, completion)


def workflow_owed(doc: Mapping[str, Any], entry: LedgerEntry | None) -> str:
    """The Workflow.Status `doc` is owed once accepted, given the ledger's `entry` for it: RESOLVED for a Config
    finding created PASSED or going from FAILED to PASSED (or PASSED still, with its RESOLVED not yet set); else ""."""
    return resolved_owed(doc, None if entry is None else entry.finding, "" if entry is None else entry.workflow)


def fingerprint(doc: Mapping[str, Any]) -> str:
    """A digest of the finding's content, its timestamps aside."""
    content = {name: value for name, value in doc.items() if name not in _NOT_CONTENT}
    return hashlib.sha256(_encode_sorted(content)).hexdigest()[:32]


def from_the_future(facts: Facts, latest_ms: int) -> str | None:
    """Why a finding can't be taken when its news is later than `latest_ms` (now and the allowed skew); else None.

    One event from a bad clock would otherwise outrank every later one: a task "from 2100" archives a fleet.
    """
    when = max(facts.version_ms, facts.task_ms)
    if when <= latest_ms:
        return None
    return f"event time {format_iso(when)} is in the future (later than {format_iso(latest_ms)}): a bad clock?"


def _past(entry: LedgerEntry | None) -> int:
    """The first UpdatedAt Security Hub takes after everything sent for `entry`."""
    return max(entry.sent_ms, entry.updated_ms) + 1 if entry is not None else 0


def _planned(
    doc: dict[str, Any],
    facts: Facts,
    read: LedgerEntry | None,
    updated_ms: int,
    *,
    to_send: bool = True,
    workflow: str = "",
) -> PlannedFinding:
    """`doc` at `updated_ms`, keeping the CreatedAt the ledger has for it; `doc` itself when that changes nothing."""
    updated_at = format_iso(updated_ms)
    created_at = read.created_at if read is not None and read.created_at else doc.get("CreatedAt")
    if doc.get("UpdatedAt") != updated_at or doc.get("CreatedAt") != created_at:
        doc = {**doc, "UpdatedAt": updated_at, "CreatedAt": created_at}
    return PlannedFinding(doc, facts, read, updated_ms, to_send, workflow)


def _archived(doc: Mapping[str, Any], facts: Facts, version_ms: int) -> tuple[dict[str, Any], Facts]:
    archived = {**doc, "RecordState": ARCHIVED, "Compliance": {"Status": "PASSED"}}
    return archived, replace(facts, record_state=ARCHIVED, version_ms=version_ms)


def latest_per_check(completions: Iterable[CheckCompletion]) -> dict[str, CheckCompletion]:
    """The latest of `completions` for each check: it archives whatever an earlier one would."""
    latest: dict[str, CheckCompletion] = {}
    for completion in completions:
        if completion.task_ms > getattr(latest.get(completion.check), "task_ms", -1):
            latest[completion.check] = completion
    return latest


def plan(
    findings: Sequence[tuple[dict[str, Any], Facts]],
    entries: Mapping[str, LedgerEntry],
    completions: Mapping[str, CheckCompletion],
    batch_completions: Iterable[CheckCompletion] | None = None,
) -> Plan:
    """Decides what of `findings` (one per key, already coalesced) to send, given the ledger's `entries` by key and
    the checks' last `completions` by check key.

    `batch_completions` are the completions of every version of the batch's check summaries, before coalescing (by
    default, those of `findings`): a task that completed a check completed it, even when a later run's summary (a
    canceled one) replaced its own in the batch, or its summary comes after a newer one.
    """
    result = Plan()
    if batch_completions is None:
        batch_completions = (facts.completion for _, facts in findings if facts.completion is not None)
    in_batch = list(dict.fromkeys(batch_completions))
    for completion in in_batch:
        last = completions.get(completion.check)
        if last is None or completion.task_ms > last.task_ms:
            result.completions.append(completion)
    latest = latest_per_check([*completions.values(), *in_batch])  # a late finding may share a batch with them
    for given, given_facts in findings:
        doc, facts = given, given_facts
        entry = entries.get(facts.key)
        late = False
        past = _past(entry)
        if facts.report_type == AUDIT_FINDING:
            completed = latest.get(facts.check)
            if completed is not None and facts.task_ms < completed.task_ms:
                if entry is not None and (entry.record_state == ARCHIVED or entry.task_ms > facts.task_ms):
                    result.stale += 1  # Security Hub has it archived, or a more recent report
                    continue
                if entry is not None and entry.task_ms == facts.task_ms and facts.record_state != ARCHIVED:
                    # The ledger has this task's report: the check's archival owes it, not this late copy. An
                    # archival itself (a redriven dead letter) goes: Security Hub shows the finding ACTIVE still.
                    result.stale += 1
                    continue
                doc, facts = _archived(doc, facts, max(facts.version_ms, completed.task_ms))
                late = True
            elif completed is not None and entry is not None and entry.task_ms < completed.task_ms:
                # The archival of `completed` may have sent this finding without recording it yet: go past it too.
                past = max(completed.task_ms, past) + 1
        if entry is not None:
            if facts.order <= entry.order:
                result.stale += 1
                continue
            if fingerprint(doc) == entry.fingerprint:
                result.unchanged += 1  # newer news Security Hub already shows: only the ledger moves on
                result.planned.append(
                    _planned(doc, facts, entry, entry.updated_ms, to_send=False, workflow=entry.workflow)
                )
                continue
        workflow = workflow_owed(doc, entry)
        result.planned.append(_planned(doc, facts, entry, max(facts.version_ms, past), workflow=workflow))
        result.archived_late += late
    return result


def archived_by(completion: CheckCompletion, entry: LedgerEntry) -> PlannedFinding | None:
    """`entry` ARCHIVED as of `completion`'s task, when that task no longer reported it; else None.

    An entry updated after the task began is newer than what the task says, and is left as it is.
    """
    if entry.record_state != ACTIVE or not entry.check or entry.task_ms >= completion.task_ms:
        return None
    if entry.version_ms >= completion.task_ms:
        return None
    facts = _entry_facts(entry)
    doc, facts = _archived(_decode(entry.finding), facts, completion.task_ms)
    return _planned(doc, facts, entry, max(completion.task_ms, _past(entry)))


def _entry_facts(entry: LedgerEntry) -> Facts:
    report_type = AUDIT_FINDING if entry.check else ""
    return Facts(
        entry.key, entry.version_ms, entry.record_state, report_type, entry.check, entry.task_ms, None, entry.refresh
    )


def refreshed(entry: LedgerEntry, now_ms: int) -> PlannedFinding:
    """The finding of `entry` again, updated now and of the same version, so Security Hub keeps it another 90 days."""
    again = _planned(_decode(entry.finding), _entry_facts(entry), entry, max(now_ms, _past(entry)))
    again.workflow = entry.workflow  # the same content: what it was owed, it is owed still
    return again


def reconcile(mine: PlannedFinding, current: LedgerEntry | None) -> PlannedFinding | None:
    """What to send or record after another writer changed the ledger between our read and our write; None: nothing.

    `mine` was sent (or was only to be recorded) on an older read; `current` is what the ledger holds now, whose
    content was accepted at its `updated_ms` and may have gone out at up to its `sent_ms` (a sweep's claim notes its
    send before making it). Security Hub shows the send with the later UpdatedAt, and on a tie whichever came first.
    The newer news wins: unless Security Hub surely shows its content, it goes again, past every send.
    """
    if current is None:  # the entry we read is gone: ours is all there is
        return (
            PlannedFinding(mine.doc, mine.facts, None, mine.updated_ms, workflow=mine.workflow)
            if mine.to_send
            else None
        )
    sent_ms = mine.updated_ms if mine.to_send else 0
    theirs_ms = max(current.updated_ms, current.sent_ms)
    ours = fingerprint(mine.doc)
    if sent_ms > theirs_ms:
        shown: set[str] = {ours}
    elif sent_ms < current.updated_ms:
        shown = {current.fingerprint}
    else:  # a tie (Security Hub kept whichever came first), or a claimed send that may never have been made
        shown = {ours, current.fingerprint}
    if mine.facts.order > current.order:
        doc, facts, winner = mine.doc, mine.facts, ours
        workflow = workflow_owed(doc, current) or mine.workflow  # the transition from what the ledger holds now
    else:
        doc, facts, winner = _decode(current.finding), _entry_facts(current), current.fingerprint
        workflow = current.workflow
    if shown == {winner}:  # Security Hub surely shows the winning content: only the ledger may have to catch up
        if winner == current.fingerprint and facts is not mine.facts:
            return None
        return _planned(doc, facts, current, max(sent_ms, current.updated_ms), to_send=False, workflow=workflow)
    return _planned(doc, facts, current, max(facts.version_ms, sent_ms + 1, _past(current)), workflow=workflow)
