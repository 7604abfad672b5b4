"""The reference findings, reproduced field by field; every difference is a documented deviation: the AWS IoT guide's
three Device Defender findings, and the Security Hub guide's (the brief's) AWS Config and AWS Health examples."""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.helpers import GOLDEN, read_jsonl, run_cli

ACCOUNT = "123456789012"


def apply_deviations(reference: dict[str, Any], index: int) -> dict[str, Any]:
    """Returns the reference finding as defender-hub writes it: each change here is listed in the README."""
    expected = copy.deepcopy(reference)
    region = expected.pop("Region")  # filled in by Security Hub
    del expected["Workflow"], expected["WorkflowState"]  # owned by Security Hub
    expected["ProductFields"] = {
        key: value for key, value in expected["ProductFields"].items() if not key.startswith("aws/securityhub/")
    }
    # A customer imports under the account's own custom-integration product.
    expected["ProductArn"] = f"arn:aws:securityhub:{region}:{ACCOUNT}:product/{ACCOUNT}/default"
    # The guide's Id carries a redacted account number; the event's account is used.
    expected["Id"] = expected["Id"].replace("336757784525", ACCOUNT).replace("615243839755", ACCOUNT)
    # The valid ASFF namespace is plural.
    expected["Types"] = [
        t.replace("Software and Configuration Check/", "Software and Configuration Checks/") for t in expected["Types"]
    ]
    expected["FindingProviderFields"]["Types"] = expected["Types"]
    # Normalized is deprecated and derived by Security Hub from Label.
    del expected["Severity"]["Normalized"]
    # Every resource names its partition, so aws-cn and aws-us-gov findings are right too.
    for resource in expected["Resources"]:
        resource.setdefault("Partition", "aws")
    # One timestamp form: ISO 8601 UTC with milliseconds.
    for key in ("CreatedAt", "UpdatedAt"):
        if expected[key].endswith(":00Z"):
            expected[key] = expected[key][:-1] + ".000Z"
    fields = expected["ProductFields"]
    if index == 1:  # check summary: the guide's typos fixed, and no schedule frequency the event does not carry
        fields["NonCompliantResourcesCount"] = fields.pop("NonComopliantResourcesCount")
        expected["Description"] = (
            "Task f3021945485adf92487c273558fcaa51 of scheduled Audit daily_audit_schedule_checks completes. "
            "2 non-compliant resources are found for DEVICE_CERTIFICATE_KEY_QUALITY_CHECK out of 1000 resources "
            "in the account. The percentage of non-compliant resources is 0.2%."
        )
    if index == 2:  # Detect: the observed value and the event type are carried too
        fields["MetricValue"] = "3"
        fields["ViolationEventType"] = "in-alarm"
    return expected


def test_convert_reproduces_the_three_reference_findings() -> None:
    done = run_cli("convert", stdin=(GOLDEN / "reference-events.jsonl").read_bytes())

    assert done.returncode == 0, done.stderr.decode()
    assert done.stderr == b""
    ours = [json.loads(line) for line in done.stdout.splitlines()]
    references = read_jsonl(GOLDEN / "reference-findings.jsonl")
    assert len(ours) == len(references) == 3
    for index, (finding, reference) in enumerate(zip(ours, references, strict=True)):
        expected = apply_deviations(reference, index)
        for key in sorted(expected.keys() | finding.keys()):
            assert finding.get(key) == expected.get(key), f"finding {index}, {key}"


def test_the_deviations_are_only_those_documented() -> None:
    """Guards the list above: each deviation changes the reference, none is a no-op hiding a wrong rule."""
    references = read_jsonl(GOLDEN / "reference-findings.jsonl")
    for index, reference in enumerate(references):
        expected = apply_deviations(reference, index)
        assert expected != reference
        assert "Region" not in expected and "Workflow" not in expected
        assert not any(key.startswith("aws/") for key in expected["ProductFields"])


CONFIG_RESOURCE_DIGEST = hashlib.sha1(b"AWS::S3::Bucket/config-integration-demo-bucket").hexdigest()
"""The Id's hash of the example's bucket, as defender-hub makes it: SHA-1 of `<resourceType>/<resourceId>`."""


def _as_custom_integration(expected: dict[str, Any], region: str) -> None:
    """The deviations every custom integration makes (sources.md §3), applied to a native reference finding."""
    del expected["Workflow"], expected["WorkflowState"]  # owned by Security Hub: an import can't set them
    # A customer imports under the account's own custom-integration product.
    expected["ProductArn"] = f"arn:aws:securityhub:{region}:{ACCOUNT}:product/{ACCOUNT}/default"
    # Normalized is deprecated and derived by Security Hub from Label.
    del expected["Severity"]["Normalized"]
    # `aws/securityhub/*` are Security Hub's own; the `aws/` prefix is reserved, so other `aws/…/` keys lose it.
    expected["ProductFields"] = {
        key.rsplit("/", 1)[-1]: value
        for key, value in expected["ProductFields"].items()
        if not key.startswith("aws/securityhub/")
    }


def apply_config_deviations(reference: dict[str, Any]) -> dict[str, Any]:
    """Returns the brief's Config finding as defender-hub writes it: each change here is listed in docs/findings.md."""
    expected = copy.deepcopy(reference)
    region = expected.pop("Region")  # filled in by Security Hub
    _as_custom_integration(expected, region)
    # The brief's hash is redacted (it holds `g` and `k`, and differs from its FindingId's): defender-hub's is SHA-1 of
    # the resource's type and id.
    rule_arn = expected["GeneratorId"]
    expected["Id"] = f"{rule_arn}/finding/{CONFIG_RESOURCE_DIGEST}"
    # The event's resultRecordedTime sets both; the brief's finding was created by an earlier evaluation (the
    # lifecycle keeps a finding's first CreatedAt on the wire).
    expected["CreatedAt"] = expected["UpdatedAt"]
    # The resource's configuration is not in the event: Security Hub looks it up (best effort), the pure mapping can't.
    del expected["Resources"][0]["Details"]
    # The resource the rule evaluated, beside the rule and its verdict.
    expected["ProductFields"] |= {"ResourceType": "AWS::S3::Bucket", "ResourceId": "config-integration-demo-bucket"}
    return expected


def apply_health_deviations(reference: dict[str, Any]) -> dict[str, Any]:
    """Returns the brief's Health finding as defender-hub writes it: each change here is listed in docs/findings.md."""
    expected = copy.deepcopy(reference)
    _as_custom_integration(expected, "us-east-1")
    # A custom integration names its product itself (the native one's names are in aws/securityhub/ ProductFields).
    expected["ProductName"], expected["CompanyName"] = "Health", "AWS"
    # The page escapes the sample's line breaks twice (`\\n`); the event's line breaks are control characters, which
    # untrusted text loses (each becomes a space).
    expected["Description"] = expected["Description"].replace("\\n", " ")
    # Every resource names its partition and Region, so aws-cn and aws-us-gov findings are right too.
    expected["Resources"][0] |= {"Partition": "aws", "Region": "us-east-1"}
    # What the event was, for filters and for the lifecycle (StatusCode: refreshed while open or upcoming).
    expected["ProductFields"] |= {
        "Service": "SES",
        "EventTypeCode": "AWS_SES_CMF_PENDING_TO_SUCCESS",
        "EventTypeCategory": "accountNotification",
        "EventScopeCode": "ACCOUNT_SPECIFIC",
        "StatusCode": "closed",
        "EventArn": expected["SourceUrl"].split("eventID=", 1)[1],
        "EventRegion": "us-east-1",
        "CommunicationId": "1e8bbe7ba2a2e1bd4a4ca8e2ad7a3a1c0f0a9e3d7ccbd3a4b3c5a8f9e1d2c3b4-1",
    }
    return expected


@pytest.mark.parametrize(
    ("source", "apply"), [("config", apply_config_deviations), ("health", apply_health_deviations)]
)
def test_convert_reproduces_the_brief_s_config_and_health_findings(
    source: str, apply: Callable[[dict[str, Any]], dict[str, Any]]
) -> None:
    done = run_cli("convert", stdin=(GOLDEN / f"{source}-events.jsonl").read_bytes())

    assert done.returncode == 0, done.stderr.decode()
    assert done.stderr == b""
    [finding] = [json.loads(line) for line in done.stdout.splitlines()]
    [reference] = read_jsonl(GOLDEN / f"{source}-findings.jsonl")
    expected = apply(reference)
    for key in sorted(expected.keys() | finding.keys()):
        assert finding.get(key) == expected.get(key), f"{source}, {key}"


def test_the_health_id_s_hash_is_the_brief_s_own() -> None:
    """No deviation: SHA-256 of the start as ISO 8601, upper-case, is the brief's hash exactly."""
    [reference] = read_jsonl(GOLDEN / "health-findings.jsonl")

    assert reference["Id"].endswith("/" + hashlib.sha256(b"2022-01-07T16:34:04.000Z").hexdigest().upper())
    assert apply_health_deviations(reference)["Id"] == reference["Id"]


def test_the_config_and_health_deviations_are_only_those_documented() -> None:
    for source, apply in (("config", apply_config_deviations), ("health", apply_health_deviations)):
        [reference] = read_jsonl(GOLDEN / f"{source}-findings.jsonl")
        expected = apply(reference)
        assert expected != reference
        assert "Region" not in expected and "Workflow" not in expected and "WorkflowState" not in expected
        assert not any(key.startswith("aws/") for key in expected["ProductFields"])
        assert expected["ProductArn"].endswith(f":{ACCOUNT}:product/{ACCOUNT}/default")
