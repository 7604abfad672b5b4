"""A short smoke run of the load test (benchmarks/loadtest.py): it runs, every finding arrives, and it reports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.helpers import local_aws_env

LOADTEST = Path(__file__).parents[1] / "benchmarks" / "loadtest.py"


def test_a_small_load_test_delivers_everything_and_prints_its_table() -> None:
    done = subprocess.run(
        [sys.executable, str(LOADTEST), "--findings", "1500", "--shards", "2", "--import-findings", "500"],
        capture_output=True, text=True, timeout=600, env=local_aws_env(), check=False,
    )  # fmt: skip

    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line.split(" | ") for line in done.stdout.splitlines() if line.startswith(("| backlog", "| import"))]
    assert len(rows) == 2
    for row in rows:
        assert row[1] == row[2]  # every finding arrived: stored == expected
