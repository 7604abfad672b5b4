"""The AWS Region the commands use, and botocore's errors said in one line with the exit status they end in."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from defender_hub.commands.common import EXIT_FAILURES, EXIT_USAGE
from defender_hub.errors import NO_CREDENTIALS, ConfigError

if TYPE_CHECKING:
    from botocore.exceptions import BotoCoreError, ClientError

__all__ = ["aws_failure", "aws_region"]

_NO_REGION = (
    "no AWS Region: set AWS_REGION, or region in the profile AWS_PROFILE names, or give --region where the command "
    "has it"
)


def aws_region() -> str:
    """The Region AWS clients use, found as boto3 and the AWS CLI find it: AWS_REGION, else AWS_DEFAULT_REGION, else
    the region of the profile AWS_PROFILE names; a ConfigError when none is set."""
    import botocore.session  # noqa: PLC0415 - botocore for AWS commands only

    # botocore reads AWS_DEFAULT_REGION and the profile, but not AWS_REGION, which the AWS SDKs and the AWS CLI v2
    # read first: it is looked at here, before botocore.
    region = os.environ.get("AWS_REGION") or botocore.session.get_session().get_config_variable("region")
    if not region:
        raise ConfigError(_NO_REGION)
    return str(region)


def _shown(url: str) -> str:
    """`url` without what may be secret in it: user and password, query."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))


def _origin(url: str) -> tuple[str, str]:
    """The scheme and the host (and port) of `url`, which name the endpoint it is on."""
    parts = urlsplit(url)
    return parts.scheme, parts.netloc.rpartition("@")[2].lower()


def _unreachable(url: str) -> str:
    """What to check when `url` can't be reached: the variables that set it, else the network and the Region."""
    setting = sorted(
        name
        for name, value in os.environ.items()
        if name.startswith("AWS_ENDPOINT_URL") and value and _origin(value) == _origin(url)
    )
    if setting:
        return f"cannot reach {_shown(url)}: check {' or '.join(setting)}, and that something serves it"
    return (
        f"cannot reach {_shown(url)}: check the network and the Region (AWS_REGION), or set "
        "AWS_ENDPOINT_URL_<SERVICE> to the endpoint to use"
    )


def _one_line(text: str) -> str:
    """`text` on one line, cut short: an error answer of AWS may go on."""
    joined = " ".join(text.split())
    return joined if len(joined) <= 300 else f"{joined[:299]}…"


def aws_failure(error: BaseException) -> tuple[int, str] | None:
    """The exit status and the line (after "defender-hub: ") that say `error` when it is botocore's about credentials,
    a profile, the Region, an endpoint, a connection or an error answer of AWS, naming what to set but never a
    credential; None for any other error."""
    from botocore import exceptions as aws  # noqa: PLC0415 - loaded only once a command has failed

    if isinstance(error, aws.ClientError):
        return _answered(error)
    if isinstance(error, aws.ConnectionError | aws.HTTPClientError):
        return _connection_failed(error)
    if isinstance(error, aws.BotoCoreError):
        return _misconfigured(error)
    return None


def _misconfigured(error: BotoCoreError) -> tuple[int, str] | None:
    """`aws_failure` of botocore's errors about credentials, a profile and the Region; None for the others."""
    from botocore import exceptions as aws  # noqa: PLC0415

    if isinstance(error, aws.NoCredentialsError):
        return EXIT_USAGE, f"configuration error: {NO_CREDENTIALS}"
    if isinstance(error, aws.PartialCredentialsError | aws.SSOError):
        return EXIT_USAGE, f"configuration error: {error}"  # botocore's words name the variable missing, or what to run
    if isinstance(error, aws.CredentialRetrievalError | aws.TokenRetrievalError):
        # Only the provider is named: its error message may quote what the provider answered.
        provider = error.kwargs.get("provider", "the credential chain")
        return EXIT_USAGE, f"configuration error: no AWS credentials from {provider}: check AWS_PROFILE and its profile"
    if isinstance(error, aws.ProfileNotFound):
        files = (
            os.environ.get("AWS_CONFIG_FILE") or "~/.aws/config",
            os.environ.get("AWS_SHARED_CREDENTIALS_FILE") or "~/.aws/credentials",
        )
        return EXIT_USAGE, (
            f"configuration error: there is no AWS profile {error.kwargs.get('profile')!r} in {files[0]} or "
            f"{files[1]}: check AWS_PROFILE"
        )
    if isinstance(error, aws.NoRegionError):
        return EXIT_USAGE, f"configuration error: {_NO_REGION}"
    return None


def _connection_failed(error: BotoCoreError) -> tuple[int, str]:
    """`aws_failure` of a connection's errors: none made is the endpoint's setting or the network to fix (2); one made
    but timed out or closed before an answer is the endpoint having a bad moment, which running again may get past
    (1)."""
    from botocore import exceptions as aws  # noqa: PLC0415

    if isinstance(error, aws.ProxyConnectionError):
        return EXIT_USAGE, (
            f"configuration error: cannot reach the proxy {_shown(error.kwargs.get('proxy_url', ''))}: check "
            "HTTPS_PROXY and HTTP_PROXY"
        )
    url = error.kwargs.get("endpoint_url")
    if isinstance(error, aws.EndpointConnectionError | aws.ConnectTimeoutError):
        return EXIT_USAGE, (
            f"configuration error: {_unreachable(url)}"
            if url
            else f"configuration error: cannot reach AWS: {type(error).__name__}: check the network"
        )
    where = _shown(url) if url else "AWS"
    if isinstance(error, aws.SSLError):  # a certificate no retry will change: the endpoint or the trust store
        return EXIT_USAGE, (
            f"configuration error: the TLS connection to {where} failed ({_one_line(str(error))[:200]}): check the "
            "endpoint's URL, and AWS_CA_BUNDLE where a proxy or a private endpoint has its own certificate"
        )
    if isinstance(error, aws.ReadTimeoutError):
        return EXIT_FAILURES, f"{where} did not answer in time (a read timeout): run again later"
    if isinstance(error, aws.ConnectionClosedError):
        return EXIT_FAILURES, f"{where} closed the connection without an answer: run again later"
    return EXIT_FAILURES, f"the connection to {where} failed ({type(error).__name__}): check the network, and run again"


def _answered(error: ClientError) -> tuple[int, str]:
    """`aws_failure` of an error answer of AWS: a refusal of the credentials is configuration, the rest run time."""
    answer = error.response.get("Error", {})
    code = answer.get("Code") or "an error"
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    message = _one_line(str(answer.get("Message", "")))
    if status in (401, 403):
        return EXIT_USAGE, (
            f"configuration error: AWS refused {error.operation_name} ({code}, {status}): {message}; check the "
            "credentials (AWS_PROFILE, AWS_ACCESS_KEY_ID) and what they may do"
        )
    return EXIT_FAILURES, f"AWS answered {error.operation_name} with {code} ({status}): {message}"
