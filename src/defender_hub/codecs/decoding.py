"""Bytes from the stream to typed events: envelopes unwrapped, the kind told by a key only it has or by the
EventBridge source."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, cast

import msgspec

from defender_hub.codecs.config import CONFIG_SOURCE
from defender_hub.codecs.eventbridge import EventSource
from defender_hub.codecs.events import AuditFinding, AuditTaskNotification, DetectViolation, DeviceDefenderEvent, Event
from defender_hub.codecs.health import HEALTH_SOURCE
from defender_hub.errors import EventDecodeError, EventSkipped, UnknownEventError
from defender_hub.text import clean

__all__ = [
    "KINDS",
    "MAX_ENVELOPES",
    "SOURCES",
    "EventDecoder",
    "EventKind",
    "arn_context",
    "decode_error_reason",
]

MAX_ENVELOPES = 3
"""How many envelopes (SNS in EventBridge, say) are unwrapped before an event is refused."""


@dataclass(frozen=True, slots=True)
class EventKind:
    """A kind of event: its name, a top-level key no other kind has, and the struct it decodes to."""

    name: str
    marker: str
    type: type[DeviceDefenderEvent]


KINDS: tuple[EventKind, ...] = (
    EventKind("detect-violation", "violationId", DetectViolation),
    EventKind("audit-finding", "nonCompliantResource", AuditFinding),
    EventKind("audit-task-notification", "auditDetails", AuditTaskNotification),
)

SOURCES: tuple[EventSource, ...] = (CONFIG_SOURCE, HEALTH_SOURCE)
"""The EventBridge sources whose events are decoded whole (envelope and detail); a new one adds its module's here."""


class _Envelope(msgspec.Struct, gc=False):
    """What the first look at a record reads: envelope members (an EventBridge event's source and detail-type among
    them) and which kind's marker is present."""

    sns_type: str | None = msgspec.field(default=None, name="Type")
    sns_message: str | None = msgspec.field(default=None, name="Message")
    sns_topic_arn: str | None = msgspec.field(default=None, name="TopicArn")
    detail: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw, name="detail")
    source: str | None = None
    detail_type: str | None = msgspec.field(default=None, name="detail-type")
    account: str | None = None
    region: str | None = None
    # One Raw member per kind, named kind{i} and bound to that kind's marker, is added by _envelope_type().


def _envelope_type(kinds: tuple[EventKind, ...]) -> type[_Envelope]:
    """Returns the envelope struct with one presence member per kind, so one pass finds envelope and kind."""
    fields = [
        (f"kind{i}", msgspec.Raw, msgspec.field(default_factory=msgspec.Raw, name=kind.marker))
        for i, kind in enumerate(kinds)
    ]
    return cast(type[_Envelope], msgspec.defstruct("Envelope", fields, bases=(_Envelope,), gc=False))


def arn_context(arn: str | None) -> tuple[str | None, str | None]:
    """Returns (account, region) of an ARN, or Nones when it is not one."""
    parts = arn.split(":", 5) if arn else ()
    if len(parts) != 6 or parts[0] != "arn":
        return None, None
    return parts[4] or None, parts[3] or None


class EventDecoder:
    """Decodes one record's bytes to a typed event; reuse one instance, its decoders are built once."""

    def __init__(self, kinds: tuple[EventKind, ...] = KINDS, sources: tuple[EventSource, ...] = SOURCES) -> None:
        self._kinds = kinds
        self._sources: dict[str, tuple[EventSource, msgspec.json.Decoder[Any]]] = {
            source.source: (source, msgspec.json.Decoder(source.type)) for source in sources
        }
        self._envelope = msgspec.json.Decoder(_envelope_type(kinds))
        markers, names = ", ".join(kind.marker for kind in kinds), ", ".join(self._sources)
        self._unknown = f"not a known event kind: no top-level {markers}, nor an EventBridge source {names}"
        self._decoders: tuple[msgspec.json.Decoder[Any], ...] = tuple(msgspec.json.Decoder(kind.type) for kind in kinds)
        self._fast_paths = tuple(
            (f'"{kind.marker}"'.encode(), decoder) for kind, decoder in zip(kinds, self._decoders, strict=True)
        )

    def decode(self, data: bytes) -> Event:
        """Returns the event in `data`; raises EventDecodeError, UnknownEventError or EventSkipped, nothing else."""
        try:
            # One pass for the common case, a bare event: try the kind whose marker the bytes contain. Anything
            # else (an envelope, a marker that is not at the top level, an invalid event) takes the full path.
            for marker, decoder in self._fast_paths:
                if marker in data:
                    try:
                        event: Event = decoder.decode(data)
                    except msgspec.ValidationError:
                        break
                    return event
            if not data.strip():
                raise EventDecodeError("empty record")
            return self._decode_enveloped(data)
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:  # ValidationError included
            raise EventDecodeError(decode_error_reason(data, exc)) from None
        except RecursionError:
            raise EventDecodeError("JSON nested too deeply") from None

    def _decode_enveloped(self, record: bytes) -> Event:
        data: bytes | memoryview = record
        account: str | None = None
        region: str | None = None
        # Where a decode error happened, as its message begins: a byte offset in an SNS Message counts from the
        # Message's start, not the record's, and a missing field is only missing for the kind the event is.
        context = ""
        try:
            for _ in range(MAX_ENVELOPES + 1):
                envelope = self._envelope.decode(data)
                if envelope.source in self._sources:  # an AWS service's EventBridge event, taken whole
                    return self._decode_whole(data, envelope, context)
                # The innermost envelope that names an account or Region is the nearest to the event.
                if envelope.sns_type == "Notification" and envelope.sns_message is not None:
                    inner_account, inner_region = arn_context(envelope.sns_topic_arn)
                    data = envelope.sns_message.encode()
                    context = "in the SNS Message: "
                elif envelope.detail:
                    inner_account, inner_region = envelope.account, envelope.region
                    data = memoryview(envelope.detail)
                    context = "in the EventBridge detail: "
                else:
                    break
                account, region = inner_account or account, inner_region or region
            else:
                raise EventDecodeError(f"more than {MAX_ENVELOPES} envelopes around the event")
            for index, kind in enumerate(self._kinds):
                if getattr(envelope, f"kind{index}"):
                    context += f"{kind.name} event: "
                    event: DeviceDefenderEvent = self._decoders[index].decode(data)
                    break
            else:
                raise UnknownEventError(self._unknown)
        except msgspec.DecodeError as exc:
            raise EventDecodeError(decode_error_reason(record, exc, context)) from None
        if event.account_id is None:
            event.account_id = account
        if event.region is None:
            event.region = region
        return event

    def _decode_whole(self, data: bytes | memoryview, envelope: _Envelope, context: str) -> Event:
        """Returns the EventBridge event of a source in `SOURCES`, envelope and detail; raises EventSkipped for one that
        by its source's rules makes no finding, EventDecodeError for a malformed one."""
        source, decoder = self._sources[cast(str, envelope.source)]
        # Skipped before the detail is read: an event that makes no finding is not judged on its shape. One without a
        # detail-type is no event of EventBridge's: decoding it says so.
        if envelope.detail_type is not None and envelope.detail_type not in source.detail_types:
            raise EventSkipped(source.other_detail_type, source.name)
        try:
            event: Event = decoder.decode(data)
        except msgspec.DecodeError as exc:
            raise EventDecodeError(decode_error_reason(bytes(data), exc, f"{context}{source.name} event: ")) from None
        reason = source.skip_reason(event)
        if reason is not None:
            raise EventSkipped(reason, source.name)
        return event


_REASON_LIMIT = 200
"""The most characters a reason has: it is built from msgspec's words, and a new msgspec message might echo input."""

_AT_PATH = re.compile(r"(?P<problem>.*?)(?: - at `\$\.?(?P<path>[^`]*)`)?", re.DOTALL)
_WRONG_TYPE = re.compile(r"Expected `(?P<expected>[^`]+)`, got `(?P<got>[^`]+)`")
_MISSING_FIELD = re.compile(r"Object missing required field `(?P<field>[^`]+)`")
_CONSTRAINED = re.compile(r"Expected `(?P<expected>[^`]+)`(?P<constraint> .+)", re.DOTALL)
_MALFORMED = "JSON is malformed: "
_UTF8_BYTE_ORDER_MARK = b"\xef\xbb\xbf"
_TRUNCATED = "Input data was truncated"
_TRAILING = "JSON is malformed: trailing characters"

_TYPE_NAMES = {
    "object": "an object",
    "array": "an array",
    "str": "a string",
    "int": "a whole number",
    "float": "a number",
    "bool": "a boolean",
    "null": "null",
}


def decode_error_reason(record: bytes, exc: msgspec.DecodeError | UnicodeDecodeError, context: str = "") -> str:
    """Returns why `record` did not decode, in words, from the error decoding it raised; `context` says where."""
    bad_byte = _first_non_utf8_byte(record)
    if bad_byte is not None:  # the root cause, whatever msgspec tripped over first: say it of the whole record
        return f"not UTF-8 text (byte {bad_byte})"
    if record.startswith(_UTF8_BYTE_ORDER_MARK):  # what some editors put first; msgspec sees a bad character
        return "not JSON: starts with a byte-order mark"
    if isinstance(exc, msgspec.ValidationError):
        reason = _validation_reason(str(exc))
    elif isinstance(exc, msgspec.DecodeError):
        reason = _syntax_reason(str(exc))
    else:
        reason = "not UTF-8 text"  # msgspec found bad UTF-8 in text that is valid UTF-8: no longer expected
    return clean(context + reason, _REASON_LIMIT)


def _first_non_utf8_byte(record: bytes) -> int | None:
    """Returns the offset of the first byte of `record` that is not UTF-8, or None when all of it is."""
    try:
        record.decode()
    except UnicodeDecodeError as exc:
        return exc.start
    return None


def _syntax_reason(message: str) -> str:
    """Says what is wrong with JSON msgspec could not parse, given msgspec's message."""
    if message == _TRUNCATED:
        return "not a complete JSON document (cut off?)"
    if message.startswith(_TRAILING):  # its offset is one past where the rest begins, so none is better
        return "not JSON: something follows the JSON document (two on one line?)"
    return "not JSON: " + message.removeprefix(_MALFORMED)


def _validation_reason(message: str) -> str:
    """Says which field of a JSON document does not fit the event, given msgspec's ValidationError message."""
    located = _AT_PATH.fullmatch(message)
    problem, path = (located["problem"], located["path"]) if located else (message, None)
    if missing := _MISSING_FIELD.fullmatch(problem):
        field = f"{path}.{missing['field']}" if path else missing["field"]
        return f"the required field {field} is missing"
    wrong_type = _WRONG_TYPE.fullmatch(problem)
    if wrong_type and not path and wrong_type["expected"] == "object":
        return f"the event is {_type_names(wrong_type['got'])}, not a JSON object"
    if wrong_type and path:
        return f"{path} is {_type_names(wrong_type['got'])}, not {_type_names(wrong_type['expected'])}"
    constrained = _CONSTRAINED.fullmatch(problem)
    if constrained and path:
        return f"{path} must be {_type_names(constrained['expected'])}{constrained['constraint']}"
    return message


def _type_names(types: str) -> str:
    """Returns msgspec's `int | float | str` as "a number or a string"."""
    names = [_TYPE_NAMES.get(name, name) for name in types.split(" | ")]
    if "a number" in names and "a whole number" in names:
        names.remove("a whole number")  # a whole number is a number
    return f"{', '.join(names[:-1])} or {names[-1]}" if len(names) > 1 else names[0]
