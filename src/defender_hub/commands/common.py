"""What the commands share: exit statuses, DEFENDER_HUB_* variables, the AWS Region, the mapping and delivery flags,
stop signals and deadlines, summaries, and botocore's errors said in one line."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from defender_hub.config import (
    DEAD_LETTERS_FILE,
    LEDGER_FILE,
    OUTAGE_LIMIT_SECONDS,
    RUN_SETTINGS,
    STATE_DIR_HELP,
    default_dead_letters,
    default_ledger,
    refuse_former_defaults,
)
from defender_hub.errors import ConfigError, SinkError, SinkStopped
from defender_hub.lifecycle import MAX_CLOCK_SKEW_MINUTES

if TYPE_CHECKING:
    from defender_hub.checkpoints.opening import DeliverySettings
    from defender_hub.sink import DeliveryReport

__all__ = [
    "ASSUME_ROLE_HELP",
    "EXIT_FAILURES",
    "EXIT_OK",
    "EXIT_USAGE",
    "Deadline",
    "aws_failure",
    "aws_region",
    "deadline_flag",
    "delivery_flags",
    "delivery_settings",
    "env",
    "mapping_flags",
    "stop_on_signals",
    "summary",
]

ASSUME_ROLE_HELP = (
    "import each other account's findings as that account, through this role in it: a name, or an ARN template "
    "arn:{partition}:iam::{account}:role/NAME (default: none; such findings are parked)"
)
EXIT_OK = 0
EXIT_FAILURES = 1
"""Some of the work failed at run time: lines not converted, put or forwarded, findings left undelivered (a stop, a
deadline, dead letters or a ledger that failed), an error answer of AWS, the daemon ended in failure."""
EXIT_USAGE = 2
"""The command was used or set up wrongly: flags, settings, credentials, the Region, an endpoint nothing serves, AWS
refusing the credentials. argparse's own code for bad usage."""
_NO_REGION = (
    "no AWS Region: set AWS_REGION, or region in the profile AWS_PROFILE names, or give --region where the command "
    "has it"
)
_FORMER_ACCOUNT_FLAG = "--account-id"
_FORMER_ACCOUNT_VARIABLE = "ACCOUNT_ID"
"""The one account flag and variable (after DEFENDER_HUB_) of before, with two meanings: still taken, with a warning."""
_DEFAULT_ACCOUNT_MEANING = "the account of events that carry none"
_IMPORT_ACCOUNT_MEANING = "the account imported into without a role"


def env(name: str) -> str | None:
    """The value of DEFENDER_HUB_`name`, or None when it is unset or empty."""
    return os.environ.get(f"DEFENDER_HUB_{name}") or None


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


def _say_deprecated(former: str, current: str, meaning: str) -> None:
    """Says on stderr, in one line, that `former` is deprecated and `current` is the name to use."""
    print(f"defender-hub: warning: {former} is deprecated here: use {current} ({meaning})", file=sys.stderr)


class _FormerVariableValue(str):
    """An account read from DEFENDER_HUB_ACCOUNT_ID for a flag's default: argparse passes a string default through
    the flag's `type` only when the flag is not given, which is when its deprecation is said."""

    __slots__ = ()


def _account_type(variable: str, meaning: str) -> Callable[[str], str]:
    """The `type` of an account flag: the account as given, with a warning when it came from the former variable."""

    def account(value: str) -> str:
        if isinstance(value, _FormerVariableValue):
            _say_deprecated(f"DEFENDER_HUB_{_FORMER_ACCOUNT_VARIABLE}", f"DEFENDER_HUB_{variable}", meaning)
        return str(value)

    return account


class _FormerAccountFlag(argparse.Action):
    """--account-id where it was: stores the account as the flag that took its place does, and says to use that."""

    def __init__(self, option_strings: Sequence[str], dest: str, *, current: str, meaning: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, **kwargs)
        self._current, self._meaning = current, meaning

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        _say_deprecated(_FORMER_ACCOUNT_FLAG, self._current, self._meaning)
        setattr(namespace, self.dest, values)


def _account_flag(parser: argparse.ArgumentParser, name: str, meaning: str, default_help: str) -> None:
    """Adds --`name` (and DEFENDER_HUB_`NAME`) for the account `meaning` says, as the `account_id` the commands read,
    with --account-id and DEFENDER_HUB_ACCOUNT_ID still taken, with a warning, where they had this meaning."""
    flag, variable = f"--{name}", name.upper().replace("-", "_")
    former = env(_FORMER_ACCOUNT_VARIABLE)
    parser.add_argument(
        flag,
        dest="account_id",
        type=_account_type(variable, meaning),
        default=env(variable) or (_FormerVariableValue(former) if former else None),
        metavar="ACCOUNT",
        help=f"{meaning} (DEFENDER_HUB_{variable}; default: {default_help})",
    )
    parser.add_argument(
        _FORMER_ACCOUNT_FLAG,
        dest="account_id",
        action=_FormerAccountFlag,
        current=flag,
        meaning=meaning,
        default=argparse.SUPPRESS,
        metavar="ACCOUNT",
        help=f"deprecated: the same as {flag} (default: none)",
    )


def mapping_flags(parser: argparse.ArgumentParser, *, account_flag: bool = True) -> None:
    """Adds the flags that shape findings: the default account (unless `delivery_flags` has the import account),
    Region, partition, settings file."""
    if account_flag:
        _account_flag(parser, "default-account", _DEFAULT_ACCOUNT_MEANING, "none, such events are refused")
    parser.add_argument(
        "--region",
        default=env("REGION"),
        help="Region for events that carry none, e.g. us-east-1 (DEFENDER_HUB_REGION; default: none)",
    )
    parser.add_argument(
        "--partition", default=env("PARTITION"), help="aws, aws-cn or aws-us-gov (default: the Region's)"
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=env("CONFIG"),
        metavar="FILE",
        help="TOML settings file (DEFENDER_HUB_CONFIG; default: none)",
    )


def delivery_flags(
    parser: argparse.ArgumentParser, *, ledger_by_default: bool, account_flag: bool = True, run: bool = False
) -> None:
    """Adds the flags of where findings go: state directory, dead letters, ledger, the import account (unless
    `mapping_flags` has the default account), the clock skew allowed. For `run`, those its settings file may also set
    default to None: it resolves them once parsed (flag, then DEFENDER_HUB_<NAME>, then the file, then the default)."""

    def default(name: str, value: object = None) -> object:
        if run and name in RUN_SETTINGS:
            return None
        return env(name.upper()) if value is None else value

    parser.add_argument("--state-dir", metavar="DIR", default=default("state_dir"), help=STATE_DIR_HELP)
    parser.add_argument(
        "--dead-letter",
        default=default("dead_letter"),
        metavar="PATH|SQS_URL",
        help="where rejected findings and records go: a JSON-lines file or an SQS queue URL "
        f"(DEFENDER_HUB_DEAD_LETTER; default: {DEAD_LETTERS_FILE} in the state directory)",
    )
    parser.add_argument(
        "--dead-letter-overflow",
        default=default("dead_letter_overflow"),
        metavar="S3_URI",
        help="s3://BUCKET/PREFIX for dead letters too large for the SQS queue (a pointer goes in the queue) "
        "(DEFENDER_HUB_DEAD_LETTER_OVERFLOW; default: none)",
    )
    parser.add_argument(
        "--ledger",
        default=default("ledger") if ledger_by_default else None,  # import: only when asked
        metavar="URL",
        help="the findings ledger: sqlite:///PATH (one machine) or dynamodb://TABLE (several workers) "
        "(DEFENDER_HUB_LEDGER; default: "
        + (f"{LEDGER_FILE} in the state directory)" if ledger_by_default else "none)"),
    )
    parser.set_defaults(ledger_by_default=ledger_by_default)
    if account_flag:
        _account_flag(parser, "import-account", _IMPORT_ACCOUNT_MEANING, "STS says")
    parser.add_argument("--assume-role", default=default("assume_role"), metavar="NAME|ARN", help=ASSUME_ROLE_HELP)
    parser.add_argument(
        "--external-id",
        default=default("external_id"),
        help="the external ID the member accounts' roles require (DEFENDER_HUB_EXTERNAL_ID; default: none)",
    )
    parser.add_argument(
        "--outage-limit",
        type=int,
        default=default("outage_limit", env("OUTAGE_LIMIT") or OUTAGE_LIMIT_SECONDS),
        metavar="SECONDS",
        help="park the findings of an account and Region that has failed every request (5xx, no connection) for this "
        "long, so that it holds up no other; they are sent again once it answers (DEFENDER_HUB_OUTAGE_LIMIT; "
        f"default: {OUTAGE_LIMIT_SECONDS})",
    )
    parser.add_argument(
        "--max-clock-skew",
        type=int,
        default=default("max_clock_skew", MAX_CLOCK_SKEW_MINUTES),
        metavar="MINUTES",
        help=f"refuse events timed further in the future than this (default: {MAX_CLOCK_SKEW_MINUTES})",
    )


def delivery_settings(args: argparse.Namespace) -> DeliverySettings:
    """The delivery settings of the flags `delivery_flags` added; raises ConfigError for a role or an external ID no
    lane could use, before anything starts (else every member account's findings would fail one by one)."""
    from defender_hub.checkpoints.opening import DeliverySettings  # noqa: PLC0415 - boto3 for AWS commands only
    from defender_hub.sink.lanes import check_external_id, check_role  # noqa: PLC0415 - likewise

    if args.assume_role is not None:
        check_role(args.assume_role)
    if args.external_id is not None:
        check_external_id(args.external_id)
    if not isinstance(args.outage_limit, int) or args.outage_limit < 1:
        raise ConfigError(f"outage limit {args.outage_limit!r} is not a whole number of seconds, 1 or more")

    refuse_former_defaults(
        ledger_given=bool(args.ledger) or not args.ledger_by_default,
        dead_letter_given=bool(args.dead_letter),
        state=args.state_dir,
    )
    ledger = args.ledger or (default_ledger(args.state_dir) if args.ledger_by_default else None)
    return DeliverySettings(
        args.dead_letter or default_dead_letters(args.state_dir),
        ledger,
        args.account_id,
        args.max_clock_skew,
        dead_letter_overflow=args.dead_letter_overflow,
        assume_role=args.assume_role,
        external_id=args.external_id,
        outage_limit_seconds=args.outage_limit,
    )


def stop_on_signals() -> threading.Event:
    """Returns an event that SIGINT or SIGTERM sets, for a command to finish what it is doing and stop."""
    stop = threading.Event()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signal_number, lambda *_: stop.set())
    return stop


def _seconds(text: str) -> float:
    """A --deadline: a number of seconds over 0."""
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < seconds < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds over 0")
    return seconds


def deadline_flag(parser: argparse.ArgumentParser, what: str) -> None:
    """Adds --deadline, after which the command stops as on SIGTERM: `what` says what is kept of the rest."""
    parser.add_argument(
        "--deadline",
        type=_seconds,
        metavar="SECONDS",
        help=f"stop sending after this many seconds, as on SIGTERM: {what}, exit status 1 (default: none: an "
        "unreachable Security Hub is retried for up to --outage-limit, then what is left is parked)",
    )


class Deadline:
    """While entered, sets `stop` once `seconds` have passed, as SIGTERM would (never, for None): a scheduler's job
    must end."""

    def __init__(self, stop: threading.Event, seconds: float | None) -> None:
        self.seconds, self._stop, self._passed = seconds, stop, threading.Event()
        self._timer = threading.Timer(seconds, self._expire) if seconds is not None else None

    def _expire(self) -> None:
        self._passed.set()
        self._stop.set()

    def __enter__(self) -> Deadline:
        if self._timer is not None:
            self._timer.daemon = True
            self._timer.start()
        return self

    def __exit__(self, *_: object) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer.join()  # so that no thread of the command outlives it

    def reason(self, error: SinkError) -> str:
        """Why a delivery ended short: the deadline, when it passed and stopped it; else `error` itself."""
        if isinstance(error, SinkStopped) and self._passed.is_set():
            return f"the deadline of {self.seconds:g} s passed"
        return str(error)


def summary(report: DeliveryReport, elapsed: float) -> str:
    """One line of what a delivery did."""
    return (
        f"accepted {report.accepted}, dead-lettered {report.dead_lettered}, parked {report.parked}, "
        f"superseded {report.superseded}, "
        f"requests {report.requests}, throttled {report.throttled}, retries {report.retried}, "
        f"elapsed {elapsed:.1f} s"
    )


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
    a profile, the Region, an endpoint or an error answer of AWS, naming what to set but never a credential; None for
    any other error."""
    from botocore import exceptions as aws  # noqa: PLC0415 - loaded only once a command has failed

    if isinstance(error, aws.NoCredentialsError):
        return EXIT_USAGE, (
            "configuration error: no AWS credentials: set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
            "or run where a role gives them"
        )
    if isinstance(error, aws.PartialCredentialsError):
        return EXIT_USAGE, f"configuration error: {error}"  # names the provider and the variable missing
    if isinstance(error, aws.CredentialRetrievalError | aws.TokenRetrievalError):
        # Only the provider is named: its error message may quote what the provider answered.
        provider = error.kwargs.get("provider", "the credential chain")
        return EXIT_USAGE, f"configuration error: no AWS credentials from {provider}: check AWS_PROFILE and its profile"
    if isinstance(error, aws.SSOError):
        return EXIT_USAGE, f"configuration error: {error}"  # botocore's own words say what to run
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
    if isinstance(error, aws.ProxyConnectionError):
        return EXIT_USAGE, (
            f"configuration error: cannot reach the proxy {_shown(error.kwargs.get('proxy_url', ''))}: check "
            "HTTPS_PROXY and HTTP_PROXY"
        )
    if isinstance(error, aws.ConnectionError | aws.HTTPClientError):
        url = error.kwargs.get("endpoint_url")
        return EXIT_USAGE, (
            f"configuration error: {_unreachable(url)}"
            if url
            else f"configuration error: cannot reach AWS: {type(error).__name__}: check the network"
        )
    if isinstance(error, aws.ClientError):
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
    return None
