"""The findings the local Security Hub holds, and the service's rules for changing them: imports by the finding
provider (BatchImportFindings), updates by the customer (BatchUpdateFindings)."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from defender_hub.codecs.asff_rules import MAX_FINDING_BYTES, SEVERITY_LABELS
from defender_hub.local.hub_core import instant

__all__ = [
    "CUSTOMER_OVERRIDES",
    "DUPLICATED",
    "FINDING_NOT_FOUND",
    "PROVIDER_IMMUTABLE",
    "SIZE_EXCEEDED",
    "WORKFLOW_STATES",
    "FindingStore",
]

Key = tuple[str, str]
"""A stored finding's ProductArn and Id."""

PROVIDER_IMMUTABLE = ("Note", "UserDefinedFields", "VerificationState", "Workflow", "WorkflowState")
"""Members a provider can't change through BatchImportFindings once the finding exists: silently kept as they were."""
PROVIDER_INITIAL = ("Note", "VerificationState")
"""Of those, the ones a provider may still give when it creates the finding (ASFF: Note, VerificationState)."""
CUSTOMER_OVERRIDES = ("Confidence", "Criticality", "RelatedFindings", "Severity", "Types")
"""Top-level members an import updates only until BatchUpdateFindings has set them; from then on they are kept."""
WORKFLOW_STATES: Mapping[str, str] = {
    "NEW": "NEW",
    "NOTIFIED": "ASSIGNED",
    "RESOLVED": "RESOLVED",
    "SUPPRESSED": "DEFERRED",
}
"""The retired WorkflowState kept beside each Workflow.Status. No AWS document states this mapping: a reasoned guess
(docs/local-securityhub.md), and nothing should read WorkflowState."""
REOPENED = frozenset({"NOTIFIED", "RESOLVED"})
"""Workflow statuses Security Hub sets back to NEW when an import reopens a finding (SUPPRESSED stays)."""
REOPENING_COMPLIANCE = frozenset({"FAILED", "WARNING", "NOT_AVAILABLE"})
"""Compliance statuses that reopen a finding whose compliance was PASSED."""
FINDING_NOT_FOUND = ("FindingNotFound", "Finding Not Found")
DUPLICATED = ("DuplicatedFindingIdentifier", "Finding Identifier is duplicated")
SIZE_EXCEEDED = ("FindingSizeExceeded", "Finding size exceeded 240 KB")
"""BatchUpdateFindings' UnprocessedFindings codes and messages, as the API reference lists them."""


def _workflow(status: str) -> dict[str, Any]:
    return {"Workflow": {"Status": status}, "WorkflowState": WORKFLOW_STATES[status]}


def _compliance(doc: Mapping[str, Any]) -> Any:
    compliance = doc.get("Compliance")
    return compliance.get("Status") if isinstance(compliance, Mapping) else None


def _reopens(stored: Mapping[str, Any], doc: Mapping[str, Any]) -> bool:
    """Whether an import reopens a finding: RecordState ARCHIVED → ACTIVE, or Compliance.Status PASSED → FAILED,
    WARNING or NOT_AVAILABLE (API reference, Workflow.Status)."""
    unarchived = stored.get("RecordState") == "ARCHIVED" and doc.get("RecordState", "ACTIVE") == "ACTIVE"
    return unarchived or (_compliance(stored) == "PASSED" and _compliance(doc) in REOPENING_COMPLIANCE)


def _severity(stored: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """The severity after an update: the members given, and Label or Normalized worked out from the other when only
    one is given (API reference, SeverityUpdate)."""
    severity = dict(stored) | {name: update[name] for name in ("Label", "Normalized", "Product") if name in update}
    if "Label" in update and "Normalized" not in update:
        severity["Normalized"] = SEVERITY_LABELS[update["Label"]]
    elif "Normalized" in update and "Label" not in update:
        severity["Label"] = max(
            (floor, label) for label, floor in SEVERITY_LABELS.items() if floor <= update["Normalized"]
        )[1]
    return severity


def _now_text() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class FindingStore:
    """The stored findings by ProductArn and Id, with when each arrived; not thread-safe: the hub holds its lock."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._docs: dict[Key, dict[str, Any]] = {}
        self._arrivals: dict[str, float] = {}
        self._overridden: dict[Key, set[str]] = {}

    def clear(self) -> None:
        """Forgets every finding."""
        self._docs.clear()
        self._arrivals.clear()
        self._overridden.clear()

    def __len__(self) -> int:
        return len(self._docs)

    def values(self) -> list[dict[str, Any]]:
        """The stored findings themselves, not copies: copy what leaves the lock."""
        return list(self._docs.values())

    def by_id(self, finding_id: str) -> dict[str, Any] | None:
        """The stored finding with this Id, whatever its product; None if there is none."""
        return next((doc for (_, stored_id), doc in self._docs.items() if stored_id == finding_id), None)

    def arrivals(self) -> dict[str, float]:
        """When each finding Id was first stored, on the hub's clock."""
        return dict(self._arrivals)

    def put_import(self, doc: Mapping[str, Any], region: str) -> None:
        """Applies one valid imported finding by the update rules: an UpdatedAt not newer than the stored one is
        ignored; CreatedAt, FirstObservedAt, the provider-immutable members and those a customer has updated are kept;
        a reopened finding's NOTIFIED or RESOLVED workflow is set back to NEW."""
        key = (doc["ProductArn"], doc["Id"])
        stored = self._docs.get(key)
        if stored is None:
            kept = {name: doc[name] for name in PROVIDER_INITIAL if name in doc} | _workflow("NEW")
            reopened = False
        else:
            if instant(doc["UpdatedAt"]) <= instant(stored["UpdatedAt"]):
                return  # not newer: ignored, and not reported as a failure
            names = ("CreatedAt", "FirstObservedAt", *PROVIDER_IMMUTABLE, *self._overridden.get(key, ()))
            kept = {name: stored[name] for name in names if name in stored}
            reopened = _reopens(stored, doc)
        updated = {name: value for name, value in doc.items() if name not in PROVIDER_IMMUTABLE} | kept
        updated.setdefault("RecordState", "ACTIVE")
        updated["Region"] = region
        if reopened and updated["Workflow"].get("Status") in REOPENED:
            updated |= _workflow("NEW")
        self._docs[key] = updated
        self._arrivals.setdefault(doc["Id"], self._clock())

    def update(self, key: Key, changes: Mapping[str, Any], caller: str, region: str) -> tuple[str, str] | None:
        """Applies a customer's update to one finding, leaving UpdatedAt as the provider set it; returns why it is
        unprocessed (ErrorCode, ErrorMessage), or None once applied."""
        stored = self._docs.get(key)
        # A caller that is no administrator sees its own account's findings only, and only in the Region it calls:
        # another account's finding is, to it, not there.
        if stored is None or stored.get("AwsAccountId") != caller or stored.get("Region") != region:
            return FINDING_NOT_FOUND
        updated = dict(stored)
        for name, value in changes.items():
            if name == "Note":
                updated["Note"] = {"Text": value["Text"], "UpdatedBy": value["UpdatedBy"], "UpdatedAt": _now_text()}
            elif name == "Severity":
                updated["Severity"] = _severity(stored.get("Severity") or {}, value)
            elif name == "Workflow":
                updated |= _workflow(value["Status"])
            else:
                updated[name] = copy.deepcopy(value)
        if len(json.dumps(updated).encode()) > MAX_FINDING_BYTES:
            return SIZE_EXCEEDED
        self._docs[key] = updated
        self._overridden.setdefault(key, set()).update(name for name in changes if name in CUSTOMER_OVERRIDES)
        return None
