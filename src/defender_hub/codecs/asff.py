"""AWS Security Finding Format (ASFF), the part of it defender-hub sends, as msgspec structs.

Unset members are omitted on the wire. Members Security Hub fills in itself (top-level `Region`, `Workflow`,
`WorkflowState`, the `aws/securityhub/*` ProductFields) and those a provider can't set through import (`Note`,
`UserDefinedFields`, `VerificationState`) have no place here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import msgspec

__all__ = [
    "SCHEMA_VERSION",
    "Compliance",
    "Finding",
    "FindingProviderFields",
    "Resource",
    "ResourceDetails",
    "Severity",
    "decode_finding",
    "encode_document",
    "encode_finding",
    "encode_findings",
]

SCHEMA_VERSION = "2018-10-08"


class _Asff(msgspec.Struct, rename="pascal", omit_defaults=True, frozen=True, gc=False):
    """Base of the ASFF structs: PascalCase on the wire, unset members left out; values, so frozen and shareable.

    Not kw_only: positional construction is several times faster, and the mapping builds one per event.
    """


class Severity(_Asff, frozen=True):
    """A finding's severity; only the label is sent, Security Hub derives the deprecated `Normalized`."""

    label: str


class FindingProviderFields(_Asff, frozen=True):
    """Where a provider puts Severity and Types so that analysts' edits through BatchUpdateFindings survive."""

    severity: Severity
    types: tuple[str, ...]


class ResourceDetails(_Asff, frozen=True):
    """A resource's details; defender-hub's resource types have no ASFF details object, so all go to `Other`."""

    other: dict[str, str]


class Resource(_Asff, frozen=True):
    """A resource the finding is about."""

    type: str
    id: str
    partition: str | None = None
    region: str | None = None
    details: ResourceDetails | None = None


class Compliance(_Asff, frozen=True):
    """The outcome of a compliance check: PASSED, WARNING, FAILED or NOT_AVAILABLE."""

    status: str


class Finding(_Asff, frozen=True):
    """One ASFF finding as BatchImportFindings takes it."""

    schema_version: str
    id: str
    product_arn: str
    product_name: str
    company_name: str
    generator_id: str
    aws_account_id: str
    types: tuple[str, ...]
    created_at: str
    updated_at: str
    severity: Severity
    title: str
    description: str
    resources: list[Resource]
    record_state: str
    finding_provider_fields: FindingProviderFields
    source_url: str | None = None
    product_fields: dict[str, str] | None = None
    compliance: Compliance | None = None


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Finding)


def encode_finding(finding: Finding) -> bytes:
    """Returns `finding` as compact JSON."""
    return _encoder.encode(finding)


def encode_document(doc: Mapping[str, Any]) -> bytes:
    """Returns a finding as parsed JSON (`doc`) as compact JSON: what the ledger keeps of a finding, and what its
    request body is made from, which must be one encoding for the body's to be kept."""
    return _encoder.encode(doc)


def encode_findings(findings: Iterable[Finding]) -> bytes:
    """Returns `findings` as JSON lines, each ending in a newline."""
    buffer = bytearray()
    for finding in findings:
        _encoder.encode_into(finding, buffer, len(buffer))
        buffer += b"\n"
    return bytes(buffer)


def decode_finding(data: bytes | str) -> Finding:
    """Returns the finding in `data`; raises msgspec.DecodeError when it is not one."""
    return _decoder.decode(data)
