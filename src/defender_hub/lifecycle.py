"""The finding lifecycle: what to send given what Security Hub already accepted (the ledger). Pure, no I/O.

Findings are ASFF documents (parsed JSON). The rules, in the order `plan` applies them:
- A finding keeps the CreatedAt it was first accepted with.
- A finding whose UpdatedAt is not newer than the accepted one, or whose content is unchanged, is not sent.
- An audit finding from a task older than the last one that completed its check is sent ARCHIVED (never revived).
- A check summary of a completed check archives that check's ACTIVE findings from older tasks (`archive_missing`),
  with Compliance PASSED and the task's time as UpdatedAt: the resources the task no longer reported are compliant.
- An ACTIVE finding not updated for a while is re-sent with a new UpdatedAt before Security Hub expires it
  (`refreshed`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from defender_hub.errors import EventDecodeError
from defender_hub.timestamps import format_iso, to_epoch_ms

__all__ = [
    "ACTIVE",
    "ARCHIVED",
    "REFRESH_AFTER_DAYS",
    "CheckCompletion",
    "LedgerEntry",
    "Plan",
    "archive_missing",
    "check_key",
    "entry_for",
    "finding_key",
    "plan",
    "refreshed",
]

ACTIVE, ARCHIVED = "ACTIVE", "ARCHIVED"
REFRESH_AFTER_DAYS = 80.0
"""Re-send an ACTIVE finding this long after its last update: ten days before Security Hub would delete it."""
_COMPLETED_RUNS = frozenset({"COMPLETED_COMPLIANT", "COMPLETED_NON_COMPLIANT"})
_NOT_CONTENT = frozenset({"CreatedAt", "UpdatedAt"})
_encode = msgspec.json.Encoder().encode
_encode_sorted = msgspec.json.Encoder(order="sorted").encode
_decode = msgspec.json.Decoder(dict[str, Any]).decode


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """What Security Hub accepted last for one finding."""

    key: str
    """ProductArn and Id: Security Hub's identity of a finding."""
    created_at: str
    updated_ms: int
    record_state: str
    fingerprint: str
    """A digest of the content, timestamps aside."""
    check: str
    """For audit findings, the ProductArn and check name the archival looks them up by; "" otherwise."""
    task_ms: int
    """For audit findings, the start of the task that reported it; 0 otherwise."""
    finding: bytes
    """The finding as accepted, JSON: what a refresh or an archival sends again."""


@dataclass(frozen=True, slots=True)
class CheckCompletion:
    """The latest audit task that completed a check, per ProductArn (account and Region)."""

    check: str
    """ProductArn and check name, as `LedgerEntry.check`."""
    task_id: str
    task_ms: int


@dataclass(slots=True)
class Plan:
    """What to send, what to record once it is accepted, and what was left out."""

    send: list[dict[str, Any]] = field(default_factory=list)
    completions: list[CheckCompletion] = field(default_factory=list)
    """Checks completed by the findings sent: archive what they no longer report, then record them."""
    stale: int = 0
    """Not newer than what Security Hub has."""
    unchanged: int = 0
    """Newer, with the same content."""
    archived_late: int = 0
    """Audit findings of a task older than the check's last completed one, sent ARCHIVED."""


def finding_key(doc: Mapping[str, Any]) -> str:
    """The ledger key of a finding: its ProductArn and Id."""
    return f"{doc.get('ProductArn', '')}|{doc.get('Id', '')}"


def _fields(doc: Mapping[str, Any]) -> Mapping[str, Any]:
    fields = doc.get("ProductFields")
    return fields if isinstance(fields, Mapping) else {}


def check_key(doc: Mapping[str, Any]) -> str:
    """The audit check an audit finding or check summary belongs to (its ProductArn and check name); "" otherwise."""
    if _report_type(doc) not in ("AuditFinding", "CheckSummary"):
        return ""
    return f"{doc.get('ProductArn', '')}|{_fields(doc).get('CheckName', '')}"


def _ms(value: Any) -> int:
    """Epoch ms of an ISO time or epoch number; 0 when it is none."""
    try:
        return to_epoch_ms(int(value) if isinstance(value, str) and value.isdigit() else value, "time")
    except (EventDecodeError, TypeError, ValueError):
        return 0


def _report_type(doc: Mapping[str, Any]) -> str:
    return str(_fields(doc).get("ReportType", ""))


def fingerprint(doc: Mapping[str, Any]) -> str:
    """A digest of the finding's content, its timestamps aside."""
    content = {name: value for name, value in doc.items() if name not in _NOT_CONTENT}
    return hashlib.sha256(_encode_sorted(content)).hexdigest()[:32]


def entry_for(doc: Mapping[str, Any]) -> LedgerEntry:
    """The ledger entry that records `doc` as accepted."""
    audit = _report_type(doc) == "AuditFinding"
    return LedgerEntry(
        key=finding_key(doc),
        created_at=str(doc.get("CreatedAt", "")),
        updated_ms=_ms(doc.get("UpdatedAt")),
        record_state=str(doc.get("RecordState", ACTIVE)),
        fingerprint=fingerprint(doc),
        check=check_key(doc) if audit else "",
        task_ms=_ms(_fields(doc).get("TaskStartTime")) if audit else 0,
        finding=_encode(doc),
    )


def _completion(doc: Mapping[str, Any]) -> CheckCompletion | None:
    fields = _fields(doc)
    if _report_type(doc) != "CheckSummary" or fields.get("CheckRunStatus") not in _COMPLETED_RUNS:
        return None
    return CheckCompletion(check_key(doc), str(fields.get("TaskId", "")), _ms(doc.get("UpdatedAt")))


def _archived(doc: Mapping[str, Any], updated_ms: int) -> dict[str, Any]:
    archived = dict(doc)
    archived.update(RecordState=ARCHIVED, Compliance={"Status": "PASSED"}, UpdatedAt=format_iso(updated_ms))
    return archived


def _with_completions_in(
    docs: Sequence[dict[str, Any]], completions: Mapping[str, CheckCompletion]
) -> dict[str, CheckCompletion]:
    latest = dict(completions)
    for doc in docs:
        completion = _completion(doc)
        if completion is not None and completion.task_ms > getattr(latest.get(completion.check), "task_ms", -1):
            latest[completion.check] = completion
    return latest


def plan(
    docs: Sequence[dict[str, Any]],
    entries: Mapping[str, LedgerEntry],
    completions: Mapping[str, CheckCompletion],
) -> Plan:
    """Decides what of `docs` (one per finding, already coalesced) to send, given the ledger's `entries` by key and
    the checks' last `completions` by check key."""
    result = Plan()
    latest = _with_completions_in(docs, completions)  # a late finding may share a batch with its task's successor
    for given in docs:
        doc = given
        entry = entries.get(finding_key(doc))
        updated_ms, late = _ms(doc.get("UpdatedAt")), False
        if _report_type(doc) == "AuditFinding":
            completed = latest.get(check_key(doc))
            task_ms = _ms(_fields(doc).get("TaskStartTime"))
            if completed is not None and task_ms < completed.task_ms:
                if entry is not None and (entry.record_state == ARCHIVED or entry.task_ms >= task_ms):
                    result.stale += 1  # Security Hub has it archived, or a version at least as recent
                    continue
                doc = _archived(doc, max(updated_ms, completed.task_ms))
                updated_ms, late = _ms(doc["UpdatedAt"]), True
            elif entry is not None and entry.record_state == ARCHIVED and updated_ms == entry.updated_ms:
                # A late finding of the task whose completion archived it, at that very instant: it is current.
                updated_ms += 1
                doc = {**doc, "UpdatedAt": format_iso(updated_ms)}
        if entry is not None:
            if updated_ms <= entry.updated_ms:
                result.stale += 1
                continue
            if fingerprint(doc) == entry.fingerprint:
                result.unchanged += 1
                continue
            if entry.created_at and entry.created_at != doc.get("CreatedAt"):
                doc = {**doc, "CreatedAt": entry.created_at}
        result.send.append(doc)
        result.archived_late += late
        completion = _completion(doc)
        if completion is not None:
            last = completions.get(completion.check)
            if last is None or completion.task_ms > last.task_ms:
                result.completions.append(completion)
    return result


def archive_missing(
    completion: CheckCompletion, active: Iterable[LedgerEntry], reported: set[str]
) -> list[dict[str, Any]]:
    """Returns the check's ACTIVE findings from tasks before the completing one, ARCHIVED as of its time.

    `reported` holds the keys being sent with the completion: those are current, whatever the ledger says.
    """
    archived = []
    for entry in active:
        if entry.record_state != ACTIVE or entry.task_ms >= completion.task_ms or entry.key in reported:
            continue
        if entry.updated_ms >= completion.task_ms:
            continue  # updated after the task started: newer than what the task says
        archived.append(_archived(_decode(entry.finding), completion.task_ms))
    return archived


def refreshed(entry: LedgerEntry, now_ms: int) -> dict[str, Any]:
    """The finding of `entry` again, updated now, so that Security Hub keeps it another 90 days."""
    doc: dict[str, Any] = _decode(entry.finding)
    doc["UpdatedAt"] = format_iso(max(now_ms, entry.updated_ms + 1))
    if entry.created_at:
        doc["CreatedAt"] = entry.created_at
    return doc
