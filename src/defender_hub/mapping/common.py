"""What every mapped finding shares: its frame, bounded Ids and texts, classification objects made once."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from defender_hub.codecs.asff import (
    SCHEMA_VERSION,
    Compliance,
    Finding,
    FindingProviderFields,
    Resource,
    Severity,
)
from defender_hub.codecs.asff_rules import Limits
from defender_hub.mapping.aws import Origin, product_arn
from defender_hub.mapping.options import MappingOptions
from defender_hub.text import bounded, clean, stable_digest
from defender_hub.timestamps import format_iso

__all__ = [
    "CHECK_SUMMARY",
    "CONFIGURATION_CHECKS_TYPES",
    "NAME_LIMIT",
    "NATIVE_TRUNCATION_MARKER",
    "PRODUCT_NAME_AUDIT",
    "PRODUCT_NAME_CONFIG",
    "PRODUCT_NAME_DETECT",
    "PRODUCT_NAME_HEALTH",
    "classification",
    "finding_id",
    "make_finding",
    "native_description",
]

NAME_LIMIT = 128
"""Bound on names from events: AWS IoT's thing, security profile and behavior names are at most 128 characters, and
check names, codes, task ids and types far shorter; anything longer is not AWS's."""
PRODUCT_NAME_AUDIT = "IoT Device Defender - Audit"
PRODUCT_NAME_CONFIG = "Config"
PRODUCT_NAME_HEALTH = "Health"
PRODUCT_NAME_DETECT = "IoT Device Defender - Detect"
CHECK_SUMMARY = "CheckSummary"
"""ProductFields' ReportType of an audit check's summary, as Security Hub's own integration names it."""
CONFIGURATION_CHECKS_TYPES = ("Software and Configuration Checks",)
"""The Types of every Config and Health finding, as the native integrations set them."""
NATIVE_TRUNCATION_MARKER = " (truncated)"
"""How the native Config and Health integrations end a description they cut (the house marker is `text`'s)."""


def finding_id(head: str, name_parts: Sequence[str], tail: str) -> str:
    """Returns `head/parts…/tail`; parts too long for Security Hub's 512 become their digest, so the Id stays stable."""
    candidate = "/".join((head, *name_parts, tail))
    if len(candidate) <= Limits.ID:
        return candidate
    candidate = f"{head}/sha256-{stable_digest(*name_parts)}/{tail}"
    if len(candidate) <= Limits.ID:
        return candidate
    return f"{head[:200]}/sha256-{stable_digest(head, *name_parts, tail)}"


def native_description(text: str) -> str:
    """Returns untrusted `text` cleaned and, over Security Hub's 1,024 characters, cut to end with "(truncated)"."""
    cleaned = clean(text, len(text))  # cleaning never lengthens text, so this limit cuts nothing
    if len(cleaned) <= Limits.DESCRIPTION:
        return cleaned
    return cleaned[: Limits.DESCRIPTION - len(NATIVE_TRUNCATION_MARKER)] + NATIVE_TRUNCATION_MARKER


@lru_cache(maxsize=1024)
def classification(severity: str, types: tuple[str, ...]) -> FindingProviderFields:
    """Returns the (shared, immutable) FindingProviderFields for a severity label and types."""
    return FindingProviderFields(severity=Severity(label=severity), types=types)


def make_finding(
    *,
    origin: Origin,
    options: MappingOptions,
    id: str,
    product_name: str,
    generator_id: str,
    provider_fields: FindingProviderFields,
    created_ms: int,
    updated_ms: int,
    title: str,
    description: str,
    resources: list[Resource],
    record_state: str,
    source_url: str | None,
    product_fields: dict[str, str],
    compliance: Compliance | None = None,
) -> Finding:
    """Returns a finding with the frame every defender-hub finding shares, title and description within limits.

    The caller bounds `id` and `generator_id` (see `finding_id`).
    """
    updated_at = format_iso(updated_ms)
    if len(product_fields) > Limits.PRODUCT_FIELDS:
        product_fields = dict(list(product_fields.items())[: Limits.PRODUCT_FIELDS])
    if len(title) > Limits.TITLE:
        title = bounded(title, Limits.TITLE)
    if len(description) > Limits.DESCRIPTION:
        description = bounded(description, Limits.DESCRIPTION)
    # Positional, in the struct's field order: a third of the cost of keywords on the hot path.
    return Finding(
        SCHEMA_VERSION,
        id,
        product_arn(origin),
        product_name,
        options.company_name,
        generator_id,
        origin.account_id,
        provider_fields.types,
        updated_at if created_ms >= updated_ms else format_iso(created_ms),
        updated_at,
        provider_fields.severity,
        title,
        description,
        resources,
        record_state,
        provider_fields,
        source_url,
        product_fields,
        compliance,
    )
