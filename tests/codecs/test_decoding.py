"""Decoding records: the three kinds, SNS and EventBridge envelopes, and every kind of bad input."""

from __future__ import annotations

import json
from typing import Any

import pytest

from defender_hub.codecs.decoding import MAX_ENVELOPES, EventDecoder
from defender_hub.codecs.events import AuditFinding, AuditTaskNotification, DetectViolation
from defender_hub.errors import EventDecodeError, EventError, UnknownEventError


@pytest.fixture
def decoder() -> EventDecoder:
    return EventDecoder()


def encode(value: Any) -> bytes:
    return json.dumps(value).encode()


def sns(event: dict[str, Any], topic_arn: str = "arn:aws:sns:eu-west-1:111122223333:defender") -> dict[str, Any]:
    return {"Type": "Notification", "MessageId": "m-1", "TopicArn": topic_arn, "Message": json.dumps(event)}


def eventbridge(event: Any, account: str = "444455556666", region: str = "ap-south-1") -> dict[str, Any]:
    return {
        "version": "0",
        "detail-type": "Device Defender",
        "source": "custom",
        "account": account,
        "region": region,
        "detail": event,
    }


def without_context(event: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in event.items() if key not in ("accountId", "region")}


def test_each_reference_event_decodes_to_its_kind(
    decoder: EventDecoder, reference_events: list[dict[str, Any]]
) -> None:
    kinds = [type(decoder.decode(encode(event))) for event in reference_events]

    assert kinds == [AuditFinding, AuditTaskNotification, DetectViolation]


@pytest.mark.parametrize("index", [0, 1, 2])
def test_an_sns_envelope_is_unwrapped_and_its_topic_gives_the_context(
    decoder: EventDecoder, reference_events: list[dict[str, Any]], index: int
) -> None:
    event = decoder.decode(encode(sns(without_context(reference_events[index]))))

    assert (event.account_id, event.region) == ("111122223333", "eu-west-1")


@pytest.mark.parametrize("index", [0, 1, 2])
def test_an_eventbridge_envelope_is_unwrapped_and_gives_the_context(
    decoder: EventDecoder, reference_events: list[dict[str, Any]], index: int
) -> None:
    event = decoder.decode(encode(eventbridge(without_context(reference_events[index]))))

    assert (event.account_id, event.region) == ("444455556666", "ap-south-1")


def test_the_events_own_context_wins_over_its_envelopes(
    decoder: EventDecoder, reference_events: list[dict[str, Any]]
) -> None:
    event = decoder.decode(encode(eventbridge(sns(reference_events[2]))))

    assert (event.account_id, event.region) == ("123456789012", "us-east-1")


def test_sns_inside_eventbridge_unwraps_both(decoder: EventDecoder, reference_events: list[dict[str, Any]]) -> None:
    event = decoder.decode(encode(eventbridge(sns(without_context(reference_events[2])))))

    assert isinstance(event, DetectViolation)
    assert event.account_id == "111122223333"  # the innermost envelope is the nearest to the event


def test_an_inner_envelope_without_context_keeps_the_outer_ones(
    decoder: EventDecoder, reference_events: list[dict[str, Any]]
) -> None:
    inner = sns(without_context(reference_events[2]))
    del inner["TopicArn"]

    event = decoder.decode(encode(eventbridge(inner)))

    assert (event.account_id, event.region) == ("444455556666", "ap-south-1")


def test_envelopes_nested_deeper_than_the_bound_are_refused(
    decoder: EventDecoder, reference_events: list[dict[str, Any]]
) -> None:
    wrapped: dict[str, Any] = reference_events[2]
    for _ in range(MAX_ENVELOPES + 1):
        wrapped = sns(wrapped)

    with pytest.raises(EventDecodeError, match="envelopes"):
        decoder.decode(encode(wrapped))


def test_a_marker_below_the_top_level_does_not_decide_the_kind(
    decoder: EventDecoder, reference_events: list[dict[str, Any]]
) -> None:
    finding = reference_events[0] | {
        "nonCompliantResource": {
            "resourceType": "CLIENT_ID",
            "resourceIdentifier": {"clientId": "c-1"},
            "additionalInfo": {"violationId": "not-the-kind"},
        }
    }

    assert isinstance(decoder.decode(encode(finding)), AuditFinding)


def test_unknown_fields_are_ignored(decoder: EventDecoder, reference_events: list[dict[str, Any]]) -> None:
    event = reference_events[2] | {"someFutureField": {"nested": [1, 2, 3]}, "another": None}

    assert decoder.decode(encode(event)).violation_id == reference_events[2]["violationId"]


def test_an_event_without_any_known_marker_is_unknown(decoder: EventDecoder) -> None:
    with pytest.raises(UnknownEventError, match="violationId, nonCompliantResource, auditDetails"):
        decoder.decode(b'{"configRuleName": "x", "complianceType": "NON_COMPLIANT"}')


BAD_RECORDS = {
    "empty": (b"", "empty record"),
    "whitespace": (b"  \r\n", "empty record"),
    "truncated": (b'{"violationId": "abc", "thingName": "t', "not a complete JSON document (cut off?)"),
    "not an object": (b"[1, 2, 3]", "the event is an array, not a JSON object"),
    "a bare string": (b'"violationId"', "the event is a string, not a JSON object"),
    "malformed": (b"{violationId: 1}", "not JSON: object keys must be strings (byte 1)"),
    "two documents": (b'{"a": 1} {"b": 2}', "not JSON: something follows the JSON document (two on one line?)"),
    "byte-order mark": (b'\xef\xbb\xbf{"violationId": "a"}', "not JSON: starts with a byte-order mark"),
    "not UTF-8": (b'{"violationId": "\xff\xfe"}', "not UTF-8 text (byte 17)"),
    "UTF-16": ('{"violationId": "a"}'.encode("utf-16"), "not UTF-8 text (byte 0)"),
    "wrong type": (b'{"violationId": 42}', "detect-violation event: violationId is a whole number, not a string"),
    "missing field": (b'{"violationId": "abc"}', "detect-violation event: the required field thingName is missing"),
    "missing nested field": (
        b'{"nonCompliantResource": {}}',
        "audit-finding event: the required field nonCompliantResource.resourceType is missing",
    ),
    "bad violation id": (
        b'{"violationId": "a b", "thingName": "t", "securityProfileName": "p", "behavior": {"name": "b"},'
        b' "violationEventType": "in-alarm", "violationEventTime": 1}',
        "detect-violation event: violationId must be a string matching regex",
    ),
    "deep nesting": (b'{"violationId": "a", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "JSON nested too deeply"),
    "bool as a time": (
        b'{"violationId": "a", "thingName": "t", "securityProfileName": "p", "behavior": {"name": "b"},'
        b' "violationEventType": "in-alarm", "violationEventTime": true}',
        "detect-violation event: violationEventTime is a boolean, not a number or a string",
    ),
    "envelope message not JSON": (
        b'{"Type": "Notification", "Message": "{\\"violationId\\": "}',
        "in the SNS Message: not a complete JSON document (cut off?)",
    ),
    "envelope detail not an object": (
        b'{"detail": [1]}',
        "in the EventBridge detail: the event is an array, not a JSON object",
    ),
    "envelope field of the wrong type": (
        b'{"Type": 1, "Message": "x"}',
        "Type is a whole number, not a string or null",
    ),
}


@pytest.mark.parametrize("name", list(BAD_RECORDS))
def test_bad_records_raise_a_clear_event_error(decoder: EventDecoder, name: str) -> None:
    record, message = BAD_RECORDS[name]

    with pytest.raises(EventError) as raised:
        decoder.decode(record)

    assert str(raised.value).startswith(message)
    assert len(str(raised.value)) < 300  # an error never echoes the record


def test_a_megabyte_string_decodes(decoder: EventDecoder, reference_events: list[dict[str, Any]]) -> None:
    event = reference_events[2] | {"thingName": "t" * 1_000_000}

    assert len(decoder.decode(encode(event)).thing_name) == 1_000_000  # bounding is the mapping's job
