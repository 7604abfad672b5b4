"""`defender-hub demo`, `local` and `local-securityhub`: the pipeline and its stand-ins on 127.0.0.1."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

from defender_hub.codecs.asff_rules import IMPORT_BURST, IMPORT_RATE
from defender_hub.commands.common import EXIT_OK
from defender_hub.commands.deadline import stop_on_signals
from defender_hub.config import state_dir
from defender_hub.errors import ConfigError, PortTaken
from defender_hub.local import AWS_PORT, DEMO_EVENTS, LOCAL_STREAM, SECURITYHUB_PORT
from defender_hub.local.aws import LOOPBACK, listen_address
from defender_hub.local.securityhub import DEFAULT_ACCOUNT, DEFAULT_REGION, LocalSecurityHub
from defender_hub.settings import from_environment

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
    demo.add_argument(
        "--events",
        type=int,
        default=DEMO_EVENTS,
        help=f"generated events to put on the stream (default: {DEMO_EVENTS})",
    )
    demo.add_argument("--shards", type=int, default=2, help="shards of the demo's stream (default: 2)")
    demo.add_argument(
        "--keep",
        action="store_true",
        help="leave the stack up until Ctrl-C, and the consumer's log, ledger and dead letters in the state "
        "directory's demo folder (default: all gone at the end)",
    )
    local = commands.add_parser(
        "local",
        help="run the local stack (Kinesis, DynamoDB, SQS, Security Hub) on 127.0.0.1 until interrupted",
        description=(
            "Starts moto (Kinesis, DynamoDB, SQS, S3, STS) and the strict local Security Hub on 127.0.0.1 (or "
            "--listen-address), optionally "
            "makes a stream with your events (--put FILE) or generated ones (--events N) on it, prints a ready line, "
            "the environment that points AWS tools and defender-hub at the stack (also in local.env in the state "
            "directory) and the next commands; then serves until SIGINT or SIGTERM."
        ),
    )
    local.add_argument(
        "--aws-port", type=int, default=AWS_PORT, help=f"port of moto on --listen-address (default: {AWS_PORT})"
    )
    local.add_argument(
        "--securityhub-port",
        type=int,
        default=SECURITYHUB_PORT,
        help=f"port of the local Security Hub on --listen-address (default: {SECURITYHUB_PORT})",
    )
    local.add_argument(
        "--listen-address",
        type=_listen_address,
        default=LOOPBACK,
        metavar="IP",
        help=f"the IPv4 address moto and the local Security Hub listen on (default: {LOOPBACK}, this host only). "
        "0.0.0.0 is for the stack in a container on a compose network, where it reaches only that network and the "
        "container's own loopback; publish the ports on 127.0.0.1. The printed environment points at this address, "
        "or at 127.0.0.1 for 0.0.0.0",
    )
    local.add_argument(
        "--put",
        type=Path,
        action="append",
        metavar="FILE",
        help="put this file's Device Defender events (one JSON object a line) on --stream; repeatable (default: none)",
    )
    local.add_argument(
        "--stream",
        help=f"make this stream on the stack for --put and --events (default: {LOCAL_STREAM} with --put, else none)",
    )
    local.add_argument("--shards", type=int, default=2, help="shards of --stream (default: 2)")
    local.add_argument("--events", type=int, default=0, help="generated events to put on --stream as well (default: 0)")
    local_hub = commands.add_parser(
        "local-securityhub",
        help="serve a strict local Security Hub on 127.0.0.1 until interrupted",
        description=(
            "Serves BatchImportFindings, BatchUpdateFindings and GetFindings on 127.0.0.1 with Security Hub's limits, "
            "validation, update and workflow rules and throttling (each operation its own quota), plus "
            "/_local/findings, /_local/requests, /_local/arrivals, /_local/outage, /_local/throttle, /_local/fail, "
            "/_local/fail-updates, "
            "/_local/disable, /_local/enable and /_local/reset for inspection and faults. Prints its "
            "endpoint URL, then serves until SIGINT or SIGTERM."
        ),
    )
    local_hub.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    local_hub.add_argument(
        "--account-id",
        default=DEFAULT_ACCOUNT,
        help=f"the account of callers the local STS does not know (default: {DEFAULT_ACCOUNT})",
    )
    local_hub.add_argument(
        "--region", default=DEFAULT_REGION, help=f"the Region of unsigned requests (default: {DEFAULT_REGION})"
    )
    local_hub.add_argument(
        "--sts-endpoint",
        help="the local STS (moto) that says which account a caller's access key belongs to (default: none)",
    )
    local_hub.add_argument(
        "--rate",
        type=float,
        default=IMPORT_RATE,
        help=f"BatchImportFindings requests a second, per account and Region (default: {IMPORT_RATE:g})",
    )
    local_hub.add_argument(
        "--burst", type=int, default=IMPORT_BURST, help=f"BatchImportFindings burst (default: {IMPORT_BURST})"
    )
    demo.set_defaults(handler=_demo)
    local.set_defaults(handler=_local)
    local_hub.set_defaults(handler=_local_securityhub)


def _demo(args: argparse.Namespace) -> int:
    from defender_hub.demo import run_demo  # noqa: PLC0415 - boto3 loads only for the commands using AWS

    return run_demo(events=args.events, shards=args.shards, keep=args.keep)


def _local(args: argparse.Namespace) -> int:
    stream = args.stream or (LOCAL_STREAM if args.put or args.events else None)
    for path in args.put or []:
        if not path.is_file():
            raise ConfigError(f"--put {path}: no such file")
    try:
        return _serve(args, stream)
    except PortTaken as taken:
        flag = "--aws-port" if taken.port == args.aws_port else "--securityhub-port"
        raise ConfigError(f"{taken}: stop it, or pick another port with {flag} PORT") from None


def _listen_address(value: str) -> str:
    """--listen-address's value: an IPv4 address, as both servers of the stack take it."""
    try:
        return listen_address(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an IPv4 address") from None


def _serve(args: argparse.Namespace, stream: str | None) -> int:
    """Runs the local stack until SIGINT or SIGTERM. Given a stream, it first makes it and puts on it the generated
    events and those of the --put files. Then it prints a ready line, the environment that points tools at the stack
    (also written to local.env in the state directory) and the next commands. That environment keeps the consumer's
    state in the state directory's `local` folder, which is emptied here so that it starts empty, as the hub does."""
    from defender_hub.loadgen import put_events, put_lines  # noqa: PLC0415 - boto3 loads only for the commands using AWS
    from defender_hub.local.stack import fresh_folder, local_stack  # noqa: PLC0415
    from defender_hub.synthetic import generate_events  # noqa: PLC0415

    stop = stop_on_signals()
    # The consumer's ledger must start empty with this stack's Security Hub, or it would hold back what the hub has
    # not got: while pointed at the stack, state goes to a folder of this stack's port, emptied as the stack starts.
    suffix = "" if args.aws_port == AWS_PORT else f"-{args.aws_port}"
    state = state_dir(from_environment("state_dir"))
    session = fresh_folder(state / f"local{suffix}")
    with local_stack(args.aws_port, args.securityhub_port, args.listen_address) as stack:
        lines = [
            f"# defender-hub local: ready. Kinesis, DynamoDB, SQS, S3 and STS at {stack.aws.endpoint_url}; the local "
            f"Security Hub at {stack.hub.endpoint_url} (its findings: {stack.hub.endpoint_url}/_local/findings)"
        ]
        if stream is not None:
            kinesis = stack.create_stream(stream, args.shards)
            put = put_events(kinesis, stream, generate_events(args.events, seed=2026)) if args.events else 0
            for path in args.put or []:
                with path.open("rb") as file:
                    put += put_lines(kinesis, stream, [file], sys.stderr)[0]
            lines.append(f"# stream {stream}: {args.shards} shards, {put} events put")
        exports = stack.exports(session)
        env_file = state / f"local{suffix}.env"
        env_file.write_text("\n".join(exports) + "\n")
        lines += exports
        lines += [
            f"# next, in another shell: . {shlex.quote(str(env_file))}",
            f"#   defender-hub run --stream {stream or 'STREAM'} --application local   # the consumer; Ctrl-C stops it",
            "#   defender-hub findings                                      # what the local Security Hub holds",
            "# Ctrl-C stops the stack.",
        ]
        print("\n".join(lines), flush=True)
        stop.wait()
    return EXIT_OK


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
    try:
        hub.start()
    except PortTaken as taken:
        raise ConfigError(f"{taken}: stop it, or pick another port with --port PORT") from None
    try:
        print(hub.endpoint_url, flush=True)
        stop.wait()
    finally:
        hub.stop()
    return EXIT_OK
