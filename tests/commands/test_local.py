"""`defender-hub local`: a ready line, your events on a stream, the next commands; a taken port said in one line; the
address it listens on."""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from defender_hub.local.aws import LOOPBACK, free_port
from tests.helpers import GOLDEN, cli, local_aws_env
from tests.local.test_aws import OTHER_LOOPBACK, refused

CLI = (sys.executable, "-m", "defender_hub")


@contextmanager
def listening(host: str = LOOPBACK) -> Iterator[int]:
    with socket.socket() as other:
        other.bind((host, free_port(host)))
        other.listen()
        yield other.getsockname()[1]


@pytest.mark.parametrize("flag", ["--aws-port", "--securityhub-port"])
def test_a_taken_port_is_one_line_naming_the_port_and_its_flag(flag: str, tmp_path: Path) -> None:
    other_flag = "--securityhub-port" if flag == "--aws-port" else "--aws-port"
    with listening() as port:
        done = cli(
            "local",
            flag,
            str(port),
            other_flag,
            str(free_port()),
            env=local_aws_env(DEFENDER_HUB_STATE_DIR=str(tmp_path)),
        )

    errors = done.stderr.decode().strip().splitlines()
    assert done.returncode == 2
    assert errors == [
        f"defender-hub: configuration error: port {port} on 127.0.0.1 is taken by another process: stop it, or pick "
        f"another port with {flag} PORT"
    ]


def ready_lines(local: subprocess.Popen[str]) -> list[str]:
    """What `local` prints up to its Ctrl-C line, once it is ready."""
    assert local.stdout is not None
    ready = [local.stdout.readline().rstrip()]
    while not ready[-1].startswith("# Ctrl-C"):
        ready.append(local.stdout.readline().rstrip())
        assert local.poll() is None, local.stderr.read() if local.stderr else ""
    return ready


def exports(ready: list[str]) -> dict[str, str]:
    """The variables of the `export NAME=VALUE` lines, as a shell would read them."""
    pairs = (shlex.split(line.removeprefix("export "))[0].split("=", 1) for line in ready if line.startswith("export"))
    return dict(pairs)


@pytest.mark.daemon
def test_the_readme_walk_local_put_run_findings(tmp_path: Path) -> None:
    state = {"DEFENDER_HUB_STATE_DIR": str(tmp_path / "state")}
    aws_port = free_port()  # not 4566, which may be another stack's: its files are named for the port
    local = subprocess.Popen(
        [*CLI, "local", "--aws-port", str(aws_port), "--securityhub-port", str(free_port()),
         "--put", str(GOLDEN / "reference-events.jsonl")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ | state,
    )  # fmt: skip
    try:
        ready = ready_lines(local)
        assert ready[0].startswith("# defender-hub local: ready.")
        assert "# stream device-defender: 2 shards, 3 events put" in ready
        environment = exports(ready)
        assert (tmp_path / "state" / f"local-{aws_port}.env").read_text().splitlines() == [
            line for line in ready if line.startswith("export")
        ]
        run = next(line for line in ready if "defender-hub run" in line).lstrip("# ").split("#")[0].split()[1:]
        consumer = subprocess.Popen(
            [*CLI, *run], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ | state | environment
        )
        try:
            deadline, table = time.monotonic() + 180, ""
            while time.monotonic() < deadline and table.count("\n") < 3:  # a header and the three findings
                time.sleep(2)
                table = subprocess.run(
                    [*CLI, "findings"], capture_output=True, text=True, timeout=60, check=True,
                    env=os.environ | environment,
                ).stdout  # fmt: skip
        finally:
            consumer.send_signal(signal.SIGTERM)
            consumer.wait(timeout=90)
    finally:
        local.send_signal(signal.SIGINT)
        local.wait(timeout=30)

    rows = table.splitlines()
    header = rows[0].split()
    assert header[:3] == ["updated", "state", "workflow"]
    assert len(rows) == 4, table
    assert {row.split()[header.index("product")] for row in rows[1:]} >= {"Detect", "Audit"}
    # The consumer's state went to the state directory's folder for the local stack, which starts empty with it.
    assert (tmp_path / "state" / f"local-{aws_port}" / "ledger.sqlite3").exists()


@pytest.mark.parametrize("command", [["local"], ["demo", "--keep"]])
def test_a_folder_it_did_not_make_is_never_emptied(command: list[str], tmp_path: Path) -> None:
    port = free_port()  # a stack's folder is named for its port, but for the default port's
    folder = tmp_path / (f"local-{port}" if command == ["local"] else "demo")
    folder.mkdir()
    (folder / "precious.txt").write_text("someone's")

    done = cli(
        *command, *(["--aws-port", str(port)] if command == ["local"] else []),
        env=local_aws_env(DEFENDER_HUB_STATE_DIR=str(tmp_path)),
    )  # fmt: skip

    assert done.returncode == 2
    assert f"{folder} is not defender-hub's" in done.stderr.decode()
    assert (folder / "precious.txt").read_text() == "someone's"


def test_the_stack_listens_on_the_listen_address_and_its_environment_points_there(tmp_path: Path) -> None:
    aws_port, hub_port = free_port(OTHER_LOOPBACK), free_port(OTHER_LOOPBACK)
    local = subprocess.Popen(
        [*CLI, "local", "--listen-address", OTHER_LOOPBACK, "--aws-port", str(aws_port),
         "--securityhub-port", str(hub_port), "--stream", "listening", "--shards", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=local_aws_env(DEFENDER_HUB_STATE_DIR=str(tmp_path)),
    )  # fmt: skip
    try:
        ready = ready_lines(local)
        aws, hub = f"http://{OTHER_LOOPBACK}:{aws_port}", f"http://{OTHER_LOOPBACK}:{hub_port}"
        listened = {port: refused(LOOPBACK, port) for port in (aws_port, hub_port)}
    finally:
        local.send_signal(signal.SIGINT)
        local.wait(timeout=30)

    assert f"STS at {aws}; the local Security Hub at {hub} " in ready[0]
    assert "# stream listening: 1 shards, 0 events put" in ready
    environment = exports(ready)
    assert environment["AWS_ENDPOINT_URL_KINESIS"] == environment["AWS_ENDPOINT_URL_STS"] == aws
    assert environment["AWS_ENDPOINT_URL_SECURITYHUB"] == hub
    assert listened == {aws_port: True, hub_port: True}  # nothing of the stack on 127.0.0.1


def test_a_taken_port_is_said_on_the_listen_address(tmp_path: Path) -> None:
    with listening(OTHER_LOOPBACK) as port:
        done = cli(
            "local", "--listen-address", OTHER_LOOPBACK, "--aws-port", str(port),
            "--securityhub-port", str(free_port(OTHER_LOOPBACK)),
            env=local_aws_env(DEFENDER_HUB_STATE_DIR=str(tmp_path)),
        )  # fmt: skip

    assert done.returncode == 2
    assert done.stderr.decode().strip().splitlines() == [
        f"defender-hub: configuration error: port {port} on {OTHER_LOOPBACK} is taken by another process: stop it, "
        "or pick another port with --aws-port PORT"
    ]


@pytest.mark.parametrize("address", ["localhost", "::1", "127.0.0.256"])
def test_a_listen_address_that_is_not_an_ipv4_address_is_refused_before_anything_starts(
    address: str, tmp_path: Path
) -> None:
    done = cli("local", "--listen-address", address, env=local_aws_env(DEFENDER_HUB_STATE_DIR=str(tmp_path)))

    assert done.returncode == 2
    assert f"argument --listen-address: {address!r} is not an IPv4 address" in done.stderr.decode()
    assert not list(tmp_path.iterdir())  # no state folder emptied or made


def test_the_listen_address_defaults_to_127_0_0_1_and_its_help_says_what_0_0_0_0_is_for() -> None:
    done = cli("local", "--help")

    text = " ".join(done.stdout.decode().split())
    assert "--listen-address IP" in text
    assert "(default: 127.0.0.1, this host only)" in text
    assert "0.0.0.0 is for the stack in a container on a compose network, where it reaches only that network" in text
