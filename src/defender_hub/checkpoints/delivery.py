"""The sink behind the ledger: sends only what changes Security Hub, and records what it accepted."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from defender_hub.checkpoints.ledger import Ledger
from defender_hub.errors import LedgerError
from defender_hub.lifecycle import archive_missing, check_key, entry_for, finding_key, plan, refreshed
from defender_hub.sink import DeliveryReport, Outbound, Pending, SecurityHubSink, coalesce

__all__ = ["LedgeredSink", "RefreshReport"]

log = logging.getLogger("defender_hub.ledger")

DAY_MS = 86_400_000
REFRESH_PAGE = 500
CLAIM_MS = 15 * 60_000  # how long a sweep holds what it re-sends: far longer than one page takes


@contextmanager
def _ledger_errors(action: str) -> Iterator[None]:
    """Turns any failure of the ledger's storage into LedgerError, which stops the delivery before a checkpoint."""
    try:
        yield
    except Exception as exc:
        raise LedgerError(f"the ledger failed while {action}: {type(exc).__name__}: {exc}") from exc


@dataclass
class RefreshReport(DeliveryReport):
    """What a refresh sweep did."""

    due: int = 0
    claimed_elsewhere: int = 0


def _pending(doc: dict[str, Any], coalesced: Pending | None) -> Pending:
    """`doc` on its way for the records its coalesced version came from; encoded again only if the plan changed it."""
    if coalesced is None:
        return Pending.of(doc, [None])  # an archival: no record of this batch made it
    if doc is coalesced.doc:
        return coalesced
    return Pending.of(doc, coalesced.origins)


class LedgeredSink:
    """Plans each delivery against the ledger (lifecycle.plan), delivers it, then records what Security Hub accepted."""

    def __init__(self, sink: SecurityHubSink, ledger: Ledger) -> None:
        self._sink, self._ledger = sink, ledger

    def deliver(self, outbound: Iterable[Outbound]) -> DeliveryReport:
        """Delivers what changes Security Hub and records it; returns once all of it was accepted or dead-lettered.

        Raises SinkError (LedgerError among them) when that can't be done: nothing past these findings may be
        checkpointed.
        """
        pending = coalesce(outbound)
        docs = [item.doc for item in pending]
        with _ledger_errors("reading"):
            entries = self._ledger.entries([finding_key(doc) for doc in docs])
            completions = self._ledger.completions(list({check_key(doc) for doc in docs} - {""}))
        decided = plan(docs, entries, completions)
        coalesced = {finding_key(item.doc): item for item in pending}
        to_send = {finding_key(doc): doc for doc in decided.send}
        reported = set(coalesced)
        for completion in decided.completions:
            with _ledger_errors("reading a check's findings"):
                active = list(self._ledger.active_in(completion.check))
            for doc in archive_missing(completion, active, reported):
                key = finding_key(doc)
                if key not in to_send or to_send[key]["UpdatedAt"] < doc["UpdatedAt"]:
                    to_send[key] = doc
        outgoing = [_pending(doc, coalesced.get(key)) for key, doc in to_send.items()]
        report = self._sink.deliver_pending(outgoing, self._record)
        with _ledger_errors("recording completed checks"):
            self._ledger.record_completions(decided.completions)
        report.superseded = sum(len(item.origins) - 1 for item in pending)
        report.unchanged = decided.stale + decided.unchanged
        report.archived = len(to_send) - len(decided.send) + decided.archived_late
        return report

    def close(self) -> None:
        """Closes the ledger."""
        self._ledger.close()

    def _record(self, accepted: list[dict[str, Any]]) -> None:
        with _ledger_errors("recording accepted findings"):
            self._ledger.record(entry_for(doc) for doc in accepted)

    def refresh(self, now_ms: int, after_days: float) -> RefreshReport:
        """Re-sends every ACTIVE finding not updated for `after_days`, with UpdatedAt `now_ms`; one sweep."""
        total = RefreshReport()
        cutoff = now_ms - int(after_days * DAY_MS)
        while True:
            with _ledger_errors("finding what is due"):
                due = self._ledger.due_for_refresh(cutoff, now_ms, REFRESH_PAGE)
                claimed = [entry for entry in due if self._ledger.claim(entry, now_ms, now_ms + CLAIM_MS)]
            if not due:
                return total
            total.due += len(due)
            total.claimed_elsewhere += len(due) - len(claimed)
            docs = [refreshed(entry, now_ms) for entry in claimed]
            outgoing = [Pending.of(doc, [None]) for doc in docs]
            total.add(self._sink.deliver_pending(outgoing, self._record))
            log.info(
                "refresh: %d due, %d re-sent, %d held by another sweep", len(due), len(claimed), len(due) - len(claimed)
            )
