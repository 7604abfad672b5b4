"""Log lines as text (on a terminal, the default) or as JSON objects, one a line, for CloudWatch Logs Insights.

A JSON line has `time`, `level`, `logger`, `message`, and the structured fields a call passed in `extra` (a shard, a
count, an error code). The daemon's own lines, which `run` reads from its output, become JSON lines too.
"""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any

__all__ = ["LOG_FORMATS", "TEXT_FORMAT", "JsonFormatter", "configure", "daemon_line"]

LOG_FORMATS = ("text", "json")
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}
_DAEMON_LINE = re.compile(
    r"(?P<time>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \[(?P<thread>[^\]]*)\] (?P<level>[A-Z]+)\s+(?P<logger>\S+) "
    r"\[(?P<shard>[^\]]*)\] - (?P<message>.*?)\s*$"
)
"""A line of the daemon's log pattern (consumer/logback.xml)."""


def _iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{int(seconds % 1 * 1000):03d}Z"


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object: time, level, logger, message, its `extra` fields, and the exception."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON line."""
        line: dict[str, Any] = {
            "time": _iso(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line |= {key: value for key, value in record.__dict__.items() if key not in _STANDARD}
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


def daemon_line(text: str) -> str:
    """A line of the daemon's output as a JSON line: parsed when it is one of its log lines, else as a message."""
    if text.startswith("{"):
        return text  # a processor's JSON line, passed through by the daemon as it is
    parsed = _DAEMON_LINE.match(text)
    if parsed is None:
        line = {"time": _iso(time.time()), "level": "INFO", "logger": "kcl", "message": text.rstrip()}
    else:
        local = time.strptime(parsed["time"][:19], "%Y-%m-%d %H:%M:%S")
        seconds = time.mktime(local) + int(parsed["time"][20:]) / 1000
        line = {
            "time": _iso(seconds),
            "level": parsed["level"],
            "logger": parsed["logger"],
            "message": parsed["message"],
            "thread": parsed["thread"],
        }
        if parsed["shard"] not in ("", "NONE"):
            line["shard"] = parsed["shard"]
    return json.dumps(line, ensure_ascii=False)


TEXT_FORMAT = "%(asctime)s %(levelname)s defender-hub: %(message)s"
"""A text line of `run` and its shard processes alike, shaped as the KCL daemon's own lines are (time, level)."""


def configure(log_format: str, level: int = logging.INFO, text_format: str = TEXT_FORMAT) -> None:
    """Sends defender-hub's log lines to stderr in `log_format` ("text" or "json")."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(text_format))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)  # botocore's and others' warnings, not their chatter
    # botocore logs a traceback each time a role's credentials can't be had; the sink says it in one line, and
    # parks the lane, so the traceback would only repeat it every minute.
    logging.getLogger("botocore.credentials").setLevel(logging.ERROR)
    logging.getLogger("defender_hub").setLevel(level)
