"""Events to ASFF findings, as the native Device Defender integration maps them. Pure: no I/O, no clock."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from defender_hub.codecs.asff import Finding
from defender_hub.codecs.events import AuditFinding, AuditTaskNotification, DetectViolation, Event
from defender_hub.mapping.audit import AuditFindingMapper, AuditTaskMapper
from defender_hub.mapping.detect import DetectMapper
from defender_hub.mapping.options import MappingOptions

__all__ = ["FindingMapper", "MappingOptions"]


class FindingMapper:
    """Maps events of every kind to findings; reuse one instance, it remembers what repeats across events."""

    def __init__(self, options: MappingOptions) -> None:
        self.options = options
        # One mapper per event kind; a new kind adds its struct here and to `codecs.decoding.KINDS`.
        self._mappers: dict[type[Event], Callable[[Any], list[Finding]]] = {
            DetectViolation: DetectMapper(options),
            AuditFinding: AuditFindingMapper(options),
            AuditTaskNotification: AuditTaskMapper(options),
        }

    def map(self, event: Event) -> list[Finding]:
        """Returns the findings `event` makes, in order; raises EventMappingError when it can make none validly."""
        return self._mappers[type(event)](event)
