"""AWS Health events to findings: the security filter, severity, account and Region, Id, resources, description."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from defender_hub.codecs.asff_rules import Limits, finding_problems
from defender_hub.errors import EventDecodeError, EventMappingError, EventSkipped
from defender_hub.mapping.health import NOT_ABOUT_SECURITY, health_severity, is_security_related, start_digest
from tests.codecs.sources import health_event
from tests.helpers import Convert

EVENT_ARN = (
    "arn:aws:health:us-east-1::event/SES/AWS_SES_CMF_PENDING_TO_SUCCESS/"
    "AWS_SES_CMF_PENDING_TO_SUCCESS_303388638044_33fe2115-8dad-40ce-b533-78e29f49de96"
)


@pytest.mark.parametrize(
    ("service", "code", "severity"),
    [
        ("RISK", "AWS_RISK_CREDENTIALS_EXPOSED", "CRITICAL"),
        ("S3", "AWS_S3_OPEN_ACCESS_BUCKET_NOTIFICATION", "CRITICAL"),
        ("SHIELD", "AWS_SHIELD_IS_RESPONDING_TO_A_DDOS_ATTACK_AGAINST_YOUR_AWS_RESOURCES", "CRITICAL"),
        ("EC2", "AWS_SHIELD_INTERNET_TRAFFIC_LIMITATIONS_PLACED_IN_RESPONSE_TO_DDOS_ATTACK", "CRITICAL"),
        ("ABUSE", "AWS_ABUSE_DOS_REPORT", "HIGH"),
        ("RISK", "AWS_RISK_ABUSE_DETECTION", "CRITICAL"),  # CRITICAL is tried first
        ("EC2", "AWS_EC2_SECURITY_NOTIFICATION", "HIGH"),
        ("LAMBDA", "AWS_LAMBDA_ABUSE_DETECTION", "HIGH"),
        ("IAM", "AWS_IAM_SECURITY_NOTIFICATION", "HIGH"),  # HIGH before the service's MEDIUM
        ("SES", "AWS_SES_CMF_PENDING_TO_SUCCESS", "MEDIUM"),
        ("GUARDDUTY", "AWS_GUARDDUTY_OPERATIONAL_ISSUE", "MEDIUM"),
        ("ses", "aws_ses_something", "MEDIUM"),  # codes compared without case
        ("RDS", "AWS_RDS_CERTIFICATE_ROTATION_REQUIRED", "MEDIUM"),
        ("ACM", "AWS_ACM_END_OF_SUPPORT_NOTICE", "MEDIUM"),
        ("EC2", "AWS_EC2_SECURITY_GROUP_RULES_QUOTA_NOTIFICATION", "LOW"),  # security-related, no rule ranks it
        ("VPC", "AWS_VPC_ABUSE_REPORT", "LOW"),
    ],
)
def test_the_brief_s_severity_rules_in_order_then_low(service: str, code: str, severity: str) -> None:
    assert is_security_related(service, code)
    assert health_severity(service, code) == severity


@pytest.mark.parametrize(
    ("service", "code"),
    [
        ("EC2", "AWS_EC2_INSTANCE_REBOOT_MAINTENANCE_SCHEDULED"),
        ("RDS", "AWS_RDS_MAINTENANCE_SCHEDULED"),
        ("LAMBDA", "AWS_LAMBDA_OPERATIONAL_ISSUE"),
        # END_OF_SUPPORT ranks an event MEDIUM, but by itself is no sign of security: the filter does not name it.
        ("RDS", "AWS_RDS_MYSQL_END_OF_SUPPORT"),
    ],
)
def test_events_not_about_security_are_skipped(convert: Convert, service: str, code: str) -> None:
    assert not is_security_related(service, code)
    with pytest.raises(EventSkipped) as skipped:
        convert(health_event(service=service, eventTypeCode=code))

    assert (skipped.value.reason, skipped.value.source) == (NOT_ABOUT_SECURITY, "health")


def test_the_finding_of_the_golden_event(convert: Convert) -> None:
    [finding] = convert(health_event())

    assert finding["Id"] == EVENT_ARN.replace("us-east-1::", "us-east-1:123456789012:") + "/" + (
        "101F7FBAEFC663977DA09CFF56A29236602834D2D361E6A8CA5140BFB3A69B30"
    )
    assert finding["Title"] == "AWS Health - AWS_SES_CMF_PENDING_TO_SUCCESS"
    assert finding["GeneratorId"] == "AWS_SES_CMF_PENDING_TO_SUCCESS"
    assert (finding["CreatedAt"], finding["UpdatedAt"]) == ("2022-01-07T16:34:04.000Z", "2022-01-07T19:17:43.000Z")
    assert finding["SourceUrl"] == f"https://phd.aws.amazon.com/phd/home#/event-log?eventID={EVENT_ARN}"
    assert (finding["ProductName"], finding["RecordState"], finding["Types"]) == (
        "Health",
        "ACTIVE",
        ["Software and Configuration Checks"],
    )
    assert finding["ProductFields"] == {
        "Service": "SES",
        "EventTypeCode": "AWS_SES_CMF_PENDING_TO_SUCCESS",
        "EventTypeCategory": "accountNotification",
        "EventScopeCode": "ACCOUNT_SPECIFIC",
        "StatusCode": "closed",
        "EventArn": EVENT_ARN,
        "EventRegion": "us-east-1",
        "CommunicationId": "1e8bbe7ba2a2e1bd4a4ca8e2ad7a3a1c0f0a9e3d7ccbd3a4b3c5a8f9e1d2c3b4-1",
    }
    assert "Compliance" not in finding
    assert finding_problems(finding) == []


def test_the_id_hashes_the_start_as_iso_so_a_new_occurrence_is_a_new_finding(convert: Convert) -> None:
    first = convert(health_event())[0]
    update = convert(health_event({"time": "2022-01-08T00:00:00Z"}, statusCode="open"))[0]
    again = convert(health_event(startTime="Sat, 8 Jan 2022 16:34:04 GMT"))[0]

    assert first["Id"] == update["Id"] != again["Id"]
    assert again["Id"].endswith("/" + hashlib.sha256(b"2022-01-08T16:34:04.000Z").hexdigest().upper())
    assert start_digest(1_641_573_244_000) == first["Id"].rsplit("/", 1)[1]
    assert update["ProductFields"]["StatusCode"] == "open"


def test_an_affected_member_account_owns_its_finding(convert: Convert) -> None:
    [finding] = convert(health_event(affectedAccount="210987654321"))

    assert finding["AwsAccountId"] == "210987654321"
    assert ":210987654321:event/" in finding["Id"]
    assert finding["ProductArn"] == "arn:aws:securityhub:us-east-1:210987654321:product/210987654321/default"
    assert finding["ProductFields"]["AffectedAccount"] == "210987654321"


@pytest.mark.parametrize(
    ("delivered_in", "region", "partition"),
    [
        ("us-east-1", "us-east-1", "aws"),
        ("eu-west-1", "us-east-1", "aws"),
        ("cn-north-1", "cn-northwest-1", "aws-cn"),
        ("us-gov-east-1", "us-gov-west-1", "aws-us-gov"),
    ],
)
def test_a_global_event_goes_to_its_partition_s_global_region(
    convert: Convert, delivered_in: str, region: str, partition: str
) -> None:
    [finding] = convert(health_event({"region": delivered_in}, eventRegion="global"))

    assert finding["ProductArn"].startswith(f"arn:{partition}:securityhub:{region}:123456789012:")
    assert finding["Resources"][0]["Region"] == region
    assert finding["ProductFields"]["EventRegion"] == "global"


def test_a_regional_event_goes_to_its_event_region_else_the_envelope_s(convert: Convert) -> None:
    regional = convert(health_event(eventRegion="eu-west-2"))[0]
    unnamed = convert(health_event({"region": "ap-south-1"}, eventRegion=...))[0]

    assert regional["Resources"][0]["Region"] == "eu-west-2"
    assert unnamed["Resources"][0]["Region"] == "ap-south-1"


@pytest.mark.parametrize(
    ("region", "url"),
    [
        ("cn-north-1", "https://console.amazonaws.cn/health/home#/account/event-log?eventID="),
        ("us-gov-west-1", "https://console.amazonaws-us-gov.com/health/home#/account/event-log?eventID="),
    ],
)
def test_the_event_link_follows_the_partition(convert: Convert, region: str, url: str) -> None:
    arn = EVENT_ARN.replace("us-east-1", region)

    [finding] = convert(health_event({"region": region}, eventRegion=region, eventArn=arn))

    assert finding["SourceUrl"] == url + arn


def test_odd_characters_in_the_event_arn_are_quoted_in_the_link(convert: Convert) -> None:
    [finding] = convert(health_event(eventArn=EVENT_ARN + " x#y"))

    assert finding["SourceUrl"].endswith(EVENT_ARN + "%20x%23y")


def test_an_event_arn_that_is_no_arn_is_refused(convert: Convert) -> None:
    with pytest.raises(EventMappingError, match="eventArn 'event/123' is not an ARN"):
        convert(health_event(eventArn="event/123"))


def test_affected_entities_are_the_resources_up_to_32_distinct_and_cleaned(convert: Convert) -> None:
    entities: list[dict[str, Any]] = [{"entityValue": f"i-{n:04d}"} for n in range(40)]
    odd: list[dict[str, Any]] = [{"entityValue": "i-0000"}, {"status": "UNKNOWN"}, {"entityValue": " \x00"}]
    entities[1:1] = [*odd, {"entityValue": "a\x07b"}]

    [finding] = convert(health_event(affectedEntities=entities))

    ids = [resource["Id"] for resource in finding["Resources"]]
    assert len(ids) == Limits.RESOURCES
    assert ids[:3] == ["i-0000", "ab", "i-0001"]
    assert {resource["Type"] for resource in finding["Resources"]} == {"Other"}
    assert finding_problems(finding) == []


def test_without_entities_the_resource_is_the_account(convert: Convert) -> None:
    [finding] = convert(health_event(affectedEntities=[]))

    assert finding["Resources"] == [
        {"Type": "Other", "Id": "AWS::::Account:123456789012", "Partition": "aws", "Region": "us-east-1"}
    ]


def description(language: str, text: str) -> dict[str, str]:
    return {"language": language, "latestDescription": text}


def test_the_english_description_is_taken_else_the_first_else_a_sentence(convert: Convert) -> None:
    english = convert(health_event(eventDescription=[description("ja_JP", "日本語"), description("en_US", "English")]))
    first = convert(health_event(eventDescription=[description("ja_JP", "日本語"), description("fr_FR", "Français")]))
    none = convert(health_event(eventDescription=[]))
    blank = convert(health_event(eventDescription=[description("en_US", "\x00 \x01")]))

    assert [f[0]["Description"] for f in (english, first, none)] == [
        "English",
        "日本語",
        "AWS Health event AWS_SES_CMF_PENDING_TO_SUCCESS",
    ]
    assert blank[0]["Description"] == "AWS Health event AWS_SES_CMF_PENDING_TO_SUCCESS"


def test_a_long_description_is_cut_to_end_with_truncated_as_the_brief_says(convert: Convert) -> None:
    [finding] = convert(health_event(eventDescription=[description("en_US", "word " * 1000)]))

    assert len(finding["Description"]) == Limits.DESCRIPTION
    assert finding["Description"].endswith(" wo (truncated)")  # cut at 1,024 characters, not at a word


def test_control_and_bidi_characters_are_stripped(convert: Convert) -> None:
    [finding] = convert(
        health_event(
            eventDescription=[description("en_US", "line one\nline two\u202e\x1b[2J")],
            eventTypeCode="AWS_IAM_SECURITY_NOTIFICATION\u202e",
        )
    )

    assert finding["Description"] == "line one line two[2J"
    assert finding["Title"] == "AWS Health - AWS_IAM_SECURITY_NOTIFICATION"


def test_an_upcoming_event_is_not_created_in_the_future(convert: Convert) -> None:
    [finding] = convert(health_event(startTime="Mon, 10 Jan 2022 08:00:00 GMT", statusCode="upcoming"))

    assert finding["CreatedAt"] == finding["UpdatedAt"] == "2022-01-07T19:17:43.000Z"
    assert finding["Id"].endswith("/" + hashlib.sha256(b"2022-01-10T08:00:00.000Z").hexdigest().upper())


@pytest.mark.parametrize("field", ["startTime", "endTime", "lastUpdatedTime"])
def test_a_bad_time_is_refused_naming_it(convert: Convert, field: str) -> None:
    with pytest.raises(EventDecodeError, match=rf"^{field}: not an ISO 8601 or RFC 1123 time"):
        convert(health_event(**{field: "the seventh of January"}))


def test_a_bad_envelope_time_is_refused_naming_it(convert: Convert) -> None:
    with pytest.raises(EventDecodeError, match=r"^time: "):
        convert(health_event({"time": "soon"}))


def test_an_abuse_event_without_a_status_or_event_region_is_an_open_finding_of_the_envelope_s_region(
    convert: Convert,
) -> None:
    event = health_event(
        {"detail-type": "AWS Health Abuse Event", "region": "global"},
        service="ABUSE", eventTypeCode="AWS_ABUSE_DOS_REPORT", statusCode=..., eventRegion=...,
    )  # fmt: skip  # as AWS's example of an abuse event has it

    [finding] = convert(event)

    assert (finding["Severity"]["Label"], finding["ProductFields"]["StatusCode"]) == ("HIGH", "open")
    assert finding["ProductArn"].split(":")[3] == "us-east-1"
