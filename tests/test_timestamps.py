"""Timestamps: all three forms in, one form out."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from defender_hub.errors import EventDecodeError
from defender_hub.timestamps import format_iso, parse_epoch_seconds, to_epoch_ms

MS = 1_668_033_900_123  # 2022-11-09T22:45:00.123Z


@pytest.mark.parametrize(
    "value",
    [
        MS,
        MS / 1000,
        1_668_033_900.123,
        "2022-11-09T22:45:00.123Z",
        "2022-11-09T22:45:00.123+00:00",
        "2022-11-09T23:45:00.123+01:00",
        "2022-11-09T22:45:00.123",  # no zone: UTC
        float(MS),
    ],
)
def test_the_three_forms_give_the_same_instant(value: int | float | str) -> None:
    assert to_epoch_ms(value, "t") == MS


def test_whole_seconds_are_seconds() -> None:
    assert to_epoch_ms(1_668_033_900, "t") == 1_668_033_900_000


@pytest.mark.parametrize("value", ["yesterday", "", float("nan"), float("inf"), -1, "1969-12-31T23:59:59Z", 1e20])
def test_what_is_no_time_is_an_error_naming_the_field(value: int | float | str) -> None:
    with pytest.raises(EventDecodeError, match="violationEventTime"):
        to_epoch_ms(value, "violationEventTime")


def test_format_is_iso_utc_with_milliseconds() -> None:
    assert format_iso(MS) == "2022-11-09T22:45:00.123Z"
    assert format_iso(0) == "1970-01-01T00:00:00.000Z"


@given(st.integers(min_value=0, max_value=253_402_300_799_999))
def test_format_agrees_with_datetime(ms: int) -> None:
    expected = datetime.fromtimestamp(ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{ms % 1000:03d}Z"

    assert format_iso(ms) == expected
    assert to_epoch_ms(format_iso(ms), "t") == ms


START = 1_796_112_000  # 2026-12-01T08:00:00Z


@pytest.mark.parametrize(
    "text",
    [
        "2026-12-01T08:00:00Z",
        "2026-12-01T09:00:00+01:00",
        "2026-12-01T03:00:00-05:00",
        "2026-12-01T08:00:00",  # no zone: UTC
        "2026-12-01T08:00:00.999Z",  # a fraction is dropped: the start is never later than asked
        "1796112000",
        "1796112000.75",
        " 1796112000 ",
    ],
)
def test_a_start_time_is_iso_8601_or_epoch_seconds_in_whole_seconds(text: str) -> None:
    assert parse_epoch_seconds(text) == START


@pytest.mark.parametrize("text", ["", "yesterday", "1796112000000ms", "-5", "2026-13-01T08:00:00Z", "1e9"])
def test_what_is_no_start_time_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError):
        parse_epoch_seconds(text)
