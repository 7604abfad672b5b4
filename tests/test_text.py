"""Untrusted text: control and bidi characters out, length bounded with a visible marker."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from defender_hub.errors import EventMappingError
from defender_hub.text import TRUNCATION_MARKER, bounded, clean, required_text, stable_digest


def test_printable_text_passes_unchanged() -> None:
    assert clean("thing-01 ünïcode 设备") == "thing-01 ünïcode 设备"


def test_control_characters_are_removed_and_line_breaks_become_spaces() -> None:
    assert clean("a\x00b\x1b[31mc\x7fd\x85e") == "ab[31mcde"
    assert clean("line\nbreak\ttab\r") == "line break tab "


def test_bidi_overrides_are_removed() -> None:
    assert clean("invoice\u202egpj.exe") == "invoicegpj.exe"


def test_long_text_is_cut_with_a_marker() -> None:
    cut = clean("x" * 5000, 100)

    assert len(cut) == 100
    assert cut.endswith(TRUNCATION_MARKER)
    assert bounded("x" * 100, 100) == "x" * 100


@given(st.text(), st.integers(min_value=len(TRUNCATION_MARKER), max_value=2048))
def test_clean_text_is_bounded_and_free_of_controls(text: str, limit: int) -> None:
    cleaned = clean(text, limit)

    assert len(cleaned) <= limit
    assert not any(ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0 for ch in cleaned)
    assert not {"\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068", "\u2069"} & set(cleaned)


def test_digests_are_stable() -> None:
    assert stable_digest("a", "b") == stable_digest("a", "b")
    assert stable_digest("a", "b") != stable_digest("ab")
    assert len(stable_digest("a")) == 32


def test_a_required_name_must_keep_something_printable() -> None:
    assert required_text(" thing\x00-1 ", "thingName", 128) == " thing-1 "
    with pytest.raises(EventMappingError, match="thingName has no printable characters"):
        required_text("\x00\x1f\u202e", "thingName", 128)
