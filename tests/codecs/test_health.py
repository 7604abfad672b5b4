"""Decoding AWS Health events: the two finding detail-types whole, other Health events skipped, bad ones refused
plainly; Health's RFC 1123 times."""

from __future__ import annotations

import json
from typing import Any

import pytest

from defender_hub.codecs.decoding import EventDecoder
from defender_hub.codecs.health import NOT_A_HEALTH_EVENT, HealthEvent
from defender_hub.errors import EventDecodeError, EventSkipped
from defender_hub.timestamps import format_iso, to_epoch_ms
from tests.codecs.sources import health_event


@pytest.fixture
def decoder() -> EventDecoder:
    return EventDecoder()


def encode(value: Any) -> bytes:
    return json.dumps(value).encode()


@pytest.mark.parametrize("detail_type", ["AWS Health Event", "AWS Health Abuse Event"])
def test_both_detail_types_decode_whole(decoder: EventDecoder, detail_type: str) -> None:
    event = decoder.decode(encode(health_event({"detail-type": detail_type})))

    assert isinstance(event, HealthEvent)
    assert (event.account, event.region, event.time) == ("123456789012", "us-east-1", "2022-01-07T19:17:43Z")
    detail = event.detail
    assert (detail.service, detail.event_type_code, detail.status_code) == (
        "SES",
        "AWS_SES_CMF_PENDING_TO_SUCCESS",
        "closed",
    )
    assert detail.start_time == "Fri, 7 Jan 2022 16:34:04 GMT"
    assert [entity.entity_value for entity in detail.affected_entities] == [
        "4557227d-9257-4e49-8d5b-18a99ced4be9.cmf.pinpoint.sysmon-iad.adzel.com"
    ]
    assert detail.affected_account is None


def test_what_an_event_may_leave_out_defaults(decoder: EventDecoder) -> None:
    bare = health_event(
        eventDescription=...,
        affectedEntities=...,
        eventRegion=...,
        communicationId=...,
        eventScopeCode=...,
        lastUpdatedTime=...,
    )

    event = decoder.decode(encode(bare))

    assert isinstance(event, HealthEvent)
    assert (event.detail.event_description, event.detail.affected_entities, event.detail.event_region) == ([], [], None)


def test_an_entity_without_a_value_decodes(decoder: EventDecoder) -> None:
    event = decoder.decode(encode(health_event(affectedEntities=[{"status": "UNKNOWN"}, {"entityValue": "i-1"}])))

    assert isinstance(event, HealthEvent)
    assert [entity.entity_value for entity in event.detail.affected_entities] == [None, "i-1"]


def test_another_detail_type_is_skipped_whatever_its_detail(decoder: EventDecoder) -> None:
    with pytest.raises(EventSkipped) as skipped:
        decoder.decode(encode(health_event({"detail-type": "AWS Health Summary", "detail": []})))

    assert (skipped.value.reason, skipped.value.source) == (NOT_A_HEALTH_EVENT, "health")


BAD = {
    "no event ARN": (health_event(eventArn=...), "health event: the required field detail.eventArn is missing"),
    "no start": (health_event(startTime=...), "health event: the required field detail.startTime is missing"),
    "no account": (
        {k: v for k, v in health_event().items() if k != "account"},
        "health event: the required field account is missing",
    ),
    "entities an object": (
        health_event(affectedEntities={"entityValue": "x"}),
        "health event: detail.affectedEntities is an object, not an array",
    ),
    "description without text": (
        health_event(eventDescription=[{"language": "en_US"}]),
        "health event: the required field detail.eventDescription[0].latestDescription is missing",
    ),
    "start a number": (health_event(startTime=1641573244), "health event: detail.startTime is a whole number"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_a_malformed_health_event_is_refused_with_a_plain_reason(decoder: EventDecoder, name: str) -> None:
    event, reason = BAD[name]

    with pytest.raises(EventDecodeError) as raised:
        decoder.decode(encode(event))

    assert str(raised.value).startswith(reason)


@pytest.mark.parametrize(
    "text",
    [
        "Fri, 7 Jan 2022 16:34:04 GMT",
        "Fri, 07 Jan 2022 16:34:04 GMT",
        "7 Jan 2022 16:34:04 GMT",  # RFC 5322 lets the weekday out
        "Fri, 7 Jan 2022 16:34:04 UTC",
        "Fri, 7 Jan 2022 16:34:04 +0000",
        "2022-01-07T16:34:04Z",
    ],
)
def test_rfc_1123_times_read_as_iso_ones(text: str) -> None:
    assert format_iso(to_epoch_ms(text, "startTime")) == "2022-01-07T16:34:04.000Z"


@pytest.mark.parametrize(
    "text",
    [
        "Fri, 31 Feb 2022 16:34:04 GMT",  # no such day
        "Fri, 7 Jan 2022 16:34:04 PST",  # only UTC is RFC 1123's in Health's form
        "Fri, 7 January 2022 16:34:04 GMT",
        "Fri, 7 Jan 2022 25:34:04 GMT",
        "Fri, 7 Jan 22 16:34:04 GMT",
        "Fri,  7 Jan 2022 16:34:04 GMT",
    ],
)
def test_what_is_no_rfc_1123_time_is_an_error_naming_the_field(text: str) -> None:
    with pytest.raises(EventDecodeError, match=r"^startTime: not an ISO 8601 or RFC 1123 time"):
        to_epoch_ms(text, "startTime")
