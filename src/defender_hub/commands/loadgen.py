"""`defender-hub loadgen`: generated events onto a stream, as a backlog or at a rate."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from defender_hub.commands.aws import aws_region
from defender_hub.commands.common import EXIT_OK
from defender_hub.errors import ConfigError
from defender_hub.settings import said
from defender_hub.settings.resolving import add_flags
from defender_hub.synthetic import MIX_SOURCES, parse_mix

__all__ = ["add"]


def add(commands: Any) -> None:
    """Declares `loadgen`."""
    loadgen = commands.add_parser(
        "loadgen",
        help="put generated events on a stream (a backlog, or a rate for a while)",
        description=(
            "Puts realistic generated events (by default Device Defender's: Detect alarms and audit tasks; with "
            "--mix, AWS Config's and AWS Health's too, as EventBridge puts them) on a Kinesis stream: --backlog N at "
            "once, or --rate R a second for --duration seconds. Against the local stack (AWS_ENDPOINT_URL) or AWS."
        ),
    )
    add_flags(loadgen, "stream", required=("stream",))
    loadgen.add_argument("--backlog", type=int, help="put this many events at once (this or --rate is required)")
    loadgen.add_argument("--rate", type=float, help="events a second, for --duration (this or --backlog is required)")
    loadgen.add_argument("--duration", type=float, default=60.0, help="seconds, with --rate (default: 60)")
    loadgen.add_argument("--accounts", type=int, default=1, help="accounts the events come from (default: 1)")
    loadgen.add_argument("--seed", type=int, default=0, help="the same seed puts the same events (default: 0)")
    loadgen.add_argument(
        "--mix",
        default="device-defender",
        help=(
            f"the sources, comma-separated, each with an optional weight: SOURCE[=WEIGHT],… from "
            f"{', '.join(MIX_SOURCES)}; a weight left out is 1, e.g. 'device-defender,config,health' (a third each) "
            "or 'device-defender=8,config=1,health=1'. Device Defender's share is 70%% Detect, 25%% audit findings, "
            "5%% audit tasks; the same seed puts the same Device Defender events whatever the mix "
            "(default: device-defender)"
        ),
    )
    loadgen.set_defaults(handler=_loadgen)


def _loadgen(args: argparse.Namespace) -> int:
    import boto3  # noqa: PLC0415

    from defender_hub.loadgen import generated, put_events  # noqa: PLC0415

    try:
        mix = parse_mix(args.mix)
    except ValueError as exc:
        raise ConfigError(f"--mix: {exc}") from None
    if not args.stream:
        raise ConfigError(f"loadgen needs {said('stream')}")
    if (args.backlog is None) == (args.rate is None):
        raise ConfigError("give either --backlog N or --rate R (with --duration)")
    if args.accounts < 1 or (args.rate is not None and args.rate <= 0) or (args.backlog or 0) < 0:
        raise ConfigError("--accounts, --rate and --backlog must be positive")
    count = args.backlog if args.backlog is not None else int(args.rate * args.duration)
    kinesis = boto3.client("kinesis", region_name=aws_region())
    started = time.monotonic()

    def progress(put: int) -> None:
        print(f"\r{put}/{count} events put", end="", file=sys.stderr, flush=True)

    put = put_events(
        kinesis, args.stream, generated(count, args.seed, args.accounts, mix), rate=args.rate,
        progress=progress,
    )  # fmt: skip
    print(f"\n{put} events put in {time.monotonic() - started:.1f} s", file=sys.stderr)
    return EXIT_OK
