"""The local AWS stack (moto behind hypercorn): a taken port is said as such, never mistaken for a ready stack."""

from __future__ import annotations

import socket

import pytest

from defender_hub.errors import PortTaken
from defender_hub.local import aws
from defender_hub.local.aws import LOOPBACK, LocalAws, free_port


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
        monkeypatch.setattr(aws, "port_is_free", lambda _: True)

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
