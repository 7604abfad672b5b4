"""How the local Security Hub reads BatchImportFindings and BatchUpdateFindings requests: what refuses a request whole
(HubError) and what fails one finding of it."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import msgspec

from defender_hub.codecs.asff_rules import (
    ACCOUNT_ID,
    MAX_FINDINGS_PER_REQUEST,
    MAX_FINDINGS_PER_UPDATE,
    MAX_REQUEST_BYTES,
    SEVERITY_LABELS,
    TYPE_NAMESPACES,
    WORKFLOW_STATUSES,
    Limits,
    finding_problems,
)
from defender_hub.local.hub_core import BATCH_IMPORT, HubError, invalid_input
from defender_hub.text import one_of

__all__ = [
    "UPDATABLE",
    "VERIFICATION_STATES",
    "UpdateLimits",
    "UpdateRequest",
    "foreign",
    "foreign_refusal",
    "import_docs",
    "import_problem",
    "parse_update",
]

UPDATABLE = (
    "Confidence",
    "Criticality",
    "Note",
    "RelatedFindings",
    "Severity",
    "Types",
    "UserDefinedFields",
    "VerificationState",
    "Workflow",
)
"""The members a BatchUpdateFindings request may set (botocore's BatchUpdateFindingsRequest)."""
VERIFICATION_STATES = frozenset({"UNKNOWN", "TRUE_POSITIVE", "FALSE_POSITIVE", "BENIGN_POSITIVE"})
RATIO = range(101)
"""Confidence, Criticality and Severity.Normalized: whole numbers 0 to 100 (botocore's RatioScale)."""

_CUSTOM_PRODUCT = re.compile(r"arn:[a-z-]+:securityhub:[a-z0-9-]+:(\d{12}):product/\1/default")


class UpdateLimits:
    """Lengths and counts of BatchUpdateFindings' members (API reference: Note, NoteUpdate, AwsSecurityFinding)."""

    NOTE = 512  # NoteUpdate.Text and .UpdatedBy
    USER_DEFINED_FIELDS = 50
    USER_DEFINED_KEY = 128
    USER_DEFINED_VALUE = 1024


# -- BatchImportFindings


class _ImportBody(msgspec.Struct, forbid_unknown_fields=True):
    """A BatchImportFindings request body as msgspec reads it: each finding's text as it came. msgspec would skip
    another member without checking its text, so a body with one goes to json, which checks all of it."""

    Findings: list[msgspec.Raw]


def import_docs(body: bytes) -> list[tuple[Any, int]]:
    """The findings of a BatchImportFindings request body, each with its size as sent; raises HubError when the
    request is refused whole for its size, its syntax or its number of findings.

    A finding's size is the length of its text in the body: the stand-in's reading of the service's 240 KB, which
    AWS does not say how it measures. msgspec reads a body at a fifth of json's cost, the local Security Hub's largest
    in a load test. A body msgspec refuses (NaN, a lone surrogate, a member it does not know, text that is not UTF-8)
    is read by json, and each of its findings is then sized as botocore would write it.
    """
    if len(body) > MAX_REQUEST_BYTES:
        raise invalid_input("request is larger than 6 MB")
    try:
        texts = msgspec.json.decode(body, type=_ImportBody).Findings
        docs = [(msgspec.json.decode(text), len(text)) for text in texts]
    except (msgspec.DecodeError, UnicodeDecodeError):  # msgspec checks a finding's UTF-8 only as it decodes it
        docs = _docs_of_json(body)
    if not 1 <= len(docs) <= MAX_FINDINGS_PER_REQUEST:
        raise invalid_input(f"Findings must be a list of 1 to {MAX_FINDINGS_PER_REQUEST} findings")
    return docs


def _docs_of_json(body: bytes) -> list[tuple[Any, int]]:
    """The findings of a body read by json, each with its size as botocore would send it."""
    try:
        request = json.loads(body)
    except ValueError:
        raise invalid_input("request body is not JSON") from None
    docs = request.get("Findings") if isinstance(request, dict) else None
    if not isinstance(docs, list):
        raise invalid_input(f"Findings must be a list of 1 to {MAX_FINDINGS_PER_REQUEST} findings")
    return [(doc, len(json.dumps(doc).encode())) for doc in docs]


def foreign(doc: Any, caller: str) -> bool:
    """Whether `doc` is another account's finding: its AwsAccountId, or its own product's account, is not `caller`."""
    if not isinstance(doc, dict):
        return False
    product = _CUSTOM_PRODUCT.fullmatch(str(doc.get("ProductArn", "")))
    account = doc.get("AwsAccountId")
    foreign_account = isinstance(account, str) and ACCOUNT_ID.fullmatch(account) is not None and account != caller
    return foreign_account or (product is not None and product.group(1) != caller)


def foreign_refusal(doc: Mapping[str, Any], caller: str) -> HubError:
    """The service's answer to an import carrying another account's finding: AccessDeniedException (403), whole."""
    return HubError(
        HTTPStatus.FORBIDDEN,
        "AccessDeniedException",
        f"User: arn:aws:iam::{caller}:user/local is not authorized to perform: "
        f"securityhub:{BATCH_IMPORT} on resource: {str(doc.get('ProductArn'))[:200]}",
    )


def import_problem(doc: Any, size: int, region: str, caller: str) -> tuple[str, str] | None:
    """Why one imported finding of `size` bytes fails (its ErrorCode and ErrorMessage), or None when it can be
    stored."""
    problems = finding_problems(doc, encoded_size=size, account_id=caller)
    if problems:
        return "InvalidInput", "; ".join(problems)[:1024]
    # Security Hub is regional: a finding is imported in the Region its product ARN names, by that account.
    own_product = f"arn:{doc['ProductArn'].split(':')[1]}:securityhub:{region}:{caller}:product/"
    if not doc["ProductArn"].startswith(own_product):
        return "InvalidAccess", f"not subscribed to this product in {region}"
    return None


# -- BatchUpdateFindings


@dataclass(frozen=True)
class UpdateRequest:
    """A BatchUpdateFindings request that is not refused whole."""

    identifiers: list[tuple[str, str]]
    """(ProductArn, Id) of each finding to update, in the request's order."""
    changes: dict[str, Any]
    """The members to set, as given."""
    problems: list[str]
    """What breaks the ASFF's rules in `changes`: every finding of the request is then unprocessed, InvalidInput."""


def _text(value: Any) -> bool:
    """A NonEmptyString: a string with something other than white space in it."""
    return isinstance(value, str) and value.strip() != ""


def _ratio(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value in RATIO


def _identifiers(value: Any, member: str) -> list[tuple[str, str]]:
    if not isinstance(value, list) or not all(
        isinstance(item, dict) and _text(item.get("Id")) and _text(item.get("ProductArn")) for item in value
    ):
        raise invalid_input(f"{member} must be a list of {{Id, ProductArn}}, both non-empty strings")
    return [(item["ProductArn"], item["Id"]) for item in value]


def _check_shapes(changes: Mapping[str, Any]) -> None:
    """Refuses the request (InvalidInputException) for a member of the wrong shape, out of range or not one of its
    values, as the service's own validation does: botocore checks none of the ranges and values."""
    note = changes.get("Note")
    if note is not None and not (
        isinstance(note, dict)
        and all(_text(note.get(name)) and len(note[name]) <= UpdateLimits.NOTE for name in ("Text", "UpdatedBy"))
    ):
        raise invalid_input(f"Note needs Text and UpdatedBy, each 1 to {UpdateLimits.NOTE} characters")
    severity = changes.get("Severity")
    if severity is not None and not (
        isinstance(severity, dict)
        and {"Label", "Normalized", "Product"} & severity.keys()
        and one_of(severity.get("Label", "LOW"), SEVERITY_LABELS)
        and ("Normalized" not in severity or _ratio(severity["Normalized"]))
        and isinstance(severity.get("Product", 0), int | float)
    ):
        raise invalid_input(f"Severity needs Label ({', '.join(SEVERITY_LABELS)}), Normalized (0-100) or Product")
    if "VerificationState" in changes and not one_of(changes["VerificationState"], VERIFICATION_STATES):
        raise invalid_input(f"VerificationState must be one of {', '.join(sorted(VERIFICATION_STATES))}")
    for name in ("Confidence", "Criticality"):
        if name in changes and not _ratio(changes[name]):
            raise invalid_input(f"{name} must be a whole number 0 to 100")
    types = changes.get("Types")
    if types is not None and not (isinstance(types, list) and all(_text(item) for item in types)):
        raise invalid_input("Types must be a list of non-empty strings")
    fields = changes.get("UserDefinedFields")
    if fields is not None and not (isinstance(fields, dict) and all(map(_text, [*fields, *fields.values()]))):
        raise invalid_input("UserDefinedFields must map non-empty strings to non-empty strings")
    workflow = changes.get("Workflow")
    if workflow is not None and not (isinstance(workflow, dict) and one_of(workflow.get("Status"), WORKFLOW_STATUSES)):
        raise invalid_input(f"Workflow.Status must be one of {', '.join(sorted(WORKFLOW_STATUSES))}")
    if "RelatedFindings" in changes:
        _identifiers(changes["RelatedFindings"], "RelatedFindings")


def _asff_problems(changes: Mapping[str, Any]) -> list[str]:
    """What breaks the ASFF's rules (the type taxonomy, the user-defined fields' limits) in well-shaped changes."""
    problems = []
    types = changes.get("Types")
    if types is not None:
        if not 1 <= len(types) <= Limits.TYPES:
            problems.append(f"Types: {len(types)} types, 1 to {Limits.TYPES} allowed")
        for item in types:
            parts = item.split("/")
            if len(parts) > 3 or not all(parts) or parts[0] not in TYPE_NAMESPACES:
                problems.append(f"Types: {item[:80]!r} is not namespace[/category[/classifier]]")
    fields = changes.get("UserDefinedFields")
    if fields is not None:
        if len(fields) > UpdateLimits.USER_DEFINED_FIELDS:
            problems.append(f"UserDefinedFields: {len(fields)} pairs, at most {UpdateLimits.USER_DEFINED_FIELDS}")
        for key, value in fields.items():
            if len(key) > UpdateLimits.USER_DEFINED_KEY or len(value) > UpdateLimits.USER_DEFINED_VALUE:
                problems.append(
                    f"UserDefinedFields: {key[:40]!r}: keys up to {UpdateLimits.USER_DEFINED_KEY} characters, "
                    f"values up to {UpdateLimits.USER_DEFINED_VALUE}"
                )
    return problems


def parse_update(body: bytes) -> UpdateRequest:
    """Reads a BatchUpdateFindings request body; raises HubError (InvalidInputException, 400) when it is refused
    whole: not JSON, 0 or over 100 identifiers, no member to update, or a member of the wrong shape or value."""
    try:
        request = json.loads(body or b"{}")
    except ValueError:
        raise invalid_input("request body is not JSON") from None
    if not isinstance(request, dict):
        raise invalid_input("request body is not a JSON object")
    identifiers = _identifiers(request.get("FindingIdentifiers"), "FindingIdentifiers")
    if not 1 <= len(identifiers) <= MAX_FINDINGS_PER_UPDATE:
        raise invalid_input(f"FindingIdentifiers must hold 1 to {MAX_FINDINGS_PER_UPDATE} identifiers")
    changes = {name: request[name] for name in UPDATABLE if request.get(name) is not None}
    if not changes:
        raise invalid_input(f"nothing to update: give at least one of {', '.join(UPDATABLE)}")
    _check_shapes(changes)
    return UpdateRequest(identifiers, changes, _asff_problems(changes))
