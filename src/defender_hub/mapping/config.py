"""AWS Config rule compliance changes to findings: one per rule and resource, its compliance the evaluation's."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from types import MappingProxyType

from defender_hub.codecs.asff import Compliance, Finding, Resource
from defender_hub.codecs.asff_rules import Limits
from defender_hub.codecs.config import CONFIG_SOURCE, ConfigComplianceChange
from defender_hub.errors import EventMappingError, EventSkipped
from defender_hub.mapping.aws import OriginResolver
from defender_hub.mapping.common import (
    CONFIGURATION_CHECKS_TYPES,
    NAME_LIMIT,
    PRODUCT_NAME_CONFIG,
    classification,
    finding_id,
    make_finding,
    native_description,
)
from defender_hub.mapping.config_resources import asff_type, config_resource_id
from defender_hub.mapping.options import MappingOptions
from defender_hub.text import clean, required_text
from defender_hub.timestamps import to_epoch_ms

__all__ = [
    "COMPLIANCE_STATUSES",
    "CONFIG_SEVERITY",
    "SERVICE_LINKED_RULE",
    "SERVICE_LINKED_RULE_PREFIXES",
    "ConfigMapper",
    "resource_digest",
]

CONFIG_SEVERITY = "MEDIUM"
"""Every Config finding's severity, as the native integration has it."""

SERVICE_LINKED_RULE_PREFIXES = ("securityhub-",)
"""Names of service-linked rules, whose evaluations the native integration leaves out: Security Hub's controls' own."""
SERVICE_LINKED_RULE = "service-linked rule"
"""The skip reason of a service-linked rule's evaluation."""

COMPLIANCE_STATUSES: Mapping[str, str] = MappingProxyType(
    {
        "COMPLIANT": "PASSED",
        "NON_COMPLIANT": "FAILED",
        # Security Hub's own words: NOT_AVAILABLE is for a check that "could not be performed" because it does not
        # apply or the resource was deleted, WARNING for one that "can't determine" whether the resource complies.
        "NOT_APPLICABLE": "NOT_AVAILABLE",
        "INSUFFICIENT_DATA": "WARNING",
    }
)
"""Compliance.Status by Config's complianceType."""

_DESCRIPTION = "This finding is created for a resource compliance change for config rule: "


def resource_digest(resource_type: str, resource_id: str) -> str:
    """Returns the 40 hex digits of a finding Id that stand for a resource: SHA-1 of `<resourceType>/<resourceId>`.

    A resource type has no `/`, so the text names one resource; the rule's ARN before it in the Id names the account
    and Region.
    """
    identity = f"{resource_type}/{resource_id}".encode("utf-8", "surrogatepass")
    return hashlib.sha1(identity, usedforsecurity=False).hexdigest()


class ConfigMapper:
    """Maps Config compliance changes; skips service-linked rules' evaluations."""

    def __init__(self, options: MappingOptions) -> None:
        self._options = options
        self._origin = OriginResolver(options)
        self._provider_fields = classification(CONFIG_SEVERITY, CONFIGURATION_CHECKS_TYPES)

    def __call__(self, event: ConfigComplianceChange) -> list[Finding]:
        """Returns the rule and resource's finding, ACTIVE whatever its compliance (Config findings are never
        archived); raises EventSkipped for a service-linked rule, EventMappingError for an unknown complianceType."""
        detail = event.detail
        if detail.config_rule_name.startswith(SERVICE_LINKED_RULE_PREFIXES):
            raise EventSkipped(SERVICE_LINKED_RULE, CONFIG_SOURCE.name)
        result = detail.new_evaluation_result
        status = COMPLIANCE_STATUSES.get(result.compliance_type)
        if status is None:
            known = ", ".join(COMPLIANCE_STATUSES)
            raise EventMappingError(
                f"newEvaluationResult.complianceType {clean(result.compliance_type, 40)!r} is not one of {known}"
            )
        origin = self._origin(detail.aws_account_id or event.account, detail.aws_region or event.region)
        recorded_ms = to_epoch_ms(result.result_recorded_time, "newEvaluationResult.resultRecordedTime")
        rule_name = required_text(detail.config_rule_name, "configRuleName", NAME_LIMIT)
        rule_arn = required_text(detail.config_rule_arn, "configRuleARN", Limits.GENERATOR_ID)
        resource_type = required_text(detail.resource_type, "resourceType", NAME_LIMIT)
        resource_id = config_resource_id(detail.resource_type, detail.resource_id, origin)
        if not resource_id.strip():
            raise EventMappingError("resourceId has no printable characters")
        fields = {
            "ConfigRuleArn": rule_arn,
            "ConfigRuleName": rule_name,
            "ConfigComplianceType": result.compliance_type,
            "ResourceType": resource_type,
            "ResourceId": clean(detail.resource_id),
        }
        if result.annotation:
            fields["Annotation"] = clean(result.annotation)
        resource = Resource(asff_type(detail.resource_type), resource_id, origin.partition, origin.region)
        return [
            make_finding(
                origin=origin,
                options=self._options,
                id=finding_id(f"{rule_arn}/finding", (), resource_digest(detail.resource_type, detail.resource_id)),
                product_name=PRODUCT_NAME_CONFIG,
                generator_id=rule_arn,
                provider_fields=self._provider_fields,
                created_ms=recorded_ms,
                updated_ms=recorded_ms,
                title=rule_name,
                description=native_description(_DESCRIPTION + rule_name),
                resources=[resource],
                record_state="ACTIVE",
                source_url=None,
                product_fields=fields,
                compliance=Compliance(status),
            )
        ]
