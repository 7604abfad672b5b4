"""Realistic AWS Config and AWS Health events, whole as an EventBridge rule puts them on the stream, from a seed.

`synthetic.generate_events` mixes them with Device Defender's in the shares of an `EventMix`.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

from defender_hub.timestamps import format_iso

__all__ = ["ACCOUNT", "REGIONS", "START_MS", "EventBridgeSources"]

ACCOUNT = "123456789012"
"""The account of every generated event (loadgen spreads them over several)."""
REGIONS = ("us-east-1", "us-west-2", "eu-west-1")
START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
"""When the generated stream begins."""


_CONFIG_ACCOUNT_RULES: tuple[tuple[str, str], ...] = (
    ("s3-bucket-public-read-prohibited", "AWS::S3::Bucket"),
    ("s3-bucket-server-side-encryption-enabled", "AWS::S3::Bucket"),
    ("ec2-instance-no-public-ip", "AWS::EC2::Instance"),
    ("restricted-ssh", "AWS::EC2::SecurityGroup"),
    ("encrypted-volumes", "AWS::EC2::Volume"),
    ("vpc-flow-logs-enabled", "AWS::EC2::VPC"),
    ("iam-password-policy", "AWS::::Account"),
    ("iam-role-managed-policy-check", "AWS::IAM::Role"),
    ("lambda-function-public-access-prohibited", "AWS::Lambda::Function"),
    ("dynamodb-pitr-enabled", "AWS::DynamoDB::Table"),
    ("cmk-backing-key-rotation-enabled", "AWS::KMS::Key"),
    ("rds-instance-public-access-check", "AWS::RDS::DBInstance"),
    ("elbv2-deletion-protection-enabled", "AWS::ElasticLoadBalancingV2::LoadBalancer"),
    # Service-linked: the rules Security Hub runs its controls with; their evaluations make no finding.
    ("securityhub-s3-bucket-ssl-requests-only-a1b2c3", "AWS::S3::Bucket"),
    ("securityhub-restricted-ssh-d4e5f6", "AWS::EC2::SecurityGroup"),
)
_CONFIG_ANNOTATIONS = {
    "AWS::S3::Bucket": "The bucket policy allows public read access.",
    "AWS::EC2::SecurityGroup": "Inbound rule allows 0.0.0.0/0 on port 22.",
    "AWS::EC2::Volume": "The volume is not encrypted.",
}
_COMPLIANCE_WEIGHTS = {"COMPLIANT": 45, "NON_COMPLIANT": 45, "NOT_APPLICABLE": 5, "INSUFFICIENT_DATA": 5}
_CONFIG_ITEM_CHANGE_SHARE = 0.05
"""Of Config events, configuration item changes: Config sends them too, and they make no finding."""
_RESOURCES_PER_TYPE = 25

# (service, eventTypeCode, category, detail-type, description, entity kind, weight); entity kinds: "bucket",
# "instance", "certificate", "key", "distribution" or "" for an account-wide event. From the top: one of each severity
# rule (CRITICAL, HIGH, MEDIUM), a security-related one no rule ranks (LOW), then three not about security, which make
# no finding.
_HEALTH_EVENTS: tuple[tuple[str, str, str, str, str, str, int], ...] = (
    ("RISK", "AWS_RISK_CREDENTIALS_EXPOSED", "issue", "AWS Health Event",
     "An access key of your account was found publicly exposed. Rotate it now.", "", 2),
    ("ABUSE", "AWS_ABUSE_DOS_REPORT", "issue", "AWS Health Abuse Event",
     "We received a report that resources of your account took part in a denial of service attack.", "instance", 2),
    ("S3", "AWS_S3_OPEN_ACCESS_BUCKET_NOTIFICATION", "accountNotification", "AWS Health Event",
     "Your S3 bucket allows public access to anyone on the internet.", "bucket", 2),
    ("EC2", "AWS_EC2_SECURITY_NOTIFICATION", "accountNotification", "AWS Health Event",
     "A vulnerability affects instances in your account; apply the update described in the bulletin.", "instance", 4),
    ("ACM", "AWS_ACM_RENEWAL_STATE_CHANGE", "scheduledChange", "AWS Health Event",
     "A certificate of yours could not be renewed automatically and expires soon.", "certificate", 5),
    ("RDS", "AWS_RDS_CERTIFICATE_ROTATION_REQUIRED", "scheduledChange", "AWS Health Event",
     "Rotate the CA certificate of your DB instances before the old one expires.", "instance", 4),
    ("KMS", "AWS_KMS_OPERATIONAL_NOTIFICATION", "accountNotification", "AWS Health Event",
     "A customer managed key of yours is scheduled for deletion.", "key", 3),
    ("CLOUDFRONT", "AWS_CLOUDFRONT_SECURITY_NOTIFICATION", "accountNotification", "AWS Health Event",
     "A distribution of yours uses a security policy that is being retired.", "distribution", 2),
    ("EC2", "AWS_EC2_SECURITY_GROUP_RULES_QUOTA_NOTIFICATION", "accountNotification", "AWS Health Event",
     "A security group of yours is close to its quota of rules.", "", 2),
    ("EC2", "AWS_EC2_INSTANCE_REBOOT_MAINTENANCE_SCHEDULED", "scheduledChange", "AWS Health Event",
     "One or more of your instances is scheduled for a reboot during the maintenance window.", "instance", 12),
    ("RDS", "AWS_RDS_MAINTENANCE_SCHEDULED", "scheduledChange", "AWS Health Event",
     "Maintenance is scheduled for your DB instances.", "instance", 8),
    ("LAMBDA", "AWS_LAMBDA_OPERATIONAL_ISSUE", "issue", "AWS Health Event",
     "We are investigating increased error rates for function invocations.", "", 5),
)  # fmt: skip
_GLOBAL_SERVICES = frozenset({"CLOUDFRONT", "RISK"})
"""Services whose events are global (`eventRegion: global`)."""
_MAX_OPEN_HEALTH_EVENTS = 40


def _rfc_1123(epoch_ms: int) -> str:
    """Returns `epoch_ms` as AWS Health writes times, e.g. `Fri, 07 Jan 2022 16:34:04 GMT`."""
    return format_datetime(datetime.fromtimestamp(epoch_ms // 1000, UTC), usegmt=True)


def _eventbridge_time(epoch_ms: int) -> str:
    """Returns `epoch_ms` as EventBridge writes an event's time: ISO 8601 to the second."""
    return format_iso(epoch_ms - epoch_ms % 1000).replace(".000Z", "Z")


def _eventbridge(rnd: random.Random, detail_type: str, source: str, time_ms: int, region: str) -> dict[str, Any]:
    """Returns an EventBridge envelope, without its detail and resources."""
    return {
        "version": "0",
        "id": str(uuid.UUID(int=rnd.getrandbits(128))),
        "detail-type": detail_type,
        "source": source,
        "account": ACCOUNT,
        "time": _eventbridge_time(time_ms),
        "region": region,
    }


def _entity(kind: str, region: str, pick: int) -> str:
    """Returns the value of an affected entity of `kind`: a bucket, an instance, a certificate, a key or a
    distribution."""
    if kind == "bucket":
        return f"bucket-{pick:03d}"
    if kind == "instance":
        return f"i-{pick:017x}"
    if kind == "certificate":
        return f"arn:aws:acm:{region}:{ACCOUNT}:certificate/{uuid.UUID(int=pick)}"
    if kind == "key":
        return f"arn:aws:kms:{region}:{ACCOUNT}:key/{uuid.UUID(int=pick + 1000)}"
    return f"E{pick:013X}"


@dataclass
class EventBridgeSources:
    """The Config and Health generators: a random stream of their own, so the Device Defender events of a mix are
    those of the same seed without it."""

    random: random.Random
    clock_ms: int = START_MS
    evaluations: dict[tuple[int, str, str], dict[str, Any]] = field(default_factory=dict)
    """The last evaluation of each rule, Region and resource: the next one's old evaluation."""
    open_events: list[dict[str, Any]] = field(default_factory=list)

    def _tick(self) -> int:
        self.clock_ms += self.random.randint(1, 2_000)
        return self.clock_ms

    def _resource_id(self, resource_type: str, pick: int) -> str:
        """Returns Config's resourceId of one of a small pool of resources of `resource_type`."""
        if resource_type == "AWS::::Account":
            return ACCOUNT
        prefixes = {
            "AWS::EC2::Instance": "i-",
            "AWS::EC2::SecurityGroup": "sg-",
            "AWS::EC2::Volume": "vol-",
            "AWS::EC2::VPC": "vpc-",
            "AWS::RDS::DBInstance": "db-",
        }
        if resource_type in prefixes:
            return f"{prefixes[resource_type]}{pick:017x}"
        if resource_type == "AWS::IAM::Role":
            return f"AROA{pick:016X}"
        if resource_type == "AWS::KMS::Key":
            return str(uuid.UUID(int=pick + 1000))
        if resource_type == "AWS::ElasticLoadBalancingV2::LoadBalancer":
            return f"arn:aws:elasticloadbalancing:{REGIONS[0]}:{ACCOUNT}:loadbalancer/app/web-{pick}/{pick:016x}"
        return f"{resource_type.rsplit('::', maxsplit=1)[-1].lower()}-{pick:03d}"

    def config(self) -> dict[str, Any]:
        """Returns a Config event: mostly a compliance change that flips a rule's verdict on a resource."""
        rnd = self.random
        now = self._tick()
        region = rnd.choice(REGIONS)
        if rnd.random() < _CONFIG_ITEM_CHANGE_SHARE:
            bucket = f"bucket-{rnd.randint(1, _RESOURCES_PER_TYPE):03d}"
            event = _eventbridge(rnd, "Config Configuration Item Change", "aws.config", now, region)
            return event | {
                "resources": [f"arn:aws:s3:::{bucket}"],
                "detail": {
                    "recordVersion": "1.3",
                    "messageType": "ConfigurationItemChangeNotification",
                    "notificationCreationTime": format_iso(now),
                    "configurationItem": {
                        "resourceType": "AWS::S3::Bucket",
                        "resourceId": bucket,
                        "awsAccountId": ACCOUNT,
                        "awsRegion": region,
                        "configurationItemStatus": "OK",
                        "configurationItemCaptureTime": format_iso(now),
                    },
                },
            }
        index = rnd.randrange(len(_CONFIG_ACCOUNT_RULES))
        rule, resource_type = _CONFIG_ACCOUNT_RULES[index]
        resource_id = self._resource_id(resource_type, rnd.randint(1, _RESOURCES_PER_TYPE))
        rule_arn = f"arn:aws:config:{region}:{ACCOUNT}:config-rule/config-rule-{index:02d}{region[-1]}mbzq"
        key = (index, region, resource_id)
        old = self.evaluations.get(key)
        # A compliance change: the verdict differs from the last one (a first evaluation has none).
        choices = [c for c in _COMPLIANCE_WEIGHTS if old is None or c != old["complianceType"]]
        new = rnd.choices(choices, [_COMPLIANCE_WEIGHTS[c] for c in choices])[0]
        qualifier = {"configRuleName": rule, "resourceType": resource_type, "resourceId": resource_id}
        evaluation: dict[str, Any] = {
            "evaluationResultIdentifier": {
                "evaluationResultQualifier": qualifier,
                "orderingTimestamp": format_iso(now - rnd.randint(1_000, 60_000)),
            },
            "complianceType": new,
            "resultRecordedTime": format_iso(now),
            "configRuleInvokedTime": format_iso(now - rnd.randint(100, 900)),
        }
        if new == "NON_COMPLIANT" and resource_type in _CONFIG_ANNOTATIONS:
            evaluation["annotation"] = _CONFIG_ANNOTATIONS[resource_type]
        self.evaluations[key] = evaluation
        event = _eventbridge(rnd, "Config Rules Compliance Change", "aws.config", now + 500, region)
        return event | {
            "resources": [rule_arn],
            "detail": {
                "resourceId": resource_id,
                "awsRegion": region,
                "awsAccountId": ACCOUNT,
                "configRuleName": rule,
                "recordVersion": "1.0",
                "configRuleARN": rule_arn,
                "messageType": "ComplianceChangeNotification",
                "newEvaluationResult": evaluation,
                "oldEvaluationResult": old,
                "notificationCreationTime": format_iso(now + 400),
                "resourceType": resource_type,
            },
        }

    def _entities(self, kind: str, region: str) -> list[dict[str, Any]]:
        """Returns the entities an event of `kind` affects: one to three, now and then more than a finding takes."""
        rnd = self.random
        if not kind:
            return []
        count = 40 if rnd.random() < 0.02 else rnd.randint(1, 3)
        return [{"entityValue": _entity(kind, region, rnd.randint(1, 500)), "status": "IMPAIRED"} for _ in range(count)]

    def health(self) -> dict[str, Any]:
        """Returns a Health event: a new one (open, or upcoming for a scheduled change), or one of those open closed."""
        rnd = self.random
        now = self._tick()
        if self.open_events and (rnd.random() < 0.4 or len(self.open_events) >= _MAX_OPEN_HEALTH_EVENTS):
            event = self.open_events.pop(rnd.randrange(len(self.open_events)))
            detail = event["detail"]
            # An upcoming change opens when it starts; an open event closes.
            detail["statusCode"] = "open" if detail["statusCode"] == "upcoming" else "closed"
            if detail["statusCode"] == "closed":
                detail["endTime"] = _rfc_1123(now)
            else:
                self.open_events.append(event)
            detail["lastUpdatedTime"] = _rfc_1123(now)
            return event | {"id": str(uuid.UUID(int=rnd.getrandbits(128))), "time": _eventbridge_time(now)}
        service, code, category, detail_type, description, kind, _ = rnd.choices(
            _HEALTH_EVENTS, [entry[-1] for entry in _HEALTH_EVENTS]
        )[0]
        region = rnd.choice(REGIONS)
        event_region = "global" if service in _GLOBAL_SERVICES else region
        arn_region = "us-east-1" if event_region == "global" else region
        event_id = f"{code}_{rnd.getrandbits(48):012x}_{uuid.UUID(int=rnd.getrandbits(128))}"
        scheduled = category == "scheduledChange"
        # A scheduled change starts minutes ahead, so that it opens (and later closes) within a generated stream.
        start = now + rnd.randint(60_000, 600_000) if scheduled else now - rnd.randint(0, 3_600_000)
        event = _eventbridge(rnd, detail_type, "aws.health", now, arn_region)
        event |= {
            "resources": [],
            "detail": {
                "eventArn": f"arn:aws:health:{arn_region}::event/{service}/{code}/{event_id}",
                "service": service,
                "eventTypeCode": code,
                "eventTypeCategory": category,
                "eventScopeCode": "ACCOUNT_SPECIFIC",
                "communicationId": f"{rnd.getrandbits(160):040x}-1",
                "startTime": _rfc_1123(start),
                "lastUpdatedTime": _rfc_1123(now),
                "statusCode": "upcoming" if scheduled else "open",
                "eventRegion": event_region,
                "eventDescription": [{"language": "en_US", "latestDescription": description}],
                "affectedEntities": self._entities(kind, region),
                "affectedAccount": ACCOUNT,
            },
        }
        self.open_events.append(event)
        return event
