"""The lifecycle's rules alone: plan, archival and refresh on documents, with no ledger or Security Hub behind them."""

from __future__ import annotations

import json
from typing import Any

from defender_hub.lifecycle import ARCHIVED, CheckCompletion, archive_missing, entry_for, finding_key, plan, refreshed
from defender_hub.timestamps import format_iso

ARN = "arn:aws:securityhub:us-east-1:123456789012:product/123456789012/default"
T1, T2 = 1_790_000_000_000, 1_790_000_005_000  # two tasks' starts, epoch ms


def audit(resource: str, task: str, task_ms: int, updated_ms: int) -> dict[str, Any]:
    updated = format_iso(updated_ms)
    return {
        "ProductArn": ARN, "Id": f"r/{resource}", "CreatedAt": updated, "UpdatedAt": updated, "RecordState": "ACTIVE",
        "ProductFields": {
            "ReportType": "AuditFinding", "CheckName": "CHECK", "TaskId": task, "TaskStartTime": str(task_ms),
        },
    }  # fmt: skip


def test_an_updated_finding_keeps_the_created_at_of_the_ledger() -> None:
    first, later = audit("a", "t1", T1, T1 + 1000), audit("a", "t2", T2, T2 + 1000)

    decided = plan([later], {finding_key(first): entry_for(first)}, {})

    assert [doc["CreatedAt"] for doc in decided.send] == [format_iso(T1 + 1000)]


def test_the_same_content_later_is_not_sent_again() -> None:
    first = {"ProductArn": ARN, "Id": "d", "UpdatedAt": "2026-01-01T00:00:01.000Z", "Title": "x"}
    again = first | {"UpdatedAt": "2026-01-02T00:00:00.000Z", "CreatedAt": "2026-01-02T00:00:00.000Z"}

    decided = plan([again], {finding_key(first): entry_for(first)}, {})

    assert (decided.send, decided.unchanged) == ([], 1)


def test_a_late_finding_at_the_instant_its_task_archived_it_is_moved_just_past_the_archival() -> None:
    reported = audit("a", "t1", T1, T1 + 1000)
    completion = CheckCompletion(f"{ARN}|CHECK", "t2", T2)
    [archived] = archive_missing(completion, [entry_for(reported)], reported=set())
    late = audit("a", "t2", T2, T2)  # found at the task's very start

    decided = plan([late], {finding_key(archived): entry_for(archived)}, {completion.check: completion})

    assert archived["RecordState"] == ARCHIVED
    assert [(d["RecordState"], d["UpdatedAt"]) for d in decided.send] == [("ACTIVE", format_iso(T2 + 1))]


def test_archival_spares_what_is_being_sent_and_what_was_updated_after_the_task_began() -> None:
    spared, newer, archived = audit("a", "t1", T1, T1), audit("b", "t1", T1, T2 + 1), audit("c", "t1", T1, T1)
    completion = CheckCompletion(f"{ARN}|CHECK", "t2", T2)

    result = archive_missing(completion, [entry_for(d) for d in (spared, newer, archived)], {finding_key(spared)})

    assert [d["Id"] for d in result] == ["r/c"]


def test_a_refreshed_finding_is_updated_now_and_otherwise_the_same() -> None:
    doc = audit("a", "t1", T1, T1)

    again = refreshed(entry_for(doc), now_ms=T2)

    assert again == doc | {"UpdatedAt": format_iso(T2)}
    assert json.loads(entry_for(doc).finding) == doc
