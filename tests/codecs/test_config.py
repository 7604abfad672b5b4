"""Decoding AWS Config events: compliance changes whole, every other Config event skipped, bad ones refused plainly."""

from __future__ import annotations

import json
from typing import Any

import pytest

from defender_hub.codecs.config import NOT_A_COMPLIANCE_CHANGE, ConfigComplianceChange
from defender_hub.codecs.decoding import EventDecoder
from defender_hub.errors import EventDecodeError, EventSkipped
from tests.codecs.sources import config_event, evaluation


@pytest.fixture
def decoder() -> EventDecoder:
    return EventDecoder()


def encode(value: Any) -> bytes:
    return json.dumps(value).encode()


def test_a_compliance_change_decodes_whole_envelope_and_detail(decoder: EventDecoder) -> None:
    event = decoder.decode(encode(config_event()))

    assert isinstance(event, ConfigComplianceChange)
    assert (event.account, event.region, event.time) == ("123456789012", "eu-central-1", "2022-04-19T21:20:15Z")
    assert event.detail_type == "Config Rules Compliance Change"
    detail = event.detail
    assert detail.config_rule_arn == "arn:aws:config:eu-central-1:123456789012:config-rule/config-rule-mburzq"
    assert (detail.resource_type, detail.resource_id) == ("AWS::S3::Bucket", "config-integration-demo-bucket")
    assert detail.new_evaluation_result.compliance_type == "NON_COMPLIANT"
    assert detail.old_evaluation_result is not None
    assert detail.old_evaluation_result.compliance_type == "COMPLIANT"


def test_a_first_evaluation_has_no_old_result(decoder: EventDecoder) -> None:
    event = decoder.decode(encode(config_event(oldEvaluationResult=None)))

    assert isinstance(event, ConfigComplianceChange)
    assert event.detail.old_evaluation_result is None


def test_an_sns_envelope_around_it_is_unwrapped(decoder: EventDecoder) -> None:
    wrapped = {"Type": "Notification", "TopicArn": "arn:aws:sns:eu-west-1:111122223333:t", "Message": "x"}
    wrapped["Message"] = json.dumps(config_event())

    event = decoder.decode(encode(wrapped))

    assert isinstance(event, ConfigComplianceChange)
    assert event.account == "123456789012"  # the event's own, not the topic's


@pytest.mark.parametrize(
    "detail_type", ["Config Configuration Item Change", "Config Configuration Snapshot Delivery Status", ""]
)
def test_every_other_detail_type_is_skipped_whatever_its_detail(decoder: EventDecoder, detail_type: str) -> None:
    other = config_event({"detail-type": detail_type, "detail": {"configurationItem": {"anything": [1]}}})

    with pytest.raises(EventSkipped) as skipped:
        decoder.decode(encode(other))

    assert (skipped.value.reason, skipped.value.source) == (NOT_A_COMPLIANCE_CHANGE, "config")


def test_another_message_type_is_skipped(decoder: EventDecoder) -> None:
    with pytest.raises(EventSkipped, match=NOT_A_COMPLIANCE_CHANGE):
        decoder.decode(encode(config_event(messageType="OversizedConfigurationItemChangeNotification")))


def test_a_skip_is_no_event_error() -> None:
    assert not issubclass(EventSkipped, EventDecodeError)


BAD = {
    "no rule ARN": (
        config_event(configRuleARN=...),
        "config event: the required field detail.configRuleARN is missing",
    ),
    "no detail": (
        {k: v for k, v in config_event().items() if k != "detail"},
        "config event: the required field detail is missing",
    ),
    "no time": (
        {k: v for k, v in config_event().items() if k != "time"},
        "config event: the required field time is missing",
    ),
    "resource id a number": (config_event(resourceId=7), "config event: detail.resourceId is a whole number"),
    "no compliance": (
        config_event(newEvaluationResult={k: v for k, v in evaluation().items() if k != "complianceType"}),
        "config event: the required field detail.newEvaluationResult.complianceType is missing",
    ),
    "compliance null": (
        config_event(newEvaluationResult=evaluation(complianceType=None)),
        "config event: detail.newEvaluationResult.complianceType is null, not a string",
    ),
    "evaluation a list": (
        config_event(newEvaluationResult=[1]),
        "config event: detail.newEvaluationResult is an array, not an object",
    ),
    "no detail-type": (
        {k: v for k, v in config_event().items() if k != "detail-type"},
        "config event: the required field detail-type is missing",
    ),
    "detail-type a number": (config_event({"detail-type": 3}), "detail-type is a whole number, not a string or null"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_a_malformed_compliance_change_is_refused_with_a_plain_reason(decoder: EventDecoder, name: str) -> None:
    event, reason = BAD[name]

    with pytest.raises(EventDecodeError) as raised:
        decoder.decode(encode(event))

    assert str(raised.value).startswith(reason)
