"""Audited resources: how each Device Defender resource type is named and shown in ASFF."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from itertools import islice
from types import MappingProxyType
from typing import NamedTuple

from defender_hub.codecs.events import ResourceIdentifier
from defender_hub.errors import EventMappingError
from defender_hub.text import clean

__all__ = ["OTHER_TYPE", "RESOURCE_KINDS", "AuditedResource", "ResourceKind", "audited_resource"]

OTHER_TYPE = "Other"
"""The ASFF resource type of a Device Defender resource type this table does not know."""

MAX_IDENTIFIER_PARTS = 8
"""The most identifier members kept; a resource is named by at most three, the rest is bounded noise."""


@dataclass(frozen=True, slots=True)
class ResourceKind:
    """How one resource type maps: its ASFF type, the identifier members that name it, and its console page."""

    asff_type: str
    name_paths: tuple[tuple[str, ...], ...]
    console_prefix: str | None = None


RESOURCE_KINDS: Mapping[str, ResourceKind] = MappingProxyType(
    {
        "DEVICE_CERTIFICATE": ResourceKind("AwsIotCertificate", (("deviceCertificateId",),), "/certificate/"),
        "CA_CERTIFICATE": ResourceKind("AwsIotCaCertificate", (("caCertificateId",),), "/cacertificate/"),
        "IOT_POLICY": ResourceKind(
            "AwsIotPolicy",
            (("policyVersionIdentifier", "policyName"), ("policyVersionIdentifier", "policyVersionId")),
            "/policy/",
        ),
        "COGNITO_IDENTITY_POOL": ResourceKind("AwsCognitoIdentityPool", (("cognitoIdentityPoolId",),)),
        "CLIENT_ID": ResourceKind("AwsIotClientId", (("clientId",),)),
        "ACCOUNT_SETTINGS": ResourceKind("AwsAccount", (("account",),)),
        "ROLE_ALIAS": ResourceKind("AwsIotRoleAlias", (("roleAliasArn",),)),
        "IAM_ROLE": ResourceKind("AwsIamRole", (("iamRoleArn",),)),
        "ISSUER_CERTIFICATE": ResourceKind(
            "AwsIotIssuerCertificate",
            (
                ("issuerCertificateIdentifier", "issuerId"),
                ("issuerCertificateIdentifier", "issuerCertificateSubject"),
                ("issuerCertificateIdentifier", "issuerCertificateSerialNumber"),
            ),
        ),
    }
)


class AuditedResource(NamedTuple):
    """A resource as a finding names it."""

    asff_type: str
    name_parts: tuple[str, ...]
    """The values that name it, in order; they make up its part of the finding Id."""
    members: dict[str, str]
    """Every identifier member, keyed as ProductFields key it (`policyName` → `PolicyName`)."""
    id_member: str | None
    """The member that is the resource Id, for a known type."""
    console_prefix: str | None
    """The console page of the resource, less its name (`/policy/`), where it has one."""

    @property
    def resource_id(self) -> str:
        """The ASFF Resources[].Id: the naming member for a known type, all name parts otherwise."""
        return self.name_parts[0] if self.id_member is not None else "/".join(self.name_parts)

    @property
    def display(self) -> str:
        """How descriptions name it, e.g. `policyexample:1`."""
        return ":".join(self.name_parts)

    def details(self) -> dict[str, str]:
        """The identifier members that the resource Id does not already carry."""
        return {key: value for key, value in self.members.items() if key != self.id_member}


def _members(identifier: ResourceIdentifier) -> dict[tuple[str, ...], str]:
    """Returns the identifier's string members by path, in a stable order, bounded in count."""
    members: dict[tuple[str, ...], str] = {}
    for key in sorted(identifier) if len(identifier) > 1 else identifier:
        value = identifier[key]
        if isinstance(value, str):
            members[(key,)] = clean(value)
        else:
            for inner in sorted(value):
                members[(key, inner)] = clean(value[inner])
        if len(members) >= MAX_IDENTIFIER_PARTS:
            return dict(islice(members.items(), MAX_IDENTIFIER_PARTS))
    return members


_field_names: dict[str, str] = {}


def _field_name(path: tuple[str, ...]) -> str:
    """Returns the ProductFields key of an identifier member: `policyName` → `PolicyName`."""
    name = _field_names.get(path[-1])
    if name is None:
        leaf = clean(path[-1], 64)
        name = leaf[:1].upper() + leaf[1:] or "Unnamed"  # a key that was all control characters
        if len(_field_names) < 1024:
            _field_names[path[-1]] = name
    return name


def audited_resource(resource_type: str, identifier: ResourceIdentifier) -> AuditedResource:
    """Returns how a finding names the resource; raises EventMappingError when the identifier names nothing."""
    kind = RESOURCE_KINDS.get(resource_type)
    if kind is not None and len(identifier) == 1 and len(kind.name_paths) == 1:
        # Most resource types are named by one string member: skip the general walk.
        ((key, value),) = identifier.items()
        if key == kind.name_paths[0][0] and isinstance(value, str) and value:
            name = clean(value)
            field = _field_name((key,))
            return AuditedResource(kind.asff_type, (name,), {field: name}, field, kind.console_prefix)
    members = _members(identifier)
    paths = [path for path in kind.name_paths if members.get(path)] if kind is not None else []
    named_as_listed = bool(paths)
    if not named_as_listed:  # an unknown type, or a known one named by members this table does not list
        paths = [path for path, value in members.items() if value]
    if not paths:
        raise EventMappingError(f"the {clean(resource_type, 64)} resource identifier names no resource")
    return AuditedResource(
        asff_type=kind.asff_type if kind is not None else OTHER_TYPE,
        name_parts=tuple(members[path] for path in paths),
        members={_field_name(path): value for path, value in members.items()},
        id_member=_field_name(paths[0]) if named_as_listed else None,
        console_prefix=kind.console_prefix if kind is not None and named_as_listed else None,
    )
