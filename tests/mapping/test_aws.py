"""Partitions, product ARNs and console links."""

from __future__ import annotations

import pytest

from defender_hub.errors import EventMappingError
from defender_hub.mapping.aws import Origin, console_url, partition_of, product_arn, resolve_origin, url_part
from defender_hub.mapping.options import MappingOptions


@pytest.mark.parametrize(
    ("region", "partition"),
    [("us-east-1", "aws"), ("eu-central-2", "aws"), ("cn-northwest-1", "aws-cn"), ("us-gov-east-1", "aws-us-gov")],
)
def test_the_partition_follows_the_region(region: str, partition: str) -> None:
    assert partition_of(region) == partition


def test_a_configured_partition_wins() -> None:
    origin = resolve_origin("123456789012", "us-iso-east-1", MappingOptions(partition="aws-iso"))

    assert origin.partition == "aws-iso"  # the Region's name alone would say aws, which has no us-iso-east-1


def test_the_product_arn_is_the_accounts_default_product() -> None:
    origin = Origin("123456789012", "eu-west-1", "aws")

    assert product_arn(origin) == "arn:aws:securityhub:eu-west-1:123456789012:product/123456789012/default"


def test_console_links_are_regional() -> None:
    assert console_url(Origin("123456789012", "cn-north-1", "aws-cn"), "/thing/t") == (
        "https://cn-north-1.console.amazonaws.cn/iot/home?region=cn-north-1#/thing/t"
    )


def test_url_parts_are_quoted_only_when_needed() -> None:
    assert url_part("thing-1:a_b.c") == "thing-1:a_b.c"
    assert url_part("a/b c#d") == "a%2Fb%20c%23d"


def test_missing_context_is_an_error() -> None:
    with pytest.raises(EventMappingError, match="account"):
        resolve_origin(None, "us-east-1", MappingOptions())
