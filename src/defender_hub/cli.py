"""The `defender-hub` command line."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from defender_hub import __version__
from defender_hub.config import load_mapping_options
from defender_hub.convert import convert_stream
from defender_hub.errors import ConfigError
from defender_hub.local.securityhub import LocalSecurityHub

__all__ = ["main"]

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
    except ConfigError as exc:
        print(f"defender-hub: configuration error: {exc}", file=sys.stderr)
        return EXIT_FAILURES
    except BrokenPipeError:
        # The reader went away (`| head`); the rest of the output has nowhere to go.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILURES
    raise AssertionError(f"unhandled command {args.command}")  # argparse allows only the commands above
