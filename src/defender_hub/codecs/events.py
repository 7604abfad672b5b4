"""The Device Defender events on the stream, as typed msgspec structs, and `Event`, the union of every source's.

Field names follow botocore's `iot` shapes and the audit notification schema. Enumerations stay plain strings:
Device Defender adds check names, resource types and states over time, and an unknown one must still map.
AWS Config's and AWS Health's events, decoded whole from EventBridge, are in `codecs.config` and `codecs.health`.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from defender_hub.codecs.config import ConfigComplianceChange
from defender_hub.codecs.health import HealthEvent
from defender_hub.timestamps import Timestamp

__all__ = [
    "AuditCheckDetails",
    "AuditFinding",
    "AuditTaskNotification",
    "Behavior",
    "BehaviorCriteria",
    "DetectViolation",
    "DeviceDefenderEvent",
    "Event",
    "MetricDimension",
    "MetricValue",
    "NonCompliantResource",
    "RelatedResource",
    "ResourceIdentifier",
    "decode_behavior",
]

ViolationId = Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=r"^[a-zA-Z0-9\-]+$")]


class _Wire(msgspec.Struct, rename="camel", kw_only=True, gc=False):
    """Base of the event structs: camelCase on the wire; no reference cycles, so no GC tracking."""


# Detect


class MetricValue(_Wire):
    """A behavior's threshold or a device's reported value; one of the members is set."""

    count: int | None = None
    cidrs: list[str] | None = None
    ports: list[int] | None = None
    number: float | None = None
    numbers: list[float] | None = None
    strings: list[str] | None = None


class MetricDimension(_Wire):
    """A dimension that narrows a behavior's metric (a topic filter, say)."""

    dimension_name: str
    operator: str | None = None


class StatisticalThreshold(_Wire):
    """A statistical threshold such as `p90`."""

    statistic: str | None = None


class MlDetectionConfig(_Wire):
    """An ML Detect behavior's confidence setting."""

    confidence_level: str | None = None


class BehaviorCriteria(_Wire):
    """When a behavior alarms: a static value, a statistical threshold, or ML detection."""

    comparison_operator: str | None = None
    value: MetricValue | None = None
    duration_seconds: int | None = None
    consecutive_datapoints_to_alarm: int | None = None
    consecutive_datapoints_to_clear: int | None = None
    statistical_threshold: StatisticalThreshold | None = None
    ml_detection_config: MlDetectionConfig | None = None


class Behavior(_Wire):
    """A security profile's behavior."""

    name: str
    metric: str | None = None
    metric_dimension: MetricDimension | None = None
    criteria: BehaviorCriteria | None = None
    suppress_alerts: bool | None = None
    export_metric: bool | None = None


class ViolationEventAdditionalInfo(_Wire):
    """Extra facts of an ML violation."""

    confidence_level: str | None = None


class DetectViolation(_Wire):
    """A Detect `ViolationEvent`: an alarm raised, cleared or invalidated for one thing and behavior."""

    violation_id: ViolationId
    thing_name: str
    security_profile_name: str
    behavior: msgspec.Raw
    """The behavior's JSON, kept raw: a fleet has few behaviors and many violations, see `decode_behavior`."""
    violation_event_type: str
    violation_event_time: Timestamp
    violation_start_time: Timestamp | None = None
    metric_value: MetricValue | None = None
    violation_event_additional_info: ViolationEventAdditionalInfo | None = None
    verification_state: str | None = None
    verification_state_description: str | None = None
    account_id: str | None = None
    region: str | None = None


# Audit


ResourceIdentifier = dict[str, str | dict[str, str]]
"""Names an audited resource: `{"deviceCertificateId": …}`, `{"policyVersionIdentifier": {"policyName": …}}`, …

A map rather than a struct, so that a resource type Device Defender adds later keeps every part of its identity.
"""


class NonCompliantResource(_Wire):
    """The resource an audit finding is about."""

    resource_type: str
    resource_identifier: ResourceIdentifier
    additional_info: dict[str, str] | None = None


class RelatedResource(_Wire):
    """Another resource an audit finding involves (the other devices sharing a certificate, say)."""

    resource_type: str
    resource_identifier: ResourceIdentifier | None = None
    additional_info: dict[str, str] | None = None


class AuditFinding(_Wire):
    """One non-compliant resource found by one check of one audit task (`ListAuditFindings`)."""

    finding_id: str
    task_id: str
    check_name: str
    non_compliant_resource: NonCompliantResource
    reason_for_non_compliance_code: str
    reason_for_non_compliance: str | None = None
    task_start_time: Timestamp | None = None
    finding_time: Timestamp | None = None
    severity: str | None = None
    related_resources: list[RelatedResource] | None = None
    is_suppressed: bool | None = None
    account_id: str | None = None
    region: str | None = None
    task_type: str | None = None
    scheduled_audit_name: str | None = None


class AuditCheckDetails(_Wire):
    """How one check of an audit task ended."""

    check_name: str
    check_run_status: str
    non_compliant_resources_count: int | None = None
    total_resources_count: int | None = None
    suppressed_non_compliant_resources_count: int | None = None
    message: str | None = None
    error_code: str | None = None


class AuditTaskNotification(_Wire):
    """An audit task's SNS notification (`auditnotification/1.0`): how the task and each of its checks ended."""

    task_id: str
    task_status: str
    task_type: str
    task_start_time: Timestamp
    audit_details: list[AuditCheckDetails]
    scheduled_audit_name: str | None = None
    failed_checks_count: int | None = None
    canceled_checks_count: int | None = None
    non_compliant_checks_count: int | None = None
    compliant_checks_count: int | None = None
    total_checks_count: int | None = None
    account_id: str | None = None
    region: str | None = None


DeviceDefenderEvent = DetectViolation | AuditFinding | AuditTaskNotification
"""Device Defender's event kinds: told by a marker key, found bare or in an SNS or EventBridge envelope."""
Event = DeviceDefenderEvent | ConfigComplianceChange | HealthEvent
"""Every event kind the stream carries."""

_behavior_decoder = msgspec.json.Decoder(Behavior)


def decode_behavior(raw: msgspec.Raw | bytes) -> Behavior:
    """Returns the behavior in a violation's raw `behavior` member; raises msgspec.DecodeError naming the path."""
    try:
        return _behavior_decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise msgspec.ValidationError(str(exc).replace("`$", "`$.behavior")) from None
