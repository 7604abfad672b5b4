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
    key TEXT PRIMARY KEY, created_at TEXT NOT NULL, updated_ms INTEGER NOT NULL,
    record_state TEXT NOT NULL, fingerprint TEXT NOT NULL, check_key TEXT NOT NULL, task_ms INTEGER NOT NULL,
    finding BLOB NOT NULL, claimed_until INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS findings_by_check ON findings (check_key, record_state);
CREATE INDEX IF NOT EXISTS findings_by_update ON findings (record_state, updated_ms);
CREATE TABLE IF NOT EXISTS checks (check_key TEXT PRIMARY KEY, task_id TEXT NOT NULL, task_ms INTEGER NOT NULL);
"""
_COLUMNS = "key, created_at, updated_ms, record_state, fingerprint, check_key, task_ms, finding"
_BATCH = 500  # under SQLite's limit of host parameters


def _row(e: LedgerEntry) -> tuple[object, ...]:
    """The entry's values in the order of _COLUMNS (dataclasses.astuple copies deeply, and slowly)."""
    return (
        e.key,
        e.created_at,
        e.updated_ms,
        e.record_state,
        e.fingerprint,
        e.check,
        e.task_ms,
        e.finding,
    )


class SqliteLedger:
    """The ledger in a SQLite file, in WAL mode so that the processors of several shards read while one writes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, timeout=30, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # WAL: durable at each checkpoint of the WAL, not torn
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"can't open the ledger {path}: {exc}") from exc

    def entries(self, keys: Sequence[str]) -> dict[str, LedgerEntry]:
        """The entries of those `keys` that the ledger has."""
        rows = self._select_in(f"SELECT {_COLUMNS} FROM findings WHERE key", keys)  # noqa: S608 - our columns
        return {row[0]: LedgerEntry(*row) for row in rows}

    def completions(self, checks: Sequence[str]) -> dict[str, CheckCompletion]:
        """The last completion of those `checks` that the ledger has."""
        rows = self._select_in("SELECT check_key, task_id, task_ms FROM checks WHERE check_key", checks)
        return {row[0]: CheckCompletion(*row) for row in rows}

    def _select_in(self, select: str, values: Sequence[str]) -> Iterator[tuple[Any, ...]]:
        """Rows of `select` followed by `IN (values)`, asked in chunks SQLite's limit of parameters allows."""
        for start in range(0, len(values), _BATCH):
            chunk = values[start : start + _BATCH]
            yield from self._db.execute(f"{select} IN ({','.join('?' * len(chunk))})", chunk)

    def active_in(self, check: str) -> Iterator[LedgerEntry]:
        """The ACTIVE audit findings of `check`."""
        query = f"SELECT {_COLUMNS} FROM findings WHERE check_key = ? AND record_state = ?"  # noqa: S608
        for row in self._db.execute(query, (check, ACTIVE)).fetchall():
            yield LedgerEntry(*row)

    def record(self, entries: Iterable[LedgerEntry]) -> None:
        """Records accepted findings; an entry not newer than the one kept is ignored."""
        rows = [_row(entry) for entry in entries]
        with self._transaction():
            self._db.executemany(
                f"INSERT INTO findings ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?) ON CONFLICT (key) DO UPDATE SET "  # noqa: S608
                "created_at = excluded.created_at, updated_ms = excluded.updated_ms, "
                "record_state = excluded.record_state, fingerprint = excluded.fingerprint, "
                "check_key = excluded.check_key, task_ms = excluded.task_ms, finding = excluded.finding, "
                "claimed_until = 0 WHERE excluded.updated_ms > findings.updated_ms",
                rows,
            )

    def record_completions(self, completions: Iterable[CheckCompletion]) -> None:
        """Records completed checks; one older than the one kept is ignored."""
        rows = [(c.check, c.task_id, c.task_ms) for c in completions]
        with self._transaction():
            self._db.executemany(
                "INSERT INTO checks (check_key, task_id, task_ms) VALUES (?,?,?) ON CONFLICT (check_key) DO UPDATE "
                "SET task_id = excluded.task_id, task_ms = excluded.task_ms WHERE excluded.task_ms > checks.task_ms",
                rows,
            )

    def due_for_refresh(self, updated_before_ms: int, now_ms: int, limit: int) -> list[LedgerEntry]:
        """Up to `limit` unclaimed ACTIVE findings last updated before `updated_before_ms`, oldest first."""
        query = (
            f"SELECT {_COLUMNS} FROM findings WHERE record_state = ? AND updated_ms < ? "  # noqa: S608
            "AND claimed_until <= ? ORDER BY updated_ms LIMIT ?"
        )
        return [LedgerEntry(*row) for row in self._db.execute(query, (ACTIVE, updated_before_ms, now_ms, limit))]

    def claim(self, entry: LedgerEntry, now_ms: int, until_ms: int) -> bool:
        """Claims `entry` for one sweep until `until_ms`; False when another sweep has it or it changed since read."""
        with self._transaction():
            cursor = self._db.execute(
                "UPDATE findings SET claimed_until = ? WHERE key = ? AND updated_ms = ? AND claimed_until <= ?",
                (until_ms, entry.key, entry.updated_ms, now_ms),
            )
        return cursor.rowcount == 1

    def close(self) -> None:
        """Closes the file."""
        self._db.close()

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    """BEGIN IMMEDIATE … COMMIT, or ROLLBACK on an exception: the writers of several processes queue, never fail."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: object, *_: object) -> None:
        self._db.execute("ROLLBACK" if kind else "COMMIT")
