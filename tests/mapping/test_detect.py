"""Detect violations: lifecycle by event type, the three criteria types, metric values, severity by configuration."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from defender_hub.convert import EventConverter
from defender_hub.errors import EventDecodeError, EventMappingError
from defender_hub.mapping import MappingOptions
from tests.helpers import Convert


def violation(**changes: Any) -> dict[str, Any]:
    return {
        "accountId": "123456789012",
        "region": "us-east-1",
        "violationId": "v-1",
        "thingName": "MyThing",
        "securityProfileName": "Profile",
        "behavior": {
            "name": "Bytes out",
            "metric": "aws:all-bytes-out",
            "criteria": {"comparisonOperator": "greater-than", "value": {"count": 100}},
        },
        "metricValue": {"count": 500},
        "violationEventType": "in-alarm",
        "violationEventTime": 1_700_000_060_000,
        "violationStartTime": 1_700_000_000_000,
    } | changes


@pytest.mark.parametrize(
    ("event_type", "state", "title"),
    [
        ("in-alarm", "ACTIVE", "is in alarm for"),
        ("alarm-cleared", "ARCHIVED", "is no longer in alarm (cleared) for"),
        ("alarm-invalidated", "ARCHIVED", "is no longer in alarm (invalidated) for"),
        ("alarm-something-new", "ACTIVE", "reported alarm-something-new for"),
    ],
)
def test_the_event_type_decides_the_record_state(convert: Convert, event_type: str, state: str, title: str) -> None:
    [finding] = convert(violation(violationEventType=event_type))

    assert finding["RecordState"] == state
    assert finding["Title"] == f"Registered thing MyThing {title} STATIC behavior Bytes out."
    assert finding["Id"] == "v-1"
    assert finding["ProductFields"]["ViolationEventType"] == event_type


def test_the_alarm_and_its_clearing_are_the_same_finding(convert: Convert) -> None:
    raised = convert(violation())[0]
    cleared = convert(violation(violationEventType="alarm-cleared", violationEventTime=1_700_000_900_000))[0]

    assert raised["Id"] == cleared["Id"]
    assert raised["CreatedAt"] == cleared["CreatedAt"] == "2023-11-14T22:13:20.000Z"
    assert cleared["UpdatedAt"] > raised["UpdatedAt"]


@pytest.mark.parametrize(
    ("criteria", "kind", "trigger"),
    [
        (
            {"comparisonOperator": "greater-than", "value": {"count": 100}},
            "STATIC",
            "aws:all-bytes-out greater-than 100",
        ),
        (
            {"comparisonOperator": "greater-than", "statisticalThreshold": {"statistic": "p90"}},
            "STATISTICAL",
            "aws:all-bytes-out greater-than p90",
        ),
        (
            {"mlDetectionConfig": {"confidenceLevel": "HIGH"}},
            "ML",
            "the ML model of aws:all-bytes-out at HIGH confidence",
        ),
    ],
)
def test_the_criteria_type_is_told_from_the_criteria(
    convert: Convert, criteria: dict[str, Any], kind: str, trigger: str
) -> None:
    [finding] = convert(violation(behavior={"name": "B", "metric": "aws:all-bytes-out", "criteria": criteria}))

    assert finding["ProductFields"]["BehaviorCriteriaType"] == kind
    assert finding["Description"] == (
        f"Registered thing MyThing violates {kind} behavior B of security profile Profile. "
        f"Violation was triggered because the device did not conform to {trigger}."
    )


@pytest.mark.parametrize(
    ("value", "key", "text"),
    [
        ({"count": 7}, "Count", "7"),
        ({"number": 2.5}, "Number", "2.5"),
        ({"numbers": [1.0, 2.5]}, "Numbers", "[1, 2.5]"),
        ({"cidrs": ["10.0.0.0/8"]}, "Cidrs", "[10.0.0.0/8]"),
        ({"ports": [22, 443]}, "Ports", "[22, 443]"),
        ({"strings": ["a", "b"]}, "Strings", "[a, b]"),
    ],
)
def test_each_metric_value_member_is_shown(convert: Convert, value: dict[str, Any], key: str, text: str) -> None:
    behavior = {"name": "B", "metric": "m", "criteria": {"comparisonOperator": "in-set", "value": value}}
    [finding] = convert(violation(behavior=behavior, metricValue=value))

    assert finding["ProductFields"][key] == text
    assert finding["ProductFields"]["MetricValue"] == text


def test_device_reported_values_are_untrusted(convert: Convert) -> None:
    [finding] = convert(
        violation(metricValue={"cidrs": ["1.2.3.4/32\x1b[2J", *[f"10.0.{i}.0/24" for i in range(500)]]})
    )

    shown = finding["ProductFields"]["MetricValue"]
    assert "\x1b" not in shown
    assert "… 437 more" in shown
    assert len(shown) <= 2048


def test_created_at_is_the_violation_start_else_the_event_time(convert: Convert) -> None:
    with_start = convert(violation())[0]
    without = violation()
    del without["violationStartTime"]

    assert with_start["CreatedAt"] == "2023-11-14T22:13:20.000Z"
    assert with_start["UpdatedAt"] == "2023-11-14T22:14:20.000Z"
    assert convert(without)[0]["CreatedAt"] == "2023-11-14T22:14:20.000Z"


@pytest.mark.parametrize("when", [1_700_000_060_000, 1_700_000_060, "2023-11-14T22:14:20Z", "2023-11-14T22:14:20.000Z"])
def test_each_timestamp_form_gives_the_same_finding(convert: Convert, when: int | str) -> None:
    assert convert(violation(violationEventTime=when))[0]["UpdatedAt"] == "2023-11-14T22:14:20.000Z"


def test_severity_is_medium_unless_configured(convert: Convert) -> None:
    assert convert(violation())[0]["Severity"] == {"Label": "MEDIUM"}
    by_profile = convert(violation(), security_profile_severity={"Profile": "HIGH"})[0]
    by_behavior = convert(
        violation(), security_profile_severity={"Profile": "HIGH"}, behavior_severity={"Bytes out": "LOW"}
    )[0]

    assert by_profile["Severity"] == by_profile["FindingProviderFields"]["Severity"] == {"Label": "HIGH"}
    assert by_behavior["Severity"] == {"Label": "LOW"}


def test_two_behaviors_of_a_profile_are_not_confused(convert: Convert) -> None:
    converter = EventConverter(MappingOptions())  # one converter: its memo sees both behaviors
    first = violation()
    second = violation(
        behavior={
            "name": "Other",
            "metric": "aws:num-disconnects",
            "criteria": {"comparisonOperator": "greater-than", "value": {"count": 9}},
        }
    )
    one, two = (converter.findings(msgspec.json.encode(event))[0] for event in (first, second))

    assert one.product_fields is not None and two.product_fields is not None
    assert (one.product_fields["BehaviorName"], two.product_fields["BehaviorName"]) == ("Bytes out", "Other")
    assert "aws:num-disconnects greater-than 9" in two.description


def test_an_invalid_behavior_is_a_decode_error_naming_its_path(convert: Convert) -> None:
    reason = r"^detect-violation event: behavior\.name is a whole number, not a string$"
    with pytest.raises(EventDecodeError, match=reason):
        convert(violation(behavior={"name": 5}))


@pytest.mark.parametrize(
    ("region", "partition", "host"),
    [
        ("us-east-1", "aws", "us-east-1.console.aws.amazon.com"),
        ("cn-north-1", "aws-cn", "cn-north-1.console.amazonaws.cn"),
        ("us-gov-west-1", "aws-us-gov", "us-gov-west-1.console.amazonaws-us-gov.com"),
    ],
)
def test_arns_and_links_follow_the_partition(convert: Convert, region: str, partition: str, host: str) -> None:
    [finding] = convert(violation(region=region))

    assert finding["ProductArn"] == f"arn:{partition}:securityhub:{region}:123456789012:product/123456789012/default"
    assert finding["GeneratorId"] == f"arn:{partition}:iot:{region}:123456789012:securityprofile/Profile"
    assert finding["SourceUrl"].startswith(f"https://{host}/iot/home?region={region}#/dd/securityProfile/Profile")
    assert finding["Resources"][0]["Partition"] == partition
    assert (
        finding["Resources"][0]["Details"]["Other"]["ThingArn"]
        == f"arn:{partition}:iot:{region}:123456789012:thing/MyThing"
    )


def test_context_comes_from_configuration_when_the_event_has_none(convert: Convert) -> None:
    event = violation()
    del event["accountId"], event["region"]

    with pytest.raises(EventMappingError, match="--default-account"):
        convert(event)
    with pytest.raises(EventMappingError, match="--region"):
        convert(event, account_id="210987654321")
    [finding] = convert(event, account_id="210987654321", region="eu-west-1")
    assert (finding["AwsAccountId"], finding["Resources"][0]["Region"]) == ("210987654321", "eu-west-1")


@pytest.mark.parametrize(("account", "region"), [("1234", "us-east-1"), ("123456789012", "Mars-1")])
def test_a_malformed_account_or_region_is_an_error(convert: Convert, account: str, region: str) -> None:
    with pytest.raises(EventMappingError):
        convert(violation(accountId=account, region=region))


def test_names_from_the_stream_are_cleaned_bounded_and_url_quoted(convert: Convert) -> None:
    [finding] = convert(violation(thingName="evil\u202ething/../x?" + "y" * 300))

    thing = finding["ProductFields"]["ThingName"]
    assert "\u202e" not in thing and len(thing) <= 128
    assert len(finding["Title"]) <= 256
    assert "evilthing%2F..%2Fx%3F" in finding["Resources"][0]["Details"]["Other"]["SourceUrl"]


@pytest.mark.parametrize("field", ["thingName", "securityProfileName"])
def test_a_name_of_control_characters_only_is_refused(convert: Convert, field: str) -> None:
    with pytest.raises(EventMappingError, match=f"{field} has no printable characters"):
        convert(violation(**{field: "\x00\x07"}))


@pytest.mark.parametrize(
    ("region", "partition", "problem"),
    [
        ("us-esat-1", None, "'us-esat-1' has no Security Hub endpoint in partition aws: a typo?"),
        ("us-east-1", "aws-cn", "'us-east-1' has no Security Hub endpoint in partition aws-cn"),
    ],
)
def test_a_region_without_security_hub_is_refused_at_mapping(
    convert: Convert, region: str, partition: str | None, problem: str
) -> None:
    with pytest.raises(EventMappingError, match=problem):
        convert(violation(region=region), partition=partition)
