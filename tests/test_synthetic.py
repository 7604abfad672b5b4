"""The generated corpus: deterministic, in the requested mix of sources and kinds, realistic in how each source's
events follow one another, and every event of it converts to valid findings (or, for Config and Health, is skipped by
its source's rules)."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from typing import Any

import pytest

from defender_hub.codecs.asff import encode_finding
from defender_hub.codecs.asff_rules import finding_problems
from defender_hub.convert import EventConverter
from defender_hub.errors import EventSkipped
from defender_hub.loadgen import events_of_accounts
from defender_hub.mapping import MappingOptions
from defender_hub.synthetic import EventMix, generate_events, parse_mix, partition_key


def test_the_same_seed_gives_the_same_events() -> None:
    assert list(generate_events(300, seed=4)) == list(generate_events(300, seed=4))
    assert list(generate_events(300, seed=4)) != list(generate_events(300, seed=5))


def test_the_mix_is_respected() -> None:
    events = list(generate_events(20_000, seed=1))
    shares = [
        sum(marker in e for e in events) / len(events)
        for marker in (b'"violationId"', b'"nonCompliantResource"', b'"auditDetails"')
    ]

    assert abs(shares[0] - 0.70) < 0.02
    assert abs(shares[1] - 0.25) < 0.02
    assert abs(shares[2] - 0.05) < 0.01


def test_a_tasks_findings_come_before_its_notification_and_agree_with_its_counts() -> None:
    events = [
        json.loads(e) for e in generate_events(3_000, seed=2, mix=EventMix(detect=0, audit_finding=5, audit_task=1))
    ]
    seen: dict[str, dict[str, int]] = {}
    for event in events:
        if "auditDetails" in event:
            counted = seen.pop(event["taskId"], {})
            reported = {
                d["checkName"]: d["nonCompliantResourcesCount"]
                for d in event["auditDetails"]
                if d["nonCompliantResourcesCount"]
            }
            assert counted == reported
        else:
            checks = seen.setdefault(event["taskId"], {})
            checks[event["checkName"]] = checks.get(event["checkName"], 0) + 1


def test_every_generated_event_converts_to_valid_findings() -> None:
    converter = EventConverter(MappingOptions())
    for event in generate_events(2_000, seed=3):
        for finding in converter.findings(event):
            encoded = encode_finding(finding)
            assert finding_problems(json.loads(encoded), encoded_size=len(encoded)) == []


DEFAULT_STREAM_SHA256 = "351c95f9594df95237a44584f512c817ee56d90a13ccccd45f9a5f507510511d"
"""The first 5,000 events of seed 0 as they were before Config and Health joined: benchmarks and demos compare runs."""

MIXED = parse_mix("device-defender,config,health")


def test_the_default_stream_is_device_defender_s_as_it_always_was() -> None:
    assert hashlib.sha256(b"\n".join(generate_events(5_000, seed=0))).hexdigest() == DEFAULT_STREAM_SHA256


def test_a_mix_keeps_the_device_defender_events_of_its_seed_in_order() -> None:
    mixed = list(generate_events(3_000, seed=6, mix=MIXED))
    device_defender = [event for event in mixed if b'"source":"aws.' not in event]

    assert 800 < len(device_defender) < 1_200
    assert device_defender == list(generate_events(len(device_defender), seed=6))


def test_a_mix_names_sources_with_weights() -> None:
    assert parse_mix("device-defender") == EventMix()
    assert parse_mix("config") == EventMix(detect=0, audit_finding=0, audit_task=0, config=1)
    assert parse_mix(" device-defender=2, health=0.5 ") == EventMix(
        detect=1.4, audit_finding=0.5, audit_task=0.1, config=0, health=0.5
    )
    for bad, reason in [
        ("inspector", "unknown source 'inspector'"),
        ("config=x", "the weight of config is not a number"),
        ("config=-1", "must be a finite number, 0 or more"),
        ("health=nan", "must be a finite number, 0 or more"),
        ("config=0", "names no source"),
        ("", "names no source"),
    ]:
        with pytest.raises(ValueError, match=reason):
            parse_mix(bad)


def test_the_three_sources_come_in_their_shares() -> None:
    events = [json.loads(e) for e in generate_events(9_000, seed=7, mix=MIXED)]
    sources = [event.get("source", "device-defender") for event in events]

    for source in ("device-defender", "aws.config", "aws.health"):
        assert abs(sources.count(source) / len(events) - 1 / 3) < 0.03, source


def test_every_mixed_event_converts_to_valid_findings_or_is_skipped() -> None:
    converter = EventConverter(MappingOptions())
    products: Counter[str] = Counter()
    skipped: Counter[tuple[str, str]] = Counter()
    for event in generate_events(3_000, seed=8, mix=MIXED):
        try:
            findings = converter.findings(event)
        except EventSkipped as skip:
            skipped[(skip.source, skip.reason)] += 1
            continue
        for finding in findings:
            products[finding.product_name] += 1
            encoded = encode_finding(finding)
            assert finding_problems(json.loads(encoded), encoded_size=len(encoded)) == []

    assert {"Config", "Health", "IoT Device Defender - Detect", "IoT Device Defender - Audit"} <= set(products)
    assert set(skipped) == {
        ("config", "not a rule compliance change"),
        ("config", "service-linked rule"),
        ("health", "not about security"),
    }


def test_config_flips_each_rule_s_verdict_on_each_resource_and_remembers_the_last() -> None:
    last: dict[tuple[str, str], dict[str, Any]] = {}
    statuses: set[str] = set()
    rules: set[str] = set()
    for raw in generate_events(4_000, seed=9, mix=EventMix(detect=0, audit_finding=0, audit_task=0, config=1)):
        event = json.loads(raw)
        if event["detail-type"] != "Config Rules Compliance Change":
            continue
        detail = event["detail"]
        key = (detail["configRuleARN"], detail["resourceId"])
        new = detail["newEvaluationResult"]
        assert detail["oldEvaluationResult"] == last.get(key)
        if key in last:
            assert new["complianceType"] != last[key]["complianceType"]
            assert new["resultRecordedTime"] > last[key]["resultRecordedTime"]
        last[key] = new
        statuses.add(new["complianceType"])
        rules.add(detail["configRuleName"])

    assert statuses == {"COMPLIANT", "NON_COMPLIANT", "NOT_APPLICABLE", "INSUFFICIENT_DATA"}
    service_linked = {name for name in rules if name.startswith("securityhub-")}
    assert service_linked and service_linked != rules


def test_health_events_open_and_later_close_and_some_are_global() -> None:
    status: dict[str, list[str]] = {}
    regions, detail_types = set(), set()
    for raw in generate_events(3_000, seed=10, mix=EventMix(detect=0, audit_finding=0, audit_task=0, health=1)):
        event = json.loads(raw)
        detail = event["detail"]
        status.setdefault(detail["eventArn"], []).append(detail["statusCode"])
        regions.add(detail["eventRegion"])
        detail_types.add(event["detail-type"])

    progressions = {tuple(seen) for seen in status.values()}
    assert progressions <= {
        ("open",),
        ("open", "closed"),
        ("upcoming",),
        ("upcoming", "open"),
        ("upcoming", "open", "closed"),
    }
    assert ("open", "closed") in progressions and ("upcoming", "open", "closed") in progressions
    assert "global" in regions
    assert detail_types == {"AWS Health Event", "AWS Health Abuse Event"}


def test_the_events_of_one_config_or_health_finding_share_a_partition_key() -> None:
    keys: dict[str, set[str]] = {}
    for raw in generate_events(2_000, seed=11, mix=parse_mix("config,health")):
        event = json.loads(raw)
        detail = event["detail"]
        owner = detail.get("eventArn") or f"{detail.get('configRuleARN')}/{detail.get('resourceId')}"
        keys.setdefault(owner, set()).add(partition_key(raw))

    assert all(len(found) == 1 for found in keys.values())
    assert all(len(key) <= 256 for found in keys.values() for key in found)


def test_spread_over_accounts_a_config_or_health_event_moves_whole() -> None:
    events = list(generate_events(400, seed=12, mix=parse_mix("config,health")))

    for raw in events_of_accounts(events, accounts=5):
        event = json.loads(raw)
        detail = event["detail"]
        assert "accountId" not in event
        if event["source"] == "aws.config" and "configRuleARN" in detail:
            assert detail["awsAccountId"] == event["account"] == detail["configRuleARN"].split(":")[4]
        if event["source"] == "aws.health":
            assert detail["affectedAccount"] == event["account"]
    moved = {json.loads(raw)["account"] for raw in events_of_accounts(events, accounts=5)}
    assert moved == {f"{n:012d}" for n in range(1, 6)}
