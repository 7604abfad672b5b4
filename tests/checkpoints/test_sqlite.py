"""The SQLite ledger's sweeps: each statement they run reads an index of what it looks for, never the whole table."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from defender_hub.checkpoints import SqliteLedger
from defender_hub.lifecycle import CheckCompletion
from tests.checkpoints.test_ledger import entry


def statements_of(ledger: SqliteLedger, sweep: Callable[[SqliteLedger], object]) -> list[str]:
    """The SQL statements `sweep` runs on the ledger's own connection, with their values in place."""
    ran: list[str] = []
    ledger._db.set_trace_callback(ran.append)
    try:
        sweep(ledger)
    finally:
        ledger._db.set_trace_callback(None)
    return [statement for statement in ran if statement.lstrip().upper().startswith("SELECT")]


@pytest.mark.parametrize(
    ("sweep", "index"),
    [
        (lambda ledger: ledger.due_for_refresh(1_000, 10_000, 500), "findings_due"),
        (lambda ledger: ledger.owed_archivals(), "checks_owed_archival"),
        (lambda ledger: ledger.owed_workflows(500), "findings_owed_workflow"),
    ],
    ids=["due_for_refresh", "owed_archivals", "owed_workflows"],
)
@pytest.mark.parametrize("analyzed", [False, True], ids=["as-opened", "analyzed"])
def test_each_sweep_reads_its_index_not_the_table(
    tmp_path: Path, sweep: Callable[[SqliteLedger], object], index: str, analyzed: bool
) -> None:
    ledger = SqliteLedger(tmp_path / "ledger.sqlite3")
    ledger.write([entry(f"arn|{n}", 5_000 + n) for n in range(50)])
    completions = [CheckCompletion(f"arn|CHECK-{n}", "t1", 5) for n in range(20)]
    ledger.record_completions(completions)
    for done in completions[1:]:
        ledger.archival_done(done)
    if analyzed:  # the plan SQLite chooses once it has statistics (PRAGMA optimize, or a user's ANALYZE)
        with sqlite3.connect(ledger.path) as database:
            database.execute("ANALYZE")

    [statement] = statements_of(ledger, sweep)
    plan = [row[3] for row in ledger._db.execute(f"EXPLAIN QUERY PLAN {statement}")]

    assert any(f"USING INDEX {index}" in step for step in plan), plan
    assert not any(step.startswith("SCAN") and "INDEX" not in step for step in plan), plan
    ledger.close()
