"""The `defender-hub` command line."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from defender_hub import __version__
from defender_hub.checkpoints import DEFAULT_LEDGER, open_ledger, parse_ledger_url
from defender_hub.config import RUN_SETTINGS, load_mapping_options, load_run_settings
from defender_hub.convert import convert_stream
from defender_hub.errors import ConfigError, SinkError
from defender_hub.lifecycle import REFRESH_AFTER_DAYS
from defender_hub.local.securityhub import LocalSecurityHub

if TYPE_CHECKING:
    from defender_hub.sink import DeliveryReport

__all__ = ["main"]

DEFAULT_DEAD_LETTERS = "dead-letters.jsonl"
EXIT_OK = 0
EXIT_FAILURES = 2
"""Some input could not be handled, or the command was used wrongly: argparse's own code for bad usage."""


def _env(name: str) -> str | None:
    return os.environ.get(f"DEFENDER_HUB_{name}") or None


def _mapping_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--account-id", default=_env("ACCOUNT_ID"), help="account for events that carry none")
    parser.add_argument("--region", default=_env("REGION"), help="Region for events that carry none, e.g. us-east-1")
    parser.add_argument(
        "--partition", default=_env("PARTITION"), help="aws, aws-cn or aws-us-gov (default: the Region's)"
    )
    parser.add_argument("--config", type=Path, default=_env("CONFIG"), metavar="FILE", help="TOML settings file")


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
    running = commands.add_parser(
        "run",
        help="consume a Kinesis stream with the KCL and import its findings",
        description=(
            "Starts the KCL MultiLangDaemon on the stream, with the findings processor as its child: records become "
            "findings, findings go to Security Hub, and a shard is checkpointed only past records whose findings "
            "were accepted or dead-lettered. Endpoints come from AWS_ENDPOINT_URL_KINESIS, _DYNAMODB, _CLOUDWATCH, "
            "_SECURITYHUB (or AWS_ENDPOINT_URL). SIGTERM drains and checkpoints."
        ),
    )
    # Each setting of `run` may also come from DEFENDER_HUB_<NAME> or the settings file's [run] table (see _run).
    running.add_argument("--stream", help="the Kinesis stream")
    running.add_argument("--application", help="the KCL application: the name of its lease table")
    running.add_argument("--initial-position", choices=["LATEST", "TRIM_HORIZON", "AT_TIMESTAMP"])
    running.add_argument("--timestamp", help="with AT_TIMESTAMP: where to start (epoch seconds)")
    running.add_argument("--worker-id", help="stable per worker (default: the host name)")
    running.add_argument("--retrieval-mode", choices=["POLLING", "FANOUT"])
    running.add_argument("--max-records", type=int, help="records a GetRecords call (1..10000, default 1000)")
    running.add_argument("--dead-letter", metavar="PATH|SQS_URL")
    running.add_argument(
        "--ledger",
        metavar="URL",
        help="sqlite:///PATH (one machine; the default) or dynamodb://TABLE (several workers)",
    )
    running.add_argument(
        "--refresh-hours", type=int, help="hours between refresh sweeps of findings near expiry (0: none; 24)"
    )
    _mapping_flags(running)
    refreshing = commands.add_parser(
        "refresh",
        help="re-send ACTIVE findings before Security Hub expires them (one sweep, for a scheduler)",
        description=(
            "Security Hub deletes a finding 90 days after its last update. Re-sends, with a new UpdatedAt, every "
            "ACTIVE finding of the ledger not updated for --after-days days. Sweeps running at once claim what they "
            "send, so at most a few findings go twice. Exit status 0 when everything due was accepted or "
            "dead-lettered."
        ),
    )
    refreshing.add_argument("--ledger", default=_env("LEDGER") or DEFAULT_LEDGER, metavar="URL")
    refreshing.add_argument("--after-days", type=float, default=REFRESH_AFTER_DAYS)
    refreshing.add_argument(
        "--dead-letter", default=_env("DEAD_LETTER") or DEFAULT_DEAD_LETTERS, metavar="PATH|SQS_URL"
    )
    refreshing.add_argument("--account-id", default=_env("ACCOUNT_ID"), help="the account imported into")
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


def _deliver(args: argparse.Namespace) -> int:
    """Runs `import` or `redrive`: stops cleanly on SIGINT or SIGTERM, saying what was left undelivered."""
    # boto3 takes a while to load: only the commands that talk to AWS pay for it.
    from defender_hub.importer import import_findings, redrive  # noqa: PLC0415
    from defender_hub.sink import SecurityHubSink, open_dead_letters, securityhub_clients  # noqa: PLC0415

    stop = threading.Event()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signal_number, lambda *_: stop.set())
    clients = securityhub_clients()
    dead_letters = open_dead_letters(args.dead_letter)
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


def _run(args: argparse.Namespace) -> int:
    from defender_hub.checkpoints.sweeps import SweepSettings, start_periodic_refresh  # noqa: PLC0415
    from defender_hub.consumer.launcher import DaemonSettings, check_stream, lease_owners, run_daemon  # noqa: PLC0415

    run_defaults = {
        "initial_position": "TRIM_HORIZON",
        "worker_id": socket.gethostname(),
        "retrieval_mode": "POLLING",
        "max_records": 1000,
        "dead_letter": DEFAULT_DEAD_LETTERS,
        "ledger": DEFAULT_LEDGER,
        "refresh_hours": 24,
    }
    from_file = load_run_settings(args.config)
    for name in RUN_SETTINGS:  # flags, then DEFENDER_HUB_<NAME>, then the file's [run], then the defaults
        value = getattr(args, name)
        if value is None:
            value = _env(name.upper())
            value = int(value) if value is not None and RUN_SETTINGS[name] is int and value.isdigit() else value
        if value is None:
            value = from_file.get(name, run_defaults.get(name))
        setattr(args, name, value)
    if not args.stream or not args.application:
        raise ConfigError(
            "run needs a stream and an application: --stream/--application, DEFENDER_HUB_STREAM/"
            "DEFENDER_HUB_APPLICATION, or [run] in the settings file"
        )
    if not isinstance(args.max_records, int):
        raise ConfigError(f"max records {args.max_records!r} is not a whole number")
    load_mapping_options(  # validated here, before the daemon starts, rather than in every shard's processor
        account_id=args.account_id, region=args.region, partition=args.partition, config_file=args.config
    )
    region = args.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if not region:
        raise ConfigError("no Region for the stream: set AWS_REGION or --region")
    if not 1 <= args.max_records <= 10_000:
        raise ConfigError("--max-records must be 1..10000")
    if not isinstance(args.refresh_hours, int) or args.refresh_hours < 0:
        raise ConfigError(f"refresh hours {args.refresh_hours!r} is not a whole number of hours, 0 or more")
    ledger_url = _absolute_ledger(args.ledger)
    parse_ledger_url(ledger_url)
    settings = DaemonSettings(
        stream=args.stream,
        application=args.application,
        worker_id=args.worker_id,
        region=region,
        initial_position=args.initial_position,
        timestamp=args.timestamp,
        retrieval_mode=args.retrieval_mode,
        max_records=args.max_records,
    )
    environment = {
        "DEFENDER_HUB_LEDGER": ledger_url,
        "DEFENDER_HUB_DEAD_LETTER": str(Path(args.dead_letter).resolve())
        if "://" not in args.dead_letter
        else args.dead_letter,
        **{
            f"DEFENDER_HUB_{name.upper()}": str(value)
            for name in ("account_id", "region", "partition", "config")
            if (value := getattr(args, name)) is not None
        },
    }
    check_stream(args.stream, region)
    open_ledger(ledger_url).close()  # opened once here, so a ledger that can't be opened is said at start
    others = lease_owners(args.application, region) - {args.worker_id, ""}
    if ledger_url.startswith("sqlite:") and others:
        print(
            f"defender-hub: warning: other workers ({', '.join(sorted(others)[:5])}) share application "
            f"{args.application!r}, but the SQLite ledger is this machine's alone: with several workers, use "
            "--ledger dynamodb://TABLE, or findings may be re-sent and archival may miss what they recorded",
            file=sys.stderr,
        )
    sweeps = threading.Event()
    if args.refresh_hours > 0:
        logging.basicConfig(level=logging.INFO, format="defender-hub: %(message)s")
        sweep = SweepSettings(ledger_url, environment["DEFENDER_HUB_DEAD_LETTER"], args.account_id)
        sweeps = start_periodic_refresh(sweep, args.refresh_hours * 3600)
    try:
        status = run_daemon(settings, environment)
    finally:
        sweeps.set()
    return EXIT_OK if status == 0 else EXIT_FAILURES


def _absolute_ledger(url: str) -> str:
    """The ledger URL with a relative SQLite path made absolute: the processors may start elsewhere."""
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        return "sqlite:///" + str(Path(url.removeprefix("sqlite:///")).resolve())
    return url


def _refresh(args: argparse.Namespace) -> int:
    from defender_hub.checkpoints.sweeps import SweepSettings, sweep_once  # noqa: PLC0415 - boto3 for AWS commands

    stop = threading.Event()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signal_number, lambda *_: stop.set())
    started = time.monotonic()
    try:
        report = sweep_once(SweepSettings(args.ledger, args.dead_letter, args.account_id, args.after_days), stop)
    except SinkError as exc:
        print(f"defender-hub: {exc}; the rest is still due", file=sys.stderr)
        return EXIT_FAILURES
    print(
        f"due {report.due}, held by another sweep {report.claimed_elsewhere}, "
        f"{_summary(report, time.monotonic() - started)}",
        file=sys.stderr,
    )
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
        if args.command == "run":
            return _run(args)
        if args.command == "refresh":
            return _refresh(args)
        if args.command == "demo":
            from defender_hub.demo import run_demo  # noqa: PLC0415 - boto3 loads only for the commands using AWS

            return run_demo(events=args.events, shards=args.shards)
        if args.command == "local":
            from defender_hub.demo import serve_local  # noqa: PLC0415

            return serve_local(args.aws_port, args.securityhub_port)
    except ConfigError as exc:
        print(f"defender-hub: configuration error: {exc}", file=sys.stderr)
        return EXIT_FAILURES
    except BrokenPipeError:
        # The reader went away (`| head`); the rest of the output has nowhere to go.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILURES
    raise AssertionError(f"unhandled command {args.command}")  # argparse allows only the commands above
