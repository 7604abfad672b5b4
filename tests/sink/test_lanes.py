"""Lanes: each account imports as itself, through a role from the local STS (moto), against the local Security Hub."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest

from defender_hub.errors import ConfigError
from defender_hub.local.aws import LocalAws
from defender_hub.local.securityhub import LocalSecurityHub
from defender_hub.sink import JsonlDeadLetters, Lane, SecurityHubSink
from defender_hub.sink.batching import EncodedFinding
from defender_hub.sink.lanes import EncodedFindings, check_external_id, role_arn
from tests.helpers import ACCOUNT, FAST, hub_clients
from tests.sink.test_securityhub import as_account, letters

MEMBER, DISABLED = "210987654321", "333333333333"


@pytest.fixture
def hub_beside_sts(local_aws: LocalAws, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalSecurityHub]:
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", local_aws.endpoint_url)
    with LocalSecurityHub(sts_endpoint=local_aws.endpoint_url) as hub:
        yield hub


def test_a_lane_is_the_account_and_region_of_the_product_arn() -> None:
    doc = {"ProductArn": f"arn:aws-cn:securityhub:cn-north-1:{MEMBER}:product/{MEMBER}/default", "AwsAccountId": "x"}

    assert Lane.of(doc) == Lane("aws-cn", MEMBER, "cn-north-1")
    assert str(Lane.of(doc)) == f"{MEMBER}/cn-north-1"


def test_the_role_is_a_name_in_each_account_or_an_arn_template() -> None:
    assert (
        role_arn("defender-hub-import", "aws-us-gov", MEMBER)
        == f"arn:aws-us-gov:iam::{MEMBER}:role/defender-hub-import"
    )
    assert role_arn("arn:{partition}:iam::{account}:role/sec/importer", "aws", MEMBER) == (
        f"arn:aws:iam::{MEMBER}:role/sec/importer"
    )


@pytest.mark.parametrize(
    "role",
    [
        "arn:aws:iam::111111111111:role/fixed",
        "no spaces allowed",
        "",
        "arn:aws:iam::{account}:role/{RoleName}",  # a placeholder nothing fills: KeyError in every shard
        "arn:{partition}:iam::{account}:user/importer",  # not a role
        "arn:aws:iam::{account}:role/",
        "arn:aws:iam::{account}:role/{",
    ],
)
def test_a_role_that_names_no_account_is_a_configuration_error(hub: LocalSecurityHub, role: str) -> None:
    with pytest.raises(ConfigError, match="--assume-role"):
        hub_clients(hub, assume_role=role)


@pytest.mark.parametrize("external_id", ["x", "x" * 1225, "has spaces", "org;1234", "ünïcode"])
def test_an_external_id_sts_would_refuse_is_a_configuration_error(external_id: str) -> None:
    with pytest.raises(ConfigError, match="--external-id"):
        check_external_id(external_id)


def test_an_external_id_sts_takes_passes() -> None:
    for external_id in ("org-1234", "a1", "x" * 1224, "A_b+=,.@:/-9"):
        check_external_id(external_id)


def test_each_account_is_imported_as_itself_and_a_disabled_one_is_parked(
    hub_beside_sts: LocalSecurityHub, tmp_path: Path, template: dict[str, Any]
) -> None:
    hub = hub_beside_sts
    hub.disable(DISABLED, "us-east-1")
    dead_letters = JsonlDeadLetters(tmp_path / "dead-letters.jsonl")
    clients = hub_clients(hub, assume_role="defender-hub-import", external_id="org-1234")
    sink = SecurityHubSink(clients, dead_letters, policy=FAST, stop=threading.Event())
    findings = [*as_account(template, ACCOUNT, 120), *as_account(template, MEMBER, 120)]

    report = sink.deliver([*findings, *as_account(template, DISABLED, 30)])

    assert (report.accepted, report.parked, report.dead_lettered) == (240, 30, 0)
    assert {(r.caller, r.status) for r in hub.requests("BatchImportFindings")} == {
        (ACCOUNT, 200),
        (MEMBER, 200),
        (DISABLED, 401),
    }
    sent = [item.finding for item in findings]
    assert {(f["AwsAccountId"], f["Id"]) for f in hub.findings()} == {(f["AwsAccountId"], f["Id"]) for f in sent}  # type: ignore[index]
    parked = letters(dead_letters)
    assert {(letter["lane"], letter["error_code"]) for letter in parked} == {
        (f"{DISABLED}/us-east-1", "InvalidAccessException")
    }
    assert f"arn:aws:iam::{DISABLED}:role/defender-hub-import" in parked[0]["reason"]


def test_the_callers_own_account_needs_no_role(hub_beside_sts: LocalSecurityHub, template: dict[str, Any]) -> None:
    clients = hub_clients(hub_beside_sts, assume_role="defender-hub-import")

    assert clients.own_account() == ACCOUNT  # asked of STS
    assert clients(Lane("aws", ACCOUNT, "us-east-1")) is clients(Lane("aws", ACCOUNT, "us-east-1"))


def test_two_accounts_are_imported_side_by_side(
    local_aws: LocalAws, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, template: dict[str, Any]
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", local_aws.endpoint_url)
    other, requests = "444444444444", 10  # per account, twice the burst: each account waits for its quota
    with LocalSecurityHub(sts_endpoint=local_aws.endpoint_url, rate=10, burst=5) as hub:
        clients = hub_clients(hub, assume_role="defender-hub-import")
        sink = SecurityHubSink(clients, JsonlDeadLetters(tmp_path / "dl.jsonl"), policy=FAST)
        report = sink.deliver(
            [*as_account(template, MEMBER, requests * 100), *as_account(template, other, requests * 100)]
        )

    assert report.accepted == 2 * requests * 100
    accepted = [r for r in hub.requests("BatchImportFindings") if r.status == 200]
    times = {account: [r.at for r in accepted if r.caller == account] for account in (MEMBER, other)}
    assert [len(times[account]) for account in (MEMBER, other)] == [requests, requests]
    # Side by side: each account's first request came before the other's last; one lane after the other, one would not.
    assert min(times[MEMBER]) < max(times[other])
    assert min(times[other]) < max(times[MEMBER])


class _RefusingSts(ThreadingHTTPServer):
    """A scripted STS on 127.0.0.1 that answers every AssumeRole as STS answers one it can never grant: 400
    ValidationError (a session policy or an external ID outside its rules, a malformed role ARN)."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                body = (
                    b'<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>'
                    b"<Code>ValidationError</Code><Message>1 validation error detected: Value at 'roleArn' failed to "
                    b"satisfy constraint</Message></Error><RequestId>r-1</RequestId></ErrorResponse>"
                )
                self.send_response(400)
                self.send_header("Content-Type", "text/xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()


def test_a_role_sts_refuses_with_a_4xx_parks_its_lane_and_the_others_go_on(
    hub: LocalSecurityHub, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, template: dict[str, Any]
) -> None:
    sts = _RefusingSts()
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", f"http://127.0.0.1:{sts.server_address[1]}")
    dead_letters = JsonlDeadLetters(tmp_path / "dead-letters.jsonl")
    stop = threading.Event()
    sink = SecurityHubSink(
        hub_clients(hub, assume_role="defender-hub-import", own_account=ACCOUNT), dead_letters, policy=FAST, stop=stop
    )
    timer = threading.Timer(20, stop.set)  # today's hang ends as SinkStopped rather than never
    timer.start()
    try:
        report = sink.deliver([*as_account(template, ACCOUNT, 5), *as_account(template, MEMBER, 3)])
    finally:
        timer.cancel()
        sts.shutdown()

    assert (report.accepted, report.parked) == (5, 3)
    assert {(letter["lane"], letter["error_code"]) for letter in letters(dead_letters)} == {
        (f"{MEMBER}/us-east-1", "ValidationError")
    }
    assert "AssumeRole" in letters(dead_letters)[0]["reason"]


def test_a_lanes_client_sends_encoded_findings_as_the_very_body_botocore_would_have_built(
    hub: LocalSecurityHub, template: dict[str, Any]
) -> None:
    findings = [template | {"Id": f"finding-{n}", "Title": f"ünïcode {n} \u2028"} for n in range(3)]
    client = hub_clients(hub)(Lane.of(template))
    bodies: list[bytes] = []
    client.meta.events.register(
        "before-send.securityhub.BatchImportFindings", lambda request, **_: bodies.append(request.body)
    )

    by_botocore = client.batch_import_findings(Findings=findings)
    encoded = client.batch_import_findings(Findings=EncodedFindings(EncodedFinding.of(f, []).body for f in findings))

    assert bodies[0] == bodies[1] and json.loads(bodies[1]) == {"Findings": findings}
    assert by_botocore["SuccessCount"] == encoded["SuccessCount"] == 3  # sent and taken by the hub, both ways


def test_encoded_findings_refuse_a_client_that_would_send_none(hub: LocalSecurityHub, template: dict[str, Any]) -> None:
    plain = boto3.client(
        "securityhub",
        endpoint_url=hub.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    with pytest.raises(TypeError, match="can't send them"):
        plain.batch_import_findings(Findings=EncodedFindings([EncodedFinding.of(template, []).body]))
    assert hub.requests("BatchImportFindings") == []
