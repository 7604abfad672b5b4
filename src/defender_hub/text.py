"""Untrusted text made safe to show: control characters out, length bounded with a visible marker."""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from typing import Any

from defender_hub.errors import EventMappingError

__all__ = [
    "TRUNCATION_MARKER",
    "UNTRUSTED_TEXT_LIMIT",
    "bounded",
    "clean",
    "one_of",
    "required_text",
    "stable_digest",
]

UNTRUSTED_TEXT_LIMIT = 1024
"""The most characters any one string from an event keeps; ASFF's Details.Other values allow no more."""

TRUNCATION_MARKER = " …[truncated]"

_WHITESPACE_CONTROLS = {ord("\t"): " ", ord("\n"): " ", ord("\r"): " ", 0x2028: " ", 0x2029: " "}
_REMOVED = [
    *range(0x20),
    0x7F,
    *range(0x80, 0xA0),
    # Bidirectional overrides and isolates: they make a finding's text read differently from what it is.
    0x200E,
    0x200F,
    *range(0x202A, 0x202F),
    *range(0x2066, 0x206A),
]
_CONTROL_TABLE: dict[int, str | None] = dict.fromkeys(_REMOVED) | _WHITESPACE_CONTROLS


def bounded(value: str, limit: int) -> str:
    """Returns `value`, cut to at most `limit` characters with a visible marker when it was longer."""
    if len(value) <= limit:
        return value
    return value[: limit - len(TRUNCATION_MARKER)] + TRUNCATION_MARKER


def clean(value: str, limit: int = UNTRUSTED_TEXT_LIMIT) -> str:
    """Returns untrusted `value` without control or bidi-override characters, at most `limit` characters long."""
    if value.isprintable():  # C-speed test; nearly every string passes it and returns here
        if len(value) <= limit:
            return value
    else:
        value = value.translate(_CONTROL_TABLE)
    return value if len(value) <= limit else value[: limit - len(TRUNCATION_MARKER)] + TRUNCATION_MARKER


def required_text(value: str, field: str, limit: int) -> str:
    """Returns `clean(value, limit)`; raises EventMappingError when nothing printable is left to name a thing by."""
    cleaned = clean(value, limit)
    if not cleaned.strip():
        raise EventMappingError(f"{field} has no printable characters")
    return cleaned


def stable_digest(*parts: str) -> str:
    """Returns a short hex digest of `parts` that is the same on every run and machine."""
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8", "surrogatepass"))
    return digest.hexdigest()[:32]


def one_of(value: Any, names: Collection[str]) -> bool:
    """Whether untrusted `value` is one of `names`: text alone can be, and a list or an object where a name belongs
    is not even looked up (a set can't hold one, and would raise rather than say no)."""
    return isinstance(value, str) and value in names
