"""The embedded ledger: one SQLite file, for one machine (every shard's processor on it shares the file)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from defender_hub.errors import ConfigError
from defender_hub.lifecycle import ACTIVE, CheckCompletion, LedgerEntry

__all__ = ["SqliteLedger"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS findings (
    key TEXT PRIMARY KEY, created_at TEXT NOT NULL, version_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL,
    sent_ms INTEGER NOT NULL, record_state TEXT NOT NULL, fingerprint TEXT NOT NULL, check_key TEXT NOT NULL,
    task_ms INTEGER NOT NULL, finding BLOB NOT NULL, revision INTEGER NOT NULL,
    claimed_until INTEGER NOT NULL DEFAULT 0, refresh INTEGER NOT NULL DEFAULT 1, workflow TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS findings_due ON findings (updated_ms) WHERE record_state = 'ACTIVE' AND refresh = 1;
CREATE INDEX IF NOT EXISTS findings_owed_workflow ON findings (key) WHERE workflow != '';
DROP INDEX IF EXISTS findings_by_update;
CREATE TABLE IF NOT EXISTS checks (
    check_key TEXT PRIMARY KEY, task_id TEXT NOT NULL, task_ms INTEGER NOT NULL, archived INTEGER NOT NULL
);
DROP INDEX IF EXISTS checks_owed;
CREATE INDEX IF NOT EXISTS checks_owed_archival ON checks (check_key) WHERE archived = 0;
"""
_EARLIER_INDEX_OF_CHECKS = "findings_by_check"
"""The index of checks a ledger made before findings_of_checks has, of every finding: archivals read it all the
same, and it is kept, because building the new one over a large ledger would hold every shard's write meanwhile."""
_INDEX_OF_CHECKS = (
    "CREATE INDEX IF NOT EXISTS findings_of_checks ON findings (check_key, record_state, key) WHERE check_key != ''"
)
"""Audit findings alone, by check: Detect's, Config's and Health's writes need not add to it."""
_COLUMNS = (
    "key, created_at, version_ms, updated_ms, sent_ms, record_state, fingerprint, check_key, task_ms, finding, "
    "revision, refresh, workflow"
)
_ADDED_COLUMNS = {
    "refresh": "ALTER TABLE findings ADD COLUMN refresh INTEGER NOT NULL DEFAULT 1",
    "workflow": "ALTER TABLE findings ADD COLUMN workflow TEXT NOT NULL DEFAULT ''",
}
"""Columns added since the ledger's first layout, with the value every earlier finding has: added in place."""
_BATCH = 500  # under SQLite's limit of host parameters
_PAGE_BYTES = 8192
_INSERT = f"INSERT INTO findings ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT (key) DO NOTHING"  # noqa: S608
_UPDATE = (
    "UPDATE findings SET created_at = ?, version_ms = ?, updated_ms = ?, sent_ms = ?, record_state = ?, "
    "fingerprint = ?, check_key = ?, task_ms = ?, finding = ?, revision = ?, refresh = ?, workflow = ?, "
    "claimed_until = 0 WHERE key = ? AND revision = ?"
)


def _row(e: LedgerEntry) -> tuple[object, ...]:
    """The entry's values in the order of _COLUMNS (dataclasses.astuple copies deeply, and slowly)."""
    return (
        e.key, e.created_at, e.version_ms, e.updated_ms, e.sent_ms, e.record_state, e.fingerprint, e.check, e.task_ms,
        e.finding, e.revision, e.refresh, e.workflow,
    )  # fmt: skip


def _entry(row: tuple[Any, ...]) -> LedgerEntry:
    """The entry of a row of _COLUMNS: SQLite keeps the refresh flag as 0 or 1."""
    values = list(row)
    values[11] = bool(values[11])
    return LedgerEntry(*values)


class SqliteLedger:
    """The ledger in a SQLite file, in WAL mode so that the processors of several shards read while one writes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Used from more than one thread of a process (a delivery's, a sweep's), one statement at a time.
            self._db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
            # Pages of 8 KiB for a new ledger (one already made keeps its own): a finding's row is some 2 KB, and a
            # shard's write of thousands of them took a quarter less CPU than on SQLite's 4 KiB, for reads as quick.
            # It must come before anything is written, WAL mode's header included.
            self._db.execute(f"PRAGMA page_size={_PAGE_BYTES}")
            self._db.execute("PRAGMA journal_mode=WAL")
            # FULL: each commit is on disk before the sink goes on, so a power loss can't take back a claim's note of
            # what it is about to send, or a record the shard's checkpoint already went past.
            self._db.execute("PRAGMA synchronous=FULL")
            # In one write transaction: shard processes open the same file at once, and only one may add a column.
            with self._transaction():
                columns = {row[1] for row in self._db.execute("PRAGMA table_info(findings)")}
                if columns and "revision" not in columns:
                    raise ConfigError(f"the ledger {path} is of an earlier defender-hub: move it aside to start anew")
                for column, add in _ADDED_COLUMNS.items():
                    if columns and column not in columns:
                        self._db.execute(add)
                for statement in filter(str.strip, _SCHEMA.split(";")):
                    self._db.execute(statement)
                indexes = {row[0] for row in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
                if _EARLIER_INDEX_OF_CHECKS not in indexes:
                    self._db.execute(_INDEX_OF_CHECKS)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"can't open the ledger {path}: {exc}") from exc

    def entries(self, keys: Sequence[str]) -> dict[str, LedgerEntry]:
        """The entries of those `keys` that the ledger has."""
        rows = self._select_in(f"SELECT {_COLUMNS} FROM findings WHERE key", keys)  # noqa: S608 - our columns
        return {row[0]: _entry(row) for row in rows}

    def completions(self, checks: Sequence[str]) -> dict[str, CheckCompletion]:
        """The last completion of those `checks` that the ledger has."""
        rows = self._select_in("SELECT check_key, task_id, task_ms, archived FROM checks WHERE check_key", checks)
        return {row[0]: _completion(row) for row in rows}

    def _select_in(self, select: str, values: Sequence[str]) -> Iterator[tuple[Any, ...]]:
        """Rows of `select` followed by `IN (values)`, asked in chunks SQLite's limit of parameters allows."""
        for start in range(0, len(values), _BATCH):
            chunk = values[start : start + _BATCH]
            yield from self._db.execute(f"{select} IN ({','.join('?' * len(chunk))})", chunk)

    def write(self, entries: Sequence[LedgerEntry]) -> set[str]:
        """Writes each entry whose stored revision is the one before it; returns the keys another writer changed."""
        inserts = [_row(entry) for entry in entries if entry.revision == 1]
        updates = [(*_row(entry)[1:], entry.key, entry.revision - 1) for entry in entries if entry.revision != 1]
        conflicts: set[str] = set()
        with self._transaction():
            # All at once first: with no other writer in the way, every statement changes its one row.
            self._db.execute("SAVEPOINT together")
            written = self._db.executemany(_INSERT, inserts).rowcount if inserts else 0
            written += self._db.executemany(_UPDATE, updates).rowcount if updates else 0
            if written == len(entries):
                self._db.execute("RELEASE together")
                return conflicts
            # Some row was another writer's: undone, then written one at a time to learn which.
            self._db.execute("ROLLBACK TO together")
            self._db.execute("RELEASE together")
            for entry in entries:
                if entry.revision == 1:
                    cursor = self._db.execute(_INSERT, _row(entry))
                else:
                    cursor = self._db.execute(_UPDATE, (*_row(entry)[1:], entry.key, entry.revision - 1))
                if cursor.rowcount != 1:
                    conflicts.add(entry.key)
        return conflicts

    def record_completions(self, completions: Iterable[CheckCompletion]) -> None:
        """Records completed checks, their archival owed; one not newer than the one kept is ignored."""
        rows = [(c.check, c.task_id, c.task_ms) for c in completions]
        with self._transaction():
            self._db.executemany(
                "INSERT INTO checks (check_key, task_id, task_ms, archived) VALUES (?,?,?,0) ON CONFLICT (check_key) "
                "DO UPDATE SET task_id = excluded.task_id, task_ms = excluded.task_ms, archived = 0 "
                "WHERE excluded.task_ms > checks.task_ms",
                rows,
            )

    def archival_done(self, completion: CheckCompletion) -> None:
        """Marks the archival of `completion` done, unless a later task completed the check meanwhile."""
        with self._transaction():
            self._db.execute(
                "UPDATE checks SET archived = 1 WHERE check_key = ? AND task_ms = ?",
                (completion.check, completion.task_ms),
            )

    def owed_archivals(self) -> list[CheckCompletion]:
        """Every completion whose archival is not done."""
        # The condition spelled as the partial index checks_owed_archival spells it, so that SQLite reads that index,
        # which holds the owed checks alone and so costs what is owed, however many checks are done.
        rows = self._db.execute("SELECT check_key, task_id, task_ms, archived FROM checks WHERE archived = 0")
        return [_completion(row) for row in rows]

    def archivable(self, check: str, before_task_ms: int, cursor: str, limit: int) -> tuple[list[LedgerEntry], str]:
        """A page of ACTIVE audit findings of `check` from tasks before `before_task_ms`, in key order past `cursor`."""
        # `check_key != ''` spelled as the partial index findings_of_checks spells it, so that SQLite may read that
        # index (a ledger made before it reads its own index of every finding).
        query = (
            f"SELECT {_COLUMNS} FROM findings WHERE check_key = ? AND check_key != '' AND record_state = ? "  # noqa: S608
            "AND key > ? AND task_ms < ? ORDER BY key LIMIT ?"
        )
        page = [_entry(row) for row in self._db.execute(query, (check, ACTIVE, cursor, before_task_ms, limit))]
        return page, page[-1].key if len(page) == limit else ""

    def due_for_refresh(self, updated_before_ms: int, now_ms: int, limit: int) -> list[LedgerEntry]:
        """Up to `limit` unclaimed ACTIVE findings kept alive, last updated before `updated_before_ms`, oldest first."""
        # The conditions spelled as the partial index findings_due spells them, so that SQLite reads only that index.
        query = (
            f"SELECT {_COLUMNS} FROM findings WHERE record_state = 'ACTIVE' AND refresh = 1 "  # noqa: S608
            "AND updated_ms < ? AND claimed_until <= ? ORDER BY updated_ms LIMIT ?"
        )
        return [_entry(row) for row in self._db.execute(query, (updated_before_ms, now_ms, limit))]

    def owed_workflows(self, limit: int) -> list[LedgerEntry]:
        """Up to `limit` entries owed a Workflow.Status."""
        query = f"SELECT {_COLUMNS} FROM findings WHERE workflow != '' LIMIT ?"  # noqa: S608 - our columns
        return [_entry(row) for row in self._db.execute(query, (limit,))]

    def workflow_done(self, done: Sequence[LedgerEntry]) -> None:
        """Clears the owed Workflow.Status of each entry in `done` whose version is still the one stored."""
        with self._transaction():
            self._db.executemany(
                "UPDATE findings SET workflow = '' WHERE key = ? AND workflow = ? AND version_ms = ?",
                [(entry.key, entry.workflow, entry.version_ms) for entry in done],
            )

    def claim(self, entry: LedgerEntry, now_ms: int, until_ms: int, sending_ms: int) -> LedgerEntry | None:
        """Claims `entry` for one sweep until `until_ms`; None when another sweep has it or it changed since read."""
        claimed = entry.claimed(sending_ms)
        with self._transaction():
            cursor = self._db.execute(
                "UPDATE findings SET claimed_until = ?, sent_ms = ?, revision = ? "
                "WHERE key = ? AND revision = ? AND claimed_until <= ?",
                (until_ms, claimed.sent_ms, claimed.revision, entry.key, entry.revision, now_ms),
            )
        return claimed if cursor.rowcount == 1 else None

    def close(self) -> None:
        """Closes the file."""
        self._db.close()

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


def _completion(row: tuple[Any, ...]) -> CheckCompletion:
    return CheckCompletion(row[0], row[1], row[2], bool(row[3]))


class _Transaction:
    """BEGIN IMMEDIATE … COMMIT, or ROLLBACK on an exception: the writers of several processes queue, never fail."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: object, *_: object) -> None:
        self._db.execute("ROLLBACK" if kind else "COMMIT")
