"""`defender-hub convert`: events on stdin to findings on stdout."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from defender_hub.commands.accounts import default_account_flag
from defender_hub.commands.common import EXIT_FAILURES, EXIT_OK, mapping_flags
from defender_hub.config import load_mapping_options
from defender_hub.convert import convert_stream

__all__ = ["add"]


def add(commands: Any) -> None:
    """Declares `convert`."""
    convert = commands.add_parser(
        "convert",
        help="events on stdin (one JSON object a line) to ASFF findings on stdout",
        description=(
            "Reads newline-delimited events (Device Defender's, and AWS Config's and AWS Health's as EventBridge "
            "puts them) on stdin and writes one ASFF finding per line on stdout; blank lines are passed over. A line "
            'that cannot be converted is reported on stderr as {"line": N, "error": "..."}, N counting every line '
            "from 1; a line its source's rules make no finding of (another Config event, a service-linked rule, a "
            'Health event not about security) as {"line": N, "skipped": "...", "source": "..."}. Exit status 0 when '
            "every line converted or was skipped, 1 when some did not, 2 for bad usage or configuration."
        ),
    )
    default_account_flag(convert)
    mapping_flags(convert)
    convert.set_defaults(handler=_convert)


def _convert(args: argparse.Namespace) -> int:
    options = load_mapping_options(
        account_id=args.default_account, region=args.region, partition=args.partition, config_file=args.config
    )
    failed = convert_stream(sys.stdin.buffer, sys.stdout.buffer, sys.stderr.buffer, options)
    return EXIT_OK if failed == 0 else EXIT_FAILURES
