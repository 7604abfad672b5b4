"""Lanes: each account and Region imports with its own client, its own quota and its own credentials.

Security Hub takes a custom finding only from the account it belongs to, in the Region its product ARN names, and
its quota is per account and Region (facts.md §6). So a finding of account A in Region R is imported in lane (A, R):
with the caller's own credentials when A is the caller's account, else with a role assumed in A (`--assume-role`),
through botocore's own refreshable credentials.
"""

from __future__ import annotations

import functools
import os
import re
import string
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import boto3
import botocore.session
from botocore.config import Config
from botocore.credentials import AssumeRoleCredentialFetcher, CredentialProvider, DeferredRefreshableCredentials

from defender_hub.aws_config import aws_config
from defender_hub.codecs.asff import Finding
from defender_hub.errors import NO_CREDENTIALS, ConfigError, LaneRefused
from defender_hub.mapping.aws import region_problem

__all__ = [
    "DEFAULT_CONFIG",
    "UNVALIDATED",
    "EncodedFindings",
    "Lane",
    "SecurityHubClients",
    "check_external_id",
    "check_role",
    "role_arn",
    "securityhub_clients",
]

DEFAULT_CONFIG = aws_config(attempts=4)
"""botocore's adaptive retries: a few tries of throttling, 5xx and connection errors, and a client-side token
bucket that follows throttling, which is what keeps several processes sharing one lane's quota from stampeding."""
UNVALIDATED = Config(parameter_validation=False)
"""What every lane's client adds to its Config: botocore's parameter validation off, signing and retries as they
are. Validating a request of 100 findings took more CPU than anything else a finding costs on its way."""
ROLE_SESSION_NAME = "defender-hub"
_ROLE_NAME = re.compile(r"[\w+=,.@/-]{1,512}")
_ROLE_ARN = re.compile(r"arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}", re.ASCII)
_TEMPLATE_FIELDS = frozenset({"partition", "account"})
_BODY = "defender_hub_body"
"""Where a request's body waits in botocore's context of the call, from the parameters' build to the call."""
_EXTERNAL_ID = re.compile(r"[\w+=,.@:/-]{2,1224}", re.ASCII)
"""What STS takes as an ExternalId; botocore refuses anything else before it asks, for every member account."""


@dataclass(frozen=True, slots=True)
class Lane:
    """An account and Region findings are imported in, with the partition they belong to."""

    partition: str
    account: str
    region: str

    @classmethod
    def of(cls, doc: dict[str, Any]) -> Lane:
        """The lane of a finding: the Region and account of its product ARN (its AwsAccountId for AWS's products)."""
        return _lane_of(str(doc.get("ProductArn", "")), str(doc.get("AwsAccountId", "")))

    @classmethod
    def of_finding(cls, finding: Finding | Mapping[str, Any]) -> Lane:
        """The lane of a finding as mapped, or as parsed JSON."""
        if isinstance(finding, Finding):
            return cls.of({"ProductArn": finding.product_arn, "AwsAccountId": finding.aws_account_id})
        return cls.of(dict(finding))

    def __str__(self) -> str:
        return f"{self.account}/{self.region}"


@functools.lru_cache(maxsize=4096)
def _lane_of(product_arn: str, account_id: str) -> Lane:
    """`Lane.of` for a finding's ProductArn and AwsAccountId, kept for the next finding of the same: a worker imports in
    few lanes, and every finding it sends asks for its lane twice."""
    parts = product_arn.split(":")
    parts += [""] * (5 - len(parts))
    return Lane(parts[1], parts[4] or account_id, parts[3])


def check_role(template: str) -> None:
    """Raises ConfigError unless `template` is a role name (with its path) or a role ARN template with {account}
    (and, if it likes, {partition}) and no other placeholder."""
    if _ROLE_NAME.fullmatch(template) or _role_template(template):
        return
    raise ConfigError(
        f"--assume-role {template[:100]!r}: give a role name (defender-hub-import) or a role ARN template with "
        "{account} and no other placeholder (arn:{partition}:iam::{account}:role/NAME)"
    )


def _role_template(template: str) -> bool:
    """Whether `template` makes a role ARN for any account: {account} in it, no placeholder but those role_arn fills."""
    if not template.startswith("arn:"):
        return False
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError:  # a lone brace
        return False
    if "account" not in fields or not fields <= _TEMPLATE_FIELDS:
        return False
    return _ROLE_ARN.fullmatch(role_arn(template, "aws", "123456789012")) is not None


def check_external_id(external_id: str) -> None:
    """Raises ConfigError unless STS would take `external_id` (2 to 1,224 of letters, digits and `+=,.@:/-_`)."""
    if not _EXTERNAL_ID.fullmatch(external_id):
        raise ConfigError(
            f"--external-id: STS takes 2 to 1,224 letters, digits and + = , . @ : / - _ only, not "
            f"{len(external_id)} characters like {external_id[:20]!r}"
        )


def role_arn(template: str, partition: str, account: str) -> str:
    """The role to assume in `account`: `template` is a role name (with its path) or an ARN with {partition} and
    {account}."""
    if template.startswith("arn:"):
        return template.format(partition=partition, account=account)
    return f"arn:{partition}:iam::{account}:role/{template}"


class _AssumedRole(CredentialProvider):  # type: ignore[misc]  # botocore has no type hints
    """Gives a botocore session the credentials of a role, fetched when first needed and refreshed before expiry."""

    METHOD = "assume-role"

    def __init__(self, credentials: DeferredRefreshableCredentials) -> None:
        super().__init__()
        self._credentials = credentials

    def load(self) -> DeferredRefreshableCredentials:
        """The role's credentials."""
        return self._credentials


class EncodedFindings(list[Any]):
    """A request's findings as their bodies (`EncodedFinding.body`): a lane's client sends them, joined as botocore
    would join them, as the request's body, rather than have botocore encode each finding again. botocore's encoding
    walks every value of a finding against its shape, which was half of the CPU the worker's sender spent.

    As a list it is empty: a client not made by SecurityHubClients would send no findings, so iterating it raises.
    """

    def __init__(self, bodies: Iterable[bytes]) -> None:
        super().__init__()
        self.body = b'{"Findings": [' + b", ".join(bodies) + b"]}"

    def __iter__(self) -> Iterator[Any]:
        raise TypeError("encoded findings reached a client that can't send them: make it with SecurityHubClients")


def _take_body(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
    """Before botocore builds BatchImportFindings' body: keeps the findings' own body for the call."""
    findings = params.get("Findings")
    if isinstance(findings, EncodedFindings):
        context[_BODY] = findings.body
        params["Findings"] = []


def _put_body(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
    """Before the call (and its signing, each attempt's): the body kept replaces the one botocore built."""
    body = context.pop(_BODY, None)
    if body is not None:
        params["body"] = body


class SecurityHubClients:
    """Security Hub clients by lane, made once each: the caller's own session for its own account, a role assumed in
    any other (with `assume_role`). They send with botocore's parameter validation off, whatever `config` says, and
    take BatchImportFindings' findings as `EncodedFindings`.

    Raises LaneRefused for a lane no client can serve: a Region without Security Hub, another account without a
    role to assume.
    """

    def __init__(
        self,
        session: boto3.Session,
        *,
        assume_role: str | None = None,
        external_id: str | None = None,
        own_account: str | None = None,
        config: Config = DEFAULT_CONFIG,
        **overrides: Any,
    ) -> None:
        if assume_role is not None:
            check_role(assume_role)
        if external_id is not None:
            check_external_id(external_id)
        self.assume_role, self._external_id = assume_role, external_id
        # These clients make two calls and no other, each with parameters botocore's validation has nothing to add
        # to. BatchImportFindings (lane_delivery.py) sends findings the sink has screened first, for Security Hub's
        # rules (asff_rules.py) and for the shape botocore checked (shapes.py). BatchUpdateFindings (workflow.py)
        # sends identifiers and a status that defender-hub builds itself, as strings, from the ledger's key of a
        # finding Security Hub accepted and the lifecycle's status; whatever Security Hub then refuses in them is
        # left owed, as botocore's refusal was. STS, for a role's credentials, has clients of its own.
        self._config = config.merge(UNVALIDATED)
        self._session, self._own, self._overrides = session, own_account, overrides
        self._made: dict[Lane, Any] = {}
        self._lock = threading.Lock()  # sessions are not thread-safe; lanes are delivered from several threads
        self._session_lock = threading.Lock()
        """Held while the session makes a client: a role's credentials are refreshed from any lane's thread."""

    def own_account(self) -> str:
        """The caller's account: as configured, else STS GetCallerIdentity's answer (asked once)."""
        if self._own is None:
            self._own = str(self._session_client("sts").get_caller_identity()["Account"])
        return self._own

    def _session_client(self, service: str, **arguments: Any) -> Any:
        """A client of the caller's session, made under the session's lock."""
        with self._session_lock:
            return self._session.client(service, **arguments)

    def __call__(self, lane: Lane) -> Any:
        """The client of `lane`; raises LaneRefused when it can have none."""
        with self._lock:
            if lane not in self._made:
                problem = region_problem(lane.region, lane.partition or None)
                if problem is not None:
                    raise LaneRefused(problem, "UnknownEndpoint")
                session = self._session_for(lane)
                with self._session_lock:
                    client = session.client(
                        "securityhub", region_name=lane.region, config=self._config, **self._overrides
                    )
                client.meta.events.register("before-parameter-build.securityhub.BatchImportFindings", _take_body)
                client.meta.events.register("before-call.securityhub.BatchImportFindings", _put_body)
                self._made[lane] = client
            return self._made[lane]

    def _session_for(self, lane: Lane) -> boto3.Session:
        if self.assume_role is None or lane.account == self.own_account():
            return self._session
        fetcher = AssumeRoleCredentialFetcher(
            client_creator=self._session_client,
            source_credentials=self._session.get_credentials(),
            role_arn=role_arn(self.assume_role, lane.partition, lane.account),
            extra_args={
                "RoleSessionName": ROLE_SESSION_NAME,
                **({"ExternalId": self._external_id} if self._external_id else {}),
            },
        )
        assumed = botocore.session.Session()
        # The caller's loader: each lane would otherwise load and keep its own copy of the service models.
        assumed.register_component("data_loader", self._session._session.get_component("data_loader"))
        assumed.get_component("credential_provider").insert_before(
            "env", _AssumedRole(DeferredRefreshableCredentials(fetcher.fetch_credentials, "assume-role"))
        )
        return boto3.Session(botocore_session=assumed, region_name=lane.region)

    def hint(self, lane: Lane) -> str:
        """What to look at when Security Hub refuses `lane`."""
        if lane.account == self._own:
            return (
                f"check that Security Hub is enabled in {lane.account}/{lane.region}, the integration accepted, and "
                "these credentials may securityhub:BatchImportFindings there"
            )
        if self.assume_role is None:
            return (
                f"each account's findings are imported as that account: give --assume-role NAME to import account "
                f"{lane.account}'s through a role in it (README: Several accounts), or check that Security Hub is "
                f"enabled in {lane.account}/{lane.region} and these credentials may import there"
            )
        role = role_arn(self.assume_role, lane.partition, lane.account)
        return (
            f"check that Security Hub is enabled in {lane.account}/{lane.region} and that {role} exists, trusts "
            "this consumer (with the external ID) and may securityhub:BatchImportFindings on its own product"
        )


def securityhub_clients(
    *, assume_role: str | None = None, external_id: str | None = None, own_account: str | None = None
) -> SecurityHubClients:
    """Returns Security Hub clients by lane, with the standard AWS configuration and adaptive retries.

    Endpoint and credentials come from the usual places (AWS_ENDPOINT_URL_SECURITYHUB or AWS_ENDPOINT_URL, the
    credential chain). Raises ConfigError when there are no credentials, rather than retrying what no retry can fix.
    """
    session = boto3.Session(region_name=os.environ.get("AWS_REGION") or None)
    if session.get_credentials() is None:
        raise ConfigError(NO_CREDENTIALS)
    return SecurityHubClients(session, assume_role=assume_role, external_id=external_id, own_account=own_account)
