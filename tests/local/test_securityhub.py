"""The strict local Security Hub, driven through boto3's real serializer over HTTP on 127.0.0.1."""

from __future__ import annotations

import copy
import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError

from defender_hub.local.aws import LocalAws
from defender_hub.local.hub_core import HubError
from defender_hub.local.securityhub import LocalSecurityHub, TokenBucket
from tests.helpers import Convert, local_client

ACCOUNT = "123456789012"


@pytest.fixture
def hub() -> Iterator[LocalSecurityHub]:
    with LocalSecurityHub() as running:
        yield running


def client(hub: LocalSecurityHub, attempts: int = 1) -> Any:
    """A client making at most `attempts` attempts a call: by default one, so each call shows what the hub answered."""
    retries = Config(retries={"total_max_attempts": attempts, "mode": "standard"}, connect_timeout=2, read_timeout=10)
    return local_client("securityhub", hub.endpoint_url, config=retries)


@pytest.fixture
def finding(convert: Convert, reference_events: list[dict[str, Any]]) -> dict[str, Any]:
    return convert(reference_events[2] | {"region": "us-east-1"})[0]


def variant(finding: dict[str, Any], index: int, **changes: Any) -> dict[str, Any]:
    return copy.deepcopy(finding) | {"Id": f"{finding['Id']}-{index}"} | changes


def test_a_valid_finding_is_stored_with_what_security_hub_adds(hub: LocalSecurityHub, finding: dict[str, Any]) -> None:
    answer = client(hub).batch_import_findings(Findings=[finding])

    assert (answer["SuccessCount"], answer["FailedCount"], answer["FailedFindings"]) == (1, 0, [])
    stored = hub.finding(finding["Id"])
    assert stored is not None
    assert stored["Region"] == "us-east-1"
    assert stored["Workflow"] == {"Status": "NEW"}
    assert stored["Title"] == finding["Title"]


def test_more_than_100_findings_are_refused_whole(hub: LocalSecurityHub, finding: dict[str, Any]) -> None:
    with pytest.raises(ClientError) as raised:
        client(hub).batch_import_findings(Findings=[variant(finding, i) for i in range(101)])

    assert raised.value.response["Error"]["Code"] == "InvalidInputException"
    assert hub.findings() == []


def test_a_request_over_6_mb_is_refused_whole(hub: LocalSecurityHub, finding: dict[str, Any]) -> None:
    padded = finding | {"ProductFields": {f"K{i}": "x" * 2000 for i in range(34)}}  # ~70 KB each

    with pytest.raises(ClientError) as raised:
        client(hub).batch_import_findings(Findings=[variant(padded, i) for i in range(90)])

    assert raised.value.response["Error"]["Code"] == "InvalidInputException"


def of_size(finding: dict[str, Any], size: int, text: Callable[[Any], str]) -> dict[str, Any]:
    """`finding` padded with resources' Details.Other until `text` writes it in exactly `size` bytes."""
    resources = list(finding["Resources"])
    padded = finding | {"Resources": resources}
    while True:
        other: dict[str, str] = {}
        resources.append({"Type": "Other", "Id": f"pad-{len(resources)}", "Details": {"Other": other}})
        for key in (f"K{i}" for i in range(50)):
            other[key] = "x"
            short = size - len(text(padded).encode())
            other[key] += "x" * min(short, 999)
            if short <= 999:
                assert len(text(padded).encode()) == size
                return padded


def test_a_finding_over_240_kb_as_sent_fails_alone(hub: LocalSecurityHub, finding: dict[str, Any]) -> None:
    botocore_text = json.dumps  # what botocore writes: a space after each separator
    findings = [
        of_size(variant(finding, 1), 240_000, botocore_text),
        of_size(variant(finding, 2), 240_001, botocore_text),
    ]

    answer = client(hub).batch_import_findings(Findings=findings)

    assert answer["SuccessCount"] == 1
    assert [(f["Id"][-1], f["ErrorMessage"]) for f in answer["FailedFindings"]] == [
        ("2", "finding: 240001 bytes, at most 240000")
    ]


def test_a_findings_size_is_its_text_as_sent(hub: LocalSecurityHub, finding: dict[str, Any]) -> None:
    """What a client sent counts, however it wrote it: compact text under the limit is stored, though botocore would
    write the same finding over it; indented text over the limit fails, though compact text of it would pass."""
    compact = of_size(variant(finding, 1), 240_000, lambda doc: json.dumps(doc, separators=(",", ":")))
    indented = of_size(variant(finding, 2), 240_001, lambda doc: json.dumps(doc, indent=1))
    assert len(json.dumps(compact)) > 240_000 and len(json.dumps(indented, separators=(",", ":"))) < 240_000
    texts = [json.dumps(compact, separators=(",", ":")), json.dumps(indented, indent=1)]

    answer = hub.batch_import(('{"Findings": [' + ", ".join(texts) + "]}").encode())

    assert answer["SuccessCount"] == 1
    assert [(f["Id"][-1], f["ErrorMessage"]) for f in answer["FailedFindings"]] == [
        ("2", "finding: 240001 bytes, at most 240000")
    ]


@pytest.mark.parametrize(
    "body",
    [
        b"not JSON",
        b'{"Findings": null}',
        b'{"Findings": "x"}',
        b'{"Findings": []}',
        b'[{"Id": "x"}]',
        b'{"Findings": [{"Title": "\xff"}]}',  # not UTF-8, in a finding
        b'{"Findings": [{"Title": "x"}], "Other": "\xff"}',  # not UTF-8, in a member msgspec would skip
    ],
    ids=["not-json", "null", "a-string", "empty", "a-list", "bad-utf8-in-a-finding", "bad-utf8-elsewhere"],
)
def test_a_body_that_is_no_list_of_findings_in_json_is_refused_whole(hub: LocalSecurityHub, body: bytes) -> None:
    with pytest.raises(HubError) as raised:
        hub.batch_import(body)

    assert (raised.value.status, raised.value.code) == (400, "InvalidInputException")
    assert hub.findings() == []


def test_a_body_msgspec_can_not_read_is_read_as_json_reads_it(hub: LocalSecurityHub, finding: dict[str, Any]) -> None:
    """A lone surrogate's escape is JSON that msgspec refuses: the request is still answered finding by finding."""
    body = json.dumps({"Findings": [finding | {"Title": "\ud800 lone"}, variant(finding, 1, Title="x" * 257)]})

    answer = hub.batch_import(body.encode())

    assert answer["SuccessCount"] == 1
    assert [(f["Id"][-1], f["ErrorCode"]) for f in answer["FailedFindings"]] == [("1", "InvalidInput")]


def test_invalid_findings_fail_alone_with_the_reason(hub: LocalSecurityHub, finding: dict[str, Any]) -> None:
    findings = [
        variant(finding, 1),
        variant(finding, 2, Title="x" * 257),
        variant(finding, 3, Types=["Software and Configuration Check/Vulnerabilities"]),
        variant(finding, 4, Severity={"Label": "SEVERE"}),
        variant(finding, 5, ProductArn="arn:aws:securityhub:us-east-1::product/aws/guardduty"),
    ]

    answer = client(hub).batch_import_findings(Findings=findings)

    assert answer["SuccessCount"] == 1
    failed = {f["Id"][-1]: (f["ErrorCode"], f["ErrorMessage"]) for f in answer["FailedFindings"]}
    assert failed["2"][0] == failed["3"][0] == failed["4"][0] == "InvalidInput"
    assert "Title" in failed["2"][1] and "Types" in failed["3"][1] and "Severity" in failed["4"][1]
    assert failed["5"][0] == "InvalidAccess"
    assert [f["Id"] for f in hub.findings()] == [findings[0]["Id"]]


def test_an_older_or_equal_update_is_ignored_and_a_newer_one_keeps_created_at(
    hub: LocalSecurityHub, finding: dict[str, Any]
) -> None:
    hub_client = client(hub)
    hub_client.batch_import_findings(Findings=[finding])
    older = finding | {"UpdatedAt": "2022-11-09T22:00:00.000Z", "Title": "older"}
    same = finding | {"Title": "same time"}
    newer = finding | {
        "UpdatedAt": "2022-11-10T00:00:00.000Z",
        "CreatedAt": "2022-11-10T00:00:00.000Z",
        "Title": "newer",
        "RecordState": "ARCHIVED",
        "Note": {"Text": "ignored", "UpdatedBy": "provider", "UpdatedAt": "2022-11-10T00:00:00Z"},
    }

    answers = [hub_client.batch_import_findings(Findings=[f]) for f in (older, same, newer)]

    assert [a["FailedCount"] for a in answers] == [0, 0, 0]  # an ignored update is no failure
    stored = hub.finding(finding["Id"])
    assert stored is not None
    assert (stored["Title"], stored["RecordState"]) == ("newer", "ARCHIVED")
    assert stored["CreatedAt"] == finding["CreatedAt"]
    assert "Note" not in stored


def test_the_quota_is_10_a_second_with_a_burst_of_30(finding: dict[str, Any]) -> None:
    now = [0.0]
    with LocalSecurityHub(clock=lambda: now[0]) as hub:
        hub_client = client(hub)

        def burst(count: int) -> list[str]:
            codes = []
            for index in range(count):
                try:
                    hub_client.batch_import_findings(Findings=[variant(finding, index)])
                    codes.append("ok")
                except ClientError as error:
                    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 429
                    codes.append(error.response["Error"]["Code"])
            return codes

        assert burst(35) == ["ok"] * 30 + ["TooManyRequestsException"] * 5
        now[0] += 0.5
        assert burst(6) == ["ok"] * 5 + ["TooManyRequestsException"]


def test_the_token_bucket_refills_at_its_rate() -> None:
    now = [0.0]
    bucket = TokenBucket(10, 30, clock=lambda: now[0])

    assert sum(bucket.take() for _ in range(40)) == 30
    now[0] += 1.0
    assert sum(bucket.take() for _ in range(40)) == 10


def test_get_findings_filters_and_pages(hub: LocalSecurityHub, finding: dict[str, Any]) -> None:
    hub_client = client(hub, attempts=10)  # GetFindings has a quota of its own: 3 a second, burst 6
    findings = [
        variant(
            finding,
            i,
            RecordState="ARCHIVED" if i % 2 else "ACTIVE",
            UpdatedAt=f"2022-11-1{i}T00:00:00.000Z",
            ProductFields=finding["ProductFields"] | {"N": str(i)},
        )
        for i in range(5)
    ]
    hub_client.batch_import_findings(Findings=findings)

    def ids(**filters: Any) -> list[str]:
        return [f["Id"][-1] for f in hub_client.get_findings(Filters=filters)["Findings"]]

    assert ids(RecordState=[{"Value": "ARCHIVED", "Comparison": "EQUALS"}]) == ["1", "3"]
    assert ids(
        Id=[{"Value": findings[2]["Id"], "Comparison": "EQUALS"}, {"Value": findings[4]["Id"], "Comparison": "EQUALS"}]
    ) == ["2", "4"]
    assert ids(GeneratorId=[{"Value": "arn:aws:iot:", "Comparison": "PREFIX"}]) == list("01234")
    assert ids(ProductFields=[{"Key": "N", "Value": "3", "Comparison": "EQUALS"}]) == ["3"]
    assert ids(UpdatedAt=[{"Start": "2022-11-11T00:00:00Z", "End": "2022-11-13T00:00:00Z"}]) == ["1", "2", "3"]
    assert ids(RecordState=[{"Value": "ARCHIVED", "Comparison": "NOT_EQUALS"}]) == ["0", "2", "4"]
    first = hub_client.get_findings(MaxResults=2)
    second = hub_client.get_findings(MaxResults=2, NextToken=first["NextToken"])
    assert len(first["Findings"]) == len(second["Findings"]) == 2
    assert {f["Id"] for f in first["Findings"]}.isdisjoint(f["Id"] for f in second["Findings"])


def test_a_filter_it_does_not_implement_is_refused_not_ignored(hub: LocalSecurityHub) -> None:
    with pytest.raises(ClientError) as raised:
        client(hub).get_findings(Filters={"SeverityLabel": [{"Value": "HIGH", "Comparison": "EQUALS"}]})

    assert "SeverityLabel" in raised.value.response["Error"]["Message"]


def test_an_outage_answers_500_until_it_ends(hub: LocalSecurityHub, finding: dict[str, Any]) -> None:
    hub.outage(0.5)
    with pytest.raises(ClientError) as raised:
        client(hub).batch_import_findings(Findings=[finding])
    assert raised.value.response["Error"]["Code"] == "InternalException"

    time.sleep(0.6)
    assert client(hub).batch_import_findings(Findings=[finding])["SuccessCount"] == 1


def test_an_outage_can_refuse_connections(hub: LocalSecurityHub, finding: dict[str, Any]) -> None:
    hub_client = client(hub)
    hub_client.batch_import_findings(Findings=[variant(finding, 0)])  # a kept-alive connection exists
    hub.outage(1.0, refuse_connections=True)

    with pytest.raises((EndpointConnectionError, ConnectionClosedError)):
        hub_client.batch_import_findings(Findings=[variant(finding, 1)])
    time.sleep(1.3)
    assert hub_client.batch_import_findings(Findings=[variant(finding, 2)])["SuccessCount"] == 1
    assert {f["Id"][-1] for f in hub.findings()} == {"0", "2"}


def test_forced_throttling_and_forced_failures(hub: LocalSecurityHub, finding: dict[str, Any]) -> None:
    hub_client = client(hub)
    hub.throttle(0.3)
    with pytest.raises(ClientError) as raised:
        hub_client.batch_import_findings(Findings=[finding])
    assert raised.value.response["Error"]["Code"] == "TooManyRequestsException"
    time.sleep(0.4)

    hub.fail([finding["Id"]], "InvalidAccess", "integration disabled", times=1)
    first = hub_client.batch_import_findings(Findings=[finding])
    again = hub_client.batch_import_findings(Findings=[finding])
    assert first["FailedFindings"] == [
        {"Id": finding["Id"], "ErrorCode": "InvalidAccess", "ErrorMessage": "integration disabled"}
    ]
    assert again["SuccessCount"] == 1


def test_every_request_is_logged(hub: LocalSecurityHub, finding: dict[str, Any]) -> None:
    hub_client = client(hub)
    hub_client.batch_import_findings(Findings=[finding, variant(finding, 1, Title="")])
    hub.throttle(1)
    with pytest.raises(ClientError):
        hub_client.batch_import_findings(Findings=[finding])

    log = hub.requests("BatchImportFindings")
    assert [(r.status, r.findings, r.accepted, r.failed, r.error) for r in log] == [
        (200, 2, 1, 1, None),
        (429, 0, 0, 0, "TooManyRequestsException"),
    ]


def test_the_command_line_serves_it_with_the_control_api(finding: dict[str, Any]) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "defender_hub", "local-securityhub"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        endpoint = process.stdout.readline().strip()
        assert endpoint.startswith("http://127.0.0.1:")

        def control(path: str, body: dict[str, Any] | None = None) -> Any:
            data = json.dumps(body).encode() if body is not None else None
            with urllib.request.urlopen(urllib.request.Request(endpoint + path, data=data), timeout=10) as answer:
                return json.load(answer)

        hub_client = local_client("securityhub", endpoint)
        hub_client.batch_import_findings(Findings=[finding])
        assert [f["Id"] for f in control("/_local/findings")["Findings"]] == [finding["Id"]]
        control("/_local/fail", {"Ids": [finding["Id"]], "ErrorCode": "InvalidAccess"})
        assert hub_client.batch_import_findings(Findings=[finding])["FailedCount"] == 1
        assert len(control("/_local/requests")["Requests"]) == 2
        control("/_local/reset", {})
        assert control("/_local/findings")["Findings"] == []
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0


def test_a_finding_of_another_account_refuses_the_whole_request(hub: LocalSecurityHub, finding: dict[str, Any]) -> None:
    other = "999999999999"
    theirs = variant(
        finding, 2, AwsAccountId=other, ProductArn=f"arn:aws:securityhub:us-east-1:{other}:product/{other}/default"
    )

    with pytest.raises(ClientError) as raised:
        client(hub).batch_import_findings(Findings=[variant(finding, 1), theirs])

    assert raised.value.response["Error"]["Code"] == "AccessDeniedException"
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert "securityhub:BatchImportFindings" in raised.value.response["Error"]["Message"]
    assert hub.findings() == []


def test_an_account_and_region_not_enabled_are_refused_with_401_until_enabled(
    hub: LocalSecurityHub, finding: dict[str, Any]
) -> None:
    control = f"{hub.endpoint_url}/_local/disable"
    request = urllib.request.Request(control, json.dumps({"Account": ACCOUNT, "Region": "us-east-1"}).encode())
    urllib.request.urlopen(request, timeout=5).close()

    with pytest.raises(ClientError) as raised:
        client(hub).batch_import_findings(Findings=[finding])
    assert raised.value.response["Error"]["Code"] == "InvalidAccessException"
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 401

    hub.enable(ACCOUNT, "us-east-1")
    assert client(hub).batch_import_findings(Findings=[finding])["SuccessCount"] == 1


def test_role_credentials_from_the_local_sts_import_as_the_roles_account(
    local_aws: LocalAws, finding: dict[str, Any]
) -> None:
    other = "210987654321"
    with LocalSecurityHub(sts_endpoint=local_aws.endpoint_url) as hub:
        sts = local_client("sts", local_aws.endpoint_url)
        role = sts.assume_role(RoleArn=f"arn:aws:iam::{other}:role/defender-hub-import", RoleSessionName="test")
        keys = role["Credentials"]
        as_other = boto3.client(
            "securityhub",
            endpoint_url=hub.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id=keys["AccessKeyId"],
            aws_secret_access_key=keys["SecretAccessKey"],
            aws_session_token=keys["SessionToken"],
        )
        theirs = finding | {
            "AwsAccountId": other,
            "ProductArn": f"arn:aws:securityhub:us-east-1:{other}:product/{other}/default",
        }

        assert as_other.batch_import_findings(Findings=[theirs])["SuccessCount"] == 1
        with pytest.raises(ClientError) as raised:  # the default credentials are the default account's
            client(hub).batch_import_findings(Findings=[theirs])

    assert raised.value.response["Error"]["Code"] == "AccessDeniedException"
    assert [(r.caller, r.accepted) for r in hub.requests("BatchImportFindings")] == [(other, 1), (ACCOUNT, 0)]


def test_each_account_has_its_own_quota(hub: LocalSecurityHub, finding: dict[str, Any]) -> None:
    other = "999999999999"
    theirs = finding | {
        "AwsAccountId": other,
        "ProductArn": f"arn:aws:securityhub:us-east-1:{other}:product/{other}/default",
    }
    taken = 0
    for _ in range(30):  # the default account's whole burst
        hub.batch_import(json.dumps({"Findings": [finding]}).encode(), "us-east-1", ACCOUNT)
        taken += 1

    answer = hub.batch_import(json.dumps({"Findings": [theirs]}).encode(), "us-east-1", other)

    assert taken == 30 and answer["SuccessCount"] == 1
    with pytest.raises(Exception, match="Rate exceeded"):
        hub.batch_import(json.dumps({"Findings": [finding]}).encode(), "us-east-1", ACCOUNT)


def test_arrivals_are_when_each_finding_was_first_stored(finding: dict[str, Any]) -> None:
    now = [5.0]
    with LocalSecurityHub(clock=lambda: now[0]) as hub:
        hub_client = client(hub)
        hub_client.batch_import_findings(Findings=[finding])
        now[0] = 9.0
        newer = finding | {"UpdatedAt": "2030-01-01T00:00:00Z"}
        hub_client.batch_import_findings(Findings=[newer, variant(finding, 1)])

        assert hub.arrivals() == {finding["Id"]: 5.0, variant(finding, 1)["Id"]: 9.0}


def test_arrivals_are_served_with_the_hubs_clock_for_another_process(finding: dict[str, Any]) -> None:
    now = [5.0]
    with LocalSecurityHub(clock=lambda: now[0]) as hub:
        client(hub).batch_import_findings(Findings=[finding])
        now[0] = 7.5

        with urllib.request.urlopen(hub.endpoint_url + "/_local/arrivals", timeout=10) as answer:
            assert json.load(answer) == {"Arrivals": {finding["Id"]: 5.0}, "Now": 7.5}


def test_a_finding_whose_id_is_a_list_fails_alone_as_invalid_input(hub: LocalSecurityHub) -> None:
    # botocore would not send it; a hand-made request may, and the service refuses that finding, not the request.
    answer = hub.batch_import(json.dumps({"Findings": [{"Id": ["x"]}]}).encode())

    assert answer["FailedCount"] == 1
    assert answer["FailedFindings"][0]["ErrorCode"] == "InvalidInput"


@pytest.mark.parametrize(
    "request_body",
    [
        [],
        {"Filters": [{"Id": []}]},
        {"Filters": {"Id": "x"}},
        {"SortCriteria": ["Id"]},
        {"SortCriteria": [{"Field": ["Id"]}]},
        {"MaxResults": [5]},
        {"NextToken": "not base64!"},
    ],
    ids=[
        "not-an-object",
        "filters-a-list",
        "filter-not-a-list",
        "criterion-not-an-object",
        "field-a-list",
        "max-results-a-list",
        "next-token-garbled",
    ],
)
def test_a_malformed_get_findings_request_is_refused_as_invalid_input(
    hub: LocalSecurityHub, request_body: object
) -> None:
    with pytest.raises(HubError) as raised:
        hub.get_findings(json.dumps(request_body).encode())

    assert raised.value.code == "InvalidInputException"


def test_answers_are_sent_without_waiting_for_the_clients_ack(hub: LocalSecurityHub, finding: dict[str, Any]) -> None:
    """An answer is written in two pieces (its head, then its body). With Nagle's algorithm on, the second waits for
    the client's acknowledgement of the first, which the client delays by some 40 ms: a latency Security Hub does not
    add, in every request of every latency the load test measures."""
    accepted: list[socket.socket] = []
    server = hub._server
    assert server is not None
    process_request = server.process_request

    def noting(request: Any, client_address: Any) -> None:
        accepted.append(request)
        process_request(request, client_address)

    server.process_request = noting  # type: ignore[method-assign]
    importing = client(hub)  # kept until the check: its connection, closed, would close the socket checked
    importing.batch_import_findings(Findings=[finding])

    assert accepted and accepted[0].getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
