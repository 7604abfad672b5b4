"""AWS Health events, as EventBridge puts them on the stream, as typed msgspec structs.

Field names follow the AWS Health user guide's "Reference: AWS Health events Amazon EventBridge schema". Its times
(`startTime`, `endTime`, `lastUpdatedTime`) are RFC 1123 text, read by `timestamps.to_epoch_ms`; its codes
(`service`, `eventTypeCode`, `statusCode`) stay plain strings, as AWS adds new ones.
"""

from __future__ import annotations

import msgspec

from defender_hub.codecs.eventbridge import EventBridgeEvent, EventSource

__all__ = [
    "HEALTH_DETAIL_TYPES",
    "HEALTH_SOURCE",
    "NOT_A_HEALTH_EVENT",
    "AffectedEntity",
    "EventDescription",
    "HealthDetail",
    "HealthEvent",
]

HEALTH_DETAIL_TYPES = frozenset({"AWS Health Event", "AWS Health Abuse Event"})
NOT_A_HEALTH_EVENT = "not an AWS Health event or abuse event"
"""The skip reason of an aws.health event of another detail-type."""


class _Wire(msgspec.Struct, rename="camel", kw_only=True, gc=False):
    """Base of the detail structs: camelCase on the wire; no reference cycles, so no GC tracking."""


class EventDescription(_Wire):
    """The event's description in one language."""

    latest_description: str
    language: str | None = None


class AffectedEntity(_Wire):
    """A resource the event affects; an entity without a value names nothing and is passed over."""

    entity_value: str | None = None
    status: str | None = None


class HealthDetail(_Wire):
    """What an AWS Health event says: which event, of which service, when, its status, what it affects."""

    event_arn: str
    """Regional, and without an account: the same for every account the event affects."""
    service: str
    event_type_code: str
    event_type_category: str
    start_time: str
    status_code: str = "open"
    """`open`, `upcoming` or `closed`. An abuse event may carry none (AWS's example has none): it is taken as open,
    as a report of abuse asks for action until a later event closes it."""
    event_scope_code: str | None = None
    communication_id: str | None = None
    end_time: str | None = None
    last_updated_time: str | None = None
    event_region: str | None = None
    """The Region affected, or `global`; absent, the envelope's."""
    event_description: list[EventDescription] = msgspec.field(default_factory=list)
    affected_entities: list[AffectedEntity] = msgspec.field(default_factory=list)
    affected_account: str | None = None
    """With an organizational view, the member account the event is about (the envelope's is the management's)."""


class HealthEvent(EventBridgeEvent, kw_only=True, gc=False):
    """An EventBridge `AWS Health Event` or `AWS Health Abuse Event`, whole."""

    detail: HealthDetail


HEALTH_SOURCE = EventSource(
    source="aws.health",
    name="health",
    type=HealthEvent,
    detail_types=HEALTH_DETAIL_TYPES,
    other_detail_type=NOT_A_HEALTH_EVENT,
)
