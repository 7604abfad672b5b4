"""`defender-hub convert` as a user runs it: findings in input order, bad lines reported and skipped, exit status."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
from pathlib import Path
from typing import Any

from defender_hub.codecs.asff_rules import finding_problems
from defender_hub.convert import MAX_EVENT_BYTES
from tests.codecs.sources import config_event, evaluation, health_event
from tests.helpers import GOLDEN, cli


def lines(*events: Any) -> bytes:
    return b"".join((e if isinstance(e, bytes) else json.dumps(e).encode()) + b"\n" for e in events)


def test_findings_come_out_in_input_order_one_line_each(reference_events: list[dict[str, Any]]) -> None:
    task = reference_events[1] | {
        "auditDetails": reference_events[1]["auditDetails"] * 1
        + [
            {
                "checkName": "LOGGING_DISABLED_CHECK",
                "checkRunStatus": "COMPLETED_COMPLIANT",
                "nonCompliantResourcesCount": 0,
                "totalResourcesCount": 1,
            }
        ]
    }
    done = cli("convert", stdin=lines(reference_events[2], task, reference_events[0], reference_events[2]))

    assert done.returncode == 0
    out = [json.loads(line) for line in done.stdout.splitlines()]
    assert [f["ProductName"][-6:] for f in out] == ["Detect", " Audit", " Audit", " Audit", "Detect"]
    assert [f["ProductFields"].get("CheckName") for f in out[1:3]] == [
        "DEVICE_CERTIFICATE_KEY_QUALITY_CHECK",
        "LOGGING_DISABLED_CHECK",
    ]
    assert out[0] == out[4]  # nothing coalesced: the same event twice gives two lines


def test_bad_lines_are_reported_with_their_number_and_the_rest_still_convert(
    reference_events: list[dict[str, Any]],
) -> None:
    stdin = lines(
        b'{"truncated": ',
        reference_events[2],
        b"",
        {"no": "kind"},
        reference_events[2] | {"accountId": "x"},
        reference_events[0],
    )

    done = cli("convert", stdin=stdin)

    assert done.returncode == 1
    assert len(done.stdout.splitlines()) == 2
    errors = [json.loads(line) for line in done.stderr.splitlines()]
    assert [error["line"] for error in errors] == [1, 4, 5]  # line 3 is blank: no event, no error
    assert [set(error) for error in errors] == [{"line", "error"}] * 3
    assert errors[0]["error"] == "not a complete JSON document (cut off?)"
    assert "not a known event kind" in errors[1]["error"]
    assert "12 digits" in errors[2]["error"]


def test_blank_lines_are_skipped_and_change_nothing(reference_events: list[dict[str, Any]]) -> None:
    events = [json.dumps(event).encode() for event in reference_events]
    spaced = b"\n" + b"\n\n \t\r\n".join(events) + b"\n\n   \n\t"  # the last line has no newline

    plain, blank_lines = cli("convert", stdin=lines(*events)), cli("convert", stdin=spaced)

    assert (blank_lines.returncode, blank_lines.stderr) == (0, b"")
    assert blank_lines.stdout == plain.stdout != b""


def test_a_cut_off_line_is_reported_by_its_number_in_the_file(reference_events: list[dict[str, Any]]) -> None:
    cut = json.dumps(reference_events[2]).encode()[:-20]

    done = cli("convert", stdin=lines(reference_events[2], b"", cut, reference_events[2]))

    assert done.returncode == 1
    assert json.loads(done.stderr) == {"line": 3, "error": "not a complete JSON document (cut off?)"}
    assert len(done.stdout.splitlines()) == 2


def test_a_line_that_is_not_utf8_says_so_and_where(reference_events: list[dict[str, Any]]) -> None:
    latin1 = json.dumps(reference_events[2] | {"thingName": "café"}, ensure_ascii=False).encode("latin-1")
    utf16 = json.dumps(reference_events[2]).encode("utf-16")  # starts with the byte-order mark FF FE

    done = cli("convert", stdin=lines(latin1, utf16))

    assert done.returncode == 1
    assert [json.loads(line) for line in done.stderr.splitlines()] == [
        {"line": 1, "error": f"not UTF-8 text (byte {latin1.index(0xE9)})"},
        {"line": 2, "error": "not UTF-8 text (byte 0)"},
    ]


def test_each_kind_of_bad_line_is_told_in_a_sentence(reference_events: list[dict[str, Any]]) -> None:
    detect = reference_events[2]
    bad = {
        b"{violationId: 1}": "not JSON: object keys must be strings (byte 1)",
        json.dumps(detect).encode() * 2: "not JSON: something follows the JSON document (two on one line?)",
        b"\xef\xbb\xbf" + json.dumps(detect).encode(): "not JSON: starts with a byte-order mark",
        b"[1, 2]": "the event is an array, not a JSON object",
        b'"violationId"': "the event is a string, not a JSON object",
        b"null": "the event is null, not a JSON object",
        b'{"no": "kind"}': (
            "not a known event kind: no top-level violationId, nonCompliantResource, auditDetails, "
            "nor an EventBridge source aws.config, aws.health"
        ),
        json.dumps({k: v for k, v in detect.items() if k != "thingName"}).encode(): (
            "detect-violation event: the required field thingName is missing"
        ),
        json.dumps(detect | {"violationId": 42}).encode(): (
            "detect-violation event: violationId is a whole number, not a string"
        ),
        json.dumps(detect | {"violationEventTime": True}).encode(): (
            "detect-violation event: violationEventTime is a boolean, not a number or a string"
        ),
        json.dumps(reference_events[0] | {"nonCompliantResource": {}}).encode(): (
            "audit-finding event: the required field nonCompliantResource.resourceType is missing"
        ),
        json.dumps({"Type": "Notification", "Message": "not json"}).encode(): (
            "in the SNS Message: not JSON: invalid character (byte 4)"
        ),
    }

    done = cli("convert", stdin=lines(*bad))

    assert done.returncode == 1
    assert [json.loads(line)["error"] for line in done.stderr.splitlines()] == list(bad.values())


def test_a_line_larger_than_a_record_is_refused_without_reading_it_whole(
    reference_events: list[dict[str, Any]],
) -> None:
    huge = b'{"violationId": "' + b"a" * (MAX_EVENT_BYTES + 10) + b'"}'

    done = cli("convert", stdin=lines(huge, reference_events[2]))

    assert done.returncode == 1
    assert json.loads(done.stderr) == {
        "line": 1,
        "error": f"event is over the {MAX_EVENT_BYTES}-byte Kinesis record limit",
    }
    assert len(done.stdout.splitlines()) == 1


def test_a_megabyte_string_is_bounded_not_fatal(reference_events: list[dict[str, Any]]) -> None:
    done = cli("convert", stdin=lines(reference_events[2] | {"thingName": "t" * 1_000_000}))

    assert done.returncode == 0
    [finding] = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(finding["ProductFields"]["ThingName"]) == 128


def test_flags_fill_in_what_events_leave_out(reference_events: list[dict[str, Any]]) -> None:
    bare = {k: v for k, v in reference_events[2].items() if k not in ("accountId", "region")}

    done = cli("convert", "--account-id", "210987654321", "--region", "us-gov-west-1", stdin=lines(bare))

    [finding] = [json.loads(line) for line in done.stdout.splitlines()]
    assert finding["ProductArn"] == "arn:aws-us-gov:securityhub:us-gov-west-1:210987654321:product/210987654321/default"


def test_a_config_file_sets_severity(tmp_path: Path, reference_events: list[dict[str, Any]]) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[detect]\nsecurity_profile_severity = { MySecurityProfile = "HIGH" }\n')

    done = cli("convert", "--config", str(config), stdin=lines(reference_events[2]))

    assert json.loads(done.stdout)["Severity"] == {"Label": "HIGH"}


def test_bad_configuration_stops_before_reading(tmp_path: Path) -> None:
    done = cli("convert", "--default-account", "nope", stdin=(GOLDEN / "reference-events.jsonl").read_bytes())

    assert done.returncode == 2
    assert done.stdout == b""
    assert b"configuration error: account id 'nope' is not 12 digits" in done.stderr


def test_empty_input_converts_nothing_successfully() -> None:
    done = cli("convert")

    assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"")


def test_the_readmes_first_command_converts_every_bundled_sample() -> None:
    samples = Path(__file__).parents[1] / "samples" / "events.jsonl"

    done = cli("convert", stdin=samples.read_bytes())

    assert (done.returncode, done.stderr) == (0, b"")
    findings = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(findings) == 8
    assert all(finding_problems(finding) == [] for finding in findings)
    assert {f["RecordState"] for f in findings} == {"ACTIVE", "ARCHIVED"}


def test_an_event_of_exactly_the_record_limit_converts(reference_events: list[dict[str, Any]]) -> None:
    event = reference_events[2] | {"thingName": ""}
    padding = MAX_EVENT_BYTES - len(json.dumps(event).encode())
    line = json.dumps(event | {"thingName": "t" * padding}).encode()
    assert len(line) == MAX_EVENT_BYTES

    done = cli("convert", stdin=line + b"\n" + line + b"x\n")

    assert done.returncode == 1  # the second line is one byte over
    assert len(done.stdout.splitlines()) == 1
    assert json.loads(done.stderr)["line"] == 2


def test_typed_events_are_answered_at_once(reference_events: list[dict[str, Any]]) -> None:
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "defender_hub", "convert"], stdin=terminal, stdout=subprocess.PIPE
    )
    try:
        os.write(controller, json.dumps(reference_events[2]).encode() + b"\n")
        ready, _, _ = select.select([process.stdout], [], [], 30)
        assert ready, "no finding while the input is still open"
        assert process.stdout is not None
        assert json.loads(process.stdout.readline())["Id"] == reference_events[2]["violationId"]
    finally:
        os.close(controller)
        os.close(terminal)
        process.kill()
        process.wait(timeout=30)


def test_skipped_events_make_no_finding_and_no_failure_and_each_says_why(
    reference_events: list[dict[str, Any]],
) -> None:
    stdin = lines(
        config_event({"detail-type": "Config Configuration Item Change"}),
        reference_events[2],
        config_event(configRuleName="securityhub-restricted-ssh-1f2e3d"),
        health_event(service="EC2", eventTypeCode="AWS_EC2_INSTANCE_REBOOT_MAINTENANCE_SCHEDULED"),
        health_event(),
        config_event(newEvaluationResult=evaluation(complianceType="COMPLIANT")),
    )

    done = cli("convert", stdin=stdin)

    assert done.returncode == 0
    out = [json.loads(line) for line in done.stdout.splitlines()]
    assert [f["ProductName"] for f in out] == ["IoT Device Defender - Detect", "Health", "Config"]
    assert [json.loads(line) for line in done.stderr.splitlines()] == [
        {"line": 1, "skipped": "not a rule compliance change", "source": "config"},
        {"line": 3, "skipped": "service-linked rule", "source": "config"},
        {"line": 4, "skipped": "not about security", "source": "health"},
    ]


def test_a_malformed_config_or_health_event_is_a_failure_with_a_plain_reason() -> None:
    broken = config_event(resourceType=...)

    done = cli("convert", stdin=lines(broken, health_event(startTime="yesterday")))

    assert done.returncode == 1
    assert [json.loads(line) for line in done.stderr.splitlines()] == [
        {"line": 1, "error": "config event: the required field detail.resourceType is missing"},
        {"line": 2, "error": "startTime: not an ISO 8601 or RFC 1123 time, or epoch number: 'yesterday'"},
    ]
