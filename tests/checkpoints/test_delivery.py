"""The lifecycle over HTTP: the ledgered sink, each ledger back end, the strict local Security Hub."""

from __future__ import annotations

import json
import random
import re
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import msgspec
import pytest
from prometheus_client import REGISTRY

from defender_hub import lifecycle
from defender_hub.checkpoints import DynamoDbLedger, Ledger, SqliteLedger, delivery
from defender_hub.checkpoints.delivery import LedgeredSink
from defender_hub.errors import LedgerError, SinkStopped
from defender_hub.lifecycle import finding_key
from defender_hub.local.securityhub import LocalSecurityHub
from defender_hub.sink import DeliveryReport, MappedFinding, RecordOrigin
from defender_hub.sink.lane_delivery import MAX_FINDING_FAILURES
from defender_hub.synthetic import generate_events
from defender_hub.timestamps import format_iso
from tests.helpers import (
    CHECK,
    DAY_MS,
    TESTS_NOW_MS,
    Pipeline,
    another_connection,
    audit_finding,
    audit_task,
    cli,
    config_change,
    health_event,
    holds_latest,
    latest_versions,
    local_aws_env,
    violation,
    wait_for,
)

T0 = 1_790_000_000_000  # 2026-09-21
DAY2 = T0 + DAY_MS
FINDING_ID = "123456789012/DEVICE_CERTIFICATE/{}/DEVICE_CERTIFICATE_KEY_QUALITY_CHECK/WEAK_KEY"
OTHER_CHECK = "DEVICE_CERTIFICATE_EXPIRING_CHECK"


@pytest.mark.slow
def test_replaying_a_stream_twice_imports_each_final_state_and_the_second_pass_sends_nothing(
    pipeline: Pipeline,
) -> None:
    events = list(generate_events(120, seed=21))
    batches = [events[start : start + 37] for start in range(0, len(events), 37)]
    for batch in batches:
        pipeline.deliver(*batch)
    assert holds_latest(pipeline.hub, latest_versions(events))
    final, sent = pipeline.stored(), pipeline.sent()

    for batch in batches:
        report = pipeline.deliver(*batch)
        assert report.accepted == 0

    assert pipeline.sent() == sent
    assert pipeline.stored() == final


@pytest.mark.slow
def test_a_shuffled_replay_never_moves_a_finding_backwards(pipeline: Pipeline) -> None:
    events = list(generate_events(100, seed=22))
    for start in range(0, len(events), 50):
        pipeline.deliver(*events[start : start + 50])
    before = {i: f["UpdatedAt"] for i, f in pipeline.stored().items()}
    shuffled = events[:]
    random.Random(22).shuffle(shuffled)

    for start in range(0, len(shuffled), 20):
        pipeline.deliver(*shuffled[start : start + 20])

    assert {i: f["UpdatedAt"] for i, f in pipeline.stored().items()} == before


def test_the_ledger_s_operations_are_timed_under_snake_case_names(pipeline: Pipeline) -> None:
    pipeline.deliver(audit_finding("task-1", T0, "A"), audit_task("task-1", T0, 1))

    operations = {
        sample.labels["operation"]
        for metric in REGISTRY.collect()
        if metric.name == "defender_hub_ledger_seconds"
        for sample in metric.samples
    }

    assert {"reading", "recording_accepted_findings"} <= operations
    assert all(re.fullmatch(r"[a-z]+(_[a-z]+)*", operation) for operation in operations), operations


def test_a_later_task_archives_what_it_no_longer_reports_and_keeps_created_at(pipeline: Pipeline) -> None:
    day2 = T0 + DAY_MS
    pipeline.deliver(*(audit_finding("task-1", T0, cert) for cert in "ABC"), audit_task("task-1", T0, 3))
    created = pipeline.stored()[FINDING_ID.format("A")]["CreatedAt"]

    report = pipeline.deliver(audit_finding("task-2", day2, "A"), audit_task("task-2", day2, 1))

    stored = pipeline.stored()
    for cert in "BC":
        finding = stored[FINDING_ID.format(cert)]
        assert (finding["RecordState"], finding["Compliance"]["Status"]) == ("ARCHIVED", "PASSED")
        assert finding["UpdatedAt"] == "2026-09-22T14:13:20.000Z"  # task 2's start
    a = stored[FINDING_ID.format("A")]
    assert (a["RecordState"], a["ProductFields"]["TaskId"], a["CreatedAt"]) == ("ACTIVE", "task-2", created)
    assert a["UpdatedAt"] > created
    assert report.archived == 2


def test_archival_works_across_batches_and_ignores_other_checks(pipeline: Pipeline) -> None:
    day2 = T0 + DAY_MS
    other = "DEVICE_CERTIFICATE_EXPIRING_CHECK"
    pipeline.deliver(audit_finding("task-1", T0, "A"), audit_finding("task-1", T0, "B"))
    pipeline.deliver(audit_finding("task-1", T0, "B", check=other), audit_task("task-1", T0, 2))
    pipeline.deliver(audit_finding("task-2", day2, "B"))  # its notification comes in a later batch

    pipeline.deliver(audit_task("task-2", day2, 1))

    states = {i: f["RecordState"] for i, f in pipeline.stored().items() if "/DEVICE_CERTIFICATE/" in i}
    assert states == {
        FINDING_ID.format("A"): "ARCHIVED",
        FINDING_ID.format("B"): "ACTIVE",
        f"123456789012/DEVICE_CERTIFICATE/B/{other}/WEAK_KEY": "ACTIVE",  # task 2 did not run that check
    }


def test_the_archivals_of_several_checks_completed_in_one_delivery_share_one_request(pipeline: Pipeline) -> None:
    checks = (CHECK, OTHER_CHECK)
    pipeline.deliver(
        *(audit_finding("task-1", T0, cert, check=check) for check in checks for cert in "AB"),
        *(audit_task("task-1", T0, 2, check=check) for check in checks),
    )
    before = len(pipeline.hub.requests("BatchImportFindings"))

    report = pipeline.deliver(*(audit_task("task-2", DAY2, 0, check=check) for check in checks))

    # The task's two check summaries, then every archival the task owes.
    assert [r.findings for r in pipeline.hub.requests("BatchImportFindings")[before:]] == [2, 4]
    assert report.archived == 4
    assert {f["RecordState"] for i, f in pipeline.stored().items() if "/DEVICE_CERTIFICATE/" in i} == {"ARCHIVED"}
    assert pipeline.ledger.owed_archivals() == []


SHARED_CHECK = "DEVICE_CERTIFICATE_SHARED_CHECK"
THREE_CHECKS = (CHECK, OTHER_CHECK, SHARED_CHECK)
"""Checks that task 1 found certificates A and B failing and task 2 no longer does: six archivals, which go in pages of
three in the order of the checks' notifications, so the second check's are split between the two pages."""


def first_task_of_three_checks(pipeline: Pipeline) -> None:
    pipeline.deliver(
        *(audit_finding("task-1", T0, cert, check=check) for check in THREE_CHECKS for cert in "AB"),
        *(audit_task("task-1", T0, 2, check=check) for check in THREE_CHECKS),
    )


def test_archivals_go_in_whole_pages_across_checks(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(delivery, "ARCHIVAL_PAGE", 3)
    first_task_of_three_checks(pipeline)
    before = len(pipeline.hub.requests("BatchImportFindings"))

    report = pipeline.deliver(*(audit_task("task-2", DAY2, 0, check=check) for check in THREE_CHECKS))

    # The task's three check summaries, then two whole pages of archivals.
    assert [r.findings for r in pipeline.hub.requests("BatchImportFindings")[before:]] == [3, 3, 3]
    assert report.archived == 6
    assert {f["RecordState"] for i, f in pipeline.stored().items() if "/DEVICE_CERTIFICATE/" in i} == {"ARCHIVED"}
    assert pipeline.ledger.owed_archivals() == []


def test_a_parked_archival_leaves_owed_each_check_with_archivals_in_its_page_and_no_other(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(delivery, "ARCHIVAL_PAGE", 3)
    first_task_of_three_checks(pipeline)
    in_second_page = f"123456789012/DEVICE_CERTIFICATE/A/{SHARED_CHECK}/WEAK_KEY"
    pipeline.hub.fail([in_second_page], "InternalException", times=MAX_FINDING_FAILURES)

    report = pipeline.deliver(*(audit_task("task-2", DAY2, 0, check=check) for check in THREE_CHECKS))

    assert (report.archived, report.parked) == (5, 1)
    # The second check's archivals were all accepted, but one of them shared the page: it is asked again.
    assert sorted(c.check.rsplit("|", 1)[-1] for c in pipeline.ledger.owed_archivals()) == sorted(THREE_CHECKS[1:])
    pipeline.sink.finish_archivals(DeliveryReport())  # the next sweep
    assert {f["RecordState"] for i, f in pipeline.stored().items() if "/DEVICE_CERTIFICATE/" in i} == {"ARCHIVED"}
    assert pipeline.ledger.owed_archivals() == []


def test_a_failed_or_canceled_check_archives_nothing(pipeline: Pipeline) -> None:
    pipeline.deliver(audit_finding("task-1", T0, "A"), audit_task("task-1", T0, 1))

    pipeline.deliver(audit_task("task-2", T0 + DAY_MS, 0, status="CANCELED"))

    assert pipeline.stored()[FINDING_ID.format("A")]["RecordState"] == "ACTIVE"


def test_a_late_finding_of_the_task_just_completed_is_not_archived(pipeline: Pipeline) -> None:
    day2 = T0 + DAY_MS
    pipeline.deliver(audit_finding("task-1", T0, "A"), audit_task("task-1", T0, 1))
    pipeline.deliver(audit_task("task-2", day2, 1))  # archives A: task 2's finding for A has not come yet
    assert pipeline.stored()[FINDING_ID.format("A")]["RecordState"] == "ARCHIVED"

    pipeline.deliver(audit_finding("task-2", day2, "A"))

    a = pipeline.stored()[FINDING_ID.format("A")]
    assert (a["RecordState"], a["ProductFields"]["TaskId"]) == ("ACTIVE", "task-2")


def test_an_archival_security_hub_keeps_failing_is_left_owed_not_done_and_the_next_sweep_makes_it(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    day2, b = T0 + DAY_MS, FINDING_ID.format("B")
    pipeline.deliver(*(audit_finding("task-1", T0, cert) for cert in "AB"), audit_task("task-1", T0, 2))
    pipeline.hub.fail([b], "InternalException", times=MAX_FINDING_FAILURES)  # a brownout, for B alone

    report = pipeline.deliver(audit_finding("task-2", day2, "A"), audit_task("task-2", day2, 1))

    assert (report.archived, report.dead_lettered) == (0, 0)
    assert pipeline.stored()[b]["RecordState"] == "ACTIVE"
    assert [c.task_id for c in pipeline.ledger.owed_archivals()] == ["task-2"]  # not done: Security Hub has not it
    assert not (tmp_path / "dead-letters.jsonl").exists()  # owed work, given again by the ledger: no second copy

    pipeline.sink.finish_archivals(DeliveryReport())  # the next sweep

    assert pipeline.stored()[b]["RecordState"] == "ARCHIVED"
    assert pipeline.ledger.owed_archivals() == []


def test_an_archival_security_hub_refuses_is_dead_lettered_once_and_its_redrive_goes_through(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    day2, b = T0 + DAY_MS, FINDING_ID.format("B")
    pipeline.deliver(*(audit_finding("task-1", T0, cert) for cert in "AB"), audit_task("task-1", T0, 2))
    pipeline.hub.fail([b], "InvalidInput", times=1)

    report = pipeline.deliver(audit_finding("task-2", day2, "A"), audit_task("task-2", day2, 1))
    pipeline.sink.finish_archivals(DeliveryReport())  # a sweep does not ask again what is refused for good

    assert (report.archived, report.dead_lettered) == (0, 1)
    assert pipeline.ledger.owed_archivals() == []
    [letter] = [json.loads(line) for line in (tmp_path / "dead-letters.jsonl").read_text().splitlines()]
    assert pipeline.stored()[b]["RecordState"] == "ACTIVE"

    pipeline.sink.deliver([MappedFinding(letter["finding"], RecordOrigin("shard-1", "redriven"))])  # as `redrive` does

    assert pipeline.stored()[b]["RecordState"] == "ARCHIVED"


def test_a_replay_of_an_older_report_in_the_batch_of_a_completion_is_archived_all_the_same(
    pipeline: Pipeline,
) -> None:
    pipeline.deliver(audit_finding("task-1", T0, "A"), audit_task("task-1", T0, 1))

    pipeline.deliver(audit_task("task-2", T0 + DAY_MS, 0), audit_finding("task-1", T0, "A"))  # a replay beside it

    assert pipeline.stored()[FINDING_ID.format("A")]["RecordState"] == "ARCHIVED"
    assert pipeline.ledger.owed_archivals() == []


def test_a_completion_followed_in_its_batch_by_a_canceled_run_archives_all_the_same(pipeline: Pipeline) -> None:
    pipeline.deliver(audit_finding("task-1", T0, "A"), audit_task("task-1", T0, 1))

    pipeline.deliver(audit_task("task-2", T0 + DAY_MS, 0), audit_task("task-3", T0 + 2 * DAY_MS, 0, status="CANCELED"))

    assert pipeline.stored()[FINDING_ID.format("A")]["RecordState"] == "ARCHIVED"


def test_a_late_finding_of_an_older_task_is_archived_not_revived(pipeline: Pipeline) -> None:
    day2 = T0 + DAY_MS
    pipeline.deliver(audit_finding("task-1", T0, "A"), audit_task("task-1", T0, 1))
    pipeline.deliver(audit_finding("task-2", day2, "A"), audit_task("task-2", day2, 1))

    pipeline.deliver(audit_finding("task-1", T0, "B"))  # never seen before, from a task already superseded
    pipeline.deliver(audit_finding("task-1", T0, "A"))  # an old version of a current finding

    stored = pipeline.stored()
    b = stored[FINDING_ID.format("B")]
    assert (b["RecordState"], b["Compliance"]["Status"]) == ("ARCHIVED", "PASSED")
    a = stored[FINDING_ID.format("A")]
    assert (a["RecordState"], a["ProductFields"]["TaskId"]) == ("ACTIVE", "task-2")


def test_a_cleared_alarm_is_archived_and_the_in_alarm_replayed_afterwards_is_dropped(pipeline: Pipeline) -> None:
    raised, cleared = violation("in-alarm", T0, T0), violation("alarm-cleared", T0 + 600_000, T0)
    pipeline.deliver(raised)
    pipeline.deliver(cleared)
    assert pipeline.stored()["violation-1"]["RecordState"] == "ARCHIVED"
    sent = pipeline.sent()

    report = pipeline.deliver(raised)

    assert (report.accepted, report.unchanged) == (0, 1)
    assert pipeline.sent() == sent
    assert pipeline.stored()["violation-1"]["RecordState"] == "ARCHIVED"


def test_versions_coalesced_into_one_send_keep_the_earliest_created_at(pipeline: Pipeline) -> None:
    pipeline.deliver(violation("in-alarm", T0, T0), violation("alarm-cleared", T0 + 600_000, T0))

    finding = pipeline.stored()["violation-1"]

    assert (finding["CreatedAt"], finding["RecordState"]) == ("2026-09-21T14:13:20.000Z", "ARCHIVED")


def test_refresh_resends_only_active_findings_near_expiry(pipeline: Pipeline) -> None:
    now = T0 + 85 * DAY_MS
    pipeline.deliver(violation("in-alarm", T0, T0, "old"))  # 85 days without an update
    pipeline.deliver(violation("in-alarm", now - 10 * DAY_MS, now - 10 * DAY_MS, "recent"))
    pipeline.deliver(violation("in-alarm", T0, T0, "cleared"), violation("alarm-cleared", T0 + 1, T0, "cleared"))
    before = pipeline.stored()

    report = pipeline.sink.refresh(now, after_days=80)

    after = pipeline.stored()
    assert (report.due, report.accepted) == (1, 1)
    assert after["old"]["UpdatedAt"] == "2026-12-15T14:13:20.000Z"
    assert after["old"]["CreatedAt"] == before["old"]["CreatedAt"]
    assert after["recent"] == before["recent"]
    assert after["cleared"] == before["cleared"]
    assert pipeline.sink.refresh(now, after_days=80).due == 0  # the ledger knows it was refreshed


@pytest.mark.slow
def test_two_sweeps_at_once_send_each_finding_at_most_once(
    hub: LocalSecurityHub, ledger: Ledger, tmp_path: Path
) -> None:
    loader = Pipeline(hub, ledger, tmp_path / "dl.jsonl")
    for start in range(0, 90, 30):
        loader.deliver(*(violation("in-alarm", T0, T0, f"v-{n}") for n in range(start, start + 30)))
    sent = loader.sent()
    now = T0 + 85 * DAY_MS
    reports = []

    def sweep(number: int) -> None:  # each sweep its own connection, as in its own process
        sweeper = Pipeline(hub, another_connection(ledger), tmp_path / f"dl-{number}.jsonl")
        reports.append(sweeper.sink.refresh(now, 80))

    sweeps = [threading.Thread(target=sweep, args=(number,)) for number in range(2)]
    for thread in sweeps:
        thread.start()
    for thread in sweeps:
        thread.join()

    assert sum(report.accepted for report in reports) == 90
    assert loader.sent() - sent == 90
    assert all(f["UpdatedAt"] == "2026-12-15T14:13:20.000Z" for f in hub.findings())


def test_a_finding_security_hub_refuses_is_not_recorded(pipeline: Pipeline, tmp_path: Path) -> None:
    pipeline.hub.fail(["violation-1"], "InvalidInput", times=1)
    pipeline.deliver(violation("in-alarm", T0, T0))
    letters = [json.loads(line) for line in (tmp_path / "dead-letters.jsonl").read_text().splitlines()]
    assert len(letters) == 1

    report = pipeline.deliver(violation("in-alarm", T0, T0))

    assert report.accepted == 1  # the ledger did not take the refused finding for delivered


def test_the_refresh_command_sweeps_once_and_says_what_it_did(hub: LocalSecurityHub, tmp_path: Path) -> None:
    ledger_file = tmp_path / "ledger.sqlite3"
    pipeline = Pipeline(hub, SqliteLedger(ledger_file), tmp_path / "dl.jsonl")
    long_ago = int(time.time() * 1000) - 85 * DAY_MS
    recently = int(time.time() * 1000) - DAY_MS
    pipeline.deliver(violation("in-alarm", long_ago, long_ago, "old"), violation("in-alarm", recently, T0, "new"))
    env = local_aws_env(AWS_ENDPOINT_URL_SECURITYHUB=hub.endpoint_url)

    done = cli("refresh", "--ledger", f"sqlite:///{ledger_file}", "--dead-letter", str(tmp_path / "dl.jsonl"), env=env)

    assert done.returncode == 0, done.stderr
    assert b"due 1, held by another sweep 0, accepted 1" in done.stderr
    assert pipeline.stored()["old"]["UpdatedAt"] > pipeline.stored()["old"]["CreatedAt"]
    bad = cli("refresh", "--after-days", "95", env=env)
    assert bad.returncode == 2
    assert b"--after-days must be between 0 and 90" in bad.stderr


def test_a_late_finding_of_an_older_task_in_the_batch_of_the_newer_notification_is_archived(
    pipeline: Pipeline,
) -> None:
    day2 = T0 + DAY_MS
    pipeline.deliver(audit_finding("task-1", T0, "A"), audit_task("task-1", T0, 1))

    pipeline.deliver(
        audit_finding("task-2", day2, "A"), audit_task("task-2", day2, 1), audit_finding("task-1", T0, "B")
    )

    stored = pipeline.stored()
    assert stored[FINDING_ID.format("B")]["RecordState"] == "ARCHIVED"
    assert stored[FINDING_ID.format("A")]["RecordState"] == "ACTIVE"


def test_a_ledger_that_fails_stops_the_delivery_with_a_ledger_error(
    hub: LocalSecurityHub, local_dynamodb: Any, tmp_path: Path
) -> None:
    ledger = DynamoDbLedger(f"gone-{uuid.uuid4().hex[:8]}", local_dynamodb)
    pipeline = Pipeline(hub, ledger, tmp_path / "dl.jsonl")
    local_dynamodb.delete_table(TableName=ledger.table)  # the ledger's storage fails under the running job

    with pytest.raises(LedgerError, match="the ledger failed while reading"):
        pipeline.deliver(violation("in-alarm", T0, T0))

    assert pipeline.sent() == 0  # planned against nothing, nothing was sent: the records come again


def workflow(pipeline: Pipeline, resource: str) -> tuple[str, str]:
    """The stored Config finding of S3 bucket `resource`: its compliance and its Workflow.Status."""
    [finding] = [f for f in pipeline.hub.findings() if f["Resources"][0]["Id"] == f"arn:aws:s3:::{resource}"]
    return finding["Compliance"]["Status"], finding["Workflow"]["Status"]


def test_config_findings_created_passed_or_going_from_failed_to_passed_are_resolved(pipeline: Pipeline) -> None:
    report = pipeline.deliver(
        config_change("born-passing", "COMPLIANT", T0), config_change("failing", "NON_COMPLIANT", T0)
    )
    assert report.workflow_updated == 1
    assert workflow(pipeline, "born-passing") == ("PASSED", "RESOLVED")
    assert workflow(pipeline, "failing") == ("FAILED", "NEW")

    pipeline.deliver(config_change("failing", "COMPLIANT", T0 + DAY_MS, before="NON_COMPLIANT"))
    assert workflow(pipeline, "failing") == ("PASSED", "RESOLVED")

    pipeline.deliver(config_change("failing", "NON_COMPLIANT", T0 + 2 * DAY_MS, before="COMPLIANT"))
    assert workflow(pipeline, "failing") == ("FAILED", "NEW")  # Security Hub's own reset, on the import
    assert pipeline.ledger_owed() == []


def test_a_replay_of_config_news_sends_neither_imports_nor_workflow_updates(pipeline: Pipeline) -> None:
    events = [
        config_change("a", "NON_COMPLIANT", T0),
        config_change("a", "COMPLIANT", T0 + DAY_MS, before="NON_COMPLIANT"),
        config_change("b", "COMPLIANT", T0),
    ]
    pipeline.deliver(*events)
    imports, updates = pipeline.sent(), len(pipeline.hub.requests("BatchUpdateFindings"))

    pipeline.deliver(*events)

    assert (pipeline.sent(), len(pipeline.hub.requests("BatchUpdateFindings"))) == (imports, updates)
    assert (workflow(pipeline, "a"), workflow(pipeline, "b")) == (("PASSED", "RESOLVED"), ("PASSED", "RESOLVED"))


def test_a_stop_between_the_import_and_its_workflow_update_loses_neither(pipeline: Pipeline) -> None:
    event = config_change("stopped", "COMPLIANT", T0)
    [finding_id] = pipeline.finding_ids(event)
    pipeline.hub.fail_updates([finding_id], times=None)
    stopper = threading.Thread(  # stops the delivery once its import is accepted and its update is being tried
        target=lambda: (
            wait_for("an update", lambda: pipeline.hub.requests("BatchUpdateFindings"), 30, every=0.05),
            pipeline.stop.set(),
        )
    )
    stopper.start()
    with pytest.raises(SinkStopped):
        pipeline.deliver(event)
    stopper.join()
    assert workflow(pipeline, "stopped") == ("PASSED", "NEW")  # imported, its update still owed
    assert [entry.workflow for entry in pipeline.ledger_owed()] == ["RESOLVED"]

    pipeline.stop.clear()
    pipeline.hub.fail_updates([finding_id], times=0)
    report = pipeline.deliver(event)  # the records come again: no checkpoint was taken

    assert (report.accepted, report.workflow_updated) == (0, 1)
    assert workflow(pipeline, "stopped") == ("PASSED", "RESOLVED")
    assert pipeline.ledger_owed() == []


def test_an_update_security_hub_keeps_failing_is_left_owed_and_set_by_the_next_sweep(pipeline: Pipeline) -> None:
    event = config_change("stubborn", "COMPLIANT", TESTS_NOW_MS - DAY_MS)
    [finding_id] = pipeline.finding_ids(event)
    pipeline.hub.fail_updates([finding_id], times=None)

    report = pipeline.deliver(event)  # the delivery ends, so the shard goes on; the update stays owed

    assert (report.accepted, report.workflow_updated, report.workflow_owed) == (1, 0, 1)
    assert workflow(pipeline, "stubborn") == ("PASSED", "NEW")
    pipeline.hub.fail_updates([finding_id], times=0)

    swept = pipeline.sink.refresh(TESTS_NOW_MS, after_days=80)

    assert swept.workflow_updated == 1
    assert workflow(pipeline, "stubborn") == ("PASSED", "RESOLVED")
    assert pipeline.ledger_owed() == []


def test_an_update_owed_for_a_finding_security_hub_has_deleted_by_now_is_given_up(pipeline: Pipeline) -> None:
    event = config_change("long-parked", "COMPLIANT", TESTS_NOW_MS - 91 * DAY_MS)
    pipeline.hub.fail_updates(pipeline.finding_ids(event), times=None)
    pipeline.deliver(event)
    assert len(pipeline.ledger_owed()) == 1
    requests = len(pipeline.hub.requests("BatchUpdateFindings"))

    swept = pipeline.sink.refresh(TESTS_NOW_MS, after_days=80)

    assert (swept.workflow_updated, pipeline.ledger_owed()) == (0, [])
    assert len(pipeline.hub.requests("BatchUpdateFindings")) == requests  # not asked again


class _ReadEarlier:
    """A ledger whose owed workflows are as read before `news` arrived: a sweep that read, then lost the CPU."""

    def __init__(self, ledger: Ledger, owed: list[Any]) -> None:
        self._ledger, self._owed = ledger, owed

    def owed_workflows(self, limit: int) -> list[Any]:
        owed, self._owed = self._owed, []
        return owed

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ledger, name)


def test_a_sweep_s_owed_resolved_read_before_newer_news_does_not_land_on_it(pipeline: Pipeline) -> None:
    passed = config_change("flapping", "COMPLIANT", T0)
    [finding_id] = pipeline.finding_ids(passed)
    pipeline.hub.fail_updates([finding_id], times=None)
    pipeline.deliver(passed)  # its RESOLVED is left owed
    read_then = pipeline.ledger_owed()
    pipeline.hub.fail_updates([finding_id], times=0)
    pipeline.deliver(config_change("flapping", "NON_COMPLIANT", T0 + DAY_MS, before="COMPLIANT"))

    late = LedgeredSink(pipeline.delivery.hub, _ReadEarlier(pipeline.ledger, read_then))
    report = DeliveryReport()
    late.finish_workflows(report)

    assert workflow(pipeline, "flapping") == ("FAILED", "NEW")
    assert (report.workflow_updated, report.workflow_owed) == (0, 0)


def test_health_and_config_findings_are_refreshed_only_while_their_source_keeps_them_alive(pipeline: Pipeline) -> None:
    pipeline.deliver(
        config_change("failing", "NON_COMPLIANT", T0),
        config_change("passing", "COMPLIANT", T0),
        health_event("AWS_GUARDDUTY_SECURITY_NOTIFICATION", "open", T0),
        health_event("AWS_IAM_SECURITY_NOTIFICATION", "closed", T0, service="IAM"),
    )

    swept = pipeline.sink.refresh(T0 + 85 * DAY_MS, after_days=80)

    refreshed = {
        f["GeneratorId"].rsplit("/", 1)[-1] for f in pipeline.hub.findings() if f["UpdatedAt"] > format_iso(T0 + DAY_MS)
    }
    assert refreshed == {"config-rule-s3-buc", "AWS_GUARDDUTY_SECURITY_NOTIFICATION"}
    assert swept.due == swept.accepted == 2


class CountedWrites:
    """A ledger whose writes are counted, by the entries each wrote."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger, self.writes = ledger, list[int]()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ledger, name)

    def write(self, entries: Any) -> set[str]:
        self.writes.append(len(entries))
        return self._ledger.write(entries)


def test_what_a_deliverys_requests_had_accepted_is_recorded_in_one_write(
    hub: LocalSecurityHub, ledger: Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    counted = CountedWrites(ledger)
    pipeline = Pipeline(hub, counted, tmp_path / "dead-letters.jsonl")  # type: ignore[arg-type]

    def encoded_again(doc: Any) -> bytes:
        raise AssertionError("a finding sent was encoded again for the ledger")

    monkeypatch.setattr(lifecycle, "encode_document", encoded_again)
    report = pipeline.deliver(*(violation("in-alarm", T0, T0, f"violation-{n}") for n in range(250)))

    assert report.accepted == 250
    assert [r.findings for r in hub.requests("BatchImportFindings")] == [100, 100, 50]
    assert counted.writes == [250]  # one transaction for the three requests, not one each
    entries = ledger.entries([finding_key(finding) for finding in hub.findings()])
    assert len(entries) == 250
    # Each as the compact JSON its body was made from (not the body, spaced as botocore writes it).
    for key, kept in entries.items():
        doc = msgspec.json.decode(kept.finding)
        assert kept.finding == msgspec.json.encode(doc)
        assert finding_key(doc) == key


def test_what_was_accepted_before_a_stop_is_recorded_and_the_stop_is_what_is_raised(
    hub: LocalSecurityHub, ledger: Ledger, tmp_path: Path
) -> None:
    pipeline = Pipeline(hub, ledger, tmp_path / "dead-letters.jsonl")
    hub.after_imports(1, pipeline.stop.set)  # as a SIGTERM would, once the first request was accepted

    with pytest.raises(SinkStopped):
        pipeline.deliver(*(violation("in-alarm", T0, T0, f"violation-{n}") for n in range(250)))

    stored = [finding_key(finding) for finding in hub.findings()]
    assert len(stored) == 100
    assert set(ledger.entries(stored)) == set(stored)  # recorded: a replay need not send them again


class FailingWrites(CountedWrites):
    """A ledger whose writes fail, as a full disk would make them."""

    def write(self, entries: Any) -> set[str]:
        raise OSError("No space left on device")


def test_a_ledger_failing_after_a_stop_leaves_the_stop_to_be_raised(
    hub: LocalSecurityHub, ledger: Ledger, tmp_path: Path
) -> None:
    pipeline = Pipeline(hub, FailingWrites(ledger), tmp_path / "dead-letters.jsonl")  # type: ignore[arg-type]
    hub.after_imports(1, pipeline.stop.set)

    with pytest.raises(SinkStopped):  # not LedgerError: the shard exits as on a stop, no checkpoint either way
        pipeline.deliver(*(violation("in-alarm", T0, T0, f"violation-{n}") for n in range(250)))
