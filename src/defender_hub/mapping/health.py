"""AWS Health events to findings: only the security-related ones, one per event and account, by the brief's rules."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from types import MappingProxyType
from urllib.parse import quote

from defender_hub.codecs.asff import Finding, Resource
from defender_hub.codecs.asff_rules import Limits
from defender_hub.codecs.health import HEALTH_SOURCE, HealthDetail, HealthEvent
from defender_hub.errors import EventMappingError, EventSkipped
from defender_hub.mapping.aws import OriginResolver, account_resource_id, console_host, partition_of
from defender_hub.mapping.common import (
    CONFIGURATION_CHECKS_TYPES,
    NAME_LIMIT,
    PRODUCT_NAME_HEALTH,
    classification,
    finding_id,
    make_finding,
    native_description,
)
from defender_hub.mapping.options import MappingOptions
from defender_hub.mapping.resources import OTHER_TYPE
from defender_hub.text import clean, required_text
from defender_hub.timestamps import format_iso, to_epoch_ms

__all__ = [
    "CRITICAL_EVENT_TYPE_CODES",
    "DESCRIPTION_LANGUAGE",
    "GLOBAL_EVENT_REGIONS",
    "NOT_ABOUT_SECURITY",
    "OTHER_SEVERITY",
    "SECURITY_SERVICES",
    "HealthMapper",
    "event_url",
    "health_severity",
    "is_security_related",
    "start_digest",
]

CRITICAL_EVENT_TYPE_CODES = frozenset(
    {
        "AWS_S3_OPEN_ACCESS_BUCKET_NOTIFICATION",
        "AWS_SHIELD_INTERNET_TRAFFIC_LIMITATIONS_PLACED_IN_RESPONSE_TO_DDOS_ATTACK",
        "AWS_SHIELD_IS_RESPONDING_TO_A_DDOS_ATTACK_AGAINST_YOUR_AWS_RESOURCES",
    }
)
_CRITICAL_SERVICES = frozenset({"RISK"})
_HIGH_SERVICES = frozenset({"ABUSE"})
_HIGH_CODE_PARTS = ("SECURITY_NOTIFICATION", "ABUSE_DETECTION")
SECURITY_SERVICES = frozenset(
    {
        "ACM",
        "ARTIFACT",
        "AUDITMANAGER",
        "BACKUP",
        "CLOUDENDURE",
        "CLOUDHSM",
        "CLOUDTRAIL",
        "CLOUDWATCH",
        "CODEGURU",  # the brief spells it CODEGURGU
        "COGNITO",
        "CONFIG",
        "CONTROLTOWER",
        "DETECTIVE",
        "DIRECTORYSERVICE",
        "DRS",
        "EVENTS",
        "FIREWALLMANAGER",
        "GUARDDUTY",
        "IAM",
        "INSPECTOR",
        "INSPECTOR2",
        "IOTDEVICEDEFENDER",
        "KMS",
        "MACIE",
        "NETWORKFIREWALL",
        "ORGANIZATIONS",
        "RESILIENCEHUB",
        "RESOURCEMANAGER",
        "ROUTE53",
        "SECURITYHUB",
        "SECRETSMANAGER",
        "SES",
        "SHIELD",
        "SSO",
        "WAF",
    }
)
"""The AWS security services: their events are security-related, and MEDIUM unless a higher rule applies."""
_MEDIUM_CODE_PARTS = ("CERTIFICATE", "END_OF_SUPPORT")
_SECURITY_CODE_PARTS = ("SECURITY", "ABUSE", "CERTIFICATE")
OTHER_SEVERITY = "LOW"
"""The project's choice for a security-related event no rule of the brief ranks (a code with SECURITY in it from a
service not listed, say): the brief names no level for it, and LOW keeps it below every one it does name."""

NOT_ABOUT_SECURITY = "not about security"
"""The skip reason of a Health event the security filter does not pass."""
GLOBAL_REGION = "global"
GLOBAL_EVENT_REGIONS: Mapping[str, str] = MappingProxyType(
    {"aws": "us-east-1", "aws-cn": "cn-northwest-1", "aws-us-gov": "us-gov-west-1"}
)
"""Where a global event's finding goes, by partition, as the native integration sends it."""
DESCRIPTION_LANGUAGE = "en_US"
"""The description taken when the event has several; else its first."""

# The Health dashboard's event link: phd.aws.amazon.com serves only the aws partition, so aws-cn and aws-us-gov link
# to the Health dashboard of their own console.
_EVENT_PAGES: Mapping[str, str] = MappingProxyType(
    {
        "aws": "https://phd.aws.amazon.com/phd/home#/event-log?eventID=",
        "aws-cn": f"https://{console_host('aws-cn')}/health/home#/account/event-log?eventID=",
        "aws-us-gov": f"https://{console_host('aws-us-gov')}/health/home#/account/event-log?eventID=",
    }
)


def is_security_related(service: str, event_type_code: str) -> bool:
    """Says whether a Health event passes the security filter: a security service's, a code naming security, abuse
    or a certificate, the RISK or ABUSE service, or a code the CRITICAL rule names."""
    service, code = service.upper(), event_type_code.upper()
    return (
        service in SECURITY_SERVICES
        or service in _CRITICAL_SERVICES
        or service in _HIGH_SERVICES
        or any(part in code for part in _SECURITY_CODE_PARTS)
        or code in CRITICAL_EVENT_TYPE_CODES
    )


def health_severity(service: str, event_type_code: str) -> str:
    """Returns the severity label of a security-related Health event: the brief's CRITICAL, HIGH and MEDIUM rules in
    that order, else `OTHER_SEVERITY`."""
    service, code = service.upper(), event_type_code.upper()
    if service in _CRITICAL_SERVICES or code in CRITICAL_EVENT_TYPE_CODES:
        return "CRITICAL"
    if service in _HIGH_SERVICES or any(part in code for part in _HIGH_CODE_PARTS):
        return "HIGH"
    if service in SECURITY_SERVICES or any(part in code for part in _MEDIUM_CODE_PARTS):
        return "MEDIUM"
    return OTHER_SEVERITY


def start_digest(start_ms: int) -> str:
    """Returns the Id's hash of an event's start: SHA-256, upper-case hex, of the start as ISO 8601
    (`2022-01-07T16:34:04.000Z`), which reproduces the brief's example."""
    return hashlib.sha256(format_iso(start_ms).encode()).hexdigest().upper()


def event_url(partition: str, event_arn: str) -> str | None:
    """Returns the Health dashboard's link to the event, or None when it would be too long for a SourceUrl."""
    url = _EVENT_PAGES.get(partition, _EVENT_PAGES["aws"]) + quote(event_arn, safe=":/")
    return url if len(url) <= Limits.SOURCE_URL else None


def _with_account(event_arn: str, account_id: str) -> str:
    """Returns the event ARN with `account_id` as its account: Health's has none, as it is the same for every
    account the event affects."""
    parts = event_arn.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn":
        raise EventMappingError(f"eventArn {event_arn[:40]!r} is not an ARN")
    parts[4] = account_id
    return ":".join(parts)


def _description(detail: HealthDetail, code: str) -> str:
    """Returns the event's description in `DESCRIPTION_LANGUAGE`, else its first, else a sentence naming it."""
    descriptions = detail.event_description
    chosen = next((d for d in descriptions if d.language == DESCRIPTION_LANGUAGE), None) or (
        descriptions[0] if descriptions else None
    )
    text = native_description(chosen.latest_description) if chosen is not None else ""
    return text if text.strip() else f"AWS Health event {code}"


def _entities(detail: HealthDetail) -> list[str]:
    """Returns the distinct affected entities' values, cleaned, at most as many as a finding has resources."""
    values: dict[str, None] = {}
    for entity in detail.affected_entities:
        if entity.entity_value is None:
            continue
        value = clean(entity.entity_value, Limits.ID)
        if value.strip():
            values[value] = None
            if len(values) == Limits.RESOURCES:
                break
    return list(values)


class HealthMapper:
    """Maps security-related Health events; skips the rest."""

    def __init__(self, options: MappingOptions) -> None:
        self._options = options
        self._origin = OriginResolver(options)

    def __call__(self, event: HealthEvent) -> list[Finding]:
        """Returns the event's finding for its account, ACTIVE; raises EventSkipped for an event not about
        security."""
        detail = event.detail
        if not is_security_related(detail.service, detail.event_type_code):
            raise EventSkipped(NOT_ABOUT_SECURITY, HEALTH_SOURCE.name)
        # An organizational view delivers members' events to the management account: each is its member's finding.
        account = detail.affected_account or event.account
        event_region = detail.event_region or event.region
        region = event_region
        if event_region == GLOBAL_REGION:
            partition = self._options.partition or partition_of(event.region)
            region = GLOBAL_EVENT_REGIONS.get(partition, GLOBAL_EVENT_REGIONS["aws"])
        origin = self._origin(account, region)
        start_ms = to_epoch_ms(detail.start_time, "startTime")
        updated_ms = to_epoch_ms(event.time, "time")
        # Not in the finding, but a bad one says the event is not what Health sends.
        if detail.end_time is not None:
            to_epoch_ms(detail.end_time, "endTime")
        if detail.last_updated_time is not None:
            to_epoch_ms(detail.last_updated_time, "lastUpdatedTime")
        code = required_text(detail.event_type_code, "eventTypeCode", NAME_LIMIT)
        service = required_text(detail.service, "service", NAME_LIMIT)
        event_arn = required_text(detail.event_arn, "eventArn", Limits.ID)
        optional = {
            "EventScopeCode": clean(detail.event_scope_code, NAME_LIMIT) if detail.event_scope_code else None,
            "CommunicationId": clean(detail.communication_id, Limits.ID) if detail.communication_id else None,
            "AffectedAccount": origin.account_id if detail.affected_account else None,
        }
        fields = {
            "Service": service,
            "EventTypeCode": code,
            "EventTypeCategory": clean(detail.event_type_category, NAME_LIMIT),
            "StatusCode": clean(detail.status_code, NAME_LIMIT),
            "EventArn": event_arn,
            "EventRegion": clean(event_region, NAME_LIMIT),
        } | {key: value for key, value in optional.items() if value is not None}
        severity = health_severity(detail.service, detail.event_type_code)
        resources = [
            Resource(OTHER_TYPE, entity, origin.partition, origin.region)
            for entity in _entities(detail) or [account_resource_id(origin.account_id)]
        ]
        return [
            make_finding(
                origin=origin,
                options=self._options,
                id=finding_id(_with_account(event_arn, origin.account_id), (), start_digest(start_ms)),
                product_name=PRODUCT_NAME_HEALTH,
                generator_id=code,
                provider_fields=classification(severity, CONFIGURATION_CHECKS_TYPES),
                created_ms=start_ms,
                updated_ms=updated_ms,
                title=f"AWS Health - {code}",
                description=_description(detail, code),
                resources=resources,
                record_state="ACTIVE",
                source_url=event_url(origin.partition, event_arn),
                product_fields=fields,
            )
        ]
