"""A short smoke run of the load test (benchmarks/loadtest.py): each scenario runs small, every finding arrives, and it
reports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import local_aws_env

pytestmark = pytest.mark.daemon  # the load test runs the consumer with its daemon in each scenario

LOADTEST = Path(__file__).parents[1] / "benchmarks" / "loadtest.py"


def test_a_small_load_test_delivers_everything_and_prints_its_table() -> None:
    done = subprocess.run(
        # "shards" is "steady" with more shards: sixteen shard processes are too many for a smoke run on two cores.
        [sys.executable, str(LOADTEST), "--quick", "--only", "backlog,steady,accounts,replay,import"],
        capture_output=True, text=True, timeout=600, env=local_aws_env(), check=False,
    )  # fmt: skip

    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line.split(" | ") for line in done.stdout.splitlines() if line.startswith("| ") and "---" not in line]
    header, *scenarios = rows
    assert [row[0].split(",")[0] for row in scenarios] == [
        "| backlog",
        "| 100 events/s",
        "| backlog",
        "| replay of 5",  # 5,000 records: "--quick" runs a twentieth
        "| import",
    ]
    for row in scenarios:
        assert row[1] == row[2]  # every finding arrived (stored == expected); none was sent again on the replay
    assert "p99 s" in header
