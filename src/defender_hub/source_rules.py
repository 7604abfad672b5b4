"""Each source's own lifecycle rules, read from a finding's ProductName: which findings are kept alive, and which are
owed Workflow.Status RESOLVED. Pure; `lifecycle` applies them.

- Device Defender (and anything else): every ACTIVE finding is refreshed.
- AWS Config: a finding is refreshed only while its compliance is FAILED or WARNING, and it is owed RESOLVED (set
  through BatchUpdateFindings, since an import can't set Workflow) when it is created PASSED or goes from FAILED to
  PASSED, as the native integration does.
- AWS Health: a finding is refreshed only while its event is open or upcoming; a closed one is left to expire.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from defender_hub.mapping.common import PRODUCT_NAME_CONFIG, PRODUCT_NAME_HEALTH
from defender_hub.text import one_of

__all__ = ["RESOLVED", "kept_alive", "resolved_owed"]

RESOLVED = "RESOLVED"
"""The Workflow.Status a Config finding is owed when it is created PASSED or goes from FAILED to PASSED."""
_PASSED, _FAILED = "PASSED", "FAILED"
_CONFIG_REFRESHED = frozenset({_FAILED, "WARNING"})
"""Config compliance statuses whose findings are kept alive: the ones that still ask for attention."""
_HEALTH_REFRESHED = frozenset({"open", "upcoming"})
"""Health event statuses whose findings are kept alive; a closed event's finding is left to expire."""


class _Compliance(msgspec.Struct, gc=False):
    status: str = msgspec.field(default="", name="Status")


class _Accepted(msgspec.Struct, gc=False):
    """The one member of an accepted finding the Config rules look back at."""

    compliance: _Compliance = msgspec.field(default_factory=_Compliance, name="Compliance")


_decode_accepted = msgspec.json.Decoder(_Accepted).decode


def _compliance(doc: Mapping[str, Any]) -> str:
    compliance = doc.get("Compliance")
    return str(compliance.get("Status", "")) if isinstance(compliance, Mapping) else ""


def kept_alive(doc: Mapping[str, Any], fields: Mapping[str, Any]) -> bool:
    """Whether the finding's source keeps it alive while it is ACTIVE (`fields`: its ProductFields): Config while it
    fails, Health while its event is not closed, anything else always."""
    product = doc.get("ProductName")
    if product == PRODUCT_NAME_CONFIG:
        return _compliance(doc) in _CONFIG_REFRESHED
    if product == PRODUCT_NAME_HEALTH:
        return one_of(fields.get("StatusCode"), _HEALTH_REFRESHED)
    return True


def resolved_owed(doc: Mapping[str, Any], accepted: bytes | None, owed: str) -> str:
    """The Workflow.Status `doc` is owed once accepted, given the finding Security Hub accepted before (`accepted`,
    JSON; None for none) and what it was owed then: RESOLVED for a Config finding created PASSED or going from FAILED
    to PASSED (or PASSED still, with its RESOLVED not yet set); else ""."""
    if doc.get("ProductName") != PRODUCT_NAME_CONFIG or _compliance(doc) != _PASSED:
        return ""
    if accepted is None or owed == RESOLVED:
        return RESOLVED
    try:
        before = _decode_accepted(accepted).compliance.status
    except msgspec.DecodeError:
        return ""  # the ledger's copy can't be read: no transition can be told, and none is made up
    return RESOLVED if before == _FAILED else ""
