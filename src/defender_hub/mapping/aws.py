"""Names AWS gives things: partitions, ARNs, the custom-integration product ARN, console links."""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources
from typing import NamedTuple
from urllib.parse import quote

import msgspec

from defender_hub.codecs.asff_rules import ACCOUNT_ID
from defender_hub.errors import EventMappingError
from defender_hub.mapping.options import MappingOptions

__all__ = [
    "REGION",
    "Origin",
    "OriginResolver",
    "account_resource_id",
    "console_host",
    "console_url",
    "iot_arn",
    "partition_of",
    "product_arn",
    "region_problem",
    "resolve_origin",
    "securityhub_regions",
    "url_part",
]

_CONSOLE_HOSTS = {
    "aws": "console.aws.amazon.com",
    "aws-cn": "console.amazonaws.cn",
    "aws-us-gov": "console.amazonaws-us-gov.com",
}
REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d{1,2}")
_URL_SAFE = re.compile(r"[A-Za-z0-9_.:-]*")


class Origin(NamedTuple):
    """Where a finding comes from: its account, Region and partition."""

    account_id: str
    region: str
    partition: str


def partition_of(region: str) -> str:
    """Returns the partition a Region belongs to."""
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


@lru_cache(maxsize=1)
def _securityhub_endpoints() -> dict[str, frozenset[str]]:
    data = (resources.files("botocore") / "data" / "endpoints.json").read_bytes()
    partitions = msgspec.json.decode(data)["partitions"]
    return {
        partition["partition"]: frozenset(partition["services"].get("securityhub", {}).get("endpoints", {}))
        for partition in partitions
    }


def securityhub_regions(partition: str) -> frozenset[str]:
    """The Regions of `partition` where Security Hub has an endpoint, as botocore's endpoint data lists them."""
    return _securityhub_endpoints().get(partition, frozenset())


def region_problem(region: str, partition: str | None = None) -> str | None:
    """Why findings can't be imported in `region` (of `partition`, else the Region's own); None when they can."""
    if not REGION.fullmatch(region):
        return f"region {region[:40]!r} is not an AWS Region name"
    partition = partition or partition_of(region)
    if region not in securityhub_regions(partition):
        return f"region {region!r} has no Security Hub endpoint in partition {partition}: a typo?"
    return None


@lru_cache(maxsize=256)
def _checked_origin(account_id: str, region: str, partition: str | None) -> Origin:
    if not ACCOUNT_ID.fullmatch(account_id):
        raise EventMappingError(f"account id {account_id[:40]!r} is not 12 digits")
    problem = region_problem(region, partition)
    if problem is not None:  # a finding there could never be delivered: refused here, never sent
        raise EventMappingError(problem)
    return Origin(account_id, region, partition or partition_of(region))


def resolve_origin(account_id: str | None, region: str | None, options: MappingOptions) -> Origin:
    """Returns the event's origin, filling gaps from `options`; raises EventMappingError when one stays unknown."""
    account_id = account_id or options.account_id
    region = region or options.region
    if account_id is None:
        raise EventMappingError("no account id: the event has none and none is configured (--default-account)")
    if region is None:
        raise EventMappingError("no region: the event has none and none is configured (--region)")
    return _checked_origin(account_id, region, options.partition)


class OriginResolver:
    """`resolve_origin` for one set of options, remembering the few (account, Region) pairs a stream carries."""

    def __init__(self, options: MappingOptions) -> None:
        self._options = options
        self._known: dict[tuple[str | None, str | None], Origin] = {}

    def __call__(self, account_id: str | None, region: str | None) -> Origin:
        """Returns the origin of an event that names `account_id` and `region` (either may be None)."""
        origin = self._known.get((account_id, region))
        if origin is None:
            origin = resolve_origin(account_id, region, self._options)
            if len(self._known) < 1024:
                self._known[(account_id, region)] = origin
        return origin


@lru_cache(maxsize=256)
def product_arn(origin: Origin) -> str:
    """Returns the account's custom-integration product ARN, under which a customer may import."""
    partition, region, account = origin.partition, origin.region, origin.account_id
    return f"arn:{partition}:securityhub:{region}:{account}:product/{account}/default"


def account_resource_id(account_id: str) -> str:
    """Returns how a finding names an account as its resource, as Security Hub's own controls do."""
    return f"AWS::::Account:{account_id}"


def console_host(partition: str) -> str:
    """Returns the host of the AWS Management Console in `partition`, e.g. `console.amazonaws.cn`."""
    return _CONSOLE_HOSTS.get(partition, _CONSOLE_HOSTS["aws"])


@lru_cache(maxsize=256)
def _console_home(origin: Origin) -> str:
    host = console_host(origin.partition)
    return f"https://{origin.region}.{host}/iot/home?region={origin.region}#"


def console_url(origin: Origin, fragment: str) -> str:
    """Returns the AWS IoT console link to `fragment` (e.g. `/policy/name`) in the origin's partition and Region."""
    return _console_home(origin) + fragment


def url_part(value: str) -> str:
    """Returns `value` safe to put in a URL path."""
    return value if _URL_SAFE.fullmatch(value) else quote(value, safe="")


def iot_arn(origin: Origin, resource: str) -> str:
    """Returns the ARN of an AWS IoT resource such as `thing/name`."""
    return f"arn:{origin.partition}:iot:{origin.region}:{origin.account_id}:{resource}"
