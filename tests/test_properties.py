"""Properties: any decodable event maps to findings Security Hub would accept; any input fails only cleanly."""

from __future__ import annotations

import contextlib
import datetime
import json
from typing import Any

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from defender_hub.codecs.asff import encode_finding
from defender_hub.codecs.asff_rules import finding_problems
from defender_hub.convert import EventConverter
from defender_hub.errors import EventError
from defender_hub.mapping import MappingOptions

CONVERTER = EventConverter(MappingOptions(account_id="123456789012", region="us-east-1"))

# Device-reported text: anything, control and bidi characters and very long strings included.
untrusted = st.text(min_size=1, max_size=400) | st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=3000
)
names = st.text(min_size=1, max_size=200)
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
