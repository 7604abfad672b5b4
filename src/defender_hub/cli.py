"""The `defender-hub` command line."""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from defender_hub import __version__
from defender_hub.config import load_mapping_options
from defender_hub.convert import convert_stream
from defender_hub.errors import ConfigError, SinkError
from defender_hub.local.securityhub import LocalSecurityHub

if TYPE_CHECKING:
    from defender_hub.sink import DeliveryReport

__all__ = ["main"]

DEFAULT_DEAD_LETTERS = "dead-letters.jsonl"

EXIT_OK = 0
EXIT_FAILURES = 2
"""Some input could not be handled, or the command was used wrongly: argparse's own code for bad usage."""


def _mapping_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--account-id", help="account for events that carry none (12 digits)")
    parser.add_argument("--region", help="Region for events that carry none, e.g. us-east-1")
    parser.add_argument("--partition", help="aws, aws-cn or aws-us-gov (default: the Region's partition)")
    parser.add_argument("--config", type=Path, metavar="FILE", help="TOML settings file (see README)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="defender-hub",
        description="AWS IoT Device Defender findings into AWS Security Hub.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    convert = commands.add_parser(
        "convert",
        help="events on stdin (one JSON object a line) to ASFF findings on stdout",
        description=(
            "Reads newline-delimited Device Defender events on stdin and writes one ASFF finding per line on "
            'stdout. A line that cannot be converted is reported on stderr as {"line": N, "error": "..."}. '
            "Exit status 0 when every line converted, 2 otherwise."
        ),
    )
    _mapping_flags(convert)
    importing = commands.add_parser(
        "import",
        help="ASFF findings on stdin (one JSON object a line) into Security Hub",
        description=(
            "Imports the findings on stdin with BatchImportFindings: batched, coalesced by Id, retried while "
            "Security Hub is throttling or down; what it can never accept goes to the dead letters. AWS "
            "configuration as usual: the credential chain, AWS_REGION, AWS_ENDPOINT_URL_SECURITYHUB. Exit status 0 "
            "when every finding was accepted or dead-lettered."
        ),
    )
    redriving = commands.add_parser(
        "redrive",
        help="send the dead letters again (after a fix)",
        description="Sends dead-lettered findings again, and maps and sends dead-lettered records.",
    )
    for command in (importing, redriving):
        command.add_argument(
            "--dead-letter",
            default=DEFAULT_DEAD_LETTERS,
            metavar="PATH|SQS_URL",
            help=f"where rejected findings go: a JSON-lines file or an SQS queue URL (default: {DEFAULT_DEAD_LETTERS})",
        )
    importing.add_argument("--account-id", help="the account imported into, checked before sending")
    _mapping_flags(redriving)
    local_hub = commands.add_parser(
        "local-securityhub",
        help="serve a strict local Security Hub on 127.0.0.1 until interrupted",
        description=(
            "Serves BatchImportFindings and GetFindings on 127.0.0.1 with Security Hub's limits, validation, update "
            "rules and throttling, plus /_local/findings, /_local/requests, /_local/outage, /_local/throttle, "
            "/_local/fail and /_local/reset for inspection and faults. Prints its endpoint URL, then serves until "
            "SIGINT or SIGTERM."
        ),
    )
    local_hub.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    local_hub.add_argument("--account-id", default="123456789012", help="the account callers import as")
    local_hub.add_argument("--region", default="us-east-1")
    local_hub.add_argument("--rate", type=float, default=10.0, help="BatchImportFindings requests a second")
    local_hub.add_argument("--burst", type=int, default=30, help="BatchImportFindings burst")
    return parser


def _convert(args: argparse.Namespace) -> int:
    options = load_mapping_options(
        account_id=args.account_id, region=args.region, partition=args.partition, config_file=args.config
    )
    failed = convert_stream(sys.stdin.buffer, sys.stdout.buffer, sys.stderr.buffer, options)
    return EXIT_OK if failed == 0 else EXIT_FAILURES


def _summary(report: DeliveryReport, elapsed: float) -> str:
    return (
        f"accepted {report.accepted}, dead-lettered {report.dead_lettered}, superseded {report.superseded}, "
        f"requests {report.requests}, throttled {report.throttled}, retries {report.retried}, "
        f"elapsed {elapsed:.1f} s"
    )


def _sqs_client(queue_url: str) -> object:
    """Returns the SQS client for a dead-letter queue: in AWS_REGION, else in the Region its URL names."""
    import boto3  # noqa: PLC0415

    named = re.match(r"https://sqs\.([a-z0-9-]+)\.", queue_url)
    region = os.environ.get("AWS_REGION") or (named.group(1) if named else None)
    return boto3.client("sqs", region_name=region)


def _deliver(args: argparse.Namespace) -> int:
    """Runs `import` or `redrive`: stops cleanly on SIGINT or SIGTERM, saying what was left undelivered."""
    # boto3 takes a while to load: only the commands that talk to AWS pay for it.
    from defender_hub.importer import import_findings, redrive  # noqa: PLC0415
    from defender_hub.sink import SecurityHubSink, open_dead_letters, securityhub_clients  # noqa: PLC0415

    stop = threading.Event()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signal_number, lambda *_: stop.set())
    clients = securityhub_clients()
    dead_letters = open_dead_letters(args.dead_letter, _sqs_client)
    sink = SecurityHubSink(clients, dead_letters, account_id=args.account_id, stop=stop)
    started = time.monotonic()
    on_terminal = sys.stderr.isatty()

    def progress(report: DeliveryReport) -> None:
        if on_terminal:
            print(f"\r{report.accepted} accepted, {report.dead_lettered} dead-lettered", end="", file=sys.stderr)

    try:
        if args.command == "import":
            report = import_findings(sys.stdin.buffer, sink, dead_letters, progress)
        else:
            options = load_mapping_options(
                account_id=args.account_id, region=args.region, partition=args.partition, config_file=args.config
            )
            report = redrive(dead_letters, sink, options, progress)
    except SinkError as exc:
        print(f"{chr(10) if on_terminal else ''}defender-hub: {exc}; the rest is undelivered", file=sys.stderr)
        return EXIT_FAILURES
    print(f"{chr(10) if on_terminal else ''}{_summary(report, time.monotonic() - started)}", file=sys.stderr)
    return EXIT_OK


def _local_securityhub(args: argparse.Namespace) -> int:
    hub = LocalSecurityHub(
        port=args.port, account_id=args.account_id, region=args.region, rate=args.rate, burst=args.burst
    )
    stop = threading.Event()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signal_number, lambda *_: stop.set())
    with hub:
        print(hub.endpoint_url, flush=True)
        stop.wait()
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "convert":
            return _convert(args)
        if args.command == "local-securityhub":
            return _local_securityhub(args)
        if args.command in ("import", "redrive"):
            return _deliver(args)
    except ConfigError as exc:
        print(f"defender-hub: configuration error: {exc}", file=sys.stderr)
        return EXIT_FAILURES
    except BrokenPipeError:
        # The reader went away (`| head`); the rest of the output has nowhere to go.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILURES
    raise AssertionError(f"unhandled command {args.command}")  # argparse allows only the commands above
