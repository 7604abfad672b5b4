"""Security Hub's rules for an imported finding, checked strictly (botocore checks neither enums nor lengths).

Limits are from the Security Hub user guide (ASFF required and top-level attributes, type taxonomy, service limits).
Sizes are taken in decimal units (240 KB = 240,000 bytes), the stricter reading.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from defender_hub.codecs.asff import SCHEMA_VERSION
from defender_hub.text import one_of

__all__ = [
    "ACCOUNT_ID",
    "COMPLIANCE_STATUSES",
    "IMPORT_BURST",
    "IMPORT_RATE",
    "MAX_FINDINGS_PER_REQUEST",
    "MAX_FINDINGS_PER_UPDATE",
    "MAX_FINDING_BYTES",
    "MAX_REQUEST_BYTES",
    "PARTITIONS",
    "RECORD_STATES",
    "RETENTION_DAYS",
    "SEVERITY_LABELS",
    "TYPE_NAMESPACES",
    "UPDATE_BURST",
    "UPDATE_RATE",
    "WORKFLOW_STATUSES",
    "Limits",
    "finding_problems",
]

MAX_FINDINGS_PER_REQUEST = 100
IMPORT_RATE = 10.0
"""BatchImportFindings requests a second, per account and Region."""
IMPORT_BURST = 30
RETENTION_DAYS = 90
"""Security Hub deletes a finding this long after its last update (or its creation, if never updated)."""
MAX_FINDINGS_PER_UPDATE = 100
"""BatchUpdateFindings' FindingIdentifiers per request."""
UPDATE_RATE = 10.0
"""BatchUpdateFindings requests a second, per account and Region: a quota of its own, apart from the import's."""
UPDATE_BURST = 30
WORKFLOW_STATUSES = frozenset({"NEW", "NOTIFIED", "RESOLVED", "SUPPRESSED"})
MAX_REQUEST_BYTES = 6_000_000
MAX_FINDING_BYTES = 240_000

SEVERITY_LABELS: Mapping[str, int] = {"INFORMATIONAL": 0, "LOW": 1, "MEDIUM": 40, "HIGH": 70, "CRITICAL": 90}
RECORD_STATES = frozenset({"ACTIVE", "ARCHIVED"})
COMPLIANCE_STATUSES = frozenset({"PASSED", "WARNING", "FAILED", "NOT_AVAILABLE"})
TYPE_NAMESPACES = frozenset(
    {
        "Software and Configuration Checks",
        "TTPs",
        "Effects",
        "Unusual Behaviors",
        "Sensitive Data Identifications",
    }
)
PARTITIONS = ("aws", "aws-cn", "aws-us-gov")
ACCOUNT_ID = re.compile(r"\d{12}")
"""An AWS account id: twelve digits."""


class Limits:
    """Lengths and counts Security Hub enforces on one finding."""

    ID = 512
    GENERATOR_ID = 512
    TITLE = 256
    DESCRIPTION = 1024
    NAME = 128  # ProductName, CompanyName
    TYPES = 50
    PRODUCT_FIELDS = 50
    PRODUCT_FIELD_KEY = 128
    PRODUCT_FIELD_VALUE = 2048
    RESOURCES = 32
    RECOMMENDATION_TEXT = 512
    SOURCE_URL = 2048
    DETAILS_OTHER = 50
    DETAILS_OTHER_KEY = 128
    DETAILS_OTHER_VALUE = 1024


_REQUIRED = (
    "SchemaVersion",
    "Id",
    "ProductArn",
    "GeneratorId",
    "AwsAccountId",
    "CreatedAt",
    "UpdatedAt",
    "Title",
    "Description",
    "Resources",
    "Severity",
    "Types",
)
_PRODUCT_ARN = re.compile(
    rf"arn:({'|'.join(PARTITIONS)}):securityhub:[a-z0-9-]+:({ACCOUNT_ID.pattern})?:product/[^/\s]+/[^/\s]+"
)
_RESERVED_PREFIX = "aws/"
"""The ProductFields prefix Security Hub keeps for its own fields."""
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:?\d{2})")


def _text(problems: list[str], doc: Mapping[str, Any], key: str, limit: int, *, path: str = "") -> None:
    value = doc.get(key)
    if value is None:
        return
    if not isinstance(value, str):
        problems.append(f"{path}{key}: must be a string")
    elif not 1 <= len(value) <= limit:
        problems.append(f"{path}{key}: length {len(value)} outside 1..{limit}")


def _is_map(value: Any) -> bool:
    """Whether `value` is a mapping: a dict (parsed JSON's) at once, anything else as the ABC says. The ABC's check
    alone, made a dozen times a finding, was a tenth of the screen."""
    return type(value) is dict or isinstance(value, Mapping)


def _string_map(
    problems: list[str],
    value: Any,
    path: str,
    *,
    pairs: int,
    key_limit: int,
    value_limit: int,
    reserved: str | None = None,
) -> None:
    """Checks a map of strings; with `reserved`, that no key has that prefix (checked in the same pass)."""
    if not _is_map(value):
        problems.append(f"{path}: must be a map of strings")
        return
    if len(value) > pairs:
        problems.append(f"{path}: {len(value)} pairs, at most {pairs}")
    any_reserved = False
    for key, item in value.items():
        if not isinstance(key, str) or not 1 <= len(key) <= key_limit:
            problems.append(f"{path}: key {str(key)[:40]!r} must be 1..{key_limit} characters")
        if not isinstance(item, str) or len(item) > value_limit:
            problems.append(f"{path}.{str(key)[:40]}: must be a string of at most {value_limit} characters")
        if reserved is not None and str(key).startswith(reserved):
            any_reserved = True
    if any_reserved:
        problems.append(f"{path}: the {reserved} prefix is reserved")


def _severity(problems: list[str], value: Any, path: str) -> None:
    if not _is_map(value):
        problems.append(f"{path}: must be an object")
        return
    label, normalized = value.get("Label"), value.get("Normalized")
    if label is None and normalized is None:
        problems.append(f"{path}: needs Label or Normalized")
    if label is not None and not one_of(label, SEVERITY_LABELS):
        problems.append(f"{path}.Label: {str(label)[:40]!r} is not one of {', '.join(SEVERITY_LABELS)}")
    if normalized is not None and (
        not isinstance(normalized, int) or isinstance(normalized, bool) or not 0 <= normalized <= 100
    ):
        problems.append(f"{path}.Normalized: must be a whole number 0..100")


def _types(problems: list[str], value: Any, path: str) -> None:
    if not isinstance(value, list) or not 1 <= len(value) <= Limits.TYPES:
        problems.append(f"{path}: must be a list of 1..{Limits.TYPES} types")
        return
    for item in value:
        parts = item.split("/") if isinstance(item, str) else []
        if not 1 <= len(parts) <= 3 or not all(parts) or parts[0] not in TYPE_NAMESPACES:
            problems.append(f"{path}: {str(item)[:80]!r} is not namespace[/category[/classifier]]")


def _timestamp(problems: list[str], doc: Mapping[str, Any], key: str) -> None:
    value = doc.get(key)
    if value is not None and (not isinstance(value, str) or not _TIMESTAMP.fullmatch(value)):
        problems.append(f"{key}: {str(value)[:40]!r} is not an ISO 8601 timestamp")


def _resources(problems: list[str], value: Any) -> None:
    if not isinstance(value, list) or not 1 <= len(value) <= Limits.RESOURCES:
        problems.append(f"Resources: must be a list of 1..{Limits.RESOURCES} resources")
        return
    for index, resource in enumerate(value):
        path = f"Resources[{index}]."
        if not _is_map(resource):
            problems.append(f"{path[:-1]}: must be an object")
            continue
        for key in ("Type", "Id"):
            if key not in resource:
                problems.append(f"{path}{key}: required")
            _text(problems, resource, key, 512, path=path)
        if resource.get("Partition") is not None and not one_of(resource["Partition"], PARTITIONS):
            problems.append(f"{path}Partition: must be one of {', '.join(PARTITIONS)}")
        details = resource.get("Details")
        if details is not None:
            if not _is_map(details):
                problems.append(f"{path}Details: must be an object")
            elif "Other" in details:
                _string_map(
                    problems,
                    details["Other"],
                    f"{path}Details.Other",
                    pairs=Limits.DETAILS_OTHER,
                    key_limit=Limits.DETAILS_OTHER_KEY,
                    value_limit=Limits.DETAILS_OTHER_VALUE,
                )


def _provider_fields(problems: list[str], doc: Mapping[str, Any]) -> None:
    product_fields = doc.get("ProductFields")
    if product_fields is not None:
        _string_map(
            problems,
            product_fields,
            "ProductFields",
            pairs=Limits.PRODUCT_FIELDS,
            key_limit=Limits.PRODUCT_FIELD_KEY,
            value_limit=Limits.PRODUCT_FIELD_VALUE,
            reserved=_RESERVED_PREFIX,
        )
    provider = doc.get("FindingProviderFields")
    if provider is not None:
        if not _is_map(provider):
            problems.append("FindingProviderFields: must be an object")
        else:
            if "Severity" in provider:
                _severity(problems, provider["Severity"], "FindingProviderFields.Severity")
            if "Types" in provider:
                _types(problems, provider["Types"], "FindingProviderFields.Types")


def finding_problems(doc: Any, *, encoded_size: int | None = None, account_id: str | None = None) -> list[str]:
    """Returns what Security Hub would reject in `doc`, a finding as parsed JSON; an empty list means valid.

    `encoded_size` is the finding's size on the wire, where known; `account_id`, where given, is the only
    AwsAccountId allowed (the caller's, as for a custom integration).
    """
    if not _is_map(doc):
        return ["finding: must be an object"]
    problems = [f"{key}: required" for key in _REQUIRED if doc.get(key) is None]
    if doc.get("SchemaVersion", SCHEMA_VERSION) != SCHEMA_VERSION:
        problems.append(f"SchemaVersion: must be {SCHEMA_VERSION}")
    _text(problems, doc, "Id", Limits.ID)
    _text(problems, doc, "GeneratorId", Limits.GENERATOR_ID)
    _text(problems, doc, "Title", Limits.TITLE)
    _text(problems, doc, "Description", Limits.DESCRIPTION)
    _text(problems, doc, "ProductName", Limits.NAME)
    _text(problems, doc, "CompanyName", Limits.NAME)
    _text(problems, doc, "SourceUrl", Limits.SOURCE_URL)
    product_arn = doc.get("ProductArn")
    if product_arn is not None and (not isinstance(product_arn, str) or not _PRODUCT_ARN.fullmatch(product_arn)):
        problems.append(f"ProductArn: {str(product_arn)[:80]!r} is not a Security Hub product ARN")
    account = doc.get("AwsAccountId")
    if account is not None and (not isinstance(account, str) or not ACCOUNT_ID.fullmatch(account)):
        problems.append("AwsAccountId: must be 12 digits")
    elif account_id is not None and account is not None and account != account_id:
        problems.append("AwsAccountId: must be the calling account")
    _timestamp(problems, doc, "CreatedAt")
    _timestamp(problems, doc, "UpdatedAt")
    _timestamp(problems, doc, "FirstObservedAt")
    _timestamp(problems, doc, "LastObservedAt")
    if "Severity" in doc:
        _severity(problems, doc["Severity"], "Severity")
    if "Types" in doc:
        _types(problems, doc["Types"], "Types")
    if "Resources" in doc:
        _resources(problems, doc["Resources"])
    if doc.get("RecordState") is not None and not one_of(doc["RecordState"], RECORD_STATES):
        problems.append("RecordState: must be ACTIVE or ARCHIVED")
    compliance = doc.get("Compliance")
    if compliance is not None and (
        not _is_map(compliance) or not one_of(compliance.get("Status"), COMPLIANCE_STATUSES)
    ):
        problems.append(f"Compliance.Status: must be one of {', '.join(sorted(COMPLIANCE_STATUSES))}")
    remediation = doc.get("Remediation")
    if _is_map(remediation) and _is_map(remediation.get("Recommendation")):
        _text(problems, remediation["Recommendation"], "Text", Limits.RECOMMENDATION_TEXT, path="Remediation.")
    _provider_fields(problems, doc)
    if encoded_size is not None and encoded_size > MAX_FINDING_BYTES:
        problems.append(f"finding: {encoded_size} bytes, at most {MAX_FINDING_BYTES}")
    return problems
