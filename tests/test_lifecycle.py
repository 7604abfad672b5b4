"""The lifecycle's rules alone: plan, archival, refresh and reconciliation on documents, with no ledger behind them."""

from __future__ import annotations

import json
from typing import Any

from defender_hub.lifecycle import (
    ARCHIVED,
    CheckCompletion,
    LedgerEntry,
    PlannedFinding,
    archived_by,
    facts_of,
    from_the_future,
    plan,
    reconcile,
    refreshed,
)
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


def detect(updated_ms: int, state: str = "ACTIVE", title: str = "in alarm") -> dict[str, Any]:
    updated = format_iso(updated_ms)
    return {
        "ProductArn": ARN,
        "Id": "d",
        "CreatedAt": updated,
        "UpdatedAt": updated,
        "RecordState": state,
        "Title": title,
    }


def accepted(doc: dict[str, Any], read: LedgerEntry | None = None) -> LedgerEntry:
    """The ledger entry of `doc` once Security Hub accepted it as it is."""
    updated_ms = facts_of(doc).version_ms
    return PlannedFinding(doc, facts_of(doc), read, updated_ms).entry()


def planned(docs: list[dict[str, Any]], *entries: LedgerEntry, completions: tuple[CheckCompletion, ...] = ()) -> Any:
    return plan([(doc, facts_of(doc)) for doc in docs], {e.key: e for e in entries}, {c.check: c for c in completions})


def test_an_updated_finding_keeps_the_created_at_of_the_ledger() -> None:
    first, later = audit("a", "t1", T1, T1 + 1000), audit("a", "t2", T2, T2 + 1000)

    decided = planned([later], accepted(first))

    assert [o.doc["CreatedAt"] for o in decided.planned] == [format_iso(T1 + 1000)]


def test_the_same_content_later_is_not_sent_but_the_ledger_moves_on() -> None:
    first = detect(T1)

    [finding] = planned([detect(T2)], accepted(first)).planned

    assert not finding.to_send
    assert (finding.entry().version_ms, finding.entry().updated_ms) == (T2, T1)


def test_news_goes_out_past_every_updated_at_sent_before_it() -> None:
    refreshed_entry = refreshed(accepted(detect(T1)), now_ms=T2 + 10_000).entry()  # a refresh after the news

    [finding] = planned([detect(T2, "ARCHIVED", "cleared")], refreshed_entry).planned

    assert finding.doc["UpdatedAt"] == format_iso(T2 + 10_001)
    assert finding.entry().version_ms == T2


def test_a_later_tasks_report_outranks_an_earlier_tasks_even_when_found_earlier() -> None:
    earlier_task_found_late, later_task_found_early = audit("a", "t1", T1, T2 + 500), audit("a", "t2", T2, T2 + 100)

    decided = planned([earlier_task_found_late], accepted(later_task_found_early))

    assert (decided.planned, decided.stale) == ([], 1)


def test_a_late_finding_of_the_completing_task_goes_out_past_the_archival() -> None:
    reported = audit("a", "t1", T1, T1 + 1000)
    completion = CheckCompletion(f"{ARN}|CHECK", "t2", T2)
    archival = archived_by(completion, accepted(reported))
    assert archival is not None and archival.doc["RecordState"] == ARCHIVED
    late = audit("a", "t2", T2, T2)  # found at the task's very start

    [finding] = planned([late], archival.entry(), completions=(completion,)).planned

    assert finding.doc["RecordState"] == "ACTIVE"
    assert finding.doc["UpdatedAt"] > archival.doc["UpdatedAt"]  # or Security Hub would keep it archived


def test_archival_spares_what_was_reported_by_the_task_or_updated_after_it_began() -> None:
    completion = CheckCompletion(f"{ARN}|CHECK", "t2", T2)

    assert archived_by(completion, accepted(audit("a", "t2", T2, T2))) is None
    assert archived_by(completion, accepted(audit("b", "t1", T1, T2 + 1))) is None
    archival = archived_by(completion, accepted(audit("c", "t1", T1, T1)))
    assert archival is not None
    assert (archival.facts.version_ms, archival.doc["Compliance"]) == (T2, {"Status": "PASSED"})


def test_a_redriven_archival_goes_out_though_its_check_was_completed_since() -> None:
    entry = accepted(audit("a", "t1", T1, T1))  # Security Hub still shows it ACTIVE: its archival was dead-lettered
    completion = CheckCompletion(f"{ARN}|CHECK", "t2", T2, archived=True)
    archival = archived_by(completion, entry)
    assert archival is not None

    [finding] = planned([archival.doc], entry, completions=(completion,)).planned

    assert finding.to_send and finding.doc["RecordState"] == ARCHIVED
    assert finding.doc["UpdatedAt"] > format_iso(T1)  # past what Security Hub shows
    assert planned([archival.doc], finding.entry(), completions=(completion,)).planned == []  # and only once


def test_a_refreshed_finding_is_updated_now_and_otherwise_the_same() -> None:
    doc = audit("a", "t1", T1, T1)

    again = refreshed(accepted(doc), now_ms=T2)

    assert again.doc == doc | {"UpdatedAt": format_iso(T2)}
    assert again.entry().version_ms == T1
    assert json.loads(accepted(doc).finding) == doc


def test_reconcile_lets_newer_news_win_past_both_sends() -> None:
    original = accepted(detect(T1))
    sweep = refreshed(original, now_ms=T2 + 60_000)  # read before the clearing, sent after it
    cleared = planned([detect(T2, "ARCHIVED", "cleared")], original).planned[0]
    current = cleared.entry()

    again = reconcile(sweep, current)

    assert again is not None and again.to_send
    assert (again.doc["Title"], again.doc["UpdatedAt"]) == ("cleared", format_iso(T2 + 60_001))
    assert reconcile(cleared, sweep.entry()).doc["Title"] == "cleared"  # type: ignore[union-attr]


def test_reconcile_sends_nothing_when_security_hub_shows_the_winner() -> None:
    original = accepted(detect(T1))
    older = planned([detect(T1 + 5, "ARCHIVED", "cleared")], original).planned[0]
    newer = planned([detect(T2, "ACTIVE", "again")], original).planned[0]

    assert reconcile(older, newer.entry()) is None


def test_times_beyond_the_allowed_skew_are_from_the_future() -> None:
    assert from_the_future(facts_of(audit("a", "t", T2, T1)), latest_ms=T2) is None
    assert "in the future" in str(from_the_future(facts_of(audit("a", "t", T2 + 1, T1)), latest_ms=T2))


def test_reconcile_resends_when_both_sends_carry_the_same_updated_at() -> None:
    original = refreshed(accepted(detect(T1)), now_ms=T2).entry()  # both go out just past the refresh
    raised_again = planned([detect(T1 + 5, "ACTIVE", "again")], original).planned[0]
    cleared = planned([detect(T1 + 10, "ARCHIVED", "cleared")], original).planned[0]
    assert raised_again.updated_ms == cleared.updated_ms  # Security Hub kept whichever arrived first

    again = reconcile(raised_again, cleared.entry())

    assert again is not None and again.to_send
    assert (again.doc["Title"], again.updated_ms) == ("cleared", cleared.updated_ms + 1)


def test_reconcile_goes_past_a_claimed_send_that_may_have_been_made() -> None:
    original = accepted(detect(T1))
    claimed = original.claimed(sending_ms=T2 + 60_000)  # a sweep noted its send, then died
    cleared = planned([detect(T1 + 10, "ARCHIVED", "cleared")], original).planned[0]  # read before the claim

    again = reconcile(cleared, claimed)

    assert again is not None and again.to_send
    assert again.updated_ms == T2 + 60_001


def config(updated_ms: int, status: str) -> dict[str, Any]:
    updated = format_iso(updated_ms)
    return {
        "ProductArn": ARN, "Id": "arn:aws:config:us-east-1:123456789012:config-rule/r/finding/h",
        "ProductName": "Config", "CreatedAt": updated, "UpdatedAt": updated, "RecordState": "ACTIVE",
        "Compliance": {"Status": status},
    }  # fmt: skip


def health(updated_ms: int, status_code: str) -> dict[str, Any]:
    updated = format_iso(updated_ms)
    return {
        "ProductArn": ARN, "Id": "arn:aws:health:us-east-1:123456789012:event/X/h", "ProductName": "Health",
        "CreatedAt": updated, "UpdatedAt": updated, "RecordState": "ACTIVE",
        "ProductFields": {"StatusCode": status_code},
    }  # fmt: skip


def workflow_after(*docs: dict[str, Any]) -> list[str]:
    """The Workflow.Status each of `docs` is owed when they arrive one after another, each accepted in turn."""
    owed, entry = [], None
    for doc in docs:
        [finding] = planned([doc], *([entry] if entry is not None else [])).planned
        owed.append(finding.workflow)
        entry = finding.entry()
    return owed


def test_a_config_finding_created_passed_or_going_from_failed_to_passed_is_owed_resolved() -> None:
    assert workflow_after(config(T1, "PASSED")) == ["RESOLVED"]
    assert workflow_after(config(T1, "FAILED"), config(T2, "PASSED")) == ["", "RESOLVED"]


def test_other_config_transitions_owe_nothing_as_the_native_integration_sets_nothing() -> None:
    assert workflow_after(config(T1, "FAILED")) == [""]
    assert workflow_after(config(T1, "WARNING"), config(T2, "PASSED")) == ["", ""]
    assert workflow_after(config(T1, "NOT_AVAILABLE"), config(T2, "PASSED")) == ["", ""]
    assert workflow_after(config(T1, "PASSED"), config(T2, "FAILED")) == ["RESOLVED", ""]


def test_a_resolved_not_yet_set_stays_owed_through_newer_passed_news() -> None:
    first = PlannedFinding(config(T1, "PASSED"), facts_of(config(T1, "PASSED")), None, T1, workflow="RESOLVED").entry()
    later = {**config(T2, "PASSED"), "Title": "annotation changed"}

    [finding] = planned([later], first).planned

    assert finding.workflow == "RESOLVED"


def test_news_security_hub_already_shows_keeps_what_the_ledger_owes() -> None:
    first = PlannedFinding(config(T1, "PASSED"), facts_of(config(T1, "PASSED")), None, T1, workflow="RESOLVED").entry()

    [finding] = planned([config(T2, "PASSED")], first).planned

    assert (finding.to_send, finding.entry().workflow) == (False, "RESOLVED")


def test_device_defender_and_health_findings_owe_no_workflow() -> None:
    assert workflow_after(detect(T1), detect(T2, title="cleared")) == ["", ""]
    assert workflow_after({**health(T1, "open"), "Compliance": {"Status": "PASSED"}}) == [""]


def test_each_source_says_which_findings_are_kept_alive() -> None:
    kept = {
        "config FAILED": facts_of(config(T1, "FAILED")).refresh,
        "config WARNING": facts_of(config(T1, "WARNING")).refresh,
        "config PASSED": facts_of(config(T1, "PASSED")).refresh,
        "config NOT_AVAILABLE": facts_of(config(T1, "NOT_AVAILABLE")).refresh,
        "health open": facts_of(health(T1, "open")).refresh,
        "health upcoming": facts_of(health(T1, "upcoming")).refresh,
        "health closed": facts_of(health(T1, "closed")).refresh,
        "detect": facts_of(detect(T1)).refresh,
        "audit": facts_of(audit("a", "t1", T1, T1)).refresh,
    }

    assert [name for name, refresh in kept.items() if refresh] == [
        "config FAILED", "config WARNING", "health open", "health upcoming", "detect", "audit",
    ]  # fmt: skip
    assert accepted(health(T1, "closed")).refresh is False


def test_a_refresh_carries_what_the_ledger_owes() -> None:
    entry = PlannedFinding(config(T1, "FAILED"), facts_of(config(T1, "FAILED")), None, T1, workflow="RESOLVED").entry()

    again = refreshed(entry, T2)

    assert (again.workflow, again.facts.refresh, again.updated_ms) == ("RESOLVED", True, T2)


def test_a_reconciled_config_finding_owes_the_transition_from_what_the_ledger_holds_now() -> None:
    read = accepted(config(T1, "FAILED"))
    [mine] = planned([config(T2 + 1000, "PASSED")], read).planned
    current = PlannedFinding(config(T2, "FAILED"), facts_of(config(T2, "FAILED")), read, T2).entry()  # another writer's

    again = reconcile(mine, current)

    assert again is not None
    assert (again.doc["Compliance"], again.workflow) == ({"Status": "PASSED"}, "RESOLVED")


def test_a_list_or_an_object_where_a_name_belongs_makes_no_facts_of_it_and_no_crash() -> None:
    # Imported findings, before the screen refuses them: a run status that is no name completes no check, and a
    # Health status code that is no name keeps no finding alive.
    summary = {"ReportType": "CheckSummary", "CheckName": "CHECK", "CheckRunStatus": ["COMPLETED_COMPLIANT"]}
    health = {"StatusCode": {"open": True}}

    assert facts_of(detect(T1) | {"ProductFields": summary}).completion is None
    assert not facts_of(detect(T1) | {"ProductFields": health, "ProductName": "Health"}).refresh
