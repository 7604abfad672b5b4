"""Timestamps in the four forms events use, normalised to epoch milliseconds and written as ASFF wants them; and
the start time an operator gives `run`."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta

from defender_hub.errors import EventDecodeError

__all__ = ["SECONDS_CUTOFF", "Timestamp", "format_iso", "parse_epoch_seconds", "to_epoch_ms"]

Timestamp = int | float | str
"""What an event may carry: epoch milliseconds, epoch seconds, ISO 8601, or RFC 1123 text (AWS Health's)."""

SECONDS_CUTOFF = 100_000_000_000
"""Numbers below this are epoch seconds (up to the year 5138), at or above it epoch milliseconds (from 1973)."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)
_EARLIEST_MS = 0
_LATEST_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z: ISO 8601 has four year digits
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# RFC 1123 as AWS Health writes it (`Fri, 7 Jan 2022 16:34:04 GMT`): English names whatever the locale, so no strptime.
# The weekday is optional (RFC 5322 allows leaving it out) and not checked against the date it repeats.
_RFC_1123 = re.compile(
    r"(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), )?(?P<day>\d{1,2}) (?P<month>"
    + "|".join(_MONTHS)
    + r") (?P<year>\d{4}) (?P<hour>\d{2}):(?P<minute>\d{2}):(?P<second>\d{2}) (?:GMT|UTC|\+0000)",
    re.ASCII,  # digits are 0-9 only
)


def _parse_text(value: str) -> datetime:
    """Returns the time in ISO 8601 or RFC 1123 `value`; raises ValueError when it is neither."""
    try:
        return datetime.fromisoformat(value)  # the common form first: Device Defender's and EventBridge's
    except ValueError:
        rfc_1123 = _RFC_1123.fullmatch(value)
        if rfc_1123 is None:
            raise
    return datetime(
        int(rfc_1123["year"]),
        _MONTHS.index(rfc_1123["month"]) + 1,
        int(rfc_1123["day"]),
        int(rfc_1123["hour"]),
        int(rfc_1123["minute"]),
        int(rfc_1123["second"]),
        tzinfo=UTC,
    )


def to_epoch_ms(value: Timestamp, field: str) -> int:
    """Returns `value` as whole epoch milliseconds; raises EventDecodeError naming `field` when it is no time."""
    if type(value) is int and SECONDS_CUTOFF <= value <= _LATEST_MS:  # SNS' form: nothing to convert
        return value
    if isinstance(value, str):
        try:
            parsed = _parse_text(value)
        except ValueError:
            raise EventDecodeError(
                f"{field}: not an ISO 8601 or RFC 1123 time, or epoch number: {value[:64]!r}"
            ) from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        ms = (parsed - _EPOCH) // _ONE_MS
    elif not math.isfinite(value):
        raise EventDecodeError(f"{field}: not a finite number")
    else:
        ms = round(value * 1000) if abs(value) < SECONDS_CUTOFF else round(value)
    if not _EARLIEST_MS <= ms <= _LATEST_MS:
        raise EventDecodeError(f"{field}: {value!r} is outside 1970..9999")
    return ms


_EPOCH_SECONDS = re.compile(r"(?P<whole>\d+)(?:\.\d*)?", re.ASCII)
_ONE_SECOND = timedelta(seconds=1)


def parse_epoch_seconds(text: str) -> int:
    """Returns ISO 8601 `text` (UTC when it names no offset) or epoch seconds as whole epoch seconds, a fraction
    dropped; raises ValueError for anything else."""
    text = text.strip()
    # Digits alone are epoch seconds, though ISO 8601's basic form would read `20261201` as a date.
    epoch = _EPOCH_SECONDS.fullmatch(text)
    if epoch is not None:
        return int(epoch["whole"])
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return (parsed - _EPOCH) // _ONE_SECOND


_MS_PER_HOUR = 3_600_000
_MINUTES_SECONDS = tuple(f"{second // 60:02d}:{second % 60:02d}" for second in range(3600))
_MILLIS = tuple(f".{millis:03d}Z" for millis in range(1000))
_hour_prefixes: dict[int, str] = {}


def _hour_prefix(epoch_hour: int) -> str:
    if len(_hour_prefixes) >= 16_384:
        _hour_prefixes.clear()
    prefix = _hour_prefixes[epoch_hour] = datetime.fromtimestamp(epoch_hour * 3600, UTC).strftime("%Y-%m-%dT%H:")
    return prefix


def format_iso(epoch_ms: int) -> str:
    """Returns `epoch_ms` as ISO 8601 UTC with milliseconds and `Z`, e.g. `2022-11-06T22:11:40.941Z`."""
    # Look-ups instead of strftime: this runs once or twice for every finding, and a stream spans few hours.
    hour, ms_of_hour = divmod(epoch_ms, _MS_PER_HOUR)
    second, millis = divmod(ms_of_hour, 1000)
    return (_hour_prefixes.get(hour) or _hour_prefix(hour)) + _MINUTES_SECONDS[second] + _MILLIS[millis]
