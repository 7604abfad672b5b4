"""Audit findings and check summaries: every resource type and check category of facts.md, and the edge cases."""

from __future__ import annotations

from typing import Any

import pytest

from defender_hub.codecs.asff_rules import finding_problems
from defender_hub.errors import EventMappingError
from tests.helpers import Convert

ACCOUNT = "123456789012"
CONSOLE = "https://us-east-1.console.aws.amazon.com/iot/home?region=us-east-1#"


def audit_finding(resource_type: str, identifier: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {
        "accountId": ACCOUNT,
        "region": "us-east-1",
        "findingId": "f-1",
        "taskId": "task-1",
        "checkName": "LOGGING_DISABLED_CHECK",
        "taskStartTime": 1_700_000_000_000,
        "findingTime": 1_700_000_060_000,
        "severity": "LOW",
        "nonCompliantResource": {"resourceType": resource_type, "resourceIdentifier": identifier},
        "reasonForNonCompliance": "Something is wrong",
        "reasonForNonComplianceCode": "REASON",
        "isSuppressed": False,
    } | changes


# resource type, identifier, ASFF type, Resources[].Id, Id middle part, console page (None: the audit results)
RESOURCES = [
    (
        "DEVICE_CERTIFICATE",
        {"deviceCertificateId": "c0ffee"},
        "AwsIotCertificate",
        "c0ffee",
        "c0ffee",
        "/certificate/c0ffee",
    ),
    ("CA_CERTIFICATE", {"caCertificateId": "ca01"}, "AwsIotCaCertificate", "ca01", "ca01", "/cacertificate/ca01"),
    (
        "IOT_POLICY",
        {"policyVersionIdentifier": {"policyName": "p1", "policyVersionId": "3"}},
        "AwsIotPolicy",
        "p1",
        "p1/3",
        "/policy/p1",
    ),
    (
        "COGNITO_IDENTITY_POOL",
        {"cognitoIdentityPoolId": "us-east-1:abc"},
        "AwsCognitoIdentityPool",
        "us-east-1:abc",
        "us-east-1:abc",
        None,
    ),
    ("CLIENT_ID", {"clientId": "client-7"}, "AwsIotClientId", "client-7", "client-7", None),
    ("ACCOUNT_SETTINGS", {"account": ACCOUNT}, "AwsAccount", ACCOUNT, ACCOUNT, None),
    (
        "ROLE_ALIAS",
        {"roleAliasArn": "arn:aws:iot:us-east-1:123456789012:rolealias/a"},
        "AwsIotRoleAlias",
        "arn:aws:iot:us-east-1:123456789012:rolealias/a",
        "arn:aws:iot:us-east-1:123456789012:rolealias/a",
        None,
    ),
    (
        "IAM_ROLE",
        {"iamRoleArn": "arn:aws:iam::123456789012:role/r"},
        "AwsIamRole",
        "arn:aws:iam::123456789012:role/r",
        "arn:aws:iam::123456789012:role/r",
        None,
    ),
    (
        "ISSUER_CERTIFICATE",
        {
            "issuerCertificateIdentifier": {
                "issuerCertificateSubject": "CN=Issuer",
                "issuerId": "iss-1",
                "issuerCertificateSerialNumber": "0A",
            }
        },
        "AwsIotIssuerCertificate",
        "iss-1",
        "iss-1/CN=Issuer/0A",
        None,
    ),
    ("A_FUTURE_TYPE", {"zetaId": "z", "alphaId": "a"}, "Other", "a/z", "a/z", None),
]


@pytest.mark.parametrize(("resource_type", "identifier", "asff_type", "resource_id", "id_part", "page"), RESOURCES)
def test_each_resource_type_maps(
    convert: Convert,
    resource_type: str,
    identifier: dict[str, Any],
    asff_type: str,
    resource_id: str,
    id_part: str,
    page: str | None,
) -> None:
    [finding] = convert(audit_finding(resource_type, identifier))

    assert finding["Id"] == f"{ACCOUNT}/{resource_type}/{id_part}/LOGGING_DISABLED_CHECK/REASON"
    resource = finding["Resources"][0]
    assert (resource["Type"], resource["Id"], resource["Partition"], resource["Region"]) == (
        asff_type,
        resource_id,
        "aws",
        "us-east-1",
    )
    assert finding["SourceUrl"] == CONSOLE + (page or "/dd/audit/results/task-1/LOGGING_DISABLED_CHECK")
    assert finding["ProductFields"]["ResourceType"] == resource_type
    assert finding["ProductFields"]["ReportType"] == "AuditFinding"


def test_a_later_tasks_finding_for_the_same_resource_and_check_has_the_same_id(convert: Convert) -> None:
    first = convert(audit_finding("CLIENT_ID", {"clientId": "c"}))[0]
    later = convert(
        audit_finding("CLIENT_ID", {"clientId": "c"}, taskId="task-2", findingId="f-2", findingTime=1_800_000_000_000)
    )[0]

    assert first["Id"] == later["Id"]
    assert later["UpdatedAt"] > first["UpdatedAt"]
    assert later["GeneratorId"] == "f-2"


def test_an_unknown_types_id_does_not_depend_on_key_order(convert: Convert) -> None:
    one = convert(audit_finding("NEW", {"a": "1", "b": "2"}))[0]["Id"]
    other = convert(audit_finding("NEW", {"b": "2", "a": "1"}))[0]["Id"]

    assert one == other


def test_identifier_members_reach_product_fields_and_details(convert: Convert) -> None:
    [finding] = convert(
        audit_finding(
            "DEVICE_CERTIFICATE",
            {"deviceCertificateId": "c1", "deviceCertificateArn": "arn:aws:iot:us-east-1:123456789012:cert/c1"},
        )
    )

    assert finding["ProductFields"]["DeviceCertificateId"] == "c1"
    assert finding["Resources"][0]["Details"]["Other"] == {
        "DeviceCertificateArn": "arn:aws:iot:us-east-1:123456789012:cert/c1"
    }


def test_an_over_long_identity_becomes_a_stable_digest(convert: Convert) -> None:
    event = audit_finding("CLIENT_ID", {"clientId": "c" * 1000})
    first, again = convert(event)[0], convert(event)[0]

    assert len(first["Id"]) <= 512
    assert "/sha256-" in first["Id"]
    assert first["Id"] == again["Id"]
    assert first["Id"] != convert(audit_finding("CLIENT_ID", {"clientId": "d" * 1000}))[0]["Id"]


def test_an_identifier_naming_nothing_is_an_error(convert: Convert) -> None:
    with pytest.raises(EventMappingError, match="names no resource"):
        convert(audit_finding("CLIENT_ID", {}))


def test_a_suppressed_finding_is_archived(convert: Convert) -> None:
    assert convert(audit_finding("CLIENT_ID", {"clientId": "c"}, isSuppressed=True))[0]["RecordState"] == "ARCHIVED"
    assert convert(audit_finding("CLIENT_ID", {"clientId": "c"}))[0]["RecordState"] == "ACTIVE"


def test_severity_comes_from_the_finding_else_from_the_check(convert: Convert) -> None:
    given = convert(audit_finding("CLIENT_ID", {"clientId": "c"}, severity="HIGH"))[0]
    unknown = convert(audit_finding("CLIENT_ID", {"clientId": "c"}, severity="SEVERE"))[0]

    assert given["Severity"] == given["FindingProviderFields"]["Severity"] == {"Label": "HIGH"}
    assert unknown["Severity"] == {"Label": "LOW"}  # LOGGING_DISABLED_CHECK's default


def test_related_resources_and_additional_info_are_carried(convert: Convert) -> None:
    event = audit_finding(
        "DEVICE_CERTIFICATE",
        {"deviceCertificateId": "c1"},
        checkName="DEVICE_CERTIFICATE_SHARED_CHECK",
        relatedResources=[
            {
                "resourceType": "CLIENT_ID",
                "resourceIdentifier": {"clientId": "dev-1"},
                "additionalInfo": {"CONNECTION_TIME": "1700000000"},
            },
            {"resourceType": "CLIENT_ID"},
        ],
    )
    event["nonCompliantResource"]["additionalInfo"] = {"NUMBER_OF_CONNECTIONS": "2\n"}
    [finding] = convert(event)

    assert finding["Resources"][0]["Details"]["Other"] == {"NUMBER_OF_CONNECTIONS": "2 "}
    assert finding["Resources"][1] == {
        "Type": "AwsIotClientId",
        "Id": "dev-1",
        "Partition": "aws",
        "Region": "us-east-1",
        "Details": {"Other": {"CONNECTION_TIME": "1700000000"}},
    }
    assert len(finding["Resources"]) == 2


def test_the_finding_time_falls_back_to_the_task_start(convert: Convert) -> None:
    event = audit_finding("CLIENT_ID", {"clientId": "c"})
    del event["findingTime"]

    assert convert(event)[0]["UpdatedAt"] == "2023-11-14T22:13:20.000Z"
    del event["taskStartTime"]
    with pytest.raises(EventMappingError, match="findingTime"):
        convert(event)


def notification(*details: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {
        "accountId": ACCOUNT,
        "region": "us-east-1",
        "taskId": "task-9",
        "taskStatus": "COMPLETED",
        "taskType": "SCHEDULED_AUDIT_TASK",
        "scheduledAuditName": "daily",
        "taskStartTime": 1_700_000_000_000,
        "auditDetails": list(details),
    } | changes


def check(name: str, status: str, bad: int = 0, total: int = 10, **extra: Any) -> dict[str, Any]:
    return {
        "checkName": name,
        "checkRunStatus": status,
        "nonCompliantResourcesCount": bad,
        "totalResourcesCount": total,
    } | extra


def test_one_summary_per_check_in_order(convert: Convert) -> None:
    findings = convert(
        notification(
            check("LOGGING_DISABLED_CHECK", "COMPLETED_COMPLIANT"),
            check("CONFLICTING_CLIENT_IDS_CHECK", "COMPLETED_NON_COMPLIANT", 3),
        )
    )

    assert [f["ProductFields"]["CheckName"] for f in findings] == [
        "LOGGING_DISABLED_CHECK",
        "CONFLICTING_CLIENT_IDS_CHECK",
    ]
    assert all(f["ProductFields"]["ReportType"] == "CheckSummary" for f in findings)
    assert findings[0]["Id"] == f"{ACCOUNT}/SCHEDULED_AUDIT_TASK/daily/LOGGING_DISABLED_CHECK"


def test_an_on_demand_summary_id_has_no_audit_name(convert: Convert) -> None:
    [finding] = convert(
        notification(
            check("LOGGING_DISABLED_CHECK", "COMPLETED_COMPLIANT"),
            taskType="ON_DEMAND_AUDIT_TASK",
            scheduledAuditName=None,
        )
    )

    assert finding["Id"] == f"{ACCOUNT}/ON_DEMAND_AUDIT_TASK/LOGGING_DISABLED_CHECK"
    assert "on-demand Audit" in finding["Description"]


@pytest.mark.parametrize(
    ("status", "task_status", "state", "title"),
    [
        ("COMPLETED_NON_COMPLIANT", "COMPLETED", "ACTIVE", "Completed with 1 non-compliant resource"),
        ("FAILED", "COMPLETED", "ACTIVE", "Failed (INSUFFICIENT_PERMISSIONS)"),
        ("COMPLETED_COMPLIANT", "COMPLETED", "ARCHIVED", "Completed with no non-compliant resources"),
        ("CANCELED", "COMPLETED", "ARCHIVED", "Canceled"),
        ("COMPLETED_NON_COMPLIANT", "CANCELED", "ARCHIVED", "Completed with 1 non-compliant resource"),
        ("SOMETHING_NEW", "COMPLETED", "ACTIVE", "Ended SOMETHING_NEW"),
    ],
)
def test_a_summary_is_active_when_non_compliant_or_failed(
    convert: Convert, status: str, task_status: str, state: str, title: str
) -> None:
    extra = {"errorCode": "INSUFFICIENT_PERMISSIONS", "message": "No access"} if status == "FAILED" else {}
    [finding] = convert(notification(check("LOGGING_DISABLED_CHECK", status, 1, **extra), taskStatus=task_status))

    assert finding["RecordState"] == state
    assert finding["Title"] == f"LOGGING_DISABLED_CHECK Summary: {title}"
    if status == "FAILED":
        assert finding["ProductFields"]["ErrorCode"] == "INSUFFICIENT_PERMISSIONS"
        assert finding["Description"].endswith("LOGGING_DISABLED_CHECK failed: INSUFFICIENT_PERMISSIONS. No access.")
    if task_status == "CANCELED":
        assert finding["ProductFields"]["TaskStatus"] == "CANCELED"


def test_a_summary_updates_with_the_next_task(convert: Convert) -> None:
    first = convert(notification(check("LOGGING_DISABLED_CHECK", "COMPLETED_NON_COMPLIANT", 1)))[0]
    later = convert(
        notification(
            check("LOGGING_DISABLED_CHECK", "COMPLETED_COMPLIANT"), taskId="task-10", taskStartTime=1_700_086_400_000
        )
    )[0]

    assert first["Id"] == later["Id"]
    assert (first["RecordState"], later["RecordState"]) == ("ACTIVE", "ARCHIVED")
    assert later["UpdatedAt"] > first["UpdatedAt"]


CRITICAL = [
    "AUTHENTICATED_COGNITO_ROLE_OVERLY_PERMISSIVE_CHECK",
    "UNAUTHENTICATED_COGNITO_ROLE_OVERLY_PERMISSIVE_CHECK",
    "CA_CERTIFICATE_KEY_QUALITY_CHECK",
    "DEVICE_CERTIFICATE_KEY_QUALITY_CHECK",
    "DEVICE_CERTIFICATE_SHARED_CHECK",
    "IOT_POLICY_OVERLY_PERMISSIVE_CHECK",
    "IOT_ROLE_ALIAS_OVERLY_PERMISSIVE_CHECK",
    "REVOKED_CA_CERTIFICATE_STILL_ACTIVE_CHECK",
    "INTERMEDIATE_CA_REVOKED_FOR_ACTIVE_DEVICE_CERTIFICATES_CHECK",
]
HIGH = ["CONFLICTING_CLIENT_IDS_CHECK"]
MEDIUM = [
    "CA_CERTIFICATE_EXPIRING_CHECK",
    "DEVICE_CERTIFICATE_EXPIRING_CHECK",
    "REVOKED_DEVICE_CERTIFICATE_STILL_ACTIVE_CHECK",
    "IOT_ROLE_ALIAS_ALLOWS_ACCESS_TO_UNUSED_SERVICES_CHECK",
    "IOT_POLICY_POTENTIAL_MISCONFIGURATION_CHECK",
    "A_CHECK_ADDED_LATER",
]
LOW = ["LOGGING_DISABLED_CHECK", "DEVICE_CERTIFICATE_AGE_CHECK"]
SEVERITIES = (
    [(name, "CRITICAL") for name in CRITICAL]
    + [(name, "HIGH") for name in HIGH]
    + [(name, "MEDIUM") for name in MEDIUM]
    + [(name, "LOW") for name in LOW]
)


def expected_types(name: str) -> list[str]:
    if name in ("CONFLICTING_CLIENT_IDS_CHECK", "DEVICE_CERTIFICATE_SHARED_CHECK"):
        return ["Unusual Behaviors"]
    if name.endswith("KEY_QUALITY_CHECK"):
        return ["Software and Configuration Checks/Vulnerabilities/CVE"]
    return ["Software and Configuration Checks/Vulnerabilities"]


@pytest.mark.parametrize(("name", "severity"), SEVERITIES)
def test_each_check_has_its_default_severity_and_types(convert: Convert, name: str, severity: str) -> None:
    [summary] = convert(notification(check(name, "COMPLETED_NON_COMPLIANT", 1)))
    [finding] = convert(audit_finding("CLIENT_ID", {"clientId": "c"}, checkName=name, severity=None))

    for mapped in (summary, finding):
        assert mapped["Severity"] == mapped["FindingProviderFields"]["Severity"] == {"Label": severity}
        assert mapped["Types"] == mapped["FindingProviderFields"]["Types"] == expected_types(name)


def test_an_identifier_key_of_control_characters_still_gives_a_valid_field(convert: Convert) -> None:
    [finding] = convert(audit_finding("NEW", {"\x08": "r1", "id": "r2"}))

    assert finding_problems(finding) == []
    assert finding["Resources"][0]["Details"]["Other"]["Unnamed"] == "r1"
