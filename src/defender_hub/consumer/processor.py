"""The KCL record processor: records → findings → Security Hub, checkpointed only after Security Hub accepted them.

Runs in the MultiLangDaemon's child program (`python -m defender_hub.consumer`), one process per shard lease, which
`defender_hub.worker` builds. Its stdout is the daemon's protocol channel: everything it has to say goes to the log
on stderr.

amazon_kclpy catches every exception a callback raises, prints it and reports the call done, so the daemon would
carry on and a later checkpoint would skip what was never delivered. When records can't be delivered, the
processor therefore exits (SystemExit is the one exception kclpy lets through): the daemon loses the child, and the
records come again from the last checkpoint.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar, cast

from amazon_kclpy.v3 import processor
from prometheus_client.multiprocess import mark_process_dead

from defender_hub.checkpoints.shards import checkpoint
from defender_hub.codecs.config import CONFIG_SOURCE, NOT_A_COMPLIANCE_CHANGE
from defender_hub.codecs.health import HEALTH_SOURCE, NOT_A_HEALTH_EVENT
from defender_hub.collector import collector_paused
from defender_hub.consumer.health import note_shard
from defender_hub.convert import EventConverter
from defender_hub.errors import (
    EventDecodeError,
    EventError,
    EventMappingError,
    EventSkipped,
    SinkError,
    SinkStopped,
    UnknownEventError,
)
from defender_hub.mapping.common import (
    PRODUCT_NAME_AUDIT,
    PRODUCT_NAME_CONFIG,
    PRODUCT_NAME_DETECT,
    PRODUCT_NAME_HEALTH,
)
from defender_hub.mapping.config import SERVICE_LINKED_RULE
from defender_hub.mapping.health import NOT_ABOUT_SECURITY
from defender_hub.metrics import (
    DELIVERY_SECONDS,
    FINDINGS,
    OTHER,
    OUTCOMES,
    RECORDS,
    SECONDS_BEHIND,
    SET_ASIDE,
    SKIPPED,
    SOURCE_FINDINGS,
    WHAT_DEAD_LETTERED,
    WHAT_PARKED,
    WHAT_SKIPPED,
    reason_label,
)
from defender_hub.sender.client import SenderClient
from defender_hub.sink import DeadLetter, DeadLetters, MappedFinding, RecordOrigin, SecurityHubSink, Sink
from defender_hub.sink.answers import ACCESS_CODES, REFUSED_STATUSES
from defender_hub.sink.counted_letters import CountedLetters

__all__ = ["FindingsProcessor"]

log = logging.getLogger("defender_hub.consumer")

DELIVERY_RECORDS = 5_000
"""Records delivered, then checkpointed, at a time. A part's findings are in memory at once, and its last request goes
partial unless another shard's findings fill it, as at a backlog's end, with one shard left: fewer, larger parts fill
more requests, and take more memory (docs/benchmarks.md has the figures of 2,500, 5,000 and 10,000)."""
SOURCE_OF_PRODUCT = {
    PRODUCT_NAME_DETECT: "device_defender",
    PRODUCT_NAME_AUDIT: "device_defender",
    PRODUCT_NAME_CONFIG: CONFIG_SOURCE.name,
    PRODUCT_NAME_HEALTH: HEALTH_SOURCE.name,
}
"""The `source` label of a finding's metrics, by its ProductName."""
SOURCES = (*dict.fromkeys(SOURCE_OF_PRODUCT.values()), OTHER)
"""Every `source` label of the metrics, OTHER for a ProductName of none of them."""
SKIP_REASONS = (NOT_A_COMPLIANCE_CHANGE, SERVICE_LINKED_RULE, NOT_A_HEALTH_EVENT, NOT_ABOUT_SECURITY)
"""The fixed reasons the sources skip an event for."""
RECORD_ERRORS = (EventDecodeError, UnknownEventError, EventMappingError)
"""Why a record makes no finding: a bad record's `reason` label is its error's name."""
MAPPING_DEFECT = "mapping_defect"
"""The `reason` label of a record whose mapping failed by a defect of ours, not by what the record holds."""
NOTE_SECONDS = 10.0
"""How often a shard notes its progress for the health check while its lag stays the same: the KCL calls once a
second even with no records, and the check allows minutes (STALL_SECONDS) before a stall."""


Callback = TypeVar("Callback", bound=Callable[..., None])


def _exits_on_surprise(callback: Callback) -> Callback:
    """Makes a KCL callback end in what it did or in SystemExit, never in another exception: kclpy would report the
    call done, and the next batch's checkpoint would pass records this one never delivered."""

    @functools.wraps(callback)
    def guarded(*args: Any) -> None:
        try:
            callback(*args)
        except Exception:
            log.exception("a callback failed unexpectedly; exiting without a checkpoint, the records will come again")
            raise SystemExit(1) from None

    return cast(Callback, guarded)


class FindingsProcessor(processor.RecordProcessorBase):  # type: ignore[misc]  # an untyped base class
    """Turns a shard's records into findings and checkpoints past a record only once its findings are delivered."""

    def __init__(
        self, converter: EventConverter, sink: Sink, dead_letters: DeadLetters, health: Path | None = None
    ) -> None:
        self._converter = converter
        self._sink = sink
        self._dead_letters = dead_letters
        self._health = health
        self._shard = "unknown"
        self._stopping = False
        self._set_aside: Counter[tuple[str, str]] = Counter()
        """Records mapped since the last delivery that were skipped or make no finding, by what and why: counted in
        SET_ASIDE once delivered."""
        self._failed_once: set[str] = set()
        """The best-effort chores (health notes, metrics) that failed and were logged once."""
        self._noted: tuple[float, int | None] | None = None
        """When progress was last noted, and the lag noted then."""

    def _progressed(self, behind_ms: int | None) -> None:
        if self._health is None:
            return
        now = time.monotonic()
        if self._noted is not None and self._noted[1] == behind_ms and now - self._noted[0] < NOTE_SECONDS:
            return
        self._noted = now, behind_ms  # tried again in NOTE_SECONDS when it fails, not at every call
        with self._best_effort("health note"):
            note_shard(self._health, self._shard, behind_ms)

    @contextlib.contextmanager
    def _best_effort(self, what: str) -> Iterator[None]:
        """Runs the block, logging its first OSError of each kind (a full disk, say) and going on: a health note or
        a metric must never cost a delivery, nor leave a batch half done."""
        try:
            yield
        except OSError as exc:
            if what not in self._failed_once:
                self._failed_once.add(what)
                log.warning("%s: %s failed (%s); going on without it", self._shard, what, exc)

    def initialize(self, initialize_input: Any) -> None:
        """Remembers the shard, for the origin of dead letters, and starts its counts at zero."""
        self._shard = initialize_input.shard_id
        log.info("processing %s from %s", self._shard, initialize_input.sequence_number, extra={"shard": self._shard})
        with self._best_effort("metrics"):
            _count_from_zero(self._shard)
        self._progressed(None)

    def count_letters_of(self, sender: SecurityHubSink | SenderClient) -> None:
        """Counts in SET_ASIDE each letter `sender` keeps, by what was set aside and why: where it puts a letter is
        the one place that knows its kind and code. (Through the worker's sender, that is the letters the shard
        keeps itself: findings from the future, and findings Security Hub would refuse.)"""
        sender.dead_letters = CountedLetters(sender.dead_letters, self._best_effort)

    def ended(self) -> None:
        """Takes this process's lag out of the worker's metrics as it ends: a shard process that ended is behind
        nothing, and its shard may be another process's by now."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # the metrics are served only in multiprocess mode
            with self._best_effort("metrics"):
                mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]

    @_exits_on_surprise
    def process_records(self, process_records_input: Any) -> None:
        """Delivers the records' findings, dead-letters records that make none, and checkpoints after each part of
        the batch once its findings are delivered. (A small batch goes at once: the worker's sender fills each
        request across the shards.)"""
        records = process_records_input.records
        behind = process_records_input.millis_behind_latest
        checkpointer = process_records_input.checkpointer
        if behind is not None:
            with self._best_effort("metrics"):
                SECONDS_BEHIND.labels(self._shard).set(behind / 1000)
        for start in range(0, len(records), DELIVERY_RECORDS):
            part = records[start : start + DELIVERY_RECORDS]
            with collector_paused():
                delivered = self._deliver_and_checkpoint(checkpointer, part, *self._map(part))
            if not delivered:
                return  # the shard is another worker's now: the rest of the batch is its to send
            self._progressed(behind)  # after each part: a long batch is progress, not a stall
        self._progressed(behind)

    def _map(self, records: list[Any]) -> tuple[list[MappedFinding], list[DeadLetter]]:
        """The findings of `records`, and the dead letters of those that make none."""
        with self._best_effort("metrics"):
            RECORDS.labels(self._shard).inc(len(records))
        findings: list[MappedFinding] = []
        poison: list[DeadLetter] = []
        skipped_by_source: Counter[str] = Counter()
        for record in records:
            origin = RecordOrigin(self._shard, record.sequence_number, record.sub_sequence_number)
            data = record.binary_data
            try:
                findings += [MappedFinding(finding, origin) for finding in self._converter.findings(data)]
            except EventSkipped as skipped:  # nothing wrong with it: counted, and checkpointed past like the rest
                self._set_aside[WHAT_SKIPPED, reason_label(skipped.reason)] += 1
                skipped_by_source[skipped.source] += 1
            except EventError as exc:
                poison.append(DeadLetter.for_record(data, str(exc), origin))
                self._set_aside[WHAT_DEAD_LETTERED, reason_label(type(exc).__name__)] += 1
            except Exception as exc:  # a defect of ours: keep the record for a redrive, not the shard waiting
                log.exception("internal error mapping %s %s", self._shard, record.sequence_number)
                poison.append(DeadLetter.for_record(data, f"internal error: {type(exc).__name__}: {exc}", origin))
                self._set_aside[WHAT_DEAD_LETTERED, MAPPING_DEFECT] += 1
        # Counted once a batch, not once a finding: a metric's update costs as much as a finding's mapping.
        with self._best_effort("metrics"):
            for product, count in Counter(item.finding.product_name for item in findings).items():  # type: ignore[union-attr]
                SOURCE_FINDINGS.labels(SOURCE_OF_PRODUCT.get(product, OTHER)).inc(count)
            for source, count in skipped_by_source.items():
                SKIPPED.labels(source).inc(count)
        return findings, poison

    def _deliver_and_checkpoint(
        self, checkpointer: Any, records: list[Any], findings: list[MappedFinding], poison: list[DeadLetter]
    ) -> bool:
        """Delivers, then checkpoints at the last of `records`; returns False when the shard was handed on."""
        self._deliver(records, findings, poison)
        last = records[-1]
        return checkpoint(checkpointer, self._shard, last.sequence_number, last.sub_sequence_number)

    def _deliver(self, records: list[Any], findings: list[MappedFinding], poison: list[DeadLetter]) -> None:
        """Delivers `findings` and dead-letters `poison`, the findings of `records`; exits if that can't be done."""
        started = time.monotonic()
        try:
            self._dead_letters.put(poison)
            report = self._sink.deliver(findings)
        except SinkStopped:
            log.warning("stopping before %d records were delivered; not checkpointing past them", len(records))
            raise SystemExit(0) from None
        except SinkError as exc:
            log.error("%s: %s; exiting without a checkpoint, the records will come again", self._shard, exc)
            raise SystemExit(1) from None
        except Exception:  # a defect or a surprise: kclpy would report the batch done, and a checkpoint skip it
            log.exception("%s: delivery failed unexpectedly; exiting without a checkpoint", self._shard)
            raise SystemExit(1) from None
        set_aside, self._set_aside = self._set_aside, Counter()
        with self._best_effort("metrics"):
            DELIVERY_SECONDS.observe(time.monotonic() - started)
            for outcome in OUTCOMES:
                FINDINGS.labels(outcome).inc(getattr(report, outcome))
            for (what, reason), count in set_aside.items():
                SET_ASIDE.labels(what, reason).inc(count)
        # The bad records are dead letters as much as the findings Security Hub refused: the line counts both.
        counts = {
            "records": len(records),
            "accepted": report.accepted,
            "archived": report.archived,
            "unchanged": report.unchanged,
            "dead_lettered": len(poison) + report.dead_lettered,
            "bad_records": len(poison),
            "dead_lettered_findings": report.dead_lettered,
            "parked": report.parked,
            "skipped": sum(count for (what, _), count in set_aside.items() if what == WHAT_SKIPPED),
            "workflow_updated": report.workflow_updated,
        }
        log.info(
            "%s: %d records, %d findings accepted (%d archived by the lifecycle), %d unchanged, %d dead-lettered "
            "(%d bad records, %d findings), %d parked, %d skipped by their source's rules, %d workflows set",
            self._shard,
            *counts.values(),
            extra={"shard": self._shard, **counts},
        )

    def lease_lost(self, lease_lost_input: Any) -> None:
        """Another worker has the shard now: nothing to checkpoint, nothing in flight survives this call."""
        if self._stopping:  # the KCL lets go of the lease after a stop it asked for: that is no news
            log.debug("lease of %s let go on stopping", self._shard)
        else:
            log.info("lease of %s lost: another worker has the shard now", self._shard)

    @_exits_on_surprise
    def shard_ended(self, shard_ended_input: Any) -> None:
        """Checkpoints the shard's end, without which its children never start."""
        checkpoint(shard_ended_input.checkpointer, self._shard)
        log.info("%s ended: checkpointed at its end", self._shard)

    @_exits_on_surprise
    def shutdown_requested(self, shutdown_requested_input: Any) -> None:
        """Checkpoints at the last record received: all of it is delivered by then."""
        checkpoint(shutdown_requested_input.checkpointer, self._shard)
        self._stopping = True
        log.info("%s: stopping, checkpointed at what was delivered", self._shard)


def _count_from_zero(shard: str) -> None:
    """Makes the label sets known before anything is counted in them, so that a dashboard sees zeros, not nothing."""
    RECORDS.labels(shard)
    for source in SOURCES:
        SOURCE_FINDINGS.labels(source)
        SKIPPED.labels(source)
    for reason in SKIP_REASONS:
        SET_ASIDE.labels(WHAT_SKIPPED, reason_label(reason))
    for reason in (*(error.__name__ for error in RECORD_ERRORS), MAPPING_DEFECT):
        SET_ASIDE.labels(WHAT_DEAD_LETTERED, reason_label(reason))
    for code in (*ACCESS_CODES, *map(str, REFUSED_STATUSES)):
        SET_ASIDE.labels(WHAT_PARKED, reason_label(code))
