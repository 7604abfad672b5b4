"""`run` with its sender: the real KCL daemon's shard processes send through the worker's one sender, and a sender
that dies ends the run without a checkpoint past what it had not answered."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

from defender_hub.local.aws import LocalAws
from defender_hub.local.securityhub import LocalSecurityHub
from defender_hub.synthetic import generate_events
from tests.consumer.test_processor import Stream, start_consumer, stop
from tests.helpers import holds_latest, latest_versions, wait_for


def test_run_with_two_shards_delivers_everything_through_its_sender_and_ends_when_the_sender_dies(
    local_aws: LocalAws, hub: LocalSecurityHub, tmp_path: Path
) -> None:
    stream = Stream(local_aws, shards=2)
    events = list(generate_events(300, seed=11))
    placed = stream.put(events)
    dead_letters, log = tmp_path / "dead-letters.jsonl", tmp_path / "run.log"

    consumer = start_consumer(stream, local_aws, hub, dead_letters, log)
    try:
        wait_for("every finding's latest version", lambda: holds_latest(hub, latest_versions(events)), 180)
        wait_for("checkpoints at each shard's last record", lambda: stream.checkpoints() == dict(placed), 60)
        assert {record[0] for record in placed} == {"shardId-000000000000", "shardId-000000000001"}
        found = re.search(r"the worker's sender listens on \S+ \(pid (\d+)\)", log.read_text())
        assert found, log.read_text()[-3000:]
        # How the shards' findings share requests is the in-process tests' (test_sender.py): here the shard
        # processes start a moment apart, and the first one's first batch may go alone.

        # More records, whose requests Security Hub throttles: the sender dies with them under way.
        checkpoints = stream.checkpoints()
        hub.throttle(300)
        stream.put(list(generate_events(40, seed=12)))
        wait_for(
            "a throttled request of the new records",
            lambda: any(r.status == 429 for r in hub.requests("BatchImportFindings")),
            120,
        )
        os.kill(int(found[1]), signal.SIGKILL)
        assert consumer.wait(timeout=90) != 0  # run stops its daemon and fails
        assert stream.checkpoints() == checkpoints  # none past the records the sender had not answered for
        assert "the worker's sender died" in log.read_text()
    finally:
        if consumer.poll() is None:
            stop(consumer, log)
