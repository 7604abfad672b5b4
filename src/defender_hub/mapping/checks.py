"""Audit checks: their default severity and their ASFF types."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

__all__ = ["DEFAULT_CHECK_SEVERITY", "check_severity", "check_types"]

DEFAULT_CHECK_SEVERITY = "MEDIUM"
"""For a check Device Defender added after this table was written."""

_SEVERITY: Mapping[str, str] = MappingProxyType(
    {
        "AUTHENTICATED_COGNITO_ROLE_OVERLY_PERMISSIVE_CHECK": "CRITICAL",
        "UNAUTHENTICATED_COGNITO_ROLE_OVERLY_PERMISSIVE_CHECK": "CRITICAL",
        "CA_CERTIFICATE_KEY_QUALITY_CHECK": "CRITICAL",
        "DEVICE_CERTIFICATE_KEY_QUALITY_CHECK": "CRITICAL",
        "DEVICE_CERTIFICATE_SHARED_CHECK": "CRITICAL",
        "IOT_POLICY_OVERLY_PERMISSIVE_CHECK": "CRITICAL",
        "IOT_ROLE_ALIAS_OVERLY_PERMISSIVE_CHECK": "CRITICAL",
        "REVOKED_CA_CERTIFICATE_STILL_ACTIVE_CHECK": "CRITICAL",
        "INTERMEDIATE_CA_REVOKED_FOR_ACTIVE_DEVICE_CERTIFICATES_CHECK": "CRITICAL",
        "CONFLICTING_CLIENT_IDS_CHECK": "HIGH",
        "CA_CERTIFICATE_EXPIRING_CHECK": "MEDIUM",
        "DEVICE_CERTIFICATE_EXPIRING_CHECK": "MEDIUM",
        "REVOKED_DEVICE_CERTIFICATE_STILL_ACTIVE_CHECK": "MEDIUM",
        "IOT_ROLE_ALIAS_ALLOWS_ACCESS_TO_UNUSED_SERVICES_CHECK": "MEDIUM",
        "IOT_POLICY_POTENTIAL_MISCONFIGURATION_CHECK": "MEDIUM",
        "LOGGING_DISABLED_CHECK": "LOW",
        "DEVICE_CERTIFICATE_AGE_CHECK": "LOW",
    }
)

_UNUSUAL_BEHAVIORS = ("Unusual Behaviors",)
_KEY_QUALITY = ("Software and Configuration Checks/Vulnerabilities/CVE",)
_VULNERABILITIES = ("Software and Configuration Checks/Vulnerabilities",)
_TYPES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "CONFLICTING_CLIENT_IDS_CHECK": _UNUSUAL_BEHAVIORS,
        "DEVICE_CERTIFICATE_SHARED_CHECK": _UNUSUAL_BEHAVIORS,
        "CA_CERTIFICATE_KEY_QUALITY_CHECK": _KEY_QUALITY,
        "DEVICE_CERTIFICATE_KEY_QUALITY_CHECK": _KEY_QUALITY,
    }
)


def check_severity(check_name: str) -> str:
    """Returns the check's default severity label."""
    return _SEVERITY.get(check_name, DEFAULT_CHECK_SEVERITY)


def check_types(check_name: str) -> tuple[str, ...]:
    """Returns the ASFF types of the check's findings."""
    return _TYPES.get(check_name, _VULNERABILITIES)
