"""AWS Config's rule compliance changes, as EventBridge puts them on the stream, as typed msgspec structs.

Field names follow the AWS Config developer guide's "Example Compliance Change Notification". Enumerations
(`complianceType`, `resourceType`) stay plain strings: the mapping decides what an unknown one means.
"""

from __future__ import annotations

import msgspec

from defender_hub.codecs.eventbridge import EventBridgeEvent, EventSource

__all__ = [
    "COMPLIANCE_CHANGE",
    "COMPLIANCE_CHANGE_DETAIL_TYPE",
    "CONFIG_SOURCE",
    "NOT_A_COMPLIANCE_CHANGE",
    "ConfigComplianceChange",
    "ConfigComplianceDetail",
    "EvaluationResult",
    "EvaluationResultIdentifier",
    "EvaluationResultQualifier",
]

COMPLIANCE_CHANGE_DETAIL_TYPE = "Config Rules Compliance Change"
COMPLIANCE_CHANGE = "ComplianceChangeNotification"
"""The one `messageType` that makes findings: the native integration sends updates only for it."""
NOT_A_COMPLIANCE_CHANGE = "not a rule compliance change"
"""The skip reason of every other Config event (a configuration item change, say)."""


class _Wire(msgspec.Struct, rename="camel", kw_only=True, gc=False):
    """Base of the detail structs: camelCase on the wire; no reference cycles, so no GC tracking."""


class EvaluationResultQualifier(_Wire):
    """Which rule evaluated which resource."""

    config_rule_name: str | None = None
    resource_type: str | None = None
    resource_id: str | None = None


class EvaluationResultIdentifier(_Wire):
    """An evaluation's identity: the qualifier and when the evaluated change happened."""

    evaluation_result_qualifier: EvaluationResultQualifier | None = None
    ordering_timestamp: str | None = None


class EvaluationResult(_Wire):
    """One evaluation of a resource by a rule: its compliance and when it was recorded."""

    compliance_type: str
    result_recorded_time: str
    """ISO 8601; the finding's CreatedAt and UpdatedAt."""
    config_rule_invoked_time: str | None = None
    evaluation_result_identifier: EvaluationResultIdentifier | None = None
    annotation: str | None = None


class ConfigComplianceDetail(_Wire):
    """A `ComplianceChangeNotification`: a rule's evaluation of one resource changed."""

    config_rule_name: str
    config_rule_arn: str = msgspec.field(name="configRuleARN")
    resource_type: str
    resource_id: str
    message_type: str
    new_evaluation_result: EvaluationResult
    old_evaluation_result: EvaluationResult | None = None
    """The previous evaluation; null on a rule's first evaluation of the resource."""
    aws_account_id: str | None = None
    aws_region: str | None = None
    notification_creation_time: str | None = None
    record_version: str | None = None


class ConfigComplianceChange(EventBridgeEvent, kw_only=True, gc=False):
    """An EventBridge `Config Rules Compliance Change` event, whole."""

    detail: ConfigComplianceDetail


def _skip_reason(event: ConfigComplianceChange) -> str | None:
    """Says why a compliance change event makes no finding: a messageType other than a compliance change."""
    return None if event.detail.message_type == COMPLIANCE_CHANGE else NOT_A_COMPLIANCE_CHANGE


CONFIG_SOURCE = EventSource(
    source="aws.config",
    name="config",
    type=ConfigComplianceChange,
    detail_types=frozenset({COMPLIANCE_CHANGE_DETAIL_TYPE}),
    other_detail_type=NOT_A_COMPLIANCE_CHANGE,
    skip_reason=_skip_reason,
)
