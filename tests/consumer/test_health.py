"""Health as `defender-hub health` judges it, from what `run` and the processors note."""

from __future__ import annotations

import errno
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from defender_hub.consumer.health import check, note_daemon, note_shard
from defender_hub.local.aws import LocalAws
from tests.helpers import cli, local_aws_env, local_client, unique


def test_a_running_daemon_with_moving_shards_is_healthy(tmp_path: Path) -> None:
    note_daemon(tmp_path, os.getpid())
    note_shard(tmp_path, "shardId-000000000000", 5_000)

    assert check(tmp_path, stall_seconds=60).healthy


def test_an_idle_stream_is_healthy_however_long_it_stays_idle(tmp_path: Path) -> None:
    note_daemon(tmp_path, os.getpid())
    note_shard(tmp_path, "shardId-000000000000", 0)

    assert check(tmp_path, stall_seconds=60, now=1e12).healthy


def test_shards_that_stand_still_while_records_wait_are_unhealthy(tmp_path: Path) -> None:
    note_daemon(tmp_path, os.getpid())
    note_shard(tmp_path, "shardId-000000000000", 0)
    note_shard(tmp_path, "shardId-000000000001", 90_000)

    verdict = check(tmp_path, stall_seconds=60, now=1e12)

    assert not verdict.healthy and "shardId-000000000001" in verdict.reason


def test_a_daemon_that_is_gone_or_stopped_is_unhealthy(tmp_path: Path) -> None:
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    note_daemon(tmp_path, process.pid)
    process.send_signal(signal.SIGSTOP)
    os.waitpid(process.pid, os.WUNTRACED)  # returns once it has stopped: the signal is delivered in its own time
    try:
        assert "stopped" in check(tmp_path).reason
    finally:
        process.kill()
        process.wait()
    assert "gone" in check(tmp_path).reason
    assert not check(tmp_path / "never").healthy


def test_the_command_exits_1_and_says_why(tmp_path: Path) -> None:
    note_daemon(tmp_path, 2**22 + 12345)  # beyond any pid here

    answer = cli("health", "--health-dir", str(tmp_path))

    assert answer.returncode == 1
    assert answer.stdout.startswith(b"unhealthy: the KCL daemon")


def test_a_full_health_folder_costs_the_daemons_note_said_in_one_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def full(*_: object, **__: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Path, "write_text", full)

    note_daemon(tmp_path, os.getpid())

    [said] = [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert str(tmp_path) in said.getMessage() and "No space left on device" in said.getMessage()
    assert not check(tmp_path).healthy  # `health` tells the rest


def test_run_goes_on_with_a_warning_line_when_its_health_folder_cannot_be_made(
    local_aws: LocalAws, tmp_path: Path
) -> None:
    stream = unique("s")
    local_client("kinesis", local_aws.endpoint_url).create_stream(StreamName=stream, ShardCount=1)
    # A stand-in for Java and the KCL: `run` starts it as the daemon, and it ends at once.
    java, jars = tmp_path / "jdk" / "bin" / "java", tmp_path / "jars"
    java.parent.mkdir(parents=True)
    java.write_text("#!/bin/sh\nexit 0\n")
    java.chmod(0o755)
    jars.mkdir()
    (jars / "kcl.jar").touch()
    blocker = tmp_path / "a-file"
    blocker.touch()
    env = local_aws_env(
        AWS_ENDPOINT_URL=local_aws.endpoint_url, JAVA_HOME=str(tmp_path / "jdk"), DEFENDER_HUB_KCL_JARS=str(jars)
    )

    done = subprocess.run(
        [
            sys.executable, "-m", "defender_hub", "run", "--stream", stream, "--application", unique("app"),
            "--dead-letter", str(tmp_path / "dl.jsonl"), "--ledger", f"sqlite:///{tmp_path / 'ledger.db'}",
            "--health-dir", str(blocker / "health"),  # under a file: it can't be made, by root neither
        ],
        env=env, capture_output=True, timeout=60, check=False,
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    assert b"Traceback" not in done.stderr
    [warning] = [line for line in done.stderr.splitlines() if b"WARNING" in line]
    assert str(blocker / "health").encode() in warning
