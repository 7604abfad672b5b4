"""EventBridge events decoded whole: the envelope every AWS service's event shares, and the sources taken that way."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

__all__ = ["EventBridgeEvent", "EventSource"]


class EventBridgeEvent(msgspec.Struct, kw_only=True, gc=False):
    """The EventBridge envelope, as an EventBridge rule puts it on the stream; each source's struct adds `detail`.

    EventBridge always sets `account`, `region` and `time`, so they are required: the mappings need them (Health's
    UpdatedAt is `time`).
    """

    detail_type: str = msgspec.field(name="detail-type")
    source: str
    account: str
    region: str
    time: str
    """When EventBridge received the event: ISO 8601."""
    id: str | None = None
    version: str | None = None
    resources: list[str] | None = None


@dataclass(frozen=True, slots=True)
class EventSource:
    """An EventBridge source whose events are decoded whole: which detail-types make findings, and into what."""

    source: str
    """EventBridge's `source`, e.g. `aws.config`."""
    name: str
    """How reasons and skip counts name it, e.g. `config`."""
    type: type[EventBridgeEvent]
    """The struct an event of one of `detail_types` decodes to: envelope and typed detail."""
    detail_types: frozenset[str]
    """The detail-types that make findings; an event of another is skipped before its detail is read."""
    other_detail_type: str
    """The skip reason of an event of another detail-type: a fixed text, since skips are counted by reason."""
    skip_reason: Callable[[Any], str | None] = lambda _: None
    """Why a decoded event of `type` makes no finding after all (another messageType, say), or None; a fixed text."""
