"""`defender-hub demo`, `local` and `local-securityhub`: the pipeline and its stand-ins on 127.0.0.1."""

from __future__ import annotations

import argparse
from typing import Any

from defender_hub.commands.common import EXIT_OK, stop_on_signals
from defender_hub.local.securityhub import LocalSecurityHub

__all__ = ["add"]


def add(commands: Any) -> None:
    """Declares `demo`, `local` and `local-securityhub`."""
    demo = commands.add_parser(
        "demo",
        help="the whole pipeline on a local stack: events onto a stream, the consumer, the local Security Hub",
        description=(
            "Starts the local stack on 127.0.0.1, puts a few thousand realistic Device Defender events on a stream, "
            "runs the real consumer until every finding is in the local Security Hub, and shows what arrived. "
            "Needs the project and Java 17, nothing else."
        ),
    )
    demo.add_argument("--events", type=int, default=3000)
    demo.add_argument("--shards", type=int, default=2)
    local = commands.add_parser(
        "local",
        help="run the local stack (Kinesis, DynamoDB, SQS, Security Hub) on 127.0.0.1 until interrupted",
        description="Prints the environment that points AWS tools at the stack, then serves until SIGINT or SIGTERM.",
    )
    local.add_argument("--aws-port", type=int, default=4566)
    local.add_argument("--securityhub-port", type=int, default=4510)
    local.add_argument("--stream", help="create this stream on the stack, with --events generated events on it")
    local.add_argument("--shards", type=int, default=2)
    local.add_argument("--events", type=int, default=0)
    local_hub = commands.add_parser(
        "local-securityhub",
        help="serve a strict local Security Hub on 127.0.0.1 until interrupted",
        description=(
            "Serves BatchImportFindings and GetFindings on 127.0.0.1 with Security Hub's limits, validation, update "
            "rules and throttling, plus /_local/findings, /_local/requests, /_local/outage, /_local/throttle, "
            "/_local/fail, /_local/disable, /_local/enable and /_local/reset for inspection and faults. Prints its "
            "endpoint URL, then serves until SIGINT or SIGTERM."
        ),
    )
    local_hub.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    local_hub.add_argument("--account-id", default="123456789012", help="the account callers import as")
    local_hub.add_argument("--region", default="us-east-1")
    local_hub.add_argument(
        "--sts-endpoint", help="the local STS (moto) that says which account a caller's access key belongs to"
    )
    local_hub.add_argument("--rate", type=float, default=10.0, help="BatchImportFindings requests a second")
    local_hub.add_argument("--burst", type=int, default=30, help="BatchImportFindings burst")
    demo.set_defaults(handler=_demo)
    local.set_defaults(handler=_local)
    local_hub.set_defaults(handler=_local_securityhub)


def _demo(args: argparse.Namespace) -> int:
    from defender_hub.demo import run_demo  # noqa: PLC0415 - boto3 loads only for the commands using AWS

    return run_demo(events=args.events, shards=args.shards)


def _local(args: argparse.Namespace) -> int:
    from defender_hub.demo import serve_local  # noqa: PLC0415

    return serve_local(args.aws_port, args.securityhub_port, args.stream, args.shards, args.events)


def _local_securityhub(args: argparse.Namespace) -> int:
    hub = LocalSecurityHub(
        port=args.port,
        account_id=args.account_id,
        region=args.region,
        rate=args.rate,
        burst=args.burst,
        sts_endpoint=args.sts_endpoint,
    )
    stop = stop_on_signals()
    with hub:
        print(hub.endpoint_url, flush=True)
        stop.wait()
    return EXIT_OK
