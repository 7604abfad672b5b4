"""The findings ledger: what Security Hub accepted, per finding, written only after it accepted it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

from defender_hub.lifecycle import CheckCompletion, LedgerEntry

__all__ = ["ARCHIVAL_PAGE", "Ledger"]

ARCHIVAL_PAGE = 500
"""Findings an archival reads and sends at a time: a check with 100,000 findings is archived in bounded memory."""


class Ledger(Protocol):
    """Per finding, the last accepted version; per audit check, its last completed task and whether its archival
    is done. Every read that decides what to send is strongly consistent.

    A write names the revision it read: of two writers, the second learns that it was second (`write` returns its
    keys) and reconciles, so none overwrites what it did not see.

    The sweeps' reads (`owed_archivals`, `due_for_refresh`, `owed_workflows`) go through an index of what they look
    for, so that a sweep costs what is due, not what is stored.
    """

    def entries(self, keys: Sequence[str]) -> dict[str, LedgerEntry]:
        """The entries of those `keys` that the ledger has."""
        ...

    def write(self, entries: Sequence[LedgerEntry]) -> set[str]:
        """Writes each entry whose stored revision is still the one before it (absent, for revision 1); returns the
        keys of those that another writer changed first, which are left as they are."""
        ...

    def completions(self, checks: Sequence[str]) -> dict[str, CheckCompletion]:
        """The last completion of those `checks` that the ledger has."""
        ...

    def record_completions(self, completions: Iterable[CheckCompletion]) -> None:
        """Records completed checks, their archival owed; one not newer than the one kept is ignored."""
        ...

    def archival_done(self, completion: CheckCompletion) -> None:
        """Marks the archival of `completion` done, unless a later task completed the check meanwhile."""
        ...

    def owed_archivals(self) -> list[CheckCompletion]:
        """Every completion whose archival is not done."""
        ...

    def archivable(self, check: str, before_task_ms: int, cursor: str, limit: int) -> tuple[list[LedgerEntry], str]:
        """A page of about `limit` ACTIVE audit findings of `check` from tasks before `before_task_ms`, and the cursor
        of the next page: "" for the first page, and when there is no next one."""
        ...

    def due_for_refresh(self, updated_before_ms: int, now_ms: int, limit: int) -> list[LedgerEntry]:
        """Up to `limit` ACTIVE findings its source keeps alive (`LedgerEntry.refresh`) last updated before
        `updated_before_ms`, not claimed by a sweep at `now_ms`."""
        ...

    def claim(self, entry: LedgerEntry, now_ms: int, until_ms: int, sending_ms: int) -> LedgerEntry | None:
        """Claims `entry` for one sweep until `until_ms`, noting that it is about to be sent at `sending_ms`; returns
        the entry as claimed, or None when another sweep has it or it changed since read."""
        ...

    def owed_workflows(self, limit: int) -> list[LedgerEntry]:
        """Up to `limit` entries owed a Workflow.Status (`LedgerEntry.workflow`): updates a stop, a kill or a refused
        lane left undone."""
        ...

    def workflow_done(self, done: Sequence[LedgerEntry]) -> None:
        """Clears the owed Workflow.Status of each entry in `done`, unless newer news (another version) came since:
        then what that news owes stands."""
        ...

    def close(self) -> None:
        """Releases the connection."""
        ...
