"""The generated corpus: deterministic, in the requested mix, and every event of it converts to valid findings."""

from __future__ import annotations

import json

from defender_hub.codecs.asff import encode_finding
from defender_hub.codecs.asff_rules import finding_problems
from defender_hub.convert import EventConverter
from defender_hub.mapping import MappingOptions
from defender_hub.synthetic import EventMix, generate_events


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
