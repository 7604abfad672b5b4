"""`defender-hub refresh`: one sweep that re-sends ACTIVE findings before Security Hub expires them."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from defender_hub.codecs.asff_rules import RETENTION_DAYS
from defender_hub.commands.accounts import import_account_flag
from defender_hub.commands.common import EXIT_FAILURES, EXIT_OK, delivery_flags, delivery_settings, summary
from defender_hub.commands.deadline import Deadline, deadline_flag, stop_on_signals
from defender_hub.errors import SinkError
from defender_hub.lifecycle import REFRESH_AFTER_DAYS

__all__ = ["add"]


def add(commands: Any) -> None:
    """Declares `refresh`."""
    refreshing = commands.add_parser(
        "refresh",
        help="re-send ACTIVE findings before Security Hub expires them (one sweep, for a scheduler)",
        description=(
            f"Security Hub deletes a finding {RETENTION_DAYS} days after its last update. Finishes the archivals "
            "still owed (of audits an earlier stop interrupted) and the workflow updates still owed (AWS Config's "
            "RESOLVED), then re-sends, with a new UpdatedAt, every ACTIVE finding of the ledger not updated for "
            "--after-days days that its source keeps alive (a failing Config rule, an open Health event, any Device "
            "Defender finding). Sweeps running at once claim what they send, so at most a "
            "few findings go twice. Exit status 0 when everything due was accepted or dead-lettered, 1 when some was "
            "left due (a stop, --deadline, an account and Region parked: refusing, or failing every request for "
            "--outage-limit), 2 for bad usage or configuration."
        ),
    )
    delivery_flags(refreshing, ledger_by_default=True)
    import_account_flag(refreshing)
    deadline_flag(refreshing, "what was not sent is still due, for the next sweep")
    refreshing.add_argument(
        "--after-days",
        type=float,
        default=REFRESH_AFTER_DAYS,
        help=f"re-send what was not updated for this many days (default: {REFRESH_AFTER_DAYS:g})",
    )
    refreshing.set_defaults(handler=_refresh)


def _refresh(args: argparse.Namespace) -> int:
    from defender_hub.checkpoints.sweeps import sweep_once  # noqa: PLC0415 - boto3 for AWS commands

    stop = stop_on_signals()
    deadline = Deadline(stop, args.deadline)
    started = time.monotonic()
    try:
        with deadline:
            report = sweep_once(delivery_settings(args), stop, args.after_days)
    except SinkError as exc:
        print(f"defender-hub: {deadline.reason(exc)}; the rest is still due", file=sys.stderr)
        return EXIT_FAILURES
    print(
        f"due {report.due}, held by another sweep {report.claimed_elsewhere}, "
        f"{summary(report, time.monotonic() - started)}",
        file=sys.stderr,
    )
    if report.parked:
        print(
            f"defender-hub: {report.parked} findings left due: their account and Region refused them or failed every "
            "request; the next refresh sends them again",
            file=sys.stderr,
        )
        return EXIT_FAILURES
    return EXIT_OK
