"""`defender-hub import` and `defender-hub redrive`: findings, or dead letters, into Security Hub."""

from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING, Any

from defender_hub.commands.accounts import import_account_flag
from defender_hub.commands.common import (
    EXIT_FAILURES,
    EXIT_OK,
    delivery_flags,
    delivery_settings,
    mapping_flags,
    summary,
)
from defender_hub.commands.deadline import Deadline, deadline_flag, stop_on_signals
from defender_hub.config import load_mapping_options
from defender_hub.errors import SinkError

if TYPE_CHECKING:
    from defender_hub.sink import DeliveryReport

__all__ = ["add"]


def add(commands: Any) -> None:
    """Declares `import` and `redrive`."""
    importing = commands.add_parser(
        "import",
        help="ASFF findings on stdin (one JSON object a line) into Security Hub",
        description=(
            "Imports the findings on stdin with BatchImportFindings: batched, coalesced by Id, retried while "
            "Security Hub is throttling or down; what it can never accept goes to the dead letters. With --ledger, "
            "through the finding lifecycle: only what changes Security Hub is sent, and it is recorded. AWS "
            "configuration as usual: the credential chain, AWS_REGION, AWS_ENDPOINT_URL_SECURITYHUB. Exit status 0 "
            "when every finding was accepted or dead-lettered, 1 when some were left undelivered (a stop, --deadline) "
            "or parked in the dead letters (their account and Region refusing them, or failing every request for "
            "--outage-limit), 2 for bad usage or configuration."
        ),
    )
    redriving = commands.add_parser(
        "redrive",
        help="send the dead letters again (after a fix)",
        description=(
            "Sends dead-lettered findings again, and maps and sends dead-lettered records, through the finding "
            "lifecycle and its ledger, as the consumer does: what is redriven is recorded, and never outranks newer "
            "news. Exit statuses as import's."
        ),
    )
    delivery_flags(importing, ledger_by_default=False)
    delivery_flags(redriving, ledger_by_default=True)  # a redriven finding is one the lifecycle must know
    import_account_flag(importing)
    import_account_flag(redriving)  # also the default account of the records it maps
    mapping_flags(redriving)
    deadline_flag(importing, "the findings not yet read or sent are not imported")
    deadline_flag(redriving, "the dead letters not sent are kept")
    importing.set_defaults(handler=_deliver)
    redriving.set_defaults(handler=_deliver)


def _deliver(args: argparse.Namespace) -> int:
    """Runs `import` or `redrive`: stops cleanly on SIGINT or SIGTERM, saying what was left undelivered."""
    # boto3 takes a while to load: only the commands that talk to AWS pay for it.
    from defender_hub.checkpoints.opening import open_delivery  # noqa: PLC0415
    from defender_hub.importer import import_findings, redrive  # noqa: PLC0415
    from defender_hub.sink import DeliveryReport  # noqa: PLC0415

    stop = stop_on_signals()
    deadline = Deadline(stop, args.deadline)
    delivery = open_delivery(delivery_settings(args), stop)
    sink, dead_letters = delivery.sink, delivery.dead_letters
    started = time.monotonic()
    on_terminal = sys.stderr.isatty()
    report = DeliveryReport()  # what was done so far, for the summary of a delivery that stops

    def progress(so_far: DeliveryReport) -> None:
        nonlocal report
        report = so_far
        if on_terminal:
            print(f"\r{so_far.accepted} accepted, {so_far.dead_lettered} dead-lettered", end="", file=sys.stderr)

    try:
        with deadline:
            if args.command == "import":
                report = import_findings(sys.stdin.buffer, sink, dead_letters, progress, stop=stop)
            else:
                options = load_mapping_options(
                    account_id=args.import_account,
                    region=args.region,
                    partition=args.partition,
                    config_file=args.config,
                )
                report = redrive(dead_letters, sink, options, progress, stop=stop)
    except SinkError as exc:
        said = deadline.reason(exc)
        print(f"{chr(10) if on_terminal else ''}defender-hub: {said}; the rest is undelivered", file=sys.stderr)
        print(summary(report, time.monotonic() - started), file=sys.stderr)
        return EXIT_FAILURES
    finally:
        delivery.close()
    print(f"{chr(10) if on_terminal else ''}{summary(report, time.monotonic() - started)}", file=sys.stderr)
    if dead_letters.unreadable:
        print(f"defender-hub: {dead_letters.unreadable} dead letters could not be read; kept aside", file=sys.stderr)
    if report.parked:
        print(
            f"defender-hub: {report.parked} findings parked in the dead letters: their account and Region refused them "
            "or failed every request; `defender-hub redrive` sends them again",
            file=sys.stderr,
        )
        return EXIT_FAILURES
    return EXIT_OK
