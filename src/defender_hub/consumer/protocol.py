"""The MultiLangDaemon's processRecords messages, decoded with msgspec; every other message as kclpy decodes it.

kclpy decodes each message with the standard library's json and a hook a record, and each record's data from base64
when it is asked for: 7 to 11 µs a record, which was a tenth of a shard process's work a record. msgspec decodes the
same message, base64 included, in under 3. The message kclpy's dispatch receives is kclpy's own
(`messages.ProcessRecordsInput`); only its records are msgspec's, with the three attributes the processor reads.
"""

from __future__ import annotations

from typing import Any

import msgspec
from amazon_kclpy import kcl, messages

__all__ = ["PROCESS_RECORDS", "KclRecord", "fast_records"]

PROCESS_RECORDS = "processRecords"
"""The action of the daemon's message that brings records."""


class KclRecord(msgspec.Struct, frozen=True, gc=False):
    """A record as the processor reads it: its data (decoded from base64) and its place in the shard."""

    # The message's other members of a record (its partition key, its arrival time) are not decoded: nothing reads
    # them.

    binary_data: bytes = msgspec.field(name="data")
    sequence_number: str = msgspec.field(name="sequenceNumber")
    sub_sequence_number: int | None = msgspec.field(default=None, name="subSequenceNumber")


class _ProcessRecords(msgspec.Struct, frozen=True, gc=False):
    """A processRecords message: its records, and how far behind the stream's tip they are."""

    action: str
    records: list[KclRecord]
    millis_behind_latest: int | None = msgspec.field(default=None, name="millisBehindLatest")


_decode = msgspec.json.Decoder(_ProcessRecords).decode


# kclpy's reader and writer of messages is private, but it is the one place a message is decoded, and KCLProcess and
# its Checkpointer take it as an attribute. The version of kclpy is pinned with the daemon's, every shard process of
# the daemon's tests reads through this class, and the processor's own protocol test runs through both readers.
class _FastIOHandler(kcl._IOHandler):  # type: ignore[misc]  # kclpy has no types
    """kclpy's reader and writer of messages, with processRecords decoded by msgspec."""

    def load_action(self, line: str) -> Any:
        """The message on `line`: processRecords as msgspec decodes it, anything else as kclpy does."""
        try:
            batch = _decode(line)
        except (msgspec.ValidationError, msgspec.DecodeError):  # another message, or a form msgspec was not told of
            return super().load_action(line)
        if batch.action != PROCESS_RECORDS:
            return super().load_action(line)
        return messages.ProcessRecordsInput(
            {"action": batch.action, "records": batch.records, "millisBehindLatest": batch.millis_behind_latest}
        )


def fast_records(process: kcl.KCLProcess) -> kcl.KCLProcess:
    """Returns `process` reading the daemon's messages, its checkpointer's answers too, through the msgspec reader."""
    files = process.io_handler
    handler = _FastIOHandler(files.input_file, files.output_file, files.error_file)
    process.io_handler = handler
    process.checkpointer = kcl.Checkpointer(handler)
    return process
