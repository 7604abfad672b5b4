"""AWS Config and AWS Health events as EventBridge puts them on the stream, built from the golden ones for tests."""

from __future__ import annotations

import copy
from typing import Any

from tests.helpers import GOLDEN, read_jsonl

CONFIG_EVENT: dict[str, Any] = read_jsonl(GOLDEN / "config-events.jsonl")[0]
"""The Config compliance change that makes the brief's example finding (an S3 bucket, NON_COMPLIANT)."""
HEALTH_EVENT: dict[str, Any] = read_jsonl(GOLDEN / "health-events.jsonl")[0]
"""The Health event that makes the brief's example finding (an SES notification)."""


def _changed(event: dict[str, Any], envelope: dict[str, Any], detail: dict[str, Any]) -> dict[str, Any]:
    changed = copy.deepcopy(event) | envelope
    if detail:
        changed["detail"] = {key: value for key, value in (changed["detail"] | detail).items() if value is not ...}
    return changed


def config_event(envelope: dict[str, Any] | None = None, /, **detail: Any) -> dict[str, Any]:
    """The golden Config event, with `envelope` members and `detail` members changed (`...` removes one)."""
    return _changed(CONFIG_EVENT, envelope or {}, detail)


def health_event(envelope: dict[str, Any] | None = None, /, **detail: Any) -> dict[str, Any]:
    """The golden Health event, with `envelope` members and `detail` members changed (`...` removes one)."""
    return _changed(HEALTH_EVENT, envelope or {}, detail)


def evaluation(**changes: Any) -> dict[str, Any]:
    """The golden Config event's new evaluation, with `changes`."""
    return copy.deepcopy(CONFIG_EVENT["detail"]["newEvaluationResult"]) | changes
