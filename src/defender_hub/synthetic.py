"""Realistic events, generated deterministically from a seed: for benchmarks, demos and load tests.

Device Defender's by default; AWS Config's compliance changes and AWS Health's events, as EventBridge puts them on
the stream, in the shares an `EventMix` gives them.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import msgspec

from defender_hub.mapping.checks import check_severity
from defender_hub.synthetic_eventbridge import ACCOUNT, REGIONS, START_MS, EventBridgeSources

__all__ = ["MIX_SOURCES", "EventMix", "generate_events", "parse_mix", "partition_key"]


_STATIC_BEHAVIORS: tuple[tuple[str, str, str, dict[str, Any], dict[str, Any]], ...] = (
    ("Authorization failures", "aws:num-authorization-failures", "greater-than", {"count": 5}, {"count": 12}),
    ("Messages sent", "aws:num-messages-sent", "greater-than", {"count": 100}, {"count": 431}),
    ("Disconnects", "aws:num-disconnects", "greater-than", {"count": 3}, {"count": 9}),
    ("Message size", "aws:message-byte-size", "greater-than", {"count": 4096}, {"count": 65000}),
    (
        "Source IP",
        "aws:source-ip-address",
        "not-in-cidr-set",
        {"cidrs": ["10.0.0.0/8", "192.168.0.0/16"]},
        {"cidrs": ["203.0.113.7/32"]},
    ),
    (
        "Listening TCP ports",
        "aws:listening-tcp-ports",
        "not-in-port-set",
        {"ports": [443, 8883]},
        {"ports": [22, 443, 8883]},
    ),
    (
        "Destination IPs",
        "aws:destination-ip-addresses",
        "not-in-cidr-set",
        {"cidrs": ["52.0.0.0/8"]},
        {"cidrs": ["198.51.100.23/32", "198.51.100.24/32"]},
    ),
)
_STATISTICAL_BEHAVIORS = (
    ("Bytes out", "aws:all-bytes-out", "greater-than", "p90"),
    ("Packets in", "aws:all-packets-in", "greater-than", "p99"),
    ("Connection attempts", "aws:num-connection-attempts", "greater-than", "p95"),
)
_ML_BEHAVIORS = (
    ("ML messages received", "aws:num-messages-received"),
    ("ML authorization failures", "aws:num-authorization-failures"),
)
_AUDIT_RESOURCES: tuple[tuple[str, str], ...] = (
    ("DEVICE_CERTIFICATE", "DEVICE_CERTIFICATE_EXPIRING_CHECK"),
    ("DEVICE_CERTIFICATE", "DEVICE_CERTIFICATE_KEY_QUALITY_CHECK"),
    ("DEVICE_CERTIFICATE", "DEVICE_CERTIFICATE_SHARED_CHECK"),
    ("DEVICE_CERTIFICATE", "REVOKED_DEVICE_CERTIFICATE_STILL_ACTIVE_CHECK"),
    ("CA_CERTIFICATE", "CA_CERTIFICATE_EXPIRING_CHECK"),
    ("IOT_POLICY", "IOT_POLICY_OVERLY_PERMISSIVE_CHECK"),
    ("IOT_POLICY", "IOT_POLICY_POTENTIAL_MISCONFIGURATION_CHECK"),
    ("CLIENT_ID", "CONFLICTING_CLIENT_IDS_CHECK"),
    ("COGNITO_IDENTITY_POOL", "UNAUTHENTICATED_COGNITO_ROLE_OVERLY_PERMISSIVE_CHECK"),
    ("ROLE_ALIAS", "IOT_ROLE_ALIAS_OVERLY_PERMISSIVE_CHECK"),
    ("IAM_ROLE", "IOT_ROLE_ALIAS_ALLOWS_ACCESS_TO_UNUSED_SERVICES_CHECK"),
    ("ACCOUNT_SETTINGS", "LOGGING_DISABLED_CHECK"),
)
_REASONS = {
    "DEVICE_CERTIFICATE_EXPIRING_CHECK": ("CERTIFICATE_EXPIRING", "Certificate is expiring within 30 days."),
    "DEVICE_CERTIFICATE_KEY_QUALITY_CHECK": ("CERTIFICATE_KEY_TOO_SHORT", "Certificate uses a 1024-bit RSA key."),
    "DEVICE_CERTIFICATE_SHARED_CHECK": ("CERTIFICATE_SHARED_BY_MULTIPLE_DEVICES", "Certificate is shared."),
    "REVOKED_DEVICE_CERTIFICATE_STILL_ACTIVE_CHECK": ("REVOKED_CERTIFICATE_ACTIVE", "Revoked certificate is active."),
    "CA_CERTIFICATE_EXPIRING_CHECK": ("CERTIFICATE_EXPIRING", "CA certificate is expiring within 30 days."),
    "IOT_POLICY_OVERLY_PERMISSIVE_CHECK": (
        "ALLOWS_BROAD_ACCESS_TO_IOT_DATA_PLANE_ACTIONS",
        "Policy allows broad access to IoT data plane actions: [iot:Connect].",
    ),
    "IOT_POLICY_POTENTIAL_MISCONFIGURATION_CHECK": (
        "POLICY_CONTAINS_WILDCARD_IN_TOPIC_FILTER",
        "Policy uses a wildcard in a topic filter.",
    ),
    "CONFLICTING_CLIENT_IDS_CHECK": ("DUPLICATE_CLIENT_ID_ACROSS_CONNECTIONS", "Client id is used by many devices."),
    "UNAUTHENTICATED_COGNITO_ROLE_OVERLY_PERMISSIVE_CHECK": (
        "ALLOWS_ACCESS_TO_IOT_ADMIN_ACTIONS",
        "Unauthenticated role allows IoT admin actions.",
    ),
    "IOT_ROLE_ALIAS_OVERLY_PERMISSIVE_CHECK": ("ALLOWS_BROAD_ACCESS_TO_SERVICES", "Role alias allows iam:*."),
    "IOT_ROLE_ALIAS_ALLOWS_ACCESS_TO_UNUSED_SERVICES_CHECK": (
        "ALLOWS_ACCESS_TO_UNUSED_SERVICES",
        "Role allows services the devices never used.",
    ),
    "LOGGING_DISABLED_CHECK": ("LOGGING_DISABLED", "AWS IoT logging is disabled."),
}


@dataclass(frozen=True, slots=True)
class EventMix:
    """Shares of each event kind; they need not add up to one. The default is Device Defender's alone."""

    detect: float = 0.70
    audit_finding: float = 0.25
    audit_task: float = 0.05
    config: float = 0.0
    """AWS Config events: compliance changes, some of service-linked rules, a few configuration item changes."""
    health: float = 0.0
    """AWS Health events: security-related and not, each open (or upcoming) and later closed."""


MIX_SOURCES = ("device-defender", "config", "health")
"""The sources `parse_mix` names."""


def parse_mix(text: str) -> EventMix:
    """Returns the mix `source[=weight],…` names (sources from `MIX_SOURCES`; a weight left out is 1), Device
    Defender's weight shared among its kinds as the default mix shares it; raises ValueError saying what is wrong."""
    weights = dict.fromkeys(MIX_SOURCES, 0.0)
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, weight = item.partition("=")
        name = name.strip()
        if name not in weights:
            raise ValueError(f"unknown source {name!r} in the mix: choose from {', '.join(MIX_SOURCES)}")
        try:
            weights[name] = float(weight) if weight else 1.0
        except ValueError:
            raise ValueError(f"the weight of {name} is not a number: {weight!r}") from None
        if not 0 <= weights[name] < float("inf"):
            raise ValueError(f"the weight of {name} must be a finite number, 0 or more")
    if not any(weights.values()):
        raise ValueError("the mix names no source with a weight above 0")
    share = weights["device-defender"]
    default = EventMix()
    return EventMix(
        detect=default.detect * share,
        audit_finding=default.audit_finding * share,
        audit_task=default.audit_task * share,
        config=weights["config"],
        health=weights["health"],
    )


class _Generator:
    def __init__(self, seed: int, things: int) -> None:
        self.random = random.Random(seed)
        self.things = [f"thing-{index:05d}" for index in range(things)]
        self.clock_ms = START_MS
        self.task_seq = 0

    def _tick(self) -> int:
        self.clock_ms += self.random.randint(1, 2_000)
        return self.clock_ms

    def detect(self) -> dict[str, Any]:
        rnd = self.random
        thing = rnd.choice(self.things)
        style = rnd.random()
        metric_value: dict[str, Any]
        if style < 0.6:
            name, metric, operator, value, metric_value = rnd.choice(_STATIC_BEHAVIORS)
            criteria: dict[str, Any] = {
                "comparisonOperator": operator,
                "value": value,
                "durationSeconds": 300,
                "consecutiveDatapointsToAlarm": 1,
                "consecutiveDatapointsToClear": 1,
            }
            profile = "FleetBaseline"
        elif style < 0.85:
            name, metric, operator, statistic = rnd.choice(_STATISTICAL_BEHAVIORS)
            criteria = {
                "comparisonOperator": operator,
                "statisticalThreshold": {"statistic": statistic},
                "durationSeconds": 900,
                "consecutiveDatapointsToAlarm": 2,
                "consecutiveDatapointsToClear": 2,
            }
            metric_value = {"count": rnd.randint(10_000, 900_000)}
            profile = "FleetStatistics"
        else:
            name, metric = rnd.choice(_ML_BEHAVIORS)
            criteria = {
                "consecutiveDatapointsToAlarm": 1,
                "consecutiveDatapointsToClear": 1,
                "mlDetectionConfig": {"confidenceLevel": rnd.choice(("LOW", "MEDIUM", "HIGH"))},
            }
            metric_value = {"count": rnd.randint(50, 5_000)}
            profile = "FleetML"
        now = self._tick()
        event_type = rnd.choices(("in-alarm", "alarm-cleared", "alarm-invalidated"), (80, 17, 3))[0]
        event: dict[str, Any] = {
            "accountId": ACCOUNT,
            "region": rnd.choice(REGIONS),
            "violationId": f"{rnd.getrandbits(128):032x}",
            "thingName": thing,
            "securityProfileName": profile,
            "behavior": {"name": name, "metric": metric, "criteria": criteria, "suppressAlerts": False},
            "metricValue": metric_value,
            "violationEventType": event_type,
            "violationEventTime": now,
            "violationStartTime": now - rnd.randint(0, 3_600_000),
        }
        if "mlDetectionConfig" in criteria:
            event["violationEventAdditionalInfo"] = {
                "confidenceLevel": criteria["mlDetectionConfig"]["confidenceLevel"]
            }
        return event

    def _identifier(self, resource_type: str) -> dict[str, Any]:
        """Returns a resource from a small recurring pool, so later audits report the same resources again."""
        pick = self.random.randint(1, 50)
        if resource_type == "DEVICE_CERTIFICATE":
            return {"deviceCertificateId": f"{pick:064x}"}
        if resource_type == "CA_CERTIFICATE":
            return {"caCertificateId": f"{pick + 1000:064x}"}
        if resource_type == "IOT_POLICY":
            return {"policyVersionIdentifier": {"policyName": f"policy-{pick}", "policyVersionId": str(pick % 5 + 1)}}
        if resource_type == "CLIENT_ID":
            return {"clientId": self.things[pick % len(self.things)]}
        if resource_type == "COGNITO_IDENTITY_POOL":
            return {"cognitoIdentityPoolId": f"us-east-1:{pick:032x}"}
        if resource_type == "ROLE_ALIAS":
            return {"roleAliasArn": f"arn:aws:iot:us-east-1:{ACCOUNT}:rolealias/alias-{pick}"}
        if resource_type == "IAM_ROLE":
            return {"iamRoleArn": f"arn:aws:iam::{ACCOUNT}:role/iot-role-{pick}"}
        return {"account": ACCOUNT}

    def audit_task(self, findings: int) -> list[dict[str, Any]]:
        """Returns one audit task as Device Defender reports it: its findings, then its notification."""
        rnd = self.random
        checks = rnd.sample(_AUDIT_RESOURCES, k=rnd.randint(3, len(_AUDIT_RESOURCES)))
        non_compliant = checks[: max(1, min(findings, len(checks) // 2))] if findings else []
        task_id = f"{rnd.getrandbits(128):032x}"
        started = self._tick()
        counts = dict.fromkeys((check for _, check in non_compliant), 0)
        events: list[dict[str, Any]] = []
        for index in range(findings):
            resource_type, check = non_compliant[index % len(non_compliant)]
            counts[check] += 1
            code, reason = _REASONS[check]
            events.append(
                {
                    "accountId": ACCOUNT,
                    "region": "us-east-1",
                    "taskType": "SCHEDULED_AUDIT_TASK",
                    "scheduledAuditName": "daily",
                    "findingId": f"{rnd.getrandbits(128):032x}",
                    "taskId": task_id,
                    "checkName": check,
                    "taskStartTime": started,
                    "findingTime": started + rnd.randint(1_000, 600_000),
                    "severity": check_severity(check),
                    "nonCompliantResource": {
                        "resourceType": resource_type,
                        "resourceIdentifier": self._identifier(resource_type),
                    },
                    "reasonForNonCompliance": reason,
                    "reasonForNonComplianceCode": code,
                    "isSuppressed": rnd.random() < 0.05,
                }
            )
        details = []
        for _, check in checks:
            total = rnd.randint(50, 5_000)
            entry: dict[str, Any] = {"checkName": check, "totalResourcesCount": total}
            if check in counts:
                entry |= {"checkRunStatus": "COMPLETED_NON_COMPLIANT", "nonCompliantResourcesCount": counts[check]}
            elif rnd.random() < 0.05:
                entry |= {
                    "checkRunStatus": "FAILED",
                    "nonCompliantResourcesCount": 0,
                    "errorCode": "INSUFFICIENT_PERMISSIONS",
                    "message": "The audit role lacks permission to run this check.",
                }
            else:
                entry |= {"checkRunStatus": "COMPLETED_COMPLIANT", "nonCompliantResourcesCount": 0}
            details.append(entry)
        statuses = [entry["checkRunStatus"] for entry in details]
        events.append(
            {
                "accountId": ACCOUNT,
                "region": "us-east-1",
                "taskId": task_id,
                "taskStatus": "COMPLETED",
                "taskType": "SCHEDULED_AUDIT_TASK",
                "scheduledAuditName": "daily",
                "failedChecksCount": statuses.count("FAILED"),
                "canceledChecksCount": 0,
                "nonCompliantChecksCount": statuses.count("COMPLETED_NON_COMPLIANT"),
                "compliantChecksCount": statuses.count("COMPLETED_COMPLIANT"),
                "totalChecksCount": len(details),
                "taskStartTime": started,
                "auditDetails": details,
            }
        )
        return events


def generate_events(count: int, *, seed: int = 0, mix: EventMix = EventMix(), things: int = 10_000) -> Iterator[bytes]:
    """Yields `count` events as JSON in each kind's share of `mix`; the same seed gives the same events.

    Audit events come as Device Defender sends them: a task's findings, then the task's notification. Config and
    Health events come whole, as an EventBridge rule puts them on the stream; a Health event opened comes again later,
    closed.
    """
    generator = _Generator(seed, things)
    audit_share = mix.audit_finding + mix.audit_task
    device_defender_share = mix.detect + audit_share
    findings_per_task = mix.audit_finding / mix.audit_task if mix.audit_task else 0.0
    pending: list[dict[str, Any]] = []
    encode = msgspec.json.encode
    # Drawn apart from Device Defender's, so that a mix with no other source gives the very events it always gave.
    others = EventBridgeSources(random.Random(f"{seed}/sources")) if mix.config or mix.health else None
    for _ in range(count):
        if others is not None:
            pick = others.random.random() * (device_defender_share + mix.config + mix.health)
            if pick >= device_defender_share:
                yield encode(others.config() if pick < device_defender_share + mix.config else others.health())
                continue
        if generator.random.random() * (mix.detect + audit_share) < mix.detect:
            yield encode(generator.detect())
            continue
        if not pending:
            # Findings per task vary around the mix's ratio; a task may find nothing.
            spread = round(findings_per_task)
            pending = generator.audit_task(generator.random.randint(0, 2 * spread) if spread else 0)
        yield encode(pending.pop(0))


_MAX_PARTITION_KEY = 256
"""Kinesis' limit on a partition key's length, in characters."""


def partition_key(event: bytes) -> str:
    """Returns the producer's partition key for a generated event: the thing for Detect, the account for audits, and
    for Config and Health what the events stack's rules key them by, the rule's ARN and the event's type code.

    Every audit event of an account shares a key, so a task's findings stay ahead of its notification on the stream;
    so do the events of one Config or Health finding.
    """
    decoded = msgspec.json.decode(event)
    thing = decoded.get("thingName")
    if isinstance(thing, str):
        return thing
    detail = decoded.get("detail")
    if decoded.get("source") == "aws.config" and isinstance(detail, dict):
        key = str(detail.get("configRuleARN") or "aws.config")  # a configuration item change has no rule
    elif decoded.get("source") == "aws.health" and isinstance(detail, dict):
        key = str(detail.get("eventTypeCode") or "aws.health")
    else:
        key = f"audit/{decoded.get('accountId', 'unknown')}"
    return key[:_MAX_PARTITION_KEY]
