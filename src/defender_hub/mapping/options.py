"""What the mapping takes from configuration rather than from events."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

__all__ = ["DEFAULT_COMPANY_NAME", "DEFAULT_DETECT_SEVERITY", "MappingOptions"]

DEFAULT_COMPANY_NAME = "AWS"
"""As the native integration has it, so that insights and filters written for it keep working."""

DEFAULT_DETECT_SEVERITY = "MEDIUM"

_EMPTY: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class MappingOptions:
    """Defaults for what an event leaves out, and the labels configuration assigns; validated by `config`."""

    account_id: str | None = None
    region: str | None = None
    partition: str | None = None
    """None: taken from the region (cn-* → aws-cn, us-gov-* → aws-us-gov, else aws)."""
    company_name: str = DEFAULT_COMPANY_NAME
    detect_severity: str = DEFAULT_DETECT_SEVERITY
    security_profile_severity: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    """Severity label by security profile name, for its Detect findings."""
    behavior_severity: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    """Severity label by behavior name; wins over the security profile's."""
