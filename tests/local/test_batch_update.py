"""BatchUpdateFindings in the strict local Security Hub, driven through boto3's real serializer over HTTP."""

from __future__ import annotations

import copy
import json
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from defender_hub.local.hub_core import HubError
from defender_hub.local.hub_requests import parse_update
from defender_hub.local.securityhub import LocalSecurityHub
from tests.helpers import Convert, local_client

ACCOUNT = "123456789012"
OTHER = "999999999999"
UPDATE = "BatchUpdateFindings"


def client(hub: LocalSecurityHub, region: str = "us-east-1") -> Any:
    """A client making one attempt a call, so that each call shows what the hub answered."""
    retries = Config(retries={"total_max_attempts": 1, "mode": "standard"}, connect_timeout=2, read_timeout=10)
    return local_client("securityhub", hub.endpoint_url, region=region, config=retries)


@pytest.fixture
def finding(convert: Convert, reference_events: list[dict[str, Any]]) -> dict[str, Any]:
    return convert(reference_events[2] | {"region": "us-east-1"})[0]


def variant(finding: dict[str, Any], index: int, **changes: Any) -> dict[str, Any]:
    return copy.deepcopy(finding) | {"Id": f"{finding['Id']}-{index}"} | changes


def ident(doc: dict[str, Any]) -> dict[str, str]:
    return {"Id": doc["Id"], "ProductArn": doc["ProductArn"]}


def resolve(hub: LocalSecurityHub, *docs: dict[str, Any], status: str = "RESOLVED") -> dict[str, Any]:
    answer: dict[str, Any] = client(hub).batch_update_findings(
        FindingIdentifiers=[ident(doc) for doc in docs], Workflow={"Status": status}
    )
    return answer


def imported(hub: LocalSecurityHub, *docs: dict[str, Any]) -> None:
    assert client(hub).batch_import_findings(Findings=list(docs))["SuccessCount"] == len(docs)


def test_an_update_sets_the_workflow_and_leaves_updated_at(hub: LocalSecurityHub, finding: dict[str, Any]) -> None:
    imported(hub, finding)

    answer = client(hub).batch_update_findings(
        FindingIdentifiers=[ident(finding)],
        Workflow={"Status": "RESOLVED"},
        Note={"Text": "compliant again", "UpdatedBy": "defender-hub"},
        Severity={"Normalized": 75},
    )

    assert (answer["ProcessedFindings"], answer["UnprocessedFindings"]) == ([ident(finding)], [])
    stored = hub.finding(finding["Id"])
    assert stored is not None
    assert (stored["Workflow"], stored["WorkflowState"]) == ({"Status": "RESOLVED"}, "RESOLVED")
    assert stored["UpdatedAt"] == finding["UpdatedAt"]
    assert stored["Note"]["Text"] == "compliant again" and stored["Note"]["UpdatedAt"].endswith("Z")
    assert (stored["Severity"]["Label"], stored["Severity"]["Normalized"]) == ("HIGH", 75)
    assert hub.workflow(finding["Id"]) == "RESOLVED"
    assert hub.workflows() == {finding["Id"]: "RESOLVED"}
    assert [(r.status, r.findings, r.accepted, r.failed, r.caller) for r in hub.requests(UPDATE)] == [
        (200, 1, 1, 0, ACCOUNT)
    ]


def test_identifiers_of_no_stored_finding_are_unprocessed(hub: LocalSecurityHub, finding: dict[str, Any]) -> None:
    imported(hub, finding)
    unknown = {"Id": "no-such-finding", "ProductArn": finding["ProductArn"]}
    wrong_product = {"Id": finding["Id"], "ProductArn": "arn:aws:securityhub:us-east-1::product/aws/config"}

    answer = client(hub).batch_update_findings(
        FindingIdentifiers=[unknown, ident(finding), wrong_product], Workflow={"Status": "NOTIFIED"}
    )

    assert answer["ProcessedFindings"] == [ident(finding)]
    assert answer["UnprocessedFindings"] == [
        {"FindingIdentifier": unknown, "ErrorCode": "FindingNotFound", "ErrorMessage": "Finding Not Found"},
        {"FindingIdentifier": wrong_product, "ErrorCode": "FindingNotFound", "ErrorMessage": "Finding Not Found"},
    ]
    assert hub.requests(UPDATE)[0].failed == 2
    assert hub.finding(finding["Id"])["WorkflowState"] == "ASSIGNED"


def test_another_accounts_finding_or_another_regions_is_not_found(
    hub: LocalSecurityHub, finding: dict[str, Any]
) -> None:
    theirs = variant(
        finding, 1, AwsAccountId=OTHER, ProductArn=f"arn:aws:securityhub:us-east-1:{OTHER}:product/{OTHER}/default"
    )
    hub.batch_import(json.dumps({"Findings": [theirs]}).encode(), "us-east-1", OTHER)
    imported(hub, finding)

    as_caller = resolve(hub, theirs)
    elsewhere = client(hub, region="eu-west-1").batch_update_findings(
        FindingIdentifiers=[ident(finding)], Workflow={"Status": "RESOLVED"}
    )

    assert [u["ErrorCode"] for u in as_caller["UnprocessedFindings"] + elsewhere["UnprocessedFindings"]] == [
        "FindingNotFound",
        "FindingNotFound",
    ]
    assert hub.workflows() == {theirs["Id"]: "NEW", finding["Id"]: "NEW"}


def test_a_duplicated_identifier_is_unprocessed(hub: LocalSecurityHub, finding: dict[str, Any]) -> None:
    imported(hub, finding, variant(finding, 1))

    answer = resolve(hub, finding, variant(finding, 1), finding)

    assert answer["ProcessedFindings"] == [ident(variant(finding, 1))]
    assert [(u["FindingIdentifier"], u["ErrorCode"]) for u in answer["UnprocessedFindings"]] == [
        (ident(finding), "DuplicatedFindingIdentifier")
    ]
    assert hub.workflow(finding["Id"]) == "NEW"


@pytest.mark.parametrize(
    ("members", "says"),
    [
        ({"FindingIdentifiers": []}, "FindingIdentifiers"),
        ({"Workflow": None}, "nothing to update"),
        ({"Confidence": 101}, "Confidence"),
        ({"Criticality": 1000}, "Criticality"),
        ({"Workflow": {"Status": "DONE"}}, "Workflow.Status"),
        ({"Note": {"Text": "x" * 513, "UpdatedBy": "me"}}, "Note"),
        ({"Note": {"Text": "   ", "UpdatedBy": "me"}}, "Note"),
        ({"Severity": {"Label": "SEVERE"}}, "Severity"),
        ({"Severity": {}}, "Severity"),
        ({"VerificationState": "CONFIRMED"}, "VerificationState"),
    ],
    ids=lambda value: str(value)[:40],
)
def test_a_malformed_request_is_refused_whole(
    hub: LocalSecurityHub, finding: dict[str, Any], members: dict[str, Any], says: str
) -> None:
    imported(hub, finding)
    request = {"FindingIdentifiers": [ident(finding)], "Workflow": {"Status": "RESOLVED"}} | members

    with pytest.raises(ClientError) as raised:
        client(hub).batch_update_findings(**{name: value for name, value in request.items() if value is not None})

    assert raised.value.response["Error"]["Code"] == "InvalidInputException"
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert says in raised.value.response["Error"]["Message"]
    assert hub.workflow(finding["Id"]) == "NEW"
    assert [(r.status, r.error) for r in hub.requests(UPDATE)] == [(400, "InvalidInputException")]


def test_at_most_100_identifiers_a_request(hub: LocalSecurityHub, finding: dict[str, Any]) -> None:
    docs = [variant(finding, i) for i in range(101)]
    imported(hub, *docs[:100])
    imported(hub, docs[100])

    with pytest.raises(ClientError) as raised:
        resolve(hub, *docs)
    answer = resolve(hub, *docs[:100])

    assert raised.value.response["Error"]["Code"] == "InvalidInputException"
    assert len(answer["ProcessedFindings"]) == 100
    assert sorted(hub.workflows().values()) == ["NEW"] + ["RESOLVED"] * 100


def test_types_outside_the_taxonomy_leave_every_finding_unprocessed(
    hub: LocalSecurityHub, finding: dict[str, Any]
) -> None:
    imported(hub, finding, variant(finding, 1))

    answer = client(hub).batch_update_findings(
        FindingIdentifiers=[ident(finding), ident(variant(finding, 1))],
        Types=["Software and Configuration Check/Vulnerabilities"],
    )

    assert answer["ProcessedFindings"] == []
    assert {u["ErrorCode"] for u in answer["UnprocessedFindings"]} == {"InvalidInput"}
    assert "Types" in answer["UnprocessedFindings"][0]["ErrorMessage"]


def test_an_update_that_would_make_the_finding_over_240_kb_is_unprocessed(
    hub: LocalSecurityHub, finding: dict[str, Any]
) -> None:
    padded = finding | {
        "ProductFields": {f"K{i}": "x" * 2000 for i in range(50)},
        "Resources": [
            finding["Resources"][0] | {"Id": f"r{n}", "Details": {"Other": {f"O{i}": "y" * 1000 for i in range(50)}}}
            for n in range(2)
        ],
    }
    imported(hub, padded)

    answer = client(hub).batch_update_findings(
        FindingIdentifiers=[ident(padded)], UserDefinedFields={f"U{i}": "z" * 1000 for i in range(50)}
    )

    assert [u["ErrorCode"] for u in answer["UnprocessedFindings"]] == ["FindingSizeExceeded"]
    assert "UserDefinedFields" not in hub.finding(padded["Id"])


def test_the_update_quota_is_10_a_second_burst_30_apart_from_the_imports(finding: dict[str, Any]) -> None:
    now = [0.0]
    with LocalSecurityHub(clock=lambda: now[0]) as hub:
        imported(hub, finding)

        def updates(count: int) -> list[str]:
            codes = []
            for _ in range(count):
                try:
                    resolve(hub, finding)
                    codes.append("ok")
                except ClientError as error:
                    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 429
                    codes.append(error.response["Error"]["Code"])
            return codes

        assert updates(31) == ["ok"] * 30 + ["TooManyRequestsException"]
        for index in range(29):  # the import's quota is its own: the rest of its burst is still there
            hub.batch_import(json.dumps({"Findings": [variant(finding, index)]}).encode(), "us-east-1", ACCOUNT)
        with pytest.raises(Exception, match="Rate exceeded"):
            hub.batch_import(json.dumps({"Findings": [variant(finding, 99)]}).encode(), "us-east-1", ACCOUNT)
        now[0] += 0.5
        assert updates(6) == ["ok"] * 5 + ["TooManyRequestsException"]
        assert [r.status for r in hub.requests(UPDATE)].count(429) == 2


def test_forced_throttling_of_updates_leaves_imports_alone(hub: LocalSecurityHub, finding: dict[str, Any]) -> None:
    hub.throttle(0.3, operation=UPDATE)

    imported(hub, finding)
    with pytest.raises(ClientError) as raised:
        resolve(hub, finding)
    time.sleep(0.4)

    assert raised.value.response["Error"]["Code"] == "TooManyRequestsException"
    assert resolve(hub, finding)["ProcessedFindings"] == [ident(finding)]


def test_forced_unprocessed_identifiers_then_processed(hub: LocalSecurityHub, finding: dict[str, Any]) -> None:
    imported(hub, finding)
    hub.fail_updates([finding["Id"]], "ConcurrentUpdateError", "Concurrent finding updates detected", times=1)

    first, again = resolve(hub, finding), resolve(hub, finding)

    assert first["UnprocessedFindings"] == [
        {
            "FindingIdentifier": ident(finding),
            "ErrorCode": "ConcurrentUpdateError",
            "ErrorMessage": "Concurrent finding updates detected",
        }
    ]
    assert again["ProcessedFindings"] == [ident(finding)]
    assert [(r.accepted, r.failed) for r in hub.requests(UPDATE)] == [(0, 1), (1, 0)]


def test_a_forced_failure_for_always_lasts_until_lifted(hub: LocalSecurityHub, finding: dict[str, Any]) -> None:
    imported(hub, finding)
    hub.fail_updates([finding["Id"]], times=None)

    failing = [len(resolve(hub, finding)["UnprocessedFindings"]) for _ in range(3)]
    hub.fail_updates([finding["Id"]], times=0)

    assert failing == [1, 1, 1]
    assert resolve(hub, finding)["ProcessedFindings"] == [ident(finding)]


def test_an_account_not_enabled_or_an_outage_refuses_updates(hub: LocalSecurityHub, finding: dict[str, Any]) -> None:
    imported(hub, finding)
    hub.disable(ACCOUNT, "us-east-1")
    with pytest.raises(ClientError) as refused:
        resolve(hub, finding)
    hub.enable(ACCOUNT, "us-east-1")
    hub.outage(0.3)
    with pytest.raises(ClientError) as down:
        resolve(hub, finding)
    time.sleep(0.4)

    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 401
    assert refused.value.response["Error"]["Code"] == "InvalidAccessException"
    assert down.value.response["Error"]["Code"] == "InternalException"
    assert resolve(hub, finding)["ProcessedFindings"] == [ident(finding)]


def test_an_import_after_an_update_still_applies_and_keeps_what_the_customer_set(
    hub: LocalSecurityHub, finding: dict[str, Any]
) -> None:
    imported(hub, finding)
    client(hub).batch_update_findings(
        FindingIdentifiers=[ident(finding)], Workflow={"Status": "RESOLVED"}, Severity={"Label": "LOW"}
    )
    newer = finding | {"UpdatedAt": "2030-01-01T00:00:00.000Z", "Title": "newer", "Severity": {"Label": "CRITICAL"}}

    imported(hub, newer)

    stored = hub.finding(finding["Id"])
    assert stored is not None
    assert (stored["Title"], stored["UpdatedAt"]) == ("newer", "2030-01-01T00:00:00.000Z")
    assert stored["Workflow"] == {"Status": "RESOLVED"}
    assert stored["Severity"] == {"Label": "LOW", "Normalized": 1}  # set by the customer: no longer the provider's


@pytest.mark.parametrize(
    ("before", "after", "status", "then"),
    [
        ({"RecordState": "ARCHIVED"}, {"RecordState": "ACTIVE"}, "RESOLVED", "NEW"),
        ({"RecordState": "ARCHIVED"}, {"RecordState": "ACTIVE"}, "NOTIFIED", "NEW"),
        ({"RecordState": "ARCHIVED"}, {"RecordState": "ACTIVE"}, "SUPPRESSED", "SUPPRESSED"),
        ({"RecordState": "ACTIVE"}, {"RecordState": "ARCHIVED"}, "RESOLVED", "RESOLVED"),
        ({"Compliance": {"Status": "PASSED"}}, {"Compliance": {"Status": "FAILED"}}, "RESOLVED", "NEW"),
        ({"Compliance": {"Status": "PASSED"}}, {"Compliance": {"Status": "WARNING"}}, "NOTIFIED", "NEW"),
        ({"Compliance": {"Status": "PASSED"}}, {"Compliance": {"Status": "NOT_AVAILABLE"}}, "RESOLVED", "NEW"),
        ({"Compliance": {"Status": "PASSED"}}, {"Compliance": {"Status": "FAILED"}}, "SUPPRESSED", "SUPPRESSED"),
        ({"Compliance": {"Status": "PASSED"}}, {"Compliance": {"Status": "PASSED"}}, "RESOLVED", "RESOLVED"),
        ({"Compliance": {"Status": "FAILED"}}, {"Compliance": {"Status": "WARNING"}}, "RESOLVED", "RESOLVED"),
        ({"Compliance": {"Status": "FAILED"}}, {"Compliance": {"Status": "PASSED"}}, "NEW", "NEW"),
    ],
)
def test_an_import_that_reopens_a_finding_resets_its_workflow(
    hub: LocalSecurityHub,
    finding: dict[str, Any],
    before: dict[str, Any],
    after: dict[str, Any],
    status: str,
    then: str,
) -> None:
    imported(hub, finding | before)
    resolve(hub, finding, status=status)

    imported(hub, finding | after | {"UpdatedAt": "2030-01-01T00:00:00.000Z"})

    assert hub.workflow(finding["Id"]) == then
    stored = hub.finding(finding["Id"])
    assert stored is not None and stored["WorkflowState"] == {
        "NEW": "NEW", "NOTIFIED": "ASSIGNED", "RESOLVED": "RESOLVED", "SUPPRESSED": "DEFERRED"
    }[then]  # fmt: skip


def test_a_provider_gives_a_note_and_verification_state_only_when_it_creates_the_finding(
    hub: LocalSecurityHub, finding: dict[str, Any]
) -> None:
    note = {"Text": "from the provider", "UpdatedBy": "provider", "UpdatedAt": "2022-11-09T00:00:00Z"}
    imported(hub, finding | {"Note": note, "VerificationState": "TRUE_POSITIVE", "Workflow": {"Status": "RESOLVED"}})
    imported(
        hub,
        finding
        | {"UpdatedAt": "2030-01-01T00:00:00Z", "Note": note | {"Text": "later"}, "VerificationState": "UNKNOWN"},
    )

    stored = hub.finding(finding["Id"])
    assert stored is not None
    assert (stored["Note"], stored["VerificationState"], stored["Workflow"]) == (
        note,
        "TRUE_POSITIVE",
        {"Status": "NEW"},
    )


def test_an_ignored_import_resets_nothing(hub: LocalSecurityHub, finding: dict[str, Any]) -> None:
    imported(hub, finding | {"RecordState": "ARCHIVED"})
    resolve(hub, finding)

    imported(hub, finding | {"RecordState": "ACTIVE"})  # the same UpdatedAt: ignored

    assert hub.workflow(finding["Id"]) == "RESOLVED"


def test_get_findings_filters_by_workflow_and_compliance_status(hub: LocalSecurityHub, finding: dict[str, Any]) -> None:
    docs = [variant(finding, i, Compliance={"Status": status}) for i, status in enumerate(("PASSED", "FAILED"))]
    imported(hub, *docs, variant(finding, 2))
    resolve(hub, docs[0])

    def ids(**filters: Any) -> list[str]:
        return sorted(f["Id"][-1] for f in client(hub).get_findings(Filters=filters)["Findings"])

    assert ids(WorkflowStatus=[{"Value": "RESOLVED", "Comparison": "EQUALS"}]) == ["0"]
    assert ids(WorkflowStatus=[{"Value": "RESOLVED", "Comparison": "NOT_EQUALS"}]) == ["1", "2"]
    assert ids(ComplianceStatus=[{"Value": "FAILED", "Comparison": "EQUALS"}]) == ["1"]
    first = client(hub).get_findings(SortCriteria=[{"Field": "WorkflowStatus", "SortOrder": "desc"}])["Findings"]
    assert first[0]["Workflow"]["Status"] == "RESOLVED"


def test_the_error_is_shaped_as_the_service_shapes_it(hub: LocalSecurityHub) -> None:
    request = urllib.request.Request(
        f"{hub.endpoint_url}/findings/batchupdate",
        data=json.dumps({"FindingIdentifiers": []}).encode(),
        method="PATCH",
        headers={"Content-Type": "application/json"},
    )

    with pytest.raises(urllib.error.HTTPError) as answered:
        urllib.request.urlopen(request, timeout=5)

    assert answered.value.code == 400
    assert answered.value.headers["X-Amzn-ErrorType"] == "InvalidInputException"
    body = json.loads(answered.value.read())
    assert body["Code"] == "InvalidInputException" and "FindingIdentifiers" in body["Message"]


def test_the_control_api_forces_unprocessed_updates_and_throttles_them(
    hub: LocalSecurityHub, finding: dict[str, Any]
) -> None:
    def control(path: str, body: dict[str, Any]) -> Any:
        request = urllib.request.Request(hub.endpoint_url + path, data=json.dumps(body).encode())
        with urllib.request.urlopen(request, timeout=5) as answer:
            return json.load(answer)

    imported(hub, finding)
    control("/_local/fail-updates", {"Ids": [finding["Id"]], "Times": 2})
    failed = [resolve(hub, finding)["UnprocessedFindings"][0]["ErrorCode"] for _ in range(2)]
    control("/_local/throttle", {"Seconds": 60, "Operation": UPDATE})
    with pytest.raises(ClientError) as raised:
        resolve(hub, finding)

    assert failed == ["FindingNotFound", "FindingNotFound"]
    assert raised.value.response["Error"]["Code"] == "TooManyRequestsException"
    assert [r["operation"] for r in control("/_local/requests", {})["Requests"]].count(UPDATE) == 3
    with pytest.raises(urllib.error.HTTPError) as unreadable:
        control("/_local/fail-updates", {})
    assert unreadable.value.code == 400


@pytest.mark.parametrize(
    "members",
    [
        {"Workflow": {"Status": ["RESOLVED"]}},
        {"Severity": {"Label": ["HIGH"]}},
        {"VerificationState": {"State": "TRUE_POSITIVE"}},
    ],
    ids=["workflow-status", "severity-label", "verification-state"],
)
def test_a_list_or_an_object_where_a_name_belongs_is_refused_as_invalid_input(members: dict[str, Any]) -> None:
    identifiers = [{"Id": "f", "ProductArn": "arn:aws:securityhub:us-east-1:123456789012:product/1/default"}]
    body = json.dumps({"FindingIdentifiers": identifiers, **members}).encode()

    with pytest.raises(HubError) as raised:  # botocore would not send it; a hand-made request may
        parse_update(body)

    assert raised.value.code == "InvalidInputException"
