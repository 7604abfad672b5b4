"""What the commands share: exit statuses, DEFENDER_HUB_* variables, the mapping and delivery flags, summaries."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

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
from defender_hub.errors import ConfigError
from defender_hub.lifecycle import MAX_CLOCK_SKEW_MINUTES

if TYPE_CHECKING:
    from defender_hub.checkpoints.opening import DeliverySettings
    from defender_hub.sink import DeliveryReport

__all__ = [
    "ASSUME_ROLE_HELP",
    "EXIT_FAILURES",
    "EXIT_OK",
    "EXIT_USAGE",
    "delivery_flags",
    "delivery_settings",
    "env",
    "mapping_flags",
    "summary",
]

ASSUME_ROLE_HELP = (
    "import each other account's findings as that account, through this role in it: a name, or an ARN template "
    "arn:{partition}:iam::{account}:role/NAME (default: none; such findings are parked)"
)
EXIT_OK = 0
EXIT_FAILURES = 1
"""Some of the work failed at run time: lines not converted, put or forwarded, findings left undelivered (a stop, a
deadline, dead letters or a ledger that failed) or parked, an error answer of AWS, a connection that timed out or was
closed, the daemon ended in failure."""
EXIT_USAGE = 2
"""The command was used or set up wrongly: flags, settings, credentials, the Region, an endpoint nothing serves, AWS
refusing the credentials. argparse's own code for bad usage."""


def env(name: str) -> str | None:
    """The value of DEFENDER_HUB_`name`, or None when it is unset or empty."""
    return os.environ.get(f"DEFENDER_HUB_{name}") or None


def mapping_flags(parser: argparse.ArgumentParser) -> None:
    """Adds the flags that shape findings, but for the default account (`accounts`): Region, partition, settings
    file."""
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


def delivery_flags(parser: argparse.ArgumentParser, *, ledger_by_default: bool, run: bool = False) -> None:
    """Adds the flags of where findings go, but for the import account (`accounts`): state directory, dead letters,
    ledger, role, outage limit, the clock skew allowed. For `run`, those its settings file may also set default to
    None: it resolves them once parsed (flag, then DEFENDER_HUB_<NAME>, then the file, then the default)."""

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
    """The delivery settings of the flags `delivery_flags` and `accounts.import_account_flag` added; raises
    ConfigError for a role or an external ID no lane could use, before anything starts (else every member account's
    findings would fail one by one)."""
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
        args.import_account,
        args.max_clock_skew,
        dead_letter_overflow=args.dead_letter_overflow,
        assume_role=args.assume_role,
        external_id=args.external_id,
        outage_limit_seconds=args.outage_limit,
    )


def summary(report: DeliveryReport, elapsed: float) -> str:
    """One line of what a delivery did."""
    return (
        f"accepted {report.accepted}, dead-lettered {report.dead_lettered}, parked {report.parked}, "
        f"superseded {report.superseded}, "
        f"requests {report.requests}, throttled {report.throttled}, retries {report.retried}, "
        f"elapsed {elapsed:.1f} s"
    )
