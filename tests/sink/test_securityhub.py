"""The sink against the strict local Security Hub over HTTP: nothing lost, nothing claimed that was not stored."""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from prometheus_client import REGISTRY

from defender_hub.codecs.asff_rules import finding_problems
from defender_hub.convert import EventConverter
from defender_hub.errors import DeadLetterError, SinkStopped
from defender_hub.local.securityhub import LocalSecurityHub
from defender_hub.mapping import MappingOptions
from defender_hub.sink import JsonlDeadLetters, Lane, MappedFinding, RecordOrigin, SecurityHubSink, coalesce
from tests.helpers import ACCOUNT, FAST, hub_clients, many


def stored_ids(hub: LocalSecurityHub) -> set[str]:
    return {f["Id"] for f in hub.findings()}


def letters(dead_letters: JsonlDeadLetters) -> list[dict[str, Any]]:
    if not dead_letters.path.exists():
        return []
    return [json.loads(line) for line in dead_letters.path.read_text().splitlines()]


def test_1000_findings_go_in_10_full_requests_each_accepted_once(
    hub: LocalSecurityHub, sink: SecurityHubSink, template: dict[str, Any]
) -> None:
    report = sink.deliver(many(template, 1000))

    assert (report.accepted, report.dead_lettered, report.requests) == (1000, 0, 10)
    log = hub.requests("BatchImportFindings")
    assert [(r.status, r.findings, r.accepted) for r in log] == [(200, 100, 100)] * 10
    assert stored_ids(hub) == {f"finding-{i}" for i in range(1000)}


def test_mapped_findings_go_to_the_region_their_product_arn_names(
    hub: LocalSecurityHub, sink: SecurityHubSink, reference_events: list[dict[str, Any]]
) -> None:
    converter = EventConverter(MappingOptions())
    findings = [f for event in reference_events for f in converter.findings(json.dumps(event).encode())]

    report = sink.deliver(MappedFinding(finding) for finding in findings)

    assert (report.accepted, report.dead_lettered) == (3, 0)
    assert {(f["Id"], f["Region"]) for f in hub.findings()} == {
        (finding.id, finding.product_arn.split(":")[3]) for finding in findings
    }
    assert {f["Region"] for f in hub.findings()} == {"us-west-2", "us-east-1"}


def test_versions_of_a_finding_in_one_delivery_go_as_the_latest(
    hub: LocalSecurityHub, sink: SecurityHubSink, template: dict[str, Any]
) -> None:
    old, new = many(template, 1, Title="old")[0], many(template, 1, Title="new")[0]
    new.finding["UpdatedAt"] = "2030-01-01T00:00:00.000Z"  # type: ignore[index]

    report = sink.deliver([new, old])

    assert (report.accepted, report.superseded, report.requests) == (1, 1, 1)
    assert hub.findings()[0]["Title"] == "new"


@pytest.mark.parametrize("refuse_connections", [False, True])
def test_an_outage_loses_nothing_and_delivery_returns_after_recovery(
    hub: LocalSecurityHub, sink: SecurityHubSink, template: dict[str, Any], refuse_connections: bool
) -> None:
    hub.outage(3.0, refuse_connections=refuse_connections)
    started = time.monotonic()

    report = sink.deliver(many(template, 250))

    assert time.monotonic() - started >= 2.5
    assert report.accepted == 250
    assert stored_ids(hub) == {f"finding-{i}" for i in range(250)}
    assert report.retried >= 1


def test_only_the_failed_findings_are_retried(
    hub: LocalSecurityHub, sink: SecurityHubSink, template: dict[str, Any]
) -> None:
    hub.fail(["finding-3", "finding-7"], "InternalError", "try again", times=2)

    report = sink.deliver(many(template, 10))

    assert report.accepted == 10
    assert [(r.findings, r.accepted) for r in hub.requests("BatchImportFindings")] == [(10, 8), (2, 0), (2, 2)]


def test_invalid_findings_are_dead_lettered_with_reason_and_origin_without_being_sent(
    hub: LocalSecurityHub, sink: SecurityHubSink, dead_letters: JsonlDeadLetters, template: dict[str, Any]
) -> None:
    findings = many(template, 3)
    findings[1].finding["Title"] = "x" * 300  # type: ignore[index]

    report = sink.deliver(findings)

    assert (report.accepted, report.dead_lettered) == (2, 1)
    assert hub.requests("BatchImportFindings")[0].findings == 2
    [letter] = letters(dead_letters)
    assert letter["error_code"] == "InvalidInput"
    assert "Title: length 300" in letter["reason"]
    assert letter["origin"] == {"shard_id": "shard-1", "sequence_number": "1001"}
    assert letter["finding"]["Id"] == "finding-1"


def test_a_finding_security_hub_refuses_is_dead_lettered_with_its_message(
    hub: LocalSecurityHub, sink: SecurityHubSink, dead_letters: JsonlDeadLetters, template: dict[str, Any]
) -> None:
    hub.fail(["finding-0"], "InvalidInput", "Finding is malformed", times=None)

    report = sink.deliver(many(template, 2))

    assert (report.accepted, report.dead_lettered) == (1, 1)
    [letter] = letters(dead_letters)
    assert (letter["error_code"], letter["reason"]) == ("InvalidInput", "refused by Security Hub: Finding is malformed")


def test_a_request_refused_whole_is_bisected_to_the_finding_at_fault(
    hub: LocalSecurityHub, sink: SecurityHubSink, dead_letters: JsonlDeadLetters, template: dict[str, Any]
) -> None:
    hub.refuse_requests_with(["finding-37"])

    report = sink.deliver(many(template, 100))

    assert (report.accepted, report.dead_lettered) == (99, 1)
    assert [letter["finding"]["Id"] for letter in letters(dead_letters)] == ["finding-37"]
    assert stored_ids(hub) == {f"finding-{i}" for i in range(100)} - {"finding-37"}


@pytest.mark.parametrize(
    ("change", "path", "sendable"),
    [
        ({"Confidence": "very"}, "Confidence", True),  # an integer in ASFF
        ({"Criticality": 7.5}, "Criticality", True),  # an integer, not a number
        ({"SourceUrl": None}, "SourceUrl", True),  # a member given, but no string
        ({"Remediation": {"Recommendation": {"Text": "x", "Url": 3}}}, "Remediation.Recommendation.Url", True),
        ({"Colour": "red"}, "finding", False),  # no member of ASFF
        ({"Remediation": {"Recommendation": {"Text": "x", "Link": "y"}}}, "Remediation.Recommendation", False),
    ],
)
def test_a_finding_of_a_shape_botocore_refused_is_still_dead_lettered_unsent_now_botocore_does_not_validate(
    hub: LocalSecurityHub,
    sink: SecurityHubSink,
    dead_letters: JsonlDeadLetters,
    template: dict[str, Any],
    change: dict[str, Any],
    path: str,
    sendable: bool,
) -> None:
    findings = many(template, 20)
    findings[13].finding.update(change)  # type: ignore[union-attr]
    assert finding_problems(findings[13].finding) == []  # the strict check of Security Hub's rules passes it
    client = hub_clients(hub)(Lane.of(template))
    # The lanes' clients no longer check a finding's shape: one of a wrong type goes out for Security Hub to judge,
    # and a member botocore does not know breaks its serializer (KeyError). The sink's screen keeps both back.
    with contextlib.suppress(ClientError, KeyError):
        client.batch_import_findings(Findings=[findings[13].finding])
    assert len(hub.requests("BatchImportFindings")) == sendable
    hub.reset()

    report = sink.deliver(findings)

    assert (report.accepted, report.dead_lettered) == (19, 1)
    assert sum(request.findings for request in hub.requests("BatchImportFindings")) == 19
    [letter] = letters(dead_letters)
    assert (letter["finding"]["Id"], letter["error_code"]) == ("finding-13", "InvalidInput")
    assert letter["reason"].startswith(f"invalid finding: {path}: ")
    assert letter["origin"] == {"shard_id": "shard-1", "sequence_number": "1013"}


def as_account(template: dict[str, Any], account: str, count: int, region: str = "us-east-1") -> list[MappedFinding]:
    """`count` findings of `account` in `region`, each from its own record."""
    product = f"arn:aws:securityhub:{region}:{account}:product/{account}/default"
    return [
        MappedFinding(
            template | {"Id": f"{account}-{i}", "AwsAccountId": account, "ProductArn": product},
            RecordOrigin("shard-1", f"{account}{i}"),
        )
        for i in range(count)
    ]


def test_per_finding_invalid_access_parks_the_lane_with_its_findings_and_the_rest_is_delivered(
    hub: LocalSecurityHub,
    sink: SecurityHubSink,
    dead_letters: JsonlDeadLetters,
    template: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    hub.fail(["finding-1"], "InvalidAccess", "integration not enabled", times=None)

    with caplog.at_level(logging.ERROR):
        report = sink.deliver(many(template, 3))

    assert (report.accepted, report.parked, report.dead_lettered) == (2, 1, 0)
    [letter] = letters(dead_letters)
    assert (letter["finding"]["Id"], letter["error_code"], letter["lane"]) == (
        "finding-1",
        "InvalidAccess",
        f"{ACCOUNT}/us-east-1",
    )
    assert letter["origin"] == {"shard_id": "shard-1", "sequence_number": "1001"}
    assert "integration not enabled" in letter["reason"] and "enabled" in letter["reason"]
    assert any("parked" in record.message for record in caplog.records)


def test_a_parked_lane_is_not_asked_again_until_its_time_is_up(
    hub: LocalSecurityHub, dead_letters: JsonlDeadLetters, template: dict[str, Any]
) -> None:
    sink = SecurityHubSink(hub_clients(hub), dead_letters, policy=replace(FAST, park_seconds=1.0))
    hub.disable(ACCOUNT, "us-east-1")
    sink.deliver(many(template, 2))
    asked = len(hub.requests("BatchImportFindings"))

    parked = sink.deliver(many(template, 2))
    hub.enable(ACCOUNT, "us-east-1")
    time.sleep(1.0)
    delivered = sink.deliver(many(template, 2))

    assert parked.parked == 2 and len(hub.requests("BatchImportFindings")) == asked + 1
    assert delivered.accepted == 2 and sink.parked_lanes() == {}
    assert {letter["error_code"] for letter in letters(dead_letters)} == {"InvalidAccessException"}


def test_the_caller_hears_which_findings_were_accepted_and_which_dead_lettered_and_the_rest_were_parked(
    hub: LocalSecurityHub, dead_letters: JsonlDeadLetters, template: dict[str, Any]
) -> None:
    sink = SecurityHubSink(hub_clients(hub), dead_letters, policy=FAST)
    findings = many(template, 4)
    findings[1] = MappedFinding(findings[1].finding | {"Severity": {"Label": "NOT A LABEL"}}, findings[1].origin)
    hub.fail(["finding-2"], code="InvalidInput", times=None)  # refused by the hub for good
    west_arn = template["ProductArn"].replace(":us-east-1:", ":us-west-2:")
    west = many(template, 1, Id="west", Region="us-west-2", ProductArn=west_arn)[0]  # a lane refused: parked
    hub.disable(ACCOUNT, "us-west-2")
    accepted: list[str] = []
    dead: list[str] = []

    report = sink.deliver_encoded(
        coalesce([*findings, west]),
        lambda items: accepted.extend(item.id for item in items),
        on_dead_lettered=lambda items: dead.extend(item.id for item in items),
    )

    assert sorted(accepted) == ["finding-0", "finding-3"]
    assert sorted(dead) == ["finding-1", "finding-2"]  # screened out here, and refused by Security Hub
    assert (report.accepted, report.dead_lettered, report.parked) == (2, 2, 1)  # the west lane's, heard of by neither


def test_a_probe_asks_a_parked_lane_and_only_one_that_gets_through_ends_its_park(
    hub: LocalSecurityHub, dead_letters: JsonlDeadLetters, template: dict[str, Any]
) -> None:
    sink = SecurityHubSink(hub_clients(hub), dead_letters, policy=replace(FAST, park_seconds=600))
    lane = Lane("aws", ACCOUNT, "us-east-1")
    hub.disable(ACCOUNT, "us-east-1")
    sink.deliver(many(template, 2))
    asked = len(hub.requests("BatchImportFindings"))

    refused = sink.deliver_encoded(coalesce(many(template, 2)), probe=True)
    assert refused.parked == 2 and len(hub.requests("BatchImportFindings")) == asked + 1  # asked, refused again
    assert sink.parked_lanes().keys() == {lane}
    hub.enable(ACCOUNT, "us-east-1")
    assert sink.deliver(many(template, 2)).parked == 2  # parked at once: not a probe
    probed = sink.deliver_encoded(coalesce(many(template, 2)), probe=True)

    assert probed.accepted == 2 and sink.parked_lanes() == {}
    assert sink.deliver(many(template, 2)).accepted == 2  # for every delivery


def test_another_accounts_findings_are_parked_whole_without_a_role_and_the_own_ones_delivered(
    hub: LocalSecurityHub, sink: SecurityHubSink, dead_letters: JsonlDeadLetters, template: dict[str, Any]
) -> None:
    other = "999999999999"

    report = sink.deliver([*as_account(template, ACCOUNT, 150), *as_account(template, other, 150)])

    assert (report.accepted, report.parked, report.dead_lettered) == (150, 150, 0)
    assert {f["AwsAccountId"] for f in hub.findings()} == {ACCOUNT}
    parked = letters(dead_letters)
    assert {(letter["lane"], letter["error_code"]) for letter in parked} == {
        (f"{other}/us-east-1", "AccessDeniedException")
    }
    assert len(parked) == 150 and "--assume-role" in parked[0]["reason"]


def test_a_region_without_security_hub_is_parked_never_sent(
    hub: LocalSecurityHub, sink: SecurityHubSink, dead_letters: JsonlDeadLetters, template: dict[str, Any]
) -> None:
    report = sink.deliver([*as_account(template, ACCOUNT, 2, "us-esat-1"), *as_account(template, ACCOUNT, 2)])

    assert (report.accepted, report.parked) == (2, 2)
    assert {letter["error_code"] for letter in letters(dead_letters)} == {"UnknownEndpoint"}
    assert {r.findings for r in hub.requests("BatchImportFindings")} == {2}


def test_an_outage_of_one_lane_holds_the_delivery_and_parks_nothing(
    hub: LocalSecurityHub, sink: SecurityHubSink, dead_letters: JsonlDeadLetters, template: dict[str, Any]
) -> None:
    hub.outage(1.0)

    report = sink.deliver(many(template, 3))

    assert (report.accepted, report.parked) == (3, 0) and letters(dead_letters) == []


def test_a_region_failing_past_the_outage_limit_is_parked_and_the_other_regions_go_on(
    hub: LocalSecurityHub, dead_letters: JsonlDeadLetters, template: dict[str, Any]
) -> None:
    stop = threading.Event()
    policy = replace(FAST, park_seconds=0.2, outage_seconds=1.5)
    sink = SecurityHubSink(hub_clients(hub), dead_letters, policy=policy, stop=stop)
    hub.outage(120, region="eu-west-1")
    timer = threading.Timer(30, stop.set)  # a delivery that holds ends as SinkStopped, not never
    timer.start()
    try:
        report = sink.deliver([*as_account(template, ACCOUNT, 5), *as_account(template, ACCOUNT, 3, "eu-west-1")])
        assert (report.accepted, report.parked) == (5, 3)
        assert {(letter["lane"], letter["error_code"]) for letter in letters(dead_letters)} == {
            (f"{ACCOUNT}/eu-west-1", "InternalException")
        }
        time.sleep(0.3)  # past the park: the lane is tried again

        again = sink.deliver(as_account(template, ACCOUNT, 2, "eu-west-1"))

        # Failing still, it is parked again at its first failure: no second wait of the outage limit.
        assert (again.accepted, again.parked) == (0, 2)
        assert again.retried == 1
        hub.outage(0, region="eu-west-1")
        time.sleep(0.3)
        assert sink.deliver(as_account(template, ACCOUNT, 2, "eu-west-1")).accepted == 2
    finally:
        timer.cancel()


def test_a_region_failing_with_waits_longer_than_the_outage_limit_is_parked_all_the_same(
    hub: LocalSecurityHub, dead_letters: JsonlDeadLetters, template: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An outage limit under the longest wait between attempts (`--outage-limit 1`; the waits reach 30 s): each wait
    used to end the spell of failure for want of news, so the lane was never parked and held the delivery for good."""
    monkeypatch.setattr("defender_hub.sink.base.full_jitter", lambda attempt, base, cap, rng: cap)  # the longest
    stop = threading.Event()
    policy = replace(FAST, base_seconds=1.5, max_seconds=1.5, outage_seconds=1)
    sink = SecurityHubSink(hub_clients(hub), dead_letters, policy=policy, stop=stop)
    hub.outage(120, region="eu-west-1")
    timer = threading.Timer(15, stop.set)  # a delivery that holds ends as SinkStopped, not never
    timer.start()
    try:
        report = sink.deliver(as_account(template, ACCOUNT, 3, "eu-west-1"))
    finally:
        timer.cancel()

    assert (report.accepted, report.parked) == (0, 3)


def test_a_stop_during_an_outage_raises_and_claims_nothing(
    hub: LocalSecurityHub, dead_letters: JsonlDeadLetters, template: dict[str, Any]
) -> None:
    stop = threading.Event()
    sink = SecurityHubSink(hub_clients(hub), dead_letters, policy=FAST, stop=stop)
    hub.outage(30)
    threading.Timer(1.0, stop.set).start()

    with pytest.raises(SinkStopped):
        sink.deliver(many(template, 5))
    assert hub.findings() == []


def test_dead_letters_that_cannot_be_kept_stop_the_delivery(
    hub: LocalSecurityHub, tmp_path: Path, template: dict[str, Any]
) -> None:
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")
    sink = SecurityHubSink(hub_clients(hub), JsonlDeadLetters(blocked / "letters.jsonl"), policy=FAST)
    findings = many(template, 2)
    findings[0].finding["Title"] = ""  # type: ignore[index]

    with pytest.raises(DeadLetterError):
        sink.deliver(findings)


def test_the_sink_never_reports_delivered_what_was_not_stored(
    hub: LocalSecurityHub, sink: SecurityHubSink, dead_letters: JsonlDeadLetters, template: dict[str, Any]
) -> None:
    findings = many(template, 600)
    findings[5].finding["Types"] = ["Nonsense"]  # type: ignore[index]
    hub.fail([f"finding-{i}" for i in range(0, 600, 7)], "InternalError", "flaky", times=2)
    hub.fail([f"finding-{i}" for i in range(3, 600, 50)], "InvalidInput", "refused", times=None)
    threading.Timer(0.2, hub.outage, args=(1.0,)).start()

    report = sink.deliver(findings)

    dead = {letter["finding"]["Id"] for letter in letters(dead_letters)}
    assert report.accepted == len(stored_ids(hub))
    assert report.accepted + report.dead_lettered == 600
    assert stored_ids(hub).isdisjoint(dead)
    assert stored_ids(hub) | dead == {f"finding-{i}" for i in range(600)}


def test_findings_that_failed_ride_with_the_next_request_which_is_filled_with_new_ones(
    hub: LocalSecurityHub, sink: SecurityHubSink, template: dict[str, Any]
) -> None:
    hub.fail([f"finding-{i}" for i in range(5, 1000, 100)], "InternalError", "flaky", times=1)  # one in each request

    report = sink.deliver(many(template, 1000))

    assert report.accepted == 1000 and stored_ids(hub) == {f"finding-{i}" for i in range(1000)}
    assert report.requests == 11  # 1,010 findings sent, 100 a request: no request for a retry alone


def test_requests_throttles_and_outcomes_are_counted_by_lane(
    hub: LocalSecurityHub, sink: SecurityHubSink, template: dict[str, Any]
) -> None:
    lane = {"account": ACCOUNT, "region": "us-east-1"}

    def counted(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, lane | labels) or 0.0

    before = [counted("defender_hub_requests_total"), counted("defender_hub_throttled_total")]
    accepted = counted("defender_hub_lane_findings_total", outcome="accepted")
    hub.throttle(2.0)  # long enough to be met however slowly the delivery starts

    sink.deliver(many(template, 250))

    assert counted("defender_hub_requests_total") - before[0] >= 3
    assert counted("defender_hub_throttled_total") - before[1] >= 1
    assert counted("defender_hub_lane_findings_total", outcome="accepted") - accepted == 250


def test_a_finding_security_hub_keeps_failing_is_dead_lettered_not_retried_forever(
    hub: LocalSecurityHub, sink: SecurityHubSink, dead_letters: JsonlDeadLetters, template: dict[str, Any]
) -> None:
    hub.fail(["finding-7"], "InternalError", "this one, always", times=None)
    reports: list[Any] = []
    delivery = threading.Thread(target=lambda: reports.append(sink.deliver(many(template, 20))), daemon=True)

    delivery.start()
    delivery.join(timeout=30)

    assert reports, "the delivery never ended: the shard would wait forever behind one finding"
    assert (reports[0].accepted, reports[0].dead_lettered) == (19, 1)
    [letter] = letters(dead_letters)
    assert (letter["finding"]["Id"], letter["error_code"]) == ("finding-7", "InternalError")
    assert "this one, always" in letter["reason"]
