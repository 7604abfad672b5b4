"""Detect violations to findings: one per violation, archived when its alarm clears or is invalidated."""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from defender_hub.codecs.asff import Finding, FindingProviderFields, Resource, ResourceDetails
from defender_hub.codecs.asff_rules import Limits
from defender_hub.codecs.decoding import decode_error_reason
from defender_hub.codecs.events import Behavior, BehaviorCriteria, DetectViolation, MetricValue, decode_behavior
from defender_hub.errors import EventDecodeError
from defender_hub.mapping.aws import Origin, OriginResolver, console_url, iot_arn, url_part
from defender_hub.mapping.common import NAME_LIMIT, PRODUCT_NAME_DETECT, classification, make_finding
from defender_hub.mapping.options import MappingOptions
from defender_hub.text import bounded, clean, required_text
from defender_hub.timestamps import to_epoch_ms

__all__ = ["DetectMapper", "criteria_type", "render_value", "trigger_text"]

MAX_LISTED_VALUES = 64
"""The most members of a reported list (CIDRs, ports) that are written out."""

MAX_PREPARED_BEHAVIORS = 10_000
"""Bound on the memo of prepared behaviors: a fleet has tens of them; past this it is a flood, not a fleet."""

UNUSUAL_BEHAVIORS = ("Unusual Behaviors",)

_STATES = {
    "in-alarm": "is in alarm for",
    "alarm-cleared": "is no longer in alarm (cleared) for",
    "alarm-invalidated": "is no longer in alarm (invalidated) for",
}
_ARCHIVING_EVENTS = frozenset({"alarm-cleared", "alarm-invalidated"})


def criteria_type(criteria: BehaviorCriteria | None) -> str:
    """Returns ML, STATISTICAL or STATIC, as the behavior's criteria say."""
    if criteria is not None and criteria.ml_detection_config is not None:
        return "ML"
    if criteria is not None and criteria.statistical_threshold is not None:
        return "STATISTICAL"
    return "STATIC"


def _shown(value: str | int | float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _listed(values: list[str] | list[int] | list[float]) -> str:
    shown = [clean(_shown(value), 64) for value in values[:MAX_LISTED_VALUES]]
    more = f", … {len(values) - MAX_LISTED_VALUES} more" if len(values) > MAX_LISTED_VALUES else ""
    return bounded(f"[{', '.join(shown)}{more}]", Limits.PRODUCT_FIELD_VALUE)


def render_value(value: MetricValue | None) -> tuple[str, str] | None:
    """Returns (ProductFields key, text) for the member of a metric value that is set, or None."""
    if value is None:
        return None
    if value.count is not None:
        return "Count", str(value.count)
    if value.number is not None:
        return "Number", _shown(value.number)
    if value.numbers is not None:
        return "Numbers", _listed(value.numbers)
    if value.cidrs is not None:
        return "Cidrs", _listed(value.cidrs)
    if value.ports is not None:
        return "Ports", _listed(value.ports)
    if value.strings is not None:
        return "Strings", _listed(value.strings)
    return None


@dataclass(frozen=True, slots=True)
class _PreparedBehavior:
    """What a finding takes from its behavior and security profile, worked out once for all their violations."""

    kind: str
    fields: dict[str, str]
    description_tail: str
    provider_fields: FindingProviderFields
    generator_id: str
    source_url: str


def _behavior_fields(behavior: Behavior, kind: str, profile: str) -> tuple[dict[str, str], str | None]:
    """Returns the ProductFields a behavior and its profile give every violation, and its threshold as text."""
    fields = {
        "SecurityProfileName": profile,
        "BehaviorName": required_text(behavior.name, "behavior.name", NAME_LIMIT),
        "BehaviorCriteriaType": kind,
    }
    if behavior.metric:
        fields["MetricName"] = clean(behavior.metric, NAME_LIMIT)
    if behavior.suppress_alerts is not None:
        fields["SuppressAlerts"] = "true" if behavior.suppress_alerts else "false"
    if behavior.metric_dimension is not None:
        fields["DimensionName"] = clean(behavior.metric_dimension.dimension_name, NAME_LIMIT)
        if behavior.metric_dimension.operator:
            fields["DimensionOperator"] = clean(behavior.metric_dimension.operator, 64)
    criteria = behavior.criteria
    if criteria is None:
        return fields, None
    if criteria.comparison_operator:
        fields["ComparisonOperator"] = clean(criteria.comparison_operator, 64)
    if criteria.duration_seconds is not None:
        fields["DurationSeconds"] = str(criteria.duration_seconds)
    if criteria.consecutive_datapoints_to_alarm is not None:
        fields["ConsecutiveDatapointsToAlarm"] = str(criteria.consecutive_datapoints_to_alarm)
    if criteria.consecutive_datapoints_to_clear is not None:
        fields["ConsecutiveDatapointsToClear"] = str(criteria.consecutive_datapoints_to_clear)
    threshold = render_value(criteria.value)
    if threshold is not None:
        fields[threshold[0]] = threshold[1]
    if criteria.statistical_threshold is not None and criteria.statistical_threshold.statistic:
        fields["Statistic"] = clean(criteria.statistical_threshold.statistic, 64)
    if criteria.ml_detection_config is not None and criteria.ml_detection_config.confidence_level:
        fields["ConfidenceLevel"] = clean(criteria.ml_detection_config.confidence_level, 64)
    return fields, threshold[1] if threshold is not None else None


def trigger_text(kind: str, fields: dict[str, str], threshold: str | None) -> str:
    """Returns what the device did not conform to, e.g. `aws:num-disconnects less-than 1`, from a behavior's fields."""
    metric = fields.get("MetricName", "its metric")
    operator = fields.get("ComparisonOperator", "compared to")
    if kind == "ML":
        trigger = f"the ML model of {metric} at {fields.get('ConfidenceLevel', 'the configured')} confidence"
    elif kind == "STATISTICAL":
        trigger = f"{metric} {operator} {fields.get('Statistic', 'its statistical threshold')}"
    else:
        trigger = f"{metric} {operator} {threshold or 'its threshold'}"
    if "DimensionName" in fields:
        trigger += f" with dimension {fields['DimensionName']}"
    return trigger


class DetectMapper:
    """Maps Detect violations; keeps what each behavior contributes, so a fleet's violations cost little each."""

    def __init__(self, options: MappingOptions) -> None:
        self._options = options
        self._origin = OriginResolver(options)
        self._prepared: dict[tuple[Origin, str, bytes], _PreparedBehavior] = {}

    def _prepare(self, origin: Origin, profile_name: str, raw_behavior: bytes) -> _PreparedBehavior:
        try:
            behavior = decode_behavior(raw_behavior)
        except msgspec.DecodeError as exc:
            raise EventDecodeError(decode_error_reason(raw_behavior, exc, "detect-violation event: ")) from None
        profile = required_text(profile_name, "securityProfileName", NAME_LIMIT)
        kind = criteria_type(behavior.criteria)
        fields, threshold = _behavior_fields(behavior, kind, profile)
        trigger = trigger_text(kind, fields, threshold)
        options = self._options
        severity = (
            options.behavior_severity.get(behavior.name)
            or options.security_profile_severity.get(profile_name)
            or options.detect_severity
        )
        return _PreparedBehavior(
            kind=kind,
            fields=fields,
            description_tail=(
                f" violates {kind} behavior {fields['BehaviorName']} of security profile {profile}. "
                f"Violation was triggered because the device did not conform to {trigger}."
            ),
            provider_fields=classification(severity, UNUSUAL_BEHAVIORS),
            generator_id=iot_arn(origin, f"securityprofile/{profile}"),
            source_url=console_url(origin, f"/dd/securityProfile/{url_part(profile)}?tab=violations"),
        )

    def __call__(self, event: DetectViolation) -> list[Finding]:
        """Returns the violation's finding: ACTIVE while in alarm, ARCHIVED once the alarm clears or is invalidated."""
        origin = self._origin(event.account_id, event.region)
        key = (origin, event.security_profile_name, bytes(event.behavior))
        prepared = self._prepared.get(key)
        if prepared is None:
            if len(self._prepared) >= MAX_PREPARED_BEHAVIORS:
                self._prepared.clear()
            prepared = self._prepared[key] = self._prepare(*key)
        thing = required_text(event.thing_name, "thingName", NAME_LIMIT)
        event_type = event.violation_event_type
        updated_ms = to_epoch_ms(event.violation_event_time, "violationEventTime")
        fields = prepared.fields.copy()
        fields["ViolationId"] = event.violation_id
        fields["ViolationEventType"] = state_name = event_type if event_type in _STATES else clean(event_type, 64)
        fields["ThingName"] = thing
        created_ms = updated_ms
        if event.violation_start_time is not None:
            created_ms = to_epoch_ms(event.violation_start_time, "violationStartTime")
            fields["ViolationStartTime"] = str(created_ms)
        observed = render_value(event.metric_value)
        if observed is not None:
            fields["MetricValue"] = observed[1]
        extra = event.violation_event_additional_info
        if extra is not None and extra.confidence_level:
            fields["ViolationConfidenceLevel"] = clean(extra.confidence_level, 64)
        if event.verification_state:
            fields["VerificationState"] = clean(event.verification_state, 64)
        if event.verification_state_description:
            fields["VerificationStateDescription"] = clean(event.verification_state_description)
        state = _STATES.get(event_type) or f"reported {state_name} for"
        thing_page = console_url(origin, f"/thing/{url_part(thing)}?tab=violations")
        details = {
            "SourceUrl": bounded(thing_page, Limits.DETAILS_OTHER_VALUE),
            "IsRegisteredThing": "true",
            "ThingArn": iot_arn(origin, f"thing/{thing}"),
        }
        resource = Resource("AwsIotRegisteredThing", thing, origin.partition, origin.region, ResourceDetails(details))
        return [
            make_finding(
                origin=origin,
                options=self._options,
                id=event.violation_id,
                product_name=PRODUCT_NAME_DETECT,
                generator_id=prepared.generator_id,
                provider_fields=prepared.provider_fields,
                created_ms=created_ms,
                updated_ms=updated_ms,
                title=f"Registered thing {thing} {state} {prepared.kind} behavior {fields['BehaviorName']}.",
                description=f"Registered thing {thing}{prepared.description_tail}",
                resources=[resource],
                record_state="ARCHIVED" if event_type in _ARCHIVING_EVENTS else "ACTIVE",
                source_url=prepared.source_url,
                product_fields=fields,
            )
        ]
