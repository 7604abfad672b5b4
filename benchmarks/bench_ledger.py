"""Times what the lifecycle adds to each batch: coalescing, the ledger read, the plan and the ledger write.

    uv run python benchmarks/bench_ledger.py [--events 50000] [--batch 500] [--dynamodb-events 5000]

The findings come from a generated corpus, mapped as the consumer maps them, and go through the ledgered sink as the
consumer's do (coalescing, the ledger read, the plan, the owed archivals, the ledger writes). Security Hub is left out
(a stand-in accepts every request at once): the figure is the lifecycle's own cost per finding, to set beside
Security Hub's quota of 1,000 findings a second per account and Region. Two passes over one ledger:
- first: every finding new, so every one is planned, "accepted" and recorded, and each audit task archived;
- replay: the same batches again over the up-to-date ledger, so every one is read and dropped.
SQLite on a temporary file; DynamoDB on the local moto stack (loopback HTTP, so a floor of the per-call overhead, not
what real DynamoDB costs).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from defender_hub.checkpoints import DynamoDbLedger, Ledger, SqliteLedger
from defender_hub.checkpoints.delivery import LedgeredSink
from defender_hub.convert import EventConverter
from defender_hub.local.aws import LocalAws
from defender_hub.mapping import MappingOptions
from defender_hub.sink import DeliveryReport, EncodedFinding, MappedFinding
from defender_hub.synthetic import generate_events


def batches(events: int, size: int) -> list[list[MappedFinding]]:
    """The corpus's findings, in batches of `size` records, as the processor hands them on."""
    converter = EventConverter(MappingOptions())
    corpus = list(generate_events(events, seed=7))
    return [
        [MappedFinding(finding) for data in corpus[start : start + size] for finding in converter.findings(data)]
        for start in range(0, len(corpus), size)
    ]


class AcceptAll:
    """Security Hub left out: every request is accepted at once, so what is timed is the lifecycle's own work."""

    dead_letters = None

    def deliver_encoded(self, encoded: list[EncodedFinding], on_accepted: Any, *, park: bool = True) -> DeliveryReport:
        for start in range(0, len(encoded), 100):
            on_accepted(encoded[start : start + 100])
        return DeliveryReport(accepted=len(encoded))


def one_pass(ledger: Ledger, work: list[list[MappedFinding]]) -> tuple[float, int, int]:
    """Plans, "sends" and records every batch through the ledgered sink; returns seconds, findings in, findings sent."""
    sink = LedgeredSink(AcceptAll(), ledger, clock=lambda: 4_102_444_800.0)  # type: ignore[arg-type]
    findings = sent = 0
    started = time.perf_counter()
    for batch in work:
        report = sink.deliver(batch)
        findings += len(batch)
        sent += report.accepted
    return time.perf_counter() - started, findings, sent


def measure(name: str, open_ledger: Callable[[], Ledger], work: list[list[MappedFinding]]) -> None:
    ledger = open_ledger()
    for label in ("first", "replay"):
        seconds, findings, sent = one_pass(ledger, work)
        print(
            f"{name:9s} {label:7s} {findings:8,d} findings in {seconds:6.2f} s: {findings / seconds:9,.0f} findings/s, "
            f"{seconds / findings * 1e6:6.1f} µs/finding, {sent:,d} to send"
        )
    ledger.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--dynamodb-events", type=int, default=5_000)
    parser.add_argument("--batch", type=int, default=500, help="records per batch (the KCL's maxRecords)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        measure("sqlite", lambda: SqliteLedger(Path(folder) / "ledger.sqlite3"), batches(args.events, args.batch))
    with LocalAws() as aws:
        import boto3  # noqa: PLC0415

        client = boto3.client(
            "dynamodb", endpoint_url=aws.endpoint_url, region_name="us-east-1",
            aws_access_key_id="local", aws_secret_access_key="local",
        )  # fmt: skip
        measure("dynamodb", lambda: DynamoDbLedger("bench", client), batches(args.dynamodb_events, args.batch))


if __name__ == "__main__":
    main()
