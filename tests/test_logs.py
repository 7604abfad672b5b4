"""Log lines as JSON: ours with their structured fields, and the daemon's parsed from its pattern."""

from __future__ import annotations

import json
import logging

from defender_hub.logs import JsonFormatter, daemon_line


def test_a_json_line_has_the_time_level_logger_message_and_the_fields_given() -> None:
    record = logging.LogRecord("defender_hub.consumer", logging.INFO, "p.py", 1, "%s: %d records", ("s-1", 3), None)
    record.__dict__.update(shard="s-1", records=3)

    line = json.loads(JsonFormatter().format(record))

    assert line["level"] == "INFO" and line["logger"] == "defender_hub.consumer"
    assert line["message"] == "s-1: 3 records" and (line["shard"], line["records"]) == ("s-1", 3)
    assert line["time"].endswith("Z")


def test_the_daemons_lines_become_json_and_a_processors_json_passes_through() -> None:
    text = (
        "2026-11-30 05:01:02,345 [multilang-daemon-0000] INFO  s.a.k.coordinator.Scheduler "
        '[shardId-000000000001] - Initializing shard "x"'
    )

    parsed = json.loads(daemon_line(text))

    assert parsed["level"] == "INFO" and parsed["logger"] == "s.a.k.coordinator.Scheduler"
    assert parsed["shard"] == "shardId-000000000001" and parsed["message"] == 'Initializing shard "x"'
    assert json.loads(daemon_line("\tat java.base/Thread.run(Thread.java:840)"))["logger"] == "kcl"
    assert daemon_line('{"level": "INFO"}') == '{"level": "INFO"}'
