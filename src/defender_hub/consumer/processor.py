"""The KCL record processor: records → findings → Security Hub, checkpointed only after Security Hub accepted them.

Runs as the MultiLangDaemon's child program (`python -m defender_hub.consumer.processor`), one process per shard
lease. Its stdout is the daemon's protocol channel: everything it has to say goes to the log on stderr. Settings
come from the environment `defender-hub run` gives it (DEFENDER_HUB_*).

amazon_kclpy catches every exception a callback raises, prints it and reports the call done, so the daemon would
carry on and a later checkpoint would skip what was never delivered. When records can't be delivered, the
processor therefore exits (SystemExit is the one exception kclpy lets through): the daemon loses the child, and the
records come again from the last checkpoint.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

from amazon_kclpy import kcl
from amazon_kclpy.checkpoint_error import CheckpointError
from amazon_kclpy.v3 import processor

from defender_hub.checkpoints import DEFAULT_LEDGER, open_ledger
from defender_hub.checkpoints.delivery import LedgeredSink
from defender_hub.config import load_mapping_options
from defender_hub.convert import EventConverter
from defender_hub.errors import EventError, SinkError, SinkStopped
from defender_hub.sink import (
    DeadLetter,
    DeadLetters,
    Outbound,
    RecordOrigin,
    SecurityHubSink,
    open_dead_letters,
    securityhub_clients,
)

__all__ = ["FindingsProcessor", "main"]

log = logging.getLogger("defender_hub.consumer")

CHECKPOINT_ATTEMPTS = 10


class FindingsProcessor(processor.RecordProcessorBase):  # type: ignore[misc]  # an untyped base class
    """Turns a shard's records into findings and checkpoints past a record only once its findings are delivered."""

    def __init__(self, converter: EventConverter, sink: LedgeredSink, dead_letters: DeadLetters) -> None:
        self._converter = converter
        self._sink = sink
        self._dead_letters = dead_letters
        self._shard = "unknown"

    def initialize(self, initialize_input: Any) -> None:
        """Remembers the shard, for the origin of dead letters."""
        self._shard = initialize_input.shard_id
        log.info("processing %s from %s", self._shard, initialize_input.sequence_number)

    def process_records(self, process_records_input: Any) -> None:
        """Delivers the records' findings, dead-letters records that make none, then checkpoints after the last."""
        records = process_records_input.records
        if not records:
            return
        outbound: list[Outbound] = []
        poison: list[DeadLetter] = []
        for record in records:
            origin = RecordOrigin(self._shard, record.sequence_number, record.sub_sequence_number)
            data = record.binary_data
            try:
                outbound += [Outbound(finding, origin) for finding in self._converter.findings(data)]
            except EventError as exc:
                poison.append(DeadLetter.for_record(data, str(exc), origin))
            except Exception as exc:  # a defect of ours: keep the record for a redrive, not the shard waiting
                log.exception("internal error mapping %s %s", self._shard, record.sequence_number)
                poison.append(DeadLetter.for_record(data, f"internal error: {type(exc).__name__}: {exc}", origin))
        try:
            self._dead_letters.put(poison)
            report = self._sink.deliver(outbound)
        except SinkStopped:
            log.warning("stopping before %d records were delivered; not checkpointing past them", len(records))
            raise SystemExit(0) from None
        except SinkError as exc:
            log.error("%s: %s; exiting without a checkpoint, the records will come again", self._shard, exc)
            raise SystemExit(1) from None
        log.info(
            "%s: %d records, %d findings accepted (%d archived by the lifecycle), %d unchanged, %d dead-lettered, "
            "%d bad records",
            self._shard,
            len(records),
            report.accepted,
            report.archived,
            report.unchanged,
            report.dead_lettered,
            len(poison),
        )
        last = records[-1]
        self._checkpoint(process_records_input.checkpointer, last.sequence_number, last.sub_sequence_number)

    def _checkpoint(
        self, checkpointer: Any, sequence_number: str | None = None, sub_sequence: int | None = None
    ) -> None:
        for attempt in range(1, CHECKPOINT_ATTEMPTS + 1):
            try:
                checkpointer.checkpoint(sequence_number, sub_sequence)
                return
            except CheckpointError as error:
                if error.value == "ShutdownException":
                    log.info("%s is shutting down: no checkpoint", self._shard)
                    return
                if error.value == "ThrottlingException" and attempt < CHECKPOINT_ATTEMPTS:
                    time.sleep(min(10.0, 0.2 * 2**attempt))
                    continue
                log.error("checkpoint of %s failed: %s; exiting", self._shard, error.value)
                raise SystemExit(1) from None

    def lease_lost(self, lease_lost_input: Any) -> None:
        """Another worker has the shard now: nothing to checkpoint, nothing in flight survives this call."""
        log.info("lease of %s lost", self._shard)

    def shard_ended(self, shard_ended_input: Any) -> None:
        """Checkpoints the shard's end, without which its children never start."""
        self._checkpoint(shard_ended_input.checkpointer)
        log.info("%s ended: checkpointed at its end", self._shard)

    def shutdown_requested(self, shutdown_requested_input: Any) -> None:
        """Checkpoints what was delivered: process_records returns only after delivering, so that is everything."""
        self._checkpoint(shutdown_requested_input.checkpointer)


def main() -> None:
    """Runs the processor for the daemon, with the settings `defender-hub run` passed in the environment."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    env = os.environ
    config = env.get("DEFENDER_HUB_CONFIG")
    options = load_mapping_options(
        account_id=env.get("DEFENDER_HUB_ACCOUNT_ID"),
        region=env.get("DEFENDER_HUB_REGION"),
        partition=env.get("DEFENDER_HUB_PARTITION"),
        config_file=Path(config) if config else None,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    dead_letters = open_dead_letters(env.get("DEFENDER_HUB_DEAD_LETTER", "dead-letters.jsonl"))
    sink = SecurityHubSink(securityhub_clients(), dead_letters, account_id=options.account_id, stop=stop)
    ledger = open_ledger(env.get("DEFENDER_HUB_LEDGER", DEFAULT_LEDGER))
    kcl.KCLProcess(FindingsProcessor(EventConverter(options), LedgeredSink(sink, ledger), dead_letters)).run()


if __name__ == "__main__":
    main()
