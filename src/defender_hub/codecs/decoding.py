"""Bytes from the stream to typed events: envelopes unwrapped, the kind told by a key only it has."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import msgspec

from defender_hub.codecs.events import AuditFinding, AuditTaskNotification, DetectViolation, Event
from defender_hub.errors import EventDecodeError, UnknownEventError

__all__ = ["KINDS", "MAX_ENVELOPES", "EventDecoder", "EventKind", "arn_context"]

MAX_ENVELOPES = 3
"""How many envelopes (SNS in EventBridge, say) are unwrapped before an event is refused."""


@dataclass(frozen=True, slots=True)
class EventKind:
    """A kind of event: its name, a top-level key no other kind has, and the struct it decodes to."""

    name: str
    marker: str
    type: type[Event]


KINDS: tuple[EventKind, ...] = (
    EventKind("detect-violation", "violationId", DetectViolation),
    EventKind("audit-finding", "nonCompliantResource", AuditFinding),
    EventKind("audit-task-notification", "auditDetails", AuditTaskNotification),
)


class _Envelope(msgspec.Struct, gc=False):
    """What the first look at a record reads: envelope members and which kind's marker is present."""

    sns_type: str | None = msgspec.field(default=None, name="Type")
    sns_message: str | None = msgspec.field(default=None, name="Message")
    sns_topic_arn: str | None = msgspec.field(default=None, name="TopicArn")
    detail: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw, name="detail")
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

    def __init__(self, kinds: tuple[EventKind, ...] = KINDS) -> None:
        self._kinds = kinds
        self._envelope = msgspec.json.Decoder(_envelope_type(kinds))
        self._decoders: tuple[msgspec.json.Decoder[Any], ...] = tuple(msgspec.json.Decoder(kind.type) for kind in kinds)
        self._fast_paths = tuple(
            (f'"{kind.marker}"'.encode(), decoder) for kind, decoder in zip(kinds, self._decoders, strict=True)
        )

    def decode(self, data: bytes) -> Event:
        """Returns the event in `data`; raises EventDecodeError or UnknownEventError, never anything else."""
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
            return self._decode_enveloped(data)
        except msgspec.DecodeError as exc:  # ValidationError included
            raise EventDecodeError(str(exc)) from None
        except RecursionError:
            raise EventDecodeError("JSON nested too deeply") from None
        except UnicodeDecodeError as exc:
            raise EventDecodeError(f"not UTF-8: {exc.reason} at byte {exc.start}") from None

    def _decode_enveloped(self, record: bytes) -> Event:
        if not record.strip():
            raise EventDecodeError("empty record")
        data: bytes | memoryview = record
        account: str | None = None
        region: str | None = None
        for _ in range(MAX_ENVELOPES + 1):
            envelope = self._envelope.decode(data)
            # The innermost envelope that names an account or Region is the nearest to the event.
            if envelope.sns_type == "Notification" and envelope.sns_message is not None:
                inner_account, inner_region = arn_context(envelope.sns_topic_arn)
                data = envelope.sns_message.encode()
            elif envelope.detail:
                inner_account, inner_region = envelope.account, envelope.region
                data = memoryview(envelope.detail)
            else:
                break
            account, region = inner_account or account, inner_region or region
        else:
            raise EventDecodeError(f"more than {MAX_ENVELOPES} envelopes around the event")
        for index in range(len(self._kinds)):
            if getattr(envelope, f"kind{index}"):
                event: Event = self._decoders[index].decode(data)
                break
        else:
            markers = ", ".join(kind.marker for kind in self._kinds)
            raise UnknownEventError(f"not a known event kind: no top-level {markers}")
        if event.account_id is None:
            event.account_id = account
        if event.region is None:
            event.region = region
        return event
