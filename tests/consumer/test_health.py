"""Health as `defender-hub health` judges it, from what `run` and the processors note."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from defender_hub.consumer.health import check, note_daemon, note_shard
from tests.helpers import cli


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
