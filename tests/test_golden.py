"""The guide's three reference findings, reproduced field by field; every difference is a documented deviation."""

from __future__ import annotations

import copy
import json
from typing import Any

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
