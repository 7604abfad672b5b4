"""The local stack: its environment as shell lines, its streams, a taken port, and the folders it may empty."""

from __future__ import annotations

import shlex
import socket
from pathlib import Path
from typing import Any

import boto3
import pytest

from defender_hub.errors import ConfigError, PortTaken
from defender_hub.local.aws import LOOPBACK, LocalAws, free_port
from defender_hub.local.securityhub import LocalSecurityHub
from defender_hub.local.stack import LocalStack, fresh_folder, local_stack
from tests.helpers import Convert, local_client, unique
from tests.local.test_aws import OTHER_LOOPBACK, refused


def test_the_exports_are_the_environment_with_the_state_folder_as_a_shell_reads_them(
    local_aws: LocalAws, hub: LocalSecurityHub, tmp_path: Path
) -> None:
    stack = LocalStack(local_aws, hub)
    state = tmp_path / "a folder with spaces"

    lines = stack.exports(state)

    assert all(line.startswith("export ") for line in lines)
    read = dict(shlex.split(line.removeprefix("export "))[0].split("=", 1) for line in lines)
    assert read == stack.environment() | {"DEFENDER_HUB_STATE_DIR": str(state)}
    assert read["AWS_ENDPOINT_URL_KINESIS"] == local_aws.endpoint_url
    assert read["AWS_ENDPOINT_URL_SECURITYHUB"] == hub.endpoint_url


def test_a_stream_it_creates_is_active_when_it_returns(local_aws: LocalAws, hub: LocalSecurityHub) -> None:
    stream = unique("stack")

    kinesis = LocalStack(local_aws, hub).create_stream(stream, 2)

    description = kinesis.describe_stream(StreamName=stream)["StreamDescription"]
    assert description["StreamStatus"] == "ACTIVE"
    assert len(description["Shards"]) == 2


def test_a_taken_security_hub_port_is_said_before_moto_starts() -> None:
    with socket.socket() as other:
        other.bind((LOOPBACK, free_port()))
        other.listen()
        port = other.getsockname()[1]

        with pytest.raises(PortTaken, match=f"port {port} "), local_stack(hub_port=port):
            pass


def test_the_stack_listens_on_the_address_given_and_its_hub_still_asks_its_sts(
    convert: Convert, reference_events: list[dict[str, Any]]
) -> None:
    other = "210987654321"
    with local_stack(host=OTHER_LOOPBACK) as stack:
        hub_port = int(stack.hub.endpoint_url.rsplit(":", 1)[1])
        environment = stack.environment()
        assert {value for name, value in environment.items() if name.startswith("AWS_ENDPOINT_URL_")} == {
            f"http://{OTHER_LOOPBACK}:{stack.aws.port}",
            f"http://{OTHER_LOOPBACK}:{hub_port}",
        }
        assert refused(LOOPBACK, stack.aws.port) and refused(LOOPBACK, hub_port)
        # The hub learns a caller's account from moto's STS, at the address the stack was given
        role = stack.client("sts").assume_role(
            RoleArn=f"arn:aws:iam::{other}:role/defender-hub-import", RoleSessionName="test"
        )["Credentials"]
        as_other = boto3.client(
            "securityhub",
            endpoint_url=stack.hub.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id=role["AccessKeyId"],
            aws_secret_access_key=role["SecretAccessKey"],
            aws_session_token=role["SessionToken"],
        )
        finding = convert(reference_events[2] | {"region": "us-east-1"})[0] | {
            "AwsAccountId": other,
            "ProductArn": f"arn:aws:securityhub:us-east-1:{other}:product/{other}/default",
        }

        assert as_other.batch_import_findings(Findings=[finding])["SuccessCount"] == 1
        assert [(r.caller, r.accepted) for r in stack.hub.requests("BatchImportFindings")] == [(other, 1)]
        assert local_client("kinesis", environment["AWS_ENDPOINT_URL_KINESIS"]).list_streams()["StreamNames"] == []


def test_a_fresh_folder_is_made_marked_and_emptied_when_it_is_defender_hubs(tmp_path: Path) -> None:
    folder = fresh_folder(tmp_path / "local")
    (folder / "ledger.sqlite3").write_text("an old run's")

    again = fresh_folder(tmp_path / "local")

    assert again == folder
    assert [path.name for path in folder.iterdir()] == [".defender-hub"]


def test_a_folder_it_did_not_make_is_refused_unless_empty(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "theirs").mkdir()
    (tmp_path / "theirs" / "precious.txt").write_text("someone's")

    assert fresh_folder(tmp_path / "empty").is_dir()
    with pytest.raises(ConfigError, match="is not defender-hub's"):
        fresh_folder(tmp_path / "theirs")
    assert (tmp_path / "theirs" / "precious.txt").read_text() == "someone's"
