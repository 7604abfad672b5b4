"""Shows what each sweep reads against the ledger's size, with nothing due: it should stay flat.

    uv run python benchmarks/bench_sweeps.py [--sqlite-rows 10000,100000,1000000] [--dynamodb-rows 1000,10000]

A sweep asks the ledger for what is due for refresh, the archivals owed and the workflow updates owed. The ledger
holds findings updated lately (none due), a few archived, and the completed checks of earlier audits, every archival
done: so each sweep finds nothing, and what it reads is what it costs to learn that.
- SQLite on a temporary file, grown to each size in turn: the rows each sweep's statement visits (the entries of its
  index in range, counted) and the virtual machine's steps it took (measured), against the same statement made to
  read the table (`NOT INDEXED`), which is what a sweep without its index would cost; the time is the best of 5.
- DynamoDB on the local moto stack: the items each sweep reads (a query's or a scan's ScannedCount, a batch get's
  items), on a table made by the ledger (its indexes) and on a table made before them (a scan, as every sweep was
  before issue 23). Loopback HTTP to moto, a Python server: the times are moto's, not DynamoDB's; the items read are
  what DynamoDB would bill.
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from defender_hub.checkpoints import DynamoDbLedger, Ledger, SqliteLedger
from defender_hub.lifecycle import ACTIVE, ARCHIVED, CheckCompletion, LedgerEntry
from defender_hub.local.aws import LocalAws

NOW_MS = 4_102_444_800_000
CUTOFF_MS = NOW_MS - 80 * 86_400_000  # a refresh falls due 80 days after the last update
PAGE = 500  # what a refresh sweep asks for at a time
FINDING = b'{"SchemaVersion": "2018-10-08", "Title": "a finding of about the size a small one is"}' * 4
SQLITE_SWEEPS = {
    "due for refresh": (
        "SELECT key FROM findings{hint} WHERE record_state = 'ACTIVE' AND refresh = 1 AND updated_ms < ? "
        "AND claimed_until <= ? ORDER BY updated_ms LIMIT ?",
        (CUTOFF_MS, NOW_MS, PAGE),
    ),
    "owed archivals": ("SELECT check_key FROM checks{hint} WHERE archived = 0", ()),
    "owed workflows": ("SELECT key FROM findings{hint} WHERE workflow != '' LIMIT ?", (PAGE,)),
}
"""Each sweep's statement as the SQLite ledger runs it (its columns aside), `{hint}` left for NOT INDEXED."""


def finding(n: int) -> LedgerEntry:
    """Finding `n`, updated in the last day (not due); one in a hundred archived, one in four of an audit check."""
    updated_ms, audit = NOW_MS - n % 86_400_000, n % 4 == 0
    return LedgerEntry(
        key=f"arn:aws:securityhub:us-east-1:123456789012:product/123456789012/default|finding-{n:08d}",
        created_at="2100-01-01T00:00:00.000Z", version_ms=updated_ms, updated_ms=updated_ms, sent_ms=updated_ms,
        record_state=ARCHIVED if n % 100 == 0 else ACTIVE, fingerprint=f"{n:016x}",
        check=f"arn|CHECK-{n % 1_000}" if audit else "", task_ms=NOW_MS - 86_400_000 if audit else 0,
        finding=FINDING, revision=1,
    )  # fmt: skip


def fill(ledger: Ledger, start: int, stop: int) -> None:
    """Writes findings `start` to `stop`, and one completed check (its archival done) for every hundred."""
    for first in range(start, stop, 10_000):
        ledger.write([finding(n) for n in range(first, min(first + 10_000, stop))])
    completions = [
        CheckCompletion(f"arn|CHECK-{n}", f"task-{n}", NOW_MS - 86_400_000) for n in range(start // 100, stop // 100)
    ]
    ledger.record_completions(completions)
    for done in completions:
        ledger.archival_done(done)


def sqlite_cost(db: sqlite3.Connection, statement: str, values: tuple[Any, ...]) -> tuple[int, int, float]:
    """Rows `statement` returned, the virtual machine steps it took, and its best seconds of 5."""
    steps = 0

    def step() -> int:
        nonlocal steps
        steps += 1
        return 0

    db.set_progress_handler(step, 1)
    rows = len(db.execute(statement, values).fetchall())
    db.set_progress_handler(None, 0)
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        db.execute(statement, values).fetchall()
        best = min(best, time.perf_counter() - started)
    return rows, steps, best


def visited(db: sqlite3.Connection, sweep: str) -> int:
    """The rows the sweep's statement visits through its index: the entries in range, before the claim is read."""
    counts = {
        "due for refresh": (
            "SELECT count(*) FROM findings WHERE record_state = 'ACTIVE' AND refresh = 1 AND updated_ms < ?"
        ),
        "owed archivals": "SELECT count(*) FROM checks WHERE archived = 0",
        "owed workflows": "SELECT count(*) FROM findings WHERE workflow != ''",
    }
    values = (CUTOFF_MS,) if sweep == "due for refresh" else ()
    return int(db.execute(counts[sweep], values).fetchone()[0])


def measure_sqlite(sizes: list[int]) -> None:
    print("SQLite: rows visited and VM steps by each sweep with nothing due, through its index / reading the table")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "ledger.sqlite3"
        ledger, held = SqliteLedger(path), 0
        for size in sizes:
            started = time.perf_counter()
            fill(ledger, held, size)
            held = size
            print(f"  {size:>9,d} findings (written in {time.perf_counter() - started:5.1f} s)")
            db = sqlite3.connect(path)
            for sweep, (statement, values) in SQLITE_SWEEPS.items():
                _, steps, seconds = sqlite_cost(db, statement.format(hint=""), values)
                _, scan_steps, scan_seconds = sqlite_cost(db, statement.format(hint=" NOT INDEXED"), values)
                table = "checks" if sweep == "owed archivals" else "findings"
                stored = db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                print(
                    f"    {sweep:16s} index: {visited(db, sweep):>4,d} rows, {steps:>6,d} steps, "
                    f"{seconds * 1e6:7.0f} µs   table: {stored:>9,d} rows, {scan_steps:>11,d} steps, "
                    f"{scan_seconds * 1e3:8.2f} ms"
                )
            db.close()
        ledger.close()


class Reads:
    """Items a client reads from now on: a query's or a scan's ScannedCount, a batch get's items; and the calls."""

    def __init__(self, client: Any) -> None:
        self.items = self.calls = 0
        client.meta.events.register("after-call.dynamodb", self._count)

    def _count(self, parsed: dict[str, Any], **_: Any) -> None:
        self.calls += 1
        self.items += parsed.get("ScannedCount", 0)
        self.items += sum(len(items) for items in parsed.get("Responses", {}).values())

    def since(self, action: Callable[[], object]) -> tuple[int, int, float]:
        """Items read and calls made by `action`, and its seconds."""
        items, calls, started = self.items, self.calls, time.perf_counter()
        action()
        return self.items - items, self.calls - calls, time.perf_counter() - started


def dynamodb_sweeps(ledger: DynamoDbLedger) -> dict[str, Callable[[], object]]:
    return {
        "due for refresh": lambda: ledger.due_for_refresh(CUTOFF_MS, NOW_MS, PAGE),
        "owed archivals": ledger.owed_archivals,
        "owed workflows": lambda: ledger.owed_workflows(PAGE),
    }


def old_table(client: Any, name: str) -> str:
    """A table as the ledger made it before the sweeps' indexes: the sweeps scan it."""
    client.create_table(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "key", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "key", "AttributeType": "S"}],
    )
    return name


def measure_dynamodb(sizes: list[int]) -> None:
    print("DynamoDB on moto: items read (calls, ms) by each sweep with nothing due, by index / by a scan (no index)")
    with LocalAws() as aws:
        import boto3  # noqa: PLC0415

        client = boto3.client(
            "dynamodb", endpoint_url=aws.endpoint_url, region_name="us-east-1",
            aws_access_key_id="local", aws_secret_access_key="local",
        )  # fmt: skip
        indexed, scanned = DynamoDbLedger("indexed", client), DynamoDbLedger(old_table(client, "scanned"), client)
        reads, held = Reads(client), 0
        for size in sizes:
            started = time.perf_counter()
            fill(indexed, held, size)
            fill(scanned, held, size)
            held = size
            print(f"  {size:>9,d} findings (written twice in {time.perf_counter() - started:5.1f} s)")
            by_index, by_scan = dynamodb_sweeps(indexed), dynamodb_sweeps(scanned)
            for sweep in by_index:
                items, calls, seconds = reads.since(by_index[sweep])
                scan_items, scan_calls, scan_seconds = reads.since(by_scan[sweep])
                print(
                    f"    {sweep:16s} index: {items:>4,d} items ({calls:>2d} calls, {seconds * 1e3:6.1f} ms)   "
                    f"scan: {scan_items:>7,d} items ({scan_calls:>3d} calls, {scan_seconds * 1e3:8.1f} ms)"
                )


def sizes(text: str) -> list[int]:
    return sorted(int(size) for size in text.split(",") if size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sqlite-rows", type=sizes, default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--dynamodb-rows", type=sizes, default=[1_000, 10_000])
    args = parser.parse_args()
    if args.sqlite_rows:
        measure_sqlite(args.sqlite_rows)
    if args.dynamodb_rows:
        measure_dynamodb(args.dynamodb_rows)


if __name__ == "__main__":
    main()
