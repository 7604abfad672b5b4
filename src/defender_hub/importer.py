"""`defender-hub import` and `defender-hub redrive`: findings from stdin or the dead letters into Security Hub."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

import msgspec

from defender_hub.convert import EventConverter
from defender_hub.errors import EventError, EventSkipped, SinkError, SinkStopped
from defender_hub.mapping import MappingOptions
from defender_hub.sink import DeadLetter, DeadLetters, DeliveryReport, MappedFinding, RecordOrigin, Sink
from defender_hub.sink.deadletters import Select

__all__ = ["CHUNK_FINDINGS", "import_findings", "redrive"]

CHUNK_FINDINGS = 1_000
"""Findings read before a delivery: bounds memory, and coalescing happens within a chunk."""

_object = msgspec.json.Decoder(dict[str, Any])


def _unless_stopped(stop: threading.Event | None, what: str) -> None:
    """Raises SinkStopped, saying `what` was left, once `stop` is set: where no request to Security Hub notices it."""
    if stop is not None and stop.is_set():
        raise SinkStopped(f"stop requested while {what}")


def _chunks(
    source: BinaryIO, dead_letters: DeadLetters, report: DeliveryReport, stop: threading.Event | None
) -> Iterator[list[MappedFinding]]:
    chunk: list[MappedFinding] = []
    for number, line in enumerate(source, start=1):
        # Checked at each line: input that sends nothing (bad lines, or findings the ledger has) still stops.
        _unless_stopped(stop, "the input was still being read")
        if not line.strip():
            continue
        try:
            chunk.append(MappedFinding(_object.decode(line), RecordOrigin(line=number)))
        except msgspec.DecodeError as exc:
            dead_letters.put(
                [DeadLetter.for_record(line.rstrip(b"\n"), f"not a JSON object: {exc}", RecordOrigin(line=number))]
            )
            report.dead_lettered += 1
        if len(chunk) >= CHUNK_FINDINGS:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def import_findings(
    source: BinaryIO,
    sink: Sink,
    dead_letters: DeadLetters,
    progress: Callable[[DeliveryReport], None] = lambda _: None,
    *,
    stop: threading.Event | None = None,
) -> DeliveryReport:
    """Imports the ASFF findings on `source`, one JSON object a line; lines that are none are dead-lettered. Raises
    SinkStopped when `stop` is set before all of them were read and sent, leaving the rest unimported (a read of
    `source` waiting for input notices it only at the next line or the end of input)."""
    report = DeliveryReport()
    try:
        for chunk in _chunks(source, dead_letters, report, stop):
            _unless_stopped(stop, "findings read were still unsent")
            report.add(sink.deliver(chunk))
            progress(report)
    except SinkError:
        progress(report)  # what was done before, for the summary of a delivery that stops
        raise
    return report


def redrive(
    dead_letters: DeadLetters,
    sink: Sink,
    options: MappingOptions,
    progress: Callable[[DeliveryReport], None] = lambda _: None,
    *,
    select: Select | None = None,
    stop: threading.Event | None = None,
) -> DeliveryReport:
    """Sends the dead-lettered findings again (those `select` chooses, else all), and maps and sends the
    dead-lettered records; what fails again is dead-lettered again, and a record its source's rules now make no finding
    of is done. A group of letters is forgotten only after all of it was handled. Raises SinkStopped when `stop` is set
    before all of them were sent, keeping the groups not sent."""
    converter = EventConverter(options)
    report = DeliveryReport()
    try:
        for letters, forget in dead_letters.drain(select):
            _unless_stopped(stop, "dead letters were still unsent")
            findings: list[MappedFinding] = []
            for letter in letters:
                finding = letter.redriven_finding()
                if finding is not None:
                    findings.append(MappedFinding(finding, letter.origin))
                    continue
                record = letter.record_bytes() or b""
                try:
                    findings += [MappedFinding(finding, letter.origin) for finding in converter.findings(record)]
                except EventError as exc:
                    dead_letters.put([DeadLetter.for_record(record, str(exc), letter.origin)])
                    report.dead_lettered += 1
                except EventSkipped:
                    continue  # well-formed, and by its source's rules no finding: nothing is owed for it
            report.add(sink.deliver(findings))
            forget()
            progress(report)
    except SinkError:
        progress(report)  # what was done before, for the summary of a delivery that stops
        raise
    return report
