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
        (lambda ledger: ledger.archivable("arn|CHECK-3", 9, "", 500), "findings_of_checks"),
    ],
    ids=["due_for_refresh", "owed_archivals", "owed_workflows", "archivable"],
)
@pytest.mark.parametrize("analyzed", [False, True], ids=["as-opened", "analyzed"])
def test_each_sweep_reads_its_index_not_the_table(
    tmp_path: Path, sweep: Callable[[SqliteLedger], object], index: str, analyzed: bool
) -> None:
    ledger = SqliteLedger(tmp_path / "ledger.sqlite3")
    ledger.write([entry(f"arn|{n}", 5_000 + n) for n in range(50)])
    ledger.write([entry(f"arn|audit-{n}", 7, check=f"arn|CHECK-{n % 5}", task_ms=5) for n in range(50)])
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


def test_a_new_ledger_indexes_audit_findings_alone_and_one_made_before_keeps_its_index_of_every_finding(
    tmp_path: Path,
) -> None:
    new = SqliteLedger(tmp_path / "new.sqlite3")
    new.write([entry("arn|detect", 5), entry("arn|audit", 7, check="arn|CHECK", task_ms=5)])
    indexed = new._db.execute("SELECT count(*) FROM findings INDEXED BY findings_of_checks WHERE check_key != ''")
    assert indexed.fetchone() == (1,)
    new.close()
    path = tmp_path / "earlier.sqlite3"
    SqliteLedger(path).close()
    with sqlite3.connect(path) as database:  # as an earlier defender-hub left it: every finding indexed by check
        database.execute("DROP INDEX findings_of_checks")
        database.execute("CREATE INDEX findings_by_check ON findings (check_key, record_state, key)")

    earlier = SqliteLedger(path)
    earlier.write([entry("arn|detect", 5), entry("arn|audit", 7, check="arn|CHECK", task_ms=5)])

    indexes = {row[0] for row in earlier._db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert "findings_by_check" in indexes
    assert "findings_of_checks" not in indexes  # not built over a large ledger while every shard waits to write
    [statement] = statements_of(earlier, lambda ledger: ledger.archivable("arn|CHECK", 9, "", 10))
    plan = [row[3] for row in earlier._db.execute(f"EXPLAIN QUERY PLAN {statement}")]
    assert any("USING INDEX findings_by_check" in step for step in plan), plan
    assert [e.key for e in earlier.archivable("arn|CHECK", 9, "", 10)[0]] == ["arn|audit"]
    earlier.close()


def test_a_new_ledger_has_pages_of_8_kib_and_one_made_before_keeps_its_own(tmp_path: Path) -> None:
    new = SqliteLedger(tmp_path / "new.sqlite3")
    assert new._db.execute("PRAGMA page_size").fetchone() == (8192,)
    new.close()
    earlier = tmp_path / "earlier.sqlite3"
    with sqlite3.connect(earlier) as database:  # as SQLite's default made it
        database.execute("PRAGMA journal_mode=WAL")
        database.execute("CREATE TABLE t (x)")
        [(pages,)] = database.execute("PRAGMA page_size")
    assert pages != 8192

    ledger = SqliteLedger(earlier)
    ledger.write([entry("arn|a", 5)])

    assert ledger._db.execute("PRAGMA page_size").fetchone() == (pages,)
    assert list(ledger.entries(["arn|a"])) == ["arn|a"]
    ledger.close()
