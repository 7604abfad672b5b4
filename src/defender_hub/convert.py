"""`defender-hub convert`: newline-delimited events in, ASFF findings out, bad and skipped lines reported, blank ones
passed over."""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

import msgspec

from defender_hub.codecs.asff import Finding
from defender_hub.codecs.decoding import EventDecoder
from defender_hub.errors import EventDecodeError, EventError, EventSkipped
from defender_hub.mapping import FindingMapper, MappingOptions

__all__ = ["MAX_EVENT_BYTES", "EventConverter", "convert_stream"]

MAX_EVENT_BYTES = 1_048_576
"""Kinesis' record size limit: no event on the stream can be larger."""

_FLUSH_BYTES = 1 << 16


class EventConverter:
    """Turns one event's bytes into its findings; reuse one instance."""

    def __init__(self, options: MappingOptions) -> None:
        self._decoder = EventDecoder()
        self._mapper = FindingMapper(options)

    def findings(self, data: bytes) -> list[Finding]:
        """Returns the findings of the event in `data`; raises an EventError saying why there are none, or EventSkipped
        when the rules of the event's source make none of it."""
        if len(data) > MAX_EVENT_BYTES and len(data.rstrip()) > MAX_EVENT_BYTES:
            raise EventDecodeError(f"event is over the {MAX_EVENT_BYTES}-byte Kinesis record limit")
        return self._mapper.map(self._decoder.decode(data))


def _numbered_lines(stream: BinaryIO) -> Iterator[tuple[int, bytes]]:
    """Yields each line that is not blank with its number in the stream, counting from 1 and counting blank lines.

    A line longer than a record can be is yielded cut, never read whole into memory, and never taken for blank.
    """
    number = 0
    while line := stream.readline(MAX_EVENT_BYTES + 2):
        number += 1
        if len(line) > MAX_EVENT_BYTES + 1 and not line.endswith(b"\n"):
            while (rest := stream.readline(_FLUSH_BYTES)) and not rest.endswith(b"\n"):
                pass
        elif not line.strip():
            continue  # a blank line is layout, as between and after events in a file a person wrote, no event
        yield number, line


def convert_stream(source: BinaryIO, sink: BinaryIO, errors: BinaryIO, options: MappingOptions) -> int:
    """Converts every line of `source`, writing findings to `sink` and, to `errors`, one JSON line per bad line
    (`{"line": N, "error": …}`) and per line its source's rules make no finding of (`{"line": N, "skipped": …}`).

    Blank lines are passed over. Returns how many lines could not be converted; a skipped line is no failure.
    """
    converter = EventConverter(options)
    encoder = msgspec.json.Encoder()
    buffer = bytearray()
    failed = 0
    interactive = source.isatty()  # someone typing events sees each finding, or error, at once
    flush_at = 0 if interactive else _FLUSH_BYTES
    for number, line in _numbered_lines(source):
        try:
            # Without its line break: JSON cut off inside a string then reads as cut off, not as a bad character.
            findings = converter.findings(line.rstrip())
        except EventError as exc:
            failed += 1
            errors.write(encoder.encode({"line": number, "error": str(exc)}) + b"\n")
            if interactive:
                errors.flush()
            continue
        except EventSkipped as skip:
            errors.write(encoder.encode({"line": number, "skipped": skip.reason, "source": skip.source}) + b"\n")
            if interactive:
                errors.flush()
            continue
        for finding in findings:
            encoder.encode_into(finding, buffer, len(buffer))
            buffer += b"\n"
        if len(buffer) >= flush_at:
            sink.write(buffer)
            buffer.clear()
            if interactive:
                sink.flush()
    sink.write(buffer)
    sink.flush()
    errors.flush()
    return failed
