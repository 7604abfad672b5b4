"""The README's first command: the demo runs the whole pipeline on the local stack, everything arrives, and its
summary explains the numbers; with --keep the stack stays up and the consumer's files stay on disk."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.daemon


def test_the_demo_delivers_every_finding_explains_the_numbers_and_keeps_what_it_ran(tmp_path: Path) -> None:
    errors = tmp_path / "demo.err"  # a file, not a pipe read only at the end: a pipe that filled would stop the demo
    with errors.open("w") as error_file:
        demo = subprocess.Popen(
            [sys.executable, "-m", "defender_hub", "demo", "--events", "400", "--keep"],
            stdout=subprocess.PIPE, stderr=error_file, text=True, start_new_session=True,
            env=os.environ | {"DEFENDER_HUB_STATE_DIR": str(tmp_path)},
        )  # fmt: skip
    try:
        assert demo.stdout is not None
        lines: list[str] = []
        while not lines or not lines[-1].startswith("Kept:"):
            line = demo.stdout.readline()
            assert line, "".join(lines) + errors.read_text()
            lines.append(line)
        kept = [demo.stdout.readline() for _ in range(2)]  # the stack's still up: its first variables answer
        demo.send_signal(signal.SIGINT)
        rest, _ = demo.communicate(timeout=60)
    finally:
        # Whatever became of the demo, nothing it started outlives the test: its stack, its consumer and the daemon.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(demo.pid, signal.SIGKILL)
        demo.wait(timeout=30)
        demo.stdout.close()

    out = "".join(lines)
    assert demo.returncode == 0, out + rest + errors.read_text()[-2000:]
    expected = int(out.split("distinct findings to expect")[0].rsplit(":", 1)[1])
    assert f"{expected} of {expected} findings in Security Hub" in out
    assert "IoT Device Defender - Detect   ACTIVE" in out
    assert "IoT Device Defender - Audit" in out
    explained = out.split("What the numbers mean:")[1]
    assert "400 events made" in explained and f"{expected} of them distinct" in explained
    assert "check summaries" in explained and "0 dead letters" in explained
    assert (tmp_path / "demo" / "consumer.log").stat().st_size > 0
    assert (tmp_path / "demo" / "ledger.sqlite3").exists()
    assert kept[0].startswith("export AWS_REGION=")
