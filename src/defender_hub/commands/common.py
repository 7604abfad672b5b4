"""What the commands share: exit statuses, the mapping and delivery flags, summaries."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from defender_hub.settings.resolving import add_flags

if TYPE_CHECKING:
    from defender_hub.checkpoints.opening import DeliverySettings
    from defender_hub.sink import DeliveryReport

__all__ = [
    "EXIT_FAILURES",
    "EXIT_OK",
    "EXIT_USAGE",
    "delivery_flags",
    "delivery_settings",
    "mapping_flags",
    "summary",
]

EXIT_OK = 0
EXIT_FAILURES = 1
"""Some of the work failed at run time: lines not converted, put or forwarded, findings left undelivered (a stop, a
deadline, dead letters or a ledger that failed) or parked, an error answer of AWS, a connection that timed out or was
closed, the daemon ended in failure."""
EXIT_USAGE = 2
"""The command was used or set up wrongly: flags, settings, credentials, the Region, an endpoint nothing serves, AWS
refusing the credentials. argparse's own code for bad usage."""


def mapping_flags(parser: argparse.ArgumentParser) -> None:
    """Adds the flags that shape findings, but for the default account (`accounts`): Region, partition, settings
    file."""
    add_flags(parser, "region", "partition", "config")


def delivery_flags(parser: argparse.ArgumentParser, *, ledger_by_default: bool, run: bool = False) -> None:
    """Adds the flags of where findings go, but for the import account (`accounts`): state directory, dead letters,
    ledger, role, outage limit, the clock skew allowed. For `run`, the settings file's `[run]` table may set them
    too."""
    add_flags(
        parser,
        "state_dir",
        "dead_letter",
        "dead_letter_overflow",
        "ledger",
        "assume_role",
        "external_id",
        "outage_limit",
        "max_clock_skew",
        from_file=run,
        default_help={} if ledger_by_default else {"ledger": "none"},
    )
    parser.set_defaults(ledger_by_default=ledger_by_default)


def delivery_settings(args: argparse.Namespace) -> DeliverySettings:
    """The delivery settings of the flags `delivery_flags` and `accounts.import_account_flag` added, once resolved."""
    from defender_hub.worker import delivery_settings as of_values  # noqa: PLC0415 - boto3 for AWS commands only

    return of_values(vars(args), ledger_by_default=args.ledger_by_default)


def summary(report: DeliveryReport, elapsed: float) -> str:
    """One line of what a delivery did."""
    return (
        f"accepted {report.accepted}, dead-lettered {report.dead_lettered}, parked {report.parked}, "
        f"superseded {report.superseded}, "
        f"requests {report.requests}, throttled {report.throttled}, retries {report.retried}, "
        f"elapsed {elapsed:.1f} s"
    )
