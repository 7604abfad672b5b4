"""`defender-hub import` and `defender-hub redrive`: findings from stdin or the dead letters into Security Hub."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

import msgspec

from defender_hub.convert import EventConverter
from defender_hub.errors import EventError, EventSkipped
from defender_hub.mapping import MappingOptions
from defender_hub.sink import DeadLetter, DeadLetters, DeliveryReport, Outbound, RecordOrigin, Sink
from defender_hub.sink.deadletters import Select

__all__ = ["CHUNK_FINDINGS", "import_findings", "redrive"]

CHUNK_FINDINGS = 1_000
"""Findings read before a delivery: bounds memory, and coalescing happens within a chunk."""

_object = msgspec.json.Decoder(dict[str, Any])


def _chunks(source: BinaryIO, dead_letters: DeadLetters, report: DeliveryReport) -> Iterator[list[Outbound]]:
    chunk: list[Outbound] = []
    for number, line in enumerate(source, start=1):
        if not line.strip():
            continue
        try:
            chunk.append(Outbound(_object.decode(line), RecordOrigin(line=number)))
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
) -> DeliveryReport:
    """Imports the ASFF findings on `source`, one JSON object a line; lines that are none are dead-lettered."""
    report = DeliveryReport()
    for chunk in _chunks(source, dead_letters, report):
        report.add(sink.deliver(chunk))
        progress(report)
    return report


def redrive(
    dead_letters: DeadLetters,
    sink: Sink,
    options: MappingOptions,
    progress: Callable[[DeliveryReport], None] = lambda _: None,
    select: Select | None = None,
) -> DeliveryReport:
    """Sends the dead-lettered findings again (those `select` chooses, else all), and maps and sends the
    dead-lettered records; what fails again is dead-lettered again, and a record its source's rules now make no finding
    of is done. A group of letters is forgotten only after all of it was handled."""
    converter = EventConverter(options)
    report = DeliveryReport()
    for letters, forget in dead_letters.drain(select):
        outbound: list[Outbound] = []
        for letter in letters:
            finding = letter.redriven_finding()
            if finding is not None:
                outbound.append(Outbound(finding, letter.origin))
                continue
            record = letter.record_bytes() or b""
            try:
                outbound += [Outbound(finding, letter.origin) for finding in converter.findings(record)]
            except EventError as exc:
                dead_letters.put([DeadLetter.for_record(record, str(exc), letter.origin)])
                report.dead_lettered += 1
            except EventSkipped:
                continue  # well-formed, and by its source's rules no finding: nothing is owed for it
        report.add(sink.deliver(outbound))
        forget()
        progress(report)
    return report
