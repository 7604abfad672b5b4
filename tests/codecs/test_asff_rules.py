"""The strict check catches each rule Security Hub enforces, and passes a valid finding."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from defender_hub.codecs.asff_rules import MAX_FINDING_BYTES, finding_problems
from tests.helpers import Convert


@pytest.fixture
def valid(convert: Convert, reference_events: list[dict[str, Any]]) -> dict[str, Any]:
    return convert(reference_events[0])[0]


def test_a_mapped_finding_has_no_problems(valid: dict[str, Any]) -> None:
    assert finding_problems(valid) == []


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = doc
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        if value is _DELETE:
            del target[last]
        elif last.isdigit():
            target[int(last)] = value
        else:
            target[last] = value

    return change


_DELETE = object()

BROKEN = {
    "no Id": (_set("Id", _DELETE), "Id: required"),
    "no Resources": (_set("Resources", _DELETE), "Resources: required"),
    "schema version": (_set("SchemaVersion", "2020-01-01"), "SchemaVersion"),
    "Id too long": (_set("Id", "x" * 513), "Id: length 513"),
    "Title too long": (_set("Title", "x" * 257), "Title: length 257"),
    "Title empty": (_set("Title", ""), "Title: length 0"),
    "Description too long": (_set("Description", "x" * 1025), "Description: length 1025"),
    "ProductName too long": (_set("ProductName", "x" * 129), "ProductName"),
    "account not 12 digits": (_set("AwsAccountId", "12345"), "AwsAccountId"),
    "product ARN": (_set("ProductArn", "arn:aws:securityhub:::product/aws/x"), "ProductArn"),
    "timestamp": (_set("UpdatedAt", "yesterday"), "UpdatedAt"),
    "severity label": (_set("Severity.Label", "SEVERE"), "Severity.Label"),
    "severity empty": (_set("Severity", {}), "needs Label or Normalized"),
    "normalized range": (_set("Severity", {"Normalized": 101}), "Normalized"),
    "type namespace": (_set("Types", ["Software and Configuration Check/Vulnerabilities"]), "Types"),
    "type depth": (_set("Types", ["TTPs/a/b/c"]), "Types"),
    "no types": (_set("Types", []), "Types"),
    "provider types": (_set("FindingProviderFields.Types", ["Bogus"]), "FindingProviderFields.Types"),
    "provider severity": (_set("FindingProviderFields.Severity", {"Label": "X"}), "FindingProviderFields.Severity"),
    "record state": (_set("RecordState", "DELETED"), "RecordState"),
    "compliance": (_set("Compliance", {"Status": "OK"}), "Compliance.Status"),
    "reserved field": (_set("ProductFields.aws/securityhub/FindingId", "x"), "aws/ prefix"),
    "field value": (_set("ProductFields.K", "x" * 2049), "ProductFields.K"),
    "field count": (_set("ProductFields", {f"K{i}": "v" for i in range(51)}), "51 pairs"),
    "field not text": (_set("ProductFields.K", 5), "ProductFields.K"),
    "resources count": (_set("Resources", [{"Type": "Other", "Id": str(i)} for i in range(33)]), "Resources"),
    "resource id": (_set("Resources.0.Id", _DELETE), "Resources[0].Id: required"),
    "partition": (_set("Resources.0.Partition", "aws-mars"), "Partition"),
    "details other": (_set("Resources.0.Details.Other.K", "x" * 1025), "Details.Other"),
    "recommendation": (_set("Remediation", {"Recommendation": {"Text": "x" * 513}}), "Remediation.Text"),
}


@pytest.mark.parametrize("name", list(BROKEN))
def test_each_rule_is_enforced(valid: dict[str, Any], name: str) -> None:
    change, message = BROKEN[name]
    broken = copy.deepcopy(valid)
    change(broken)

    problems = finding_problems(broken)

    assert any(message in problem for problem in problems), problems


def test_the_callers_account_is_enforced_when_given(valid: dict[str, Any]) -> None:
    assert finding_problems(valid, account_id=valid["AwsAccountId"]) == []
    assert finding_problems(valid, account_id="999999999999") == ["AwsAccountId: must be the calling account"]


def test_the_size_limit_is_enforced(valid: dict[str, Any]) -> None:
    assert finding_problems(valid, encoded_size=MAX_FINDING_BYTES) == []
    assert finding_problems(valid, encoded_size=MAX_FINDING_BYTES + 1) != []


def test_anything_but_an_object_is_refused() -> None:
    assert finding_problems([1, 2]) == ["finding: must be an object"]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (("RecordState",), "RecordState: must be ACTIVE or ARCHIVED"),
        (("Severity", "Label"), "Severity.Label: "),
        (("FindingProviderFields", "Severity", "Label"), "FindingProviderFields.Severity.Label: "),
        (("Compliance", "Status"), "Compliance.Status: must be one of"),
    ],
)
@pytest.mark.parametrize("value", [[], {}, ["ACTIVE"]], ids=["list", "object", "list-of-a-valid-value"])
def test_a_list_or_an_object_where_a_name_belongs_is_a_problem_not_a_crash(
    valid: dict[str, Any], path: tuple[str, ...], expected: str, value: object
) -> None:
    doc = copy.deepcopy(valid)
    parent = doc
    for name in path[:-1]:
        parent = parent.setdefault(name, {})
    parent[path[-1]] = value

    problems = finding_problems(doc)

    assert any(problem.startswith(expected) for problem in problems), problems
