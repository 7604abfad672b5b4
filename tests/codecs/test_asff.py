"""ASFF encoding: unset members left out, Security Hub's own members never sent, findings immutable."""

from __future__ import annotations

import json

import msgspec
import pytest

from defender_hub.codecs.asff import Finding, decode_finding, encode_finding, encode_findings
from tests.helpers import Convert


@pytest.fixture
def finding(convert: Convert, reference_events: list[dict[str, object]]) -> Finding:
    return decode_finding(json.dumps(convert(reference_events[1])[0]))


def test_unset_members_are_left_out(finding: Finding) -> None:
    assert finding.compliance is None
    assert "Compliance" not in json.loads(encode_finding(finding))


def test_members_security_hub_owns_are_never_written(
    convert: Convert, reference_events: list[dict[str, object]]
) -> None:
    for event in reference_events:
        for written in convert(event):
            assert not {"Region", "Workflow", "WorkflowState", "Note", "VerificationState"} & written.keys()


def test_a_finding_survives_encoding_and_decoding(finding: Finding) -> None:
    assert decode_finding(encode_finding(finding)) == finding


def test_findings_encode_as_json_lines(finding: Finding) -> None:
    lines = encode_findings([finding, finding]).splitlines()

    assert lines == [encode_finding(finding)] * 2


def test_findings_are_immutable(finding: Finding) -> None:
    with pytest.raises(AttributeError):
        finding.record_state = "ARCHIVED"  # type: ignore[misc]
    assert msgspec.structs.replace(finding, record_state="ARCHIVED").record_state == "ARCHIVED"
