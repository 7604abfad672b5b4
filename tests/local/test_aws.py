"""The local AWS stack (moto behind hypercorn): a taken port is said as such, never mistaken for a ready stack; it
listens on the address it is given, 127.0.0.1 unless told; what moto logs never stops it answering."""

from __future__ import annotations

import socket

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from defender_hub.errors import PortTaken
from defender_hub.local import aws
from defender_hub.local.aws import LOOPBACK, LocalAws, free_port, listen_address, reach_address
from defender_hub.local.securityhub import LocalSecurityHub
from tests.helpers import local_client

OTHER_LOOPBACK = "127.0.0.2"
"""Loopback too (the whole of 127.0.0.0/8 is), yet not 127.0.0.1: a server listening there proves the address was
carried through, and the tests never listen beyond this host."""


def refused(host: str, port: int) -> bool:
    """Whether a connection to `port` of `host` is refused: nothing listens there."""
    try:
        socket.create_connection((host, port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def test_a_port_another_process_listens_on_is_refused() -> None:
    with socket.socket() as other:
        other.bind((LOOPBACK, free_port()))
        other.listen()
        port = other.getsockname()[1]

        with pytest.raises(PortTaken, match=f"port {port} on 127.0.0.1 is taken"):
            LocalAws(port).start()


def test_another_stack_answering_on_the_port_is_not_taken_for_the_one_started(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with LocalAws() as first:
        # As if the port were taken between the check and the start: only the readiness check can tell.
        monkeypatch.setattr(aws, "port_is_free", lambda *_: True)

        with pytest.raises(PortTaken):
            LocalAws(first.port).start()


def test_a_port_left_in_time_wait_by_a_stack_just_stopped_is_free() -> None:
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind((LOOPBACK, 0))
        server.listen()
        port = server.getsockname()[1]
        client = socket.create_connection((LOOPBACK, port))
        accepted, _ = server.accept()
        accepted.close()  # the server side closes first: its end of the connection waits in TIME_WAIT
        client.close()

    assert aws.port_is_free(port)


def test_moto_listens_on_the_address_given_and_only_there() -> None:
    with LocalAws(host=OTHER_LOOPBACK) as stack:  # start() returns once moto answers at endpoint_url
        assert stack.endpoint_url == f"http://{OTHER_LOOPBACK}:{stack.port}"
        assert refused(LOOPBACK, stack.port)


def test_the_local_security_hub_listens_on_the_address_given_and_only_there() -> None:
    with LocalSecurityHub(host=OTHER_LOOPBACK) as hub:
        port = int(hub.endpoint_url.rsplit(":", 1)[1])
        assert hub.endpoint_url == f"http://{OTHER_LOOPBACK}:{port}"
        assert not refused(OTHER_LOOPBACK, port)
        assert refused(LOOPBACK, port)


def test_both_listen_on_127_0_0_1_unless_told() -> None:
    with LocalSecurityHub() as hub:
        assert hub.host == LOOPBACK
        assert hub.endpoint_url.startswith(f"http://{LOOPBACK}:")
    assert LocalAws().host == LOOPBACK


def test_every_interface_is_reached_at_127_0_0_1_and_any_other_address_as_itself() -> None:
    # 0.0.0.0 in a container: the stack's own tools (the health check, the hub asking moto's STS) use its loopback
    assert reach_address("0.0.0.0") == LOOPBACK
    assert reach_address(OTHER_LOOPBACK) == OTHER_LOOPBACK


@pytest.mark.parametrize("address", ["localhost", "::1", "127.0.0.256", ""])
def test_an_address_to_listen_on_is_an_ipv4_address(address: str) -> None:
    with pytest.raises(ValueError):
        listen_address(address)
    with pytest.raises(ValueError):
        LocalSecurityHub(host=address)


def test_the_stack_answers_on_after_logging_more_than_a_pipe_holds() -> None:
    with LocalAws() as stack:
        client = local_client(
            "dynamodb", stack.endpoint_url, config=Config(retries={"total_max_attempts": 1}, read_timeout=10)
        )
        # An action moto does not serve: hypercorn answers 500 and logs its traceback, 4 to 5 KB. Forty of them are
        # well over a pipe's 64 KiB, which a stack that nobody read the log of would block on, answering nothing more.
        for _ in range(40):
            with pytest.raises(ClientError) as failed:
                client.describe_contributor_insights(TableName="any")
            assert failed.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500

        assert client.list_tables()["TableNames"] == []
