"""The findings ledger: what Security Hub accepted, per finding, written only after it accepted it."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Protocol

from defender_hub.lifecycle import CheckCompletion, LedgerEntry

__all__ = ["Ledger"]


class Ledger(Protocol):
    """Per finding, the last accepted version; per audit check, its last completed task.

    Writes never move a finding's UpdatedAt, or a check's task, backwards: of two writers, the newer version wins.
    """

    def entries(self, keys: Sequence[str]) -> dict[str, LedgerEntry]:
        """The entries of those `keys` that the ledger has."""
        ...

    def completions(self, checks: Sequence[str]) -> dict[str, CheckCompletion]:
        """The last completion of those `checks` that the ledger has."""
        ...

    def active_in(self, check: str) -> Iterator[LedgerEntry]:
        """The ACTIVE audit findings of `check`."""
        ...

    def record(self, entries: Iterable[LedgerEntry]) -> None:
        """Records accepted findings; an entry not newer than the one kept is ignored."""
        ...

    def record_completions(self, completions: Iterable[CheckCompletion]) -> None:
        """Records completed checks; one older than the one kept is ignored."""
        ...

    def due_for_refresh(self, updated_before_ms: int, now_ms: int, limit: int) -> list[LedgerEntry]:
        """Up to `limit` ACTIVE findings last updated before `updated_before_ms`, not claimed by a sweep at `now_ms`."""
        ...

    def claim(self, entry: LedgerEntry, now_ms: int, until_ms: int) -> bool:
        """Claims `entry` for one sweep until `until_ms`; False when another sweep has it or it changed since read."""
        ...

    def close(self) -> None:
        """Releases the connection."""
        ...
