"""The daemon's processRecords messages decoded with msgspec give the processor what kclpy's own decoding gives it."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import pytest
from amazon_kclpy import kcl, messages

from defender_hub.consumer.protocol import PROCESS_RECORDS, _FastIOHandler, fast_records

DATA = [bytes(range(256)), b"", b'{"violationId": "v"}']


def process_records_line(sub_sequence: Any = None, **extra: Any) -> str:
    """A processRecords message as the MultiLangDaemon writes it."""
    records = [
        {
            "action": "record",
            "data": base64.b64encode(data).decode(),
            "partitionKey": f"key-{n}",
            "sequenceNumber": f"4960000000000000000000000000000000000000000000000000000{n}",
            "subSequenceNumber": sub_sequence if n else None,
            "approximateArrivalTimestamp": 1_790_000_000_000 + n,
        }
        for n, data in enumerate(DATA)
    ]
    return json.dumps({"action": PROCESS_RECORDS, "records": records, "millisBehindLatest": 1500, **extra})


def kclpy_and_ours(line: str) -> tuple[Any, Any]:
    return kcl._IOHandler(None, None, None).load_action(line), _FastIOHandler(None, None, None).load_action(line)


@pytest.mark.parametrize("sub_sequence", [None, 7], ids=["plain", "deaggregated"])
def test_a_process_records_message_gives_the_records_kclpy_gives(sub_sequence: int | None) -> None:
    theirs, ours = kclpy_and_ours(process_records_line(sub_sequence, checkpoint=None))

    assert isinstance(ours, messages.ProcessRecordsInput)
    assert (
        (ours.action, ours.millis_behind_latest)
        == (theirs.action, theirs.millis_behind_latest)
        == (
            "processRecords",
            1500,
        )
    )
    assert [(r.binary_data, r.sequence_number, r.sub_sequence_number) for r in ours.records] == [
        (r.binary_data, r.sequence_number, r.sub_sequence_number) for r in theirs.records
    ]
    assert [r.binary_data for r in ours.records] == DATA


@pytest.mark.parametrize(
    "line",
    [
        '{"action": "initialize", "shardId": "shardId-000000000001", "sequenceNumber": "1", "subSequenceNumber": 0}',
        '{"action": "checkpoint", "sequenceNumber": "1", "subSequenceNumber": null, "error": null}',
        '{"action": "shutdownRequested"}',
        process_records_line("7"),  # a form msgspec was not told of: kclpy decodes it
        process_records_line().replace('"data": "', '"data": "*'),  # no base64: kclpy's record says so when read
    ],
    ids=["initialize", "checkpoint", "shutdown-requested", "process-records-in-another-form", "data-not-base64"],
)
def test_any_other_message_is_kclpy_s_own(line: str) -> None:
    theirs, ours = kclpy_and_ours(line)

    assert type(ours) is type(theirs)
    assert vars(ours).keys() == vars(theirs).keys()


def test_the_process_and_its_checkpointer_read_through_the_msgspec_reader() -> None:
    class Processor:
        version = 3

    files = io.StringIO(), io.StringIO(), io.StringIO()
    process = fast_records(kcl.KCLProcess(Processor(), *files))

    assert isinstance(process.io_handler, _FastIOHandler)
    assert process.checkpointer.io_handler is process.io_handler
    handler = process.io_handler
    assert (handler.input_file, handler.output_file, handler.error_file) == files
