"""Times a shard process's own CPU per record: records through the real processor, ledger and sender client.

    uv run python benchmarks/bench_shard.py [--records 60000] [--accounts 10] [--repeat 3]

Generated Device Defender events, spread over `--accounts` accounts in one Region as the load test's ten-account
backlog spreads them, go through what a shard process runs for each batch of the KCL's 10,000 records: the
`FindingsProcessor` (decode, map, parts of `DELIVERY_RECORDS`), the ledgered sink on a SQLite ledger in a temporary
folder (coalesce, the ledger read, the plan, archivals, the write of what was accepted) and the `SenderClient` (the
screen, the wire's frame). The worker's sender is left out: the client's call to it answers at once that every finding
was accepted, a request of 100 at a time, so what is timed is the shard's work alone, not the quota's or Security
Hub's. The KCL's own protocol (its JSON lines and base64) is left out too. Prints the CPU seconds (time.process_time)
and µs a record of each repeat, each over a new ledger.
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from defender_hub.checkpoints import SqliteLedger
from defender_hub.checkpoints.delivery import LedgeredSink
from defender_hub.collector import freeze_startup
from defender_hub.consumer.processor import FindingsProcessor
from defender_hub.convert import EventConverter
from defender_hub.loadgen import events_of_accounts
from defender_hub.mapping import MappingOptions
from defender_hub.sender import SenderClient
from defender_hub.sender.wire import Done, ToSender, frame
from defender_hub.sink import EncodedFinding, JsonlDeadLetters
from defender_hub.synthetic import generate_events
from loadtest import REGION, one_region

BATCH = 10_000
"""Records a processRecords call brings in a backlog: the KCL's maxRecords."""


class AnsweringClient(SenderClient):
    """The shard's sender client, its frame made, answered at once: every finding accepted, 100 to a request."""

    def _ask(
        self,
        message: ToSender,
        encoded: list[EncodedFinding],
        on_accepted: Callable[[list[EncodedFinding]], None] | None,
        still_owed: Any,
    ) -> Done:
        frame(message)
        for start in range(0, len(encoded), 100):
            if on_accepted is not None:
                on_accepted(encoded[start : start + 100])
        return Done({"accepted": len(encoded), "requests": -(-len(encoded) // 100)})


class NoCheckpoints:
    def checkpoint(self, sequence_number: str | None, sub_sequence_number: int | None) -> None:
        """Taken and forgotten."""


def one_run(records: list[SimpleNamespace], folder: Path) -> float:
    """The CPU seconds of the processor over `records`, on a new ledger in `folder`."""
    client = AnsweringClient(folder / "sender.sock", JsonlDeadLetters(folder / "letters.jsonl"), threading.Event())
    sink = LedgeredSink(client, SqliteLedger(folder / "ledger.sqlite3"))
    processor = FindingsProcessor(EventConverter(MappingOptions()), sink, client.dead_letters)
    processor.initialize(SimpleNamespace(shard_id="shardId-000000000000", sequence_number="0"))
    started = time.process_time()
    for start in range(0, len(records), BATCH):
        batch = records[start : start + BATCH]
        processor.process_records(SimpleNamespace(records=batch, millis_behind_latest=0, checkpointer=NoCheckpoints()))
    return time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=60_000)
    parser.add_argument("--accounts", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    events = events_of_accounts(one_region(generate_events(args.records, seed=13), REGION), args.accounts)
    records = [
        SimpleNamespace(sequence_number=str(n), sub_sequence_number=None, binary_data=data)
        for n, data in enumerate(events)
    ]
    freeze_startup()  # as a shard process does once it is built
    for run in range(args.repeat):
        with tempfile.TemporaryDirectory() as folder:
            seconds = one_run(records, Path(folder))
        per_record = 1e6 * seconds / len(records)
        print(f"run {run + 1}: {len(records):,} records, {seconds:.2f} CPU s, {per_record:.0f} µs a record")
        gc.collect()


if __name__ == "__main__":
    main()
