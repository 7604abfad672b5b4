"""The benchmark's stdlib reference implements the same mapping, or its comparison would mean nothing."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

from defender_hub.convert import convert_stream
from defender_hub.mapping import MappingOptions
from defender_hub.synthetic import generate_events

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))

import stdlib_reference


def test_the_stdlib_reference_writes_exactly_defender_hubs_findings() -> None:
    events = [
        *generate_events(3_000, seed=11),
        *(Path(__file__).parent / "golden" / "reference-events.jsonl").read_bytes().splitlines(),
    ]
    ours = io.BytesIO()
    convert_stream(io.BytesIO(b"\n".join(events) + b"\n"), ours, io.BytesIO(), MappingOptions())

    mine = [json.loads(line) for line in ours.getvalue().splitlines()]
    theirs = [finding for event in events for finding in stdlib_reference.convert_line(event)]
    assert len(mine) == len(theirs) > 3_000
    assert mine == theirs
