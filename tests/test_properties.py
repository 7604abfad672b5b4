"""Properties: any decodable event maps to findings Security Hub would accept (or, for Config and Health, is skipped by
its source's rules); any input fails only cleanly."""

from __future__ import annotations

import contextlib
import datetime
import email.utils
import json
from typing import Any

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from defender_hub.codecs.asff import encode_finding
from defender_hub.codecs.asff_rules import finding_problems
from defender_hub.convert import EventConverter
from defender_hub.errors import EventError, EventSkipped
from defender_hub.mapping import MappingOptions

CONVERTER = EventConverter(MappingOptions(account_id="123456789012", region="us-east-1"))

# Device-reported text: anything, control and bidi characters and very long strings included.
untrusted = st.text(min_size=1, max_size=400) | st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=3000
)
names = st.text(min_size=1, max_size=200)
readable = untrusted.filter(lambda text: any(ch.isprintable() and not ch.isspace() for ch in text))
"""Untrusted text with something left to read once it is cleaned: what a well-formed event's names are."""
times = (
    st.integers(min_value=100_000_000_000, max_value=4_102_444_800_000)
    | st.integers(min_value=0, max_value=4_102_444_800)
    | st.datetimes(timezones=st.just(datetime.UTC)).map(lambda d: d.isoformat())
)
enumish = st.sampled_from(["in-alarm", "alarm-cleared", "alarm-invalidated"]) | names
severity = st.sampled_from(["CRITICAL", "HIGH", "MEDIUM", "LOW"]) | names
value = st.one_of(
    st.fixed_dictionaries({"count": st.integers(min_value=-(2**63), max_value=2**63 - 1)}),
    st.fixed_dictionaries({"number": st.floats(allow_nan=False, allow_infinity=False)}),
    st.fixed_dictionaries({"numbers": st.lists(st.floats(allow_nan=False), max_size=100)}),
    st.fixed_dictionaries({"cidrs": st.lists(untrusted, max_size=100)}),
    st.fixed_dictionaries({"ports": st.lists(st.integers(0, 65535), max_size=100)}),
    st.fixed_dictionaries({"strings": st.lists(untrusted, max_size=100)}),
    st.just({}),
)
criteria = st.fixed_dictionaries(
    {},
    optional={
        "comparisonOperator": names,
        "value": value,
        "durationSeconds": st.integers(0, 10**6),
        "statisticalThreshold": st.fixed_dictionaries({}, optional={"statistic": names}),
        "mlDetectionConfig": st.fixed_dictionaries({}, optional={"confidenceLevel": names}),
    },
)
detect = st.fixed_dictionaries(
    {
        "violationId": st.from_regex(r"[a-zA-Z0-9\-]{1,128}", fullmatch=True),
        "thingName": untrusted,
        "securityProfileName": untrusted,
        "behavior": st.fixed_dictionaries(
            {"name": untrusted},
            optional={
                "metric": untrusted,
                "criteria": criteria,
                "suppressAlerts": st.booleans(),
                "metricDimension": st.fixed_dictionaries({"dimensionName": untrusted}, optional={"operator": names}),
            },
        ),
        "violationEventType": enumish,
        "violationEventTime": times,
    },
    optional={
        "violationStartTime": times,
        "metricValue": value,
        "verificationState": names,
        "verificationStateDescription": untrusted,
        "violationEventAdditionalInfo": st.fixed_dictionaries({}, optional={"confidenceLevel": names}),
    },
)
identifier_value = untrusted | st.dictionaries(names, untrusted, min_size=1, max_size=4)
audit_finding = st.fixed_dictionaries(
    {
        "findingId": names,
        "taskId": names,
        "checkName": names | st.sampled_from(["DEVICE_CERTIFICATE_SHARED_CHECK", "IOT_POLICY_OVERLY_PERMISSIVE_CHECK"]),
        "nonCompliantResource": st.fixed_dictionaries(
            {
                "resourceType": names | st.sampled_from(["IOT_POLICY", "DEVICE_CERTIFICATE", "CLIENT_ID"]),
                "resourceIdentifier": st.dictionaries(names, identifier_value, min_size=1, max_size=12)
                | st.fixed_dictionaries(
                    {
                        "policyVersionIdentifier": st.fixed_dictionaries(
                            {"policyName": untrusted, "policyVersionId": names}
                        )
                    }
                ),
            },
            optional={"additionalInfo": st.dictionaries(untrusted, untrusted, max_size=60)},
        ),
        "reasonForNonComplianceCode": names,
        "findingTime": times,
    },
    optional={
        "reasonForNonCompliance": untrusted,
        "severity": severity,
        "isSuppressed": st.booleans(),
        "taskType": names,
        "scheduledAuditName": names,
        "relatedResources": st.lists(
            st.fixed_dictionaries(
                {"resourceType": names}, optional={"resourceIdentifier": st.dictionaries(names, untrusted, max_size=3)}
            ),
            max_size=40,
        ),
    },
)
audit_task = st.fixed_dictionaries(
    {
        "taskId": names,
        "taskStatus": st.sampled_from(["COMPLETED", "FAILED", "CANCELED"]) | names,
        "taskType": names,
        "taskStartTime": times,
        "auditDetails": st.lists(
            st.fixed_dictionaries(
                {"checkName": names, "checkRunStatus": names | st.sampled_from(["COMPLETED_COMPLIANT", "FAILED"])},
                optional={
                    "nonCompliantResourcesCount": st.integers(0, 10**9),
                    "totalResourcesCount": st.integers(0, 10**9),
                    "suppressedNonCompliantResourcesCount": st.integers(0, 10**9),
                    "message": untrusted,
                    "errorCode": names,
                },
            ),
            max_size=20,
        ),
    },
    optional={"scheduledAuditName": names},
)


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return []


@given(st.one_of(detect, audit_finding, audit_task))
def test_any_decodable_event_maps_to_findings_security_hub_accepts(event: dict[str, Any]) -> None:
    try:
        findings = CONVERTER.findings(msgspec.json.encode(event))
    except EventError:
        return  # refused cleanly (an identifier naming nothing, say): also a correct outcome
    for finding in findings:
        encoded = encode_finding(finding)
        doc = json.loads(encoded)
        assert finding_problems(doc, encoded_size=len(encoded)) == []
        for text in _strings(doc):
            assert not any(ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0 or 0x202A <= ord(ch) <= 0x202E for ch in text)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=20), inner, max_size=5),
    max_leaves=30,
)


@given(st.one_of(detect, audit_finding, audit_task), st.text(max_size=30), json_values)
def test_a_field_of_the_wrong_shape_fails_only_cleanly(event: dict[str, Any], key: str, junk: Any) -> None:
    target = event
    if key in target or not key:
        key = next(iter(target))
    target[key] = junk
    with contextlib.suppress(EventError):
        CONVERTER.findings(json.dumps(event).encode())


@given(st.binary(max_size=300))
def test_arbitrary_bytes_fail_only_cleanly(data: bytes) -> None:
    with contextlib.suppress(EventError):
        CONVERTER.findings(data)


# AWS Config and AWS Health events, as EventBridge puts them on the stream: the real shapes with untrusted text, and
# the same with odd values (any text where a code, time, account or Region goes) and members left out.
_instants = st.datetimes(
    min_value=datetime.datetime(1970, 1, 2), max_value=datetime.datetime(9999, 12, 30), timezones=st.just(datetime.UTC)
)


def _or_odd(real: st.SearchStrategy[Any], odd: bool) -> st.SearchStrategy[Any]:
    return real | names if odd else real


def eventbridge(
    source: str, detail_types: list[str], detail: st.SearchStrategy[Any], odd: bool
) -> st.SearchStrategy[Any]:
    """An EventBridge event of `source`: of one of `detail_types` (and, when `odd`, of another: Config's configuration
    item changes, a Health summary, any text)."""
    other = {"aws.config": "Config Configuration Item Change", "aws.health": "AWS Health Summary"}[source]
    return st.fixed_dictionaries(
        {
            "detail-type": st.sampled_from([*detail_types, other]) | names if odd else st.sampled_from(detail_types),
            "source": st.just(source),
            "account": _or_odd(st.sampled_from(["123456789012", "210987654321"]), odd),
            "region": _or_odd(st.sampled_from(["eu-central-1", "us-east-1", "cn-north-1", "us-gov-west-1"]), odd),
            "time": _or_odd(_instants.map(lambda d: d.isoformat().replace("+00:00", "Z")), odd),
            "detail": detail,
        },
        optional={"version": st.just("0"), "id": names, "resources": st.lists(names, max_size=3)},
    )


def config_change(
    odd: bool, untrusted: st.SearchStrategy[str] = untrusted, names: st.SearchStrategy[str] = names
) -> st.SearchStrategy[Any]:
    iso_times = _or_odd(_instants.map(lambda d: d.isoformat()), odd)
    evaluation = st.fixed_dictionaries(
        {
            "complianceType": _or_odd(
                st.sampled_from(["COMPLIANT", "NON_COMPLIANT", "NOT_APPLICABLE", "INSUFFICIENT_DATA"]), odd
            ),
            "resultRecordedTime": iso_times,
        },
        optional={
            "annotation": untrusted,
            "configRuleInvokedTime": iso_times,
            "evaluationResultIdentifier": st.fixed_dictionaries(
                {},
                optional={"orderingTimestamp": iso_times, "evaluationResultQualifier": st.dictionaries(names, names)},
            ),
        },
    )
    detail = st.fixed_dictionaries(
        {
            "configRuleName": st.sampled_from(["s3-bucket-public-read-prohibited", "securityhub-ssh-1a2b"]) | untrusted,
            "configRuleARN": st.just("arn:aws:config:eu-central-1:123456789012:config-rule/config-rule-a1") | untrusted,
            "resourceType": st.sampled_from(["AWS::S3::Bucket", "AWS::EC2::Instance", "AWS::::Account"]) | names,
            "resourceId": untrusted,
            "messageType": _or_odd(st.just("ComplianceChangeNotification"), odd),
            "newEvaluationResult": evaluation,
        },
        optional={
            "awsAccountId": _or_odd(st.just("123456789012"), odd),
            "awsRegion": _or_odd(st.sampled_from(["eu-central-1", "ap-south-1"]), odd),
            "oldEvaluationResult": st.none() | evaluation,
            "notificationCreationTime": iso_times,
            "recordVersion": names,
        },
    )
    return eventbridge("aws.config", ["Config Rules Compliance Change"], detail, odd)


def health_event(
    odd: bool, untrusted: st.SearchStrategy[str] = untrusted, names: st.SearchStrategy[str] = names
) -> st.SearchStrategy[Any]:
    times = _or_odd(_instants.map(lambda d: email.utils.format_datetime(d, usegmt=True)), odd)
    detail = st.fixed_dictionaries(
        {
            "eventArn": _or_odd(st.just("arn:aws:health:us-east-1::event/EC2/AWS_EC2_SECURITY_NOTIFICATION/e-1"), odd)
            | untrusted.map(lambda text: f"arn:aws:health:us-east-1::event/{text}"),
            "service": st.sampled_from(["RISK", "ABUSE", "SES", "EC2", "IAM"]) | names,
            "eventTypeCode": st.sampled_from(
                ["AWS_S3_OPEN_ACCESS_BUCKET_NOTIFICATION", "AWS_EC2_SECURITY_NOTIFICATION", "AWS_EC2_MAINTENANCE"]
            )
            | names,
            "eventTypeCategory": st.sampled_from(["issue", "accountNotification", "scheduledChange"]) | names,
            "startTime": times,
            "statusCode": st.sampled_from(["open", "upcoming", "closed"]) | names,
        },
        optional={
            "eventScopeCode": names,
            "communicationId": untrusted,
            "endTime": times,
            "lastUpdatedTime": times,
            "eventRegion": _or_odd(st.sampled_from(["us-east-1", "eu-west-1", "global"]), odd),
            "eventDescription": st.lists(
                st.fixed_dictionaries(
                    {"latestDescription": untrusted}, optional={"language": st.sampled_from(["en_US", "ja_JP"])}
                ),
                max_size=3,
            ),
            "affectedEntities": st.lists(
                st.fixed_dictionaries({}, optional={"entityValue": untrusted, "status": names}), max_size=40
            ),
            "affectedAccount": _or_odd(st.just("210987654321"), odd),
        },
    )
    return eventbridge("aws.health", ["AWS Health Event", "AWS Health Abuse Event"], detail, odd)


sources = st.one_of(config_change(odd=False), config_change(odd=True), health_event(odd=False), health_event(odd=True))


@given(sources)
def test_any_config_or_health_event_maps_to_valid_findings_or_is_skipped_or_refused_plainly(
    event: dict[str, Any],
) -> None:
    try:
        findings = CONVERTER.findings(msgspec.json.encode(event))
    except EventSkipped as skipped:
        assert skipped.source in ("config", "health")
        assert skipped.reason and skipped.reason.isprintable()
        return
    except EventError as refused:
        reason = str(refused)
        assert reason and reason.isprintable() and len(reason) < 1000, reason  # plain words, never the record
        return
    assert findings
    for finding in findings:
        encoded = encode_finding(finding)
        doc = json.loads(encoded)
        assert finding_problems(doc, encoded_size=len(encoded)) == []
        assert doc["ProductName"] in ("Config", "Health")
        for text in _strings(doc):
            assert not any(ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0 or 0x202A <= ord(ch) <= 0x202E for ch in text)


@given(
    st.one_of(
        config_change(odd=False, untrusted=readable, names=readable),
        health_event(odd=False, untrusted=readable, names=readable),
    )
)
def test_a_well_formed_config_or_health_event_is_never_refused(event: dict[str, Any]) -> None:
    try:
        findings = CONVERTER.findings(msgspec.json.encode(event))
    except EventSkipped:
        return  # a service-linked rule, or a Health event not about security: its source's rule, not a refusal
    assert findings


@given(sources, st.booleans(), st.text(max_size=30), json_values)
def test_a_config_or_health_member_of_the_wrong_shape_fails_only_cleanly(
    event: dict[str, Any], in_detail: bool, key: str, junk: Any
) -> None:
    target = event["detail"] if in_detail else event
    if key in target or not key:
        key = next(iter(target))
    target[key] = junk
    with contextlib.suppress(EventError, EventSkipped):
        CONVERTER.findings(json.dumps(event).encode())
