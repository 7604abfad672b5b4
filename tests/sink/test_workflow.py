"""Workflow updates against the strict local Security Hub over HTTP: batched, in their own quota, nothing lost."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from defender_hub.codecs.asff_rules import UPDATE_BURST, UPDATE_RATE
from defender_hub.errors import SinkStopped
from defender_hub.local.securityhub import LocalSecurityHub
from defender_hub.sink import JsonlDeadLetters, Lane, SecurityHubSink, WorkflowUpdate
from defender_hub.sink.quota import BURST_SLACK, Quota
from defender_hub.sink.workflow import MAX_UPDATE_ATTEMPTS
from tests.helpers import ACCOUNT, FAST, hub_clients, many

LANE = Lane("aws", ACCOUNT, "us-east-1")


def resolve(findings: list[dict[str, Any]]) -> list[WorkflowUpdate]:
    return [WorkflowUpdate(f"key-{f['Id']}", f["Id"], f["ProductArn"], "RESOLVED", LANE) for f in findings]


def workflows(hub: LocalSecurityHub) -> dict[str, str]:
    return {f["Id"]: f["Workflow"]["Status"] for f in hub.findings()}


@pytest.fixture
def imported(hub: LocalSecurityHub, sink: SecurityHubSink, template: dict[str, Any]) -> list[dict[str, Any]]:
    """250 findings Security Hub accepted, each with Workflow NEW."""
    sink.deliver(many(template, 250))
    return hub.findings()


def test_250_updates_go_in_three_requests_and_each_finding_is_resolved(
    hub: LocalSecurityHub, sink: SecurityHubSink, imported: list[dict[str, Any]]
) -> None:
    report = sink.update_workflows(resolve(imported))

    assert (len(report.processed), report.left_owed, report.requests) == (250, 0, 3)
    assert [r.findings for r in hub.requests("BatchUpdateFindings")] == [100, 100, 50]
    assert set(workflows(hub).values()) == {"RESOLVED"}
    assert {f["UpdatedAt"] for f in hub.findings()} == {f["UpdatedAt"] for f in imported}  # the provider's time


def test_a_finding_security_hub_leaves_unprocessed_is_tried_again_then_left_owed(
    hub: LocalSecurityHub, sink: SecurityHubSink, imported: list[dict[str, Any]]
) -> None:
    once, always = imported[0]["Id"], imported[1]["Id"]
    hub.fail_updates([once], times=1)
    hub.fail_updates([always], times=None)

    report = sink.update_workflows(resolve(imported[:3]))

    assert sorted(report.processed) == sorted(f"key-{f['Id']}" for f in imported[:3] if f["Id"] != always)
    assert report.left_owed == 1
    assert workflows(hub)[once] == "RESOLVED"
    assert workflows(hub)[always] == "NEW"
    assert len(hub.requests("BatchUpdateFindings")) == MAX_UPDATE_ATTEMPTS


def test_an_unknown_finding_is_left_owed_not_claimed_done(hub: LocalSecurityHub, sink: SecurityHubSink) -> None:
    arn = f"arn:aws:securityhub:us-east-1:{ACCOUNT}:product/{ACCOUNT}/default"

    report = sink.update_workflows([WorkflowUpdate("k", "never-imported", arn, "RESOLVED", LANE)])

    assert (report.processed, report.left_owed) == ([], 1)


def test_a_lane_that_refuses_leaves_its_updates_owed_and_the_others_go_on(
    hub: LocalSecurityHub, sink: SecurityHubSink, imported: list[dict[str, Any]]
) -> None:
    other = Lane("aws", ACCOUNT, "eu-west-1")
    hub.disable(ACCOUNT, "eu-west-1")
    arn = f"arn:aws:securityhub:eu-west-1:{ACCOUNT}:product/{ACCOUNT}/default"

    report = sink.update_workflows([*resolve(imported[:2]), WorkflowUpdate("elsewhere", "x", arn, "RESOLVED", other)])

    assert (len(report.processed), report.left_owed) == (2, 1)


def test_updates_wait_through_an_outage_and_a_stop_ends_them_unfinished(
    hub: LocalSecurityHub, sink: SecurityHubSink, imported: list[dict[str, Any]], tmp_path: Path
) -> None:
    hub.outage(1.0)
    report = sink.update_workflows(resolve(imported[:5]))
    assert len(report.processed) == 5

    stop = threading.Event()
    stopping = SecurityHubSink(hub_clients(hub), JsonlDeadLetters(tmp_path / "dl.jsonl"), policy=FAST, stop=stop)
    hub.outage(30.0)
    threading.Timer(0.5, stop.set).start()
    with pytest.raises(SinkStopped):
        stopping.update_workflows(resolve(imported[5:10]))


def test_updates_of_a_region_failing_past_the_outage_limit_are_left_owed_and_the_others_go_on(
    hub: LocalSecurityHub, imported: list[dict[str, Any]], tmp_path: Path
) -> None:
    stop = threading.Event()
    policy = replace(FAST, outage_seconds=1.0)
    sink = SecurityHubSink(hub_clients(hub), JsonlDeadLetters(tmp_path / "dl.jsonl"), policy=policy, stop=stop)
    other = Lane("aws", ACCOUNT, "eu-west-1")
    arn = f"arn:aws:securityhub:eu-west-1:{ACCOUNT}:product/{ACCOUNT}/default"
    hub.outage(120, region="eu-west-1")
    timer = threading.Timer(30, stop.set)  # updates that hold end as SinkStopped, not never
    timer.start()
    try:
        report = sink.update_workflows(
            [*resolve(imported[:2]), WorkflowUpdate("elsewhere", "x", arn, "RESOLVED", other)]
        )
    finally:
        timer.cancel()

    assert (len(report.processed), report.left_owed) == (2, 1)


@pytest.mark.slow
def test_updates_keep_to_their_own_share_of_the_quota_and_leave_the_imports_theirs(
    hub: LocalSecurityHub, template: dict[str, Any], tmp_path: Path
) -> None:
    imports, updates = Quota(), Quota(UPDATE_RATE, UPDATE_BURST - BURST_SLACK)
    sink = SecurityHubSink(
        hub_clients(hub), JsonlDeadLetters(tmp_path / "dl.jsonl"), policy=FAST, quota=imports, update_quota=updates
    )
    sink.deliver(many(template, 5000))  # 50 import requests: more than the import bucket's burst
    findings = hub.findings()

    report = sink.update_workflows(resolve(findings))  # 50 more, at once more than the update bucket's burst

    assert (len(report.processed), report.requests) == (5000, 50)
    assert [r for r in hub.requests() if r.status == 429] == []


def test_a_request_security_hub_refuses_whole_is_split_and_what_it_never_takes_is_left_owed(
    hub: LocalSecurityHub, imported: list[dict[str, Any]], tmp_path: Path
) -> None:
    stop = threading.Event()
    sink = SecurityHubSink(hub_clients(hub), JsonlDeadLetters(tmp_path / "dl.jsonl"), policy=FAST, stop=stop)
    never = WorkflowUpdate("bad", imported[0]["Id"], imported[0]["ProductArn"], "NOT_A_STATUS", LANE)  # 400 whole
    guard = threading.Timer(20, stop.set)  # a hang ends here, as SinkStopped, and fails the test
    guard.start()
    try:
        report = sink.update_workflows([never, *resolve(imported[1:4])])
    finally:
        guard.cancel()

    assert sorted(report.processed) == sorted(f"key-{f['Id']}" for f in imported[1:4])
    assert report.left_owed == 1
    refused = [r for r in hub.requests("BatchUpdateFindings") if r.status == 400]
    assert len(refused) == 1  # the one request it was in: the other status went in a request of its own


def test_an_identifier_botocore_will_not_send_is_split_out_and_left_owed_and_the_rest_go(
    hub: LocalSecurityHub, sink: SecurityHubSink, imported: list[dict[str, Any]]
) -> None:
    blank = WorkflowUpdate("blank", "", imported[0]["ProductArn"], "RESOLVED", LANE)  # an Id botocore refuses

    report = sink.update_workflows([*resolve(imported[:5]), blank, *resolve(imported[5:9])])

    assert sorted(report.processed) == sorted(f"key-{f['Id']}" for f in imported[:9])
    assert report.left_owed == 1
