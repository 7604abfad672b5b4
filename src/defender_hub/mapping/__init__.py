"""Events to ASFF findings, as the native Device Defender, AWS Config and AWS Health integrations map them. Pure: no
I/O, no clock."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from defender_hub.codecs.asff import Finding
from defender_hub.codecs.config import ConfigComplianceChange
from defender_hub.codecs.events import AuditFinding, AuditTaskNotification, DetectViolation, Event
from defender_hub.codecs.health import HealthEvent
from defender_hub.mapping.audit import AuditFindingMapper, AuditTaskMapper
from defender_hub.mapping.config import ConfigMapper
from defender_hub.mapping.detect import DetectMapper
from defender_hub.mapping.health import HealthMapper
from defender_hub.mapping.options import MappingOptions

__all__ = ["FindingMapper", "MappingOptions"]


class FindingMapper:
    """Maps events of every kind to findings; reuse one instance, it remembers what repeats across events."""

    def __init__(self, options: MappingOptions) -> None:
        self.options = options
        # One mapper per event kind; a new kind adds its struct here and to `codecs.decoding.KINDS` (Device Defender's
        # kinds, told by a marker) or `codecs.decoding.SOURCES` (EventBridge sources, decoded whole).
        self._mappers: dict[type[Event], Callable[[Any], list[Finding]]] = {
            DetectViolation: DetectMapper(options),
            AuditFinding: AuditFindingMapper(options),
            AuditTaskNotification: AuditTaskMapper(options),
            ConfigComplianceChange: ConfigMapper(options),
            HealthEvent: HealthMapper(options),
        }

    def map(self, event: Event) -> list[Finding]:
        """Returns the findings `event` makes, in order; raises EventSkipped when its source's rules make none of it,
        EventMappingError when it can make none validly."""
        return self._mappers[type(event)](event)
