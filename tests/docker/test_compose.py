"""docker/compose.yaml as compose reads it: both services on the compose network, the consumer started once the stack's
health check holds, which it does only once the stream is there, and the stack's ports on the host's 127.0.0.1 only.
No compose runs here (none is installed): the file is read, and its health check run against a local stack."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from defender_hub.cli import parse
from defender_hub.local.aws import LOOPBACK, LocalAws
from defender_hub.local.securityhub import LocalSecurityHub
from defender_hub.local.stack import LocalStack
from tests.helpers import unique

COMPOSE = Path(__file__).parents[2] / "docker" / "compose.yaml"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose["services"]
    assert set(found) == {"stack", "consumer"}
    return found


def stack_args(services: dict[str, dict[str, Any]]) -> Any:
    """The stack's command as `defender-hub` parses it: its flags exist, and their values."""
    return parse(services["stack"]["command"])


def test_no_service_uses_the_host_network(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        assert "network_mode" not in service, name
        assert "networks" not in service, name  # the project's default network, which compose makes


def test_the_stack_listens_on_its_container_and_publishes_its_ports_on_the_hosts_loopback_only(
    services: dict[str, dict[str, Any]],
) -> None:
    args = stack_args(services)

    assert args.command == "local"
    assert args.listen_address == "0.0.0.0"
    assert sorted(services["stack"]["ports"]) == sorted(
        f"{LOOPBACK}:{port}:{port}" for port in (args.aws_port, args.securityhub_port)
    )
    assert "ports" not in services["consumer"]


def test_the_consumer_waits_for_a_healthy_stack_and_reaches_it_by_its_service_name(
    services: dict[str, dict[str, Any]],
) -> None:
    args, consumer = stack_args(services), services["consumer"]

    assert consumer["depends_on"] == {"stack": {"condition": "service_healthy"}}
    environment = consumer["environment"]
    assert environment["AWS_ENDPOINT_URL"] == f"http://stack:{args.aws_port}"
    assert environment["AWS_ENDPOINT_URL_SECURITYHUB"] == f"http://stack:{args.securityhub_port}"
    assert environment["DEFENDER_HUB_STREAM"] == args.stream


def test_both_images_take_the_version_and_the_base_from_the_environment(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        assert service["build"]["args"]["VERSION"] == "${VERSION:-}", name  # no version of its own: pyproject's
        assert service["build"]["args"]["BASE_IMAGE"].startswith("${BASE_IMAGE:-"), name


def health_check(
    services: dict[str, dict[str, Any]], stack: LocalStack, stream: str
) -> subprocess.CompletedProcess[str]:
    """Runs the stack service's health check against `stack` for `stream`: its ports and stream swapped for theirs."""
    args = stack_args(services)
    healthcheck = services["stack"]["healthcheck"]
    assert healthcheck["test"][:3] == ["CMD", "python3", "-c"]
    code: str = healthcheck["test"][3]
    swaps = {
        f"http://{LOOPBACK}:{args.aws_port}": stack.aws.endpoint_url,
        f"http://{LOOPBACK}:{args.securityhub_port}": stack.hub.endpoint_url,
        f'"{args.stream}"': f'"{stream}"',
    }
    for old, new in swaps.items():
        assert code.count(old) == 1, old
        code = code.replace(old, new)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)


def test_the_stacks_health_check_holds_only_once_its_stream_is_there(
    services: dict[str, dict[str, Any]], local_aws: LocalAws, hub: LocalSecurityHub
) -> None:
    stack, stream = LocalStack(local_aws, hub), unique("compose")

    before = health_check(services, stack, stream)  # both servers answer, but no stream yet
    stack.create_stream(stream, 1)
    after = health_check(services, stack, stream)

    assert before.returncode != 0
    assert "ResourceNotFoundException" in before.stderr
    assert after.returncode == 0, after.stderr
