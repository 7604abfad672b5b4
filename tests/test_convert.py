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
from tests.helpers import GOLDEN, run_cli


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
    done = run_cli("convert", stdin=lines(reference_events[2], task, reference_events[0], reference_events[2]))

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

    done = run_cli("convert", stdin=stdin)

    assert done.returncode == 2
    assert len(done.stdout.splitlines()) == 2
    errors = [json.loads(line) for line in done.stderr.splitlines()]
    assert [error["line"] for error in errors] == [1, 3, 4, 5]
    assert [set(error) for error in errors] == [{"line", "error"}] * 4
    assert "truncated" in errors[0]["error"]
    assert errors[1]["error"] == "empty record"
    assert "not a known event kind" in errors[2]["error"]
    assert "12 digits" in errors[3]["error"]


def test_a_line_larger_than_a_record_is_refused_without_reading_it_whole(
    reference_events: list[dict[str, Any]],
) -> None:
    huge = b'{"violationId": "' + b"a" * (MAX_EVENT_BYTES + 10) + b'"}'

    done = run_cli("convert", stdin=lines(huge, reference_events[2]))

    assert done.returncode == 2
    assert json.loads(done.stderr) == {
        "line": 1,
        "error": f"event is over the {MAX_EVENT_BYTES}-byte Kinesis record limit",
    }
    assert len(done.stdout.splitlines()) == 1


def test_a_megabyte_string_is_bounded_not_fatal(reference_events: list[dict[str, Any]]) -> None:
    done = run_cli("convert", stdin=lines(reference_events[2] | {"thingName": "t" * 1_000_000}))

    assert done.returncode == 0
    [finding] = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(finding["ProductFields"]["ThingName"]) == 128


def test_flags_fill_in_what_events_leave_out(reference_events: list[dict[str, Any]]) -> None:
    bare = {k: v for k, v in reference_events[2].items() if k not in ("accountId", "region")}

    done = run_cli("convert", "--account-id", "210987654321", "--region", "us-gov-west-1", stdin=lines(bare))

    [finding] = [json.loads(line) for line in done.stdout.splitlines()]
    assert finding["ProductArn"] == "arn:aws-us-gov:securityhub:us-gov-west-1:210987654321:product/210987654321/default"


def test_a_config_file_sets_severity(tmp_path: Path, reference_events: list[dict[str, Any]]) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[detect]\nsecurity_profile_severity = { MySecurityProfile = "HIGH" }\n')

    done = run_cli("convert", "--config", str(config), stdin=lines(reference_events[2]))

    assert json.loads(done.stdout)["Severity"] == {"Label": "HIGH"}


def test_bad_configuration_stops_before_reading(tmp_path: Path) -> None:
    done = run_cli("convert", "--account-id", "nope", stdin=(GOLDEN / "reference-events.jsonl").read_bytes())

    assert done.returncode == 2
    assert done.stdout == b""
    assert b"configuration error: account id 'nope' is not 12 digits" in done.stderr


def test_empty_input_converts_nothing_successfully() -> None:
    done = run_cli("convert")

    assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"")


def test_the_readmes_first_command_converts_every_bundled_sample() -> None:
    samples = Path(__file__).parents[1] / "samples" / "events.jsonl"

    done = run_cli("convert", stdin=samples.read_bytes())

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

    done = run_cli("convert", stdin=line + b"\n" + line + b"x\n")

    assert done.returncode == 2  # the second line is one byte over
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
