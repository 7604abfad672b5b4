"""`defender-hub run`: the KCL consumer, with its settings gathered and checked before the daemon starts."""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from defender_hub.checkpoints import open_ledger
from defender_hub.commands.accounts import default_account_flag
from defender_hub.commands.aws import aws_region
from defender_hub.commands.common import EXIT_FAILURES, EXIT_OK, delivery_flags, delivery_settings, mapping_flags
from defender_hub.config import load_mapping_options
from defender_hub.consumer.health import note_daemon
from defender_hub.errors import ConfigError
from defender_hub.logs import configure
from defender_hub.settings import said
from defender_hub.settings.resolving import add_flags

__all__ = ["add"]

log = logging.getLogger(__name__)


def add(commands: Any) -> None:
    """Declares `run`."""
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
    # Each setting of `run` may also come from its environment variable or the settings file's [run] table.
    add_flags(
        running,
        "stream",
        "application",
        "initial_position",
        "timestamp",
        "worker_id",
        "retrieval_mode",
        "max_records",
        "poll_millis",
        "refresh_hours",
        "parked_retry_seconds",
        "send_wait_millis",
        "log_format",
        from_file=True,
        required=("stream", "application"),
    )
    running.add_argument(
        "--verbose",
        action="store_true",
        help="the KCL daemon's own log at INFO too: leases, shards, workers (default: its warnings and errors only)",
    )
    add_flags(running, "health_dir", "metrics_port", "metrics_address", from_file=True)
    delivery_flags(running, ledger_by_default=True, run=True)
    default_account_flag(running)
    mapping_flags(running)
    # No --import-account: `run` imports into its own account as STS names it, asked only once a role is to be
    # assumed. --default-account is the account of events that carry none, never the account imported into.
    running.set_defaults(handler=_run, import_account=None)


def _run(args: argparse.Namespace) -> int:
    from defender_hub.consumer.launcher import (  # noqa: PLC0415
        DaemonSettings,
        check_daemon,
        check_start,
        check_stream,
        lease_owners,
        run_daemon,
        start_timestamp,
    )
    from defender_hub.worker import RunWorker, absolute_ledger  # noqa: PLC0415 - boto3 for the AWS commands only

    chosen = delivery_settings(args)  # the state directory's files unless told otherwise
    region = _checked(args)
    start = start_timestamp(args.initial_position, args.timestamp)
    ledger_url = absolute_ledger(chosen.ledger)
    chosen = replace(chosen, ledger=ledger_url)
    retention_hours = check_stream(args.stream, region)
    open_ledger(ledger_url).close()  # opened once here, so a ledger that can't be opened is said at start
    owners = lease_owners(args.application, region)
    if start is not None and (problem := check_start(args.timestamp, start, retention_hours, leased=bool(owners))):
        # A restart's remembered timestamp (a unit file's timestamp variable) goes stale; refusing it would have a
        # supervisor restart `run` forever, for a start no shard with a checkpoint takes.
        print(
            f"defender-hub: warning: {problem}; run goes on, as application {args.application!r} has leases: its "
            "shards start at their checkpoints",
            file=sys.stderr,
        )
    others = owners - {args.worker_id, ""}
    if ledger_url.startswith("sqlite:") and others:
        print(
            f"defender-hub: warning: other workers ({', '.join(sorted(others)[:5])}) share application "
            f"{args.application!r}, but the SQLite ledger is this machine's alone: with several workers, use "
            "--ledger dynamodb://TABLE, or findings may be re-sent and archival may miss what they recorded",
            file=sys.stderr,
        )
    check_daemon()  # before the sweeps: a refused start sends nothing
    settings = DaemonSettings(
        stream=args.stream,
        application=args.application,
        worker_id=args.worker_id,
        region=region,
        initial_position=args.initial_position,
        timestamp=start,
        retrieval_mode=args.retrieval_mode,
        max_records=args.max_records,
        poll_millis=args.poll_millis,
    )
    configure(args.log_format)
    with RunWorker(vars(args), chosen, verbose=args.verbose) as worker:

        def started(pid: int) -> None:
            worker.daemon_started(pid)
            if args.health_dir:
                note_daemon(Path(args.health_dir), pid)

        status = run_daemon(settings, worker.environment, json_logs=args.log_format == "json", on_start=started)
        if worker.sender_died:
            log.error("the worker's sender died: each shard stopped at its last checkpoint; what followed comes again")
            return EXIT_FAILURES
    if status == 0:
        log.info("stopped: each shard checkpointed at what was delivered")
    return EXIT_OK if status == 0 else EXIT_FAILURES


def _checked(args: argparse.Namespace) -> str:
    """Checks what `run`'s settings need of each other before anything starts; returns the stream's Region. Raises
    ConfigError. Each setting on its own was checked as it was resolved (`settings`)."""
    if not args.stream or not args.application:
        raise ConfigError(
            f"run needs a stream and an application: {said('stream')}, {said('application')}, or [run] in the "
            "settings file"
        )
    load_mapping_options(  # validated here, before the daemon starts, rather than in every shard's processor
        account_id=args.default_account, region=args.region, partition=args.partition, config_file=args.config
    )
    return args.region or aws_region()
