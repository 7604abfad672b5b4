"""`defender-hub run`: the KCL consumer, with its settings gathered and checked before the daemon starts."""

from __future__ import annotations

import argparse
import functools
import logging
import shutil
import socket
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from defender_hub.checkpoints import open_ledger, parse_ledger_url
from defender_hub.commands.accounts import default_account_flag
from defender_hub.commands.aws import aws_region
from defender_hub.commands.common import EXIT_FAILURES, EXIT_OK, delivery_flags, delivery_settings, env, mapping_flags
from defender_hub.config import (
    OUTAGE_LIMIT_SECONDS,
    PARKED_RETRY_SECONDS,
    RUN_SETTINGS,
    load_mapping_options,
    load_run_settings,
)
from defender_hub.consumer.health import note_daemon
from defender_hub.consumer.launcher import INITIAL_POSITIONS, MAX_RECORDS, RETRIEVAL_MODES
from defender_hub.errors import ConfigError
from defender_hub.lifecycle import MAX_CLOCK_SKEW_MINUTES
from defender_hub.logs import LOG_FORMATS, configure

if TYPE_CHECKING:
    from defender_hub.checkpoints.sweeps import PeriodicSweep

__all__ = ["add"]

log = logging.getLogger(__name__)

REFRESH_HOURS = 24
"""Hours between `run`'s sweeps that refresh findings near Security Hub's 90-day expiry."""


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
    # Each setting of `run` may also come from DEFENDER_HUB_<NAME> or the settings file's [run] table (see _run).
    running.add_argument("--stream", help="the Kinesis stream (required)")
    running.add_argument(
        "--application", help="the KCL application: the name of its lease table, shared by its workers (required)"
    )
    running.add_argument(
        "--initial-position",
        choices=INITIAL_POSITIONS,
        help="where a shard without a checkpoint starts: its oldest record, its newest, or --timestamp "
        "(default: TRIM_HORIZON)",
    )
    running.add_argument(
        "--timestamp",
        help="with AT_TIMESTAMP: where shards without a checkpoint start, ISO 8601 (2026-12-01T08:00:00Z; UTC without "
        "an offset) or epoch seconds, within the stream's retention for a new application (default: none)",
    )
    running.add_argument("--worker-id", help="stable per worker (default: the host name)")
    running.add_argument(
        "--retrieval-mode",
        choices=RETRIEVAL_MODES,
        help="GetRecords polling, or enhanced fan-out (a dedicated 2 MB/s a shard, billed) (default: POLLING)",
    )
    running.add_argument(
        "--max-records", type=int, help=f"records a GetRecords call (1..{MAX_RECORDS}; default {MAX_RECORDS})"
    )
    running.add_argument(
        "--refresh-hours",
        type=int,
        help=f"hours between refresh sweeps of findings near expiry; 0: none (default: {REFRESH_HOURS})",
    )
    running.add_argument(
        "--parked-retry-seconds",
        type=int,
        help=f"seconds between tries of parked lanes' findings (default: {PARKED_RETRY_SECONDS})",
    )
    running.add_argument("--log-format", choices=LOG_FORMATS, help="text (the default) or json: one object a line")
    running.add_argument(
        "--verbose",
        action="store_true",
        help="the KCL daemon's own log at INFO too: leases, shards, workers (default: its warnings and errors only)",
    )
    running.add_argument(
        "--health-dir",
        metavar="DIR",
        help="where `defender-hub health` reads the daemon's and the shards' progress (default: none)",
    )
    running.add_argument(
        "--metrics-port", type=int, help="serve Prometheus metrics, summed over the shard processes (default: none)"
    )
    running.add_argument(
        "--metrics-address",
        metavar="IP",
        help="where to serve the metrics: 0.0.0.0 for a scraper elsewhere (default: 127.0.0.1, this host only)",
    )
    delivery_flags(running, ledger_by_default=True, run=True)
    default_account_flag(running)
    mapping_flags(running)
    # No --import-account: `run` imports into its own account as STS names it, asked only once a role is to be
    # assumed. --default-account is the account of events that carry none, never the account imported into.
    running.set_defaults(handler=_run, import_account=None)


def _run(args: argparse.Namespace) -> int:
    from defender_hub.checkpoints.sweeps import start_periodic_refresh, start_periodic_retry  # noqa: PLC0415
    from defender_hub.consumer.launcher import (  # noqa: PLC0415
        DaemonSettings,
        check_daemon,
        check_start,
        check_stream,
        lease_owners,
        run_daemon,
        start_timestamp,
    )

    run_defaults = {
        "initial_position": "TRIM_HORIZON",
        "worker_id": socket.gethostname(),
        "retrieval_mode": "POLLING",
        "max_records": MAX_RECORDS,
        "refresh_hours": REFRESH_HOURS,
        "max_clock_skew": MAX_CLOCK_SKEW_MINUTES,
        "parked_retry_seconds": PARKED_RETRY_SECONDS,
        "outage_limit": OUTAGE_LIMIT_SECONDS,
        "log_format": "text",
    }
    from_file = load_run_settings(args.config)
    for name in RUN_SETTINGS:  # flags, then DEFENDER_HUB_<NAME>, then the file's [run], then the defaults
        value = getattr(args, name)
        if value is None:
            value = env(name.upper())
            value = int(value) if value is not None and RUN_SETTINGS[name] is int and value.isdigit() else value
        if value is None:
            value = from_file.get(name, run_defaults.get(name))
        setattr(args, name, value)
    chosen = delivery_settings(args)  # the state directory's files unless told otherwise
    region = _checked(args)
    start = start_timestamp(args.initial_position, args.timestamp)
    ledger_url = _absolute_ledger(chosen.ledger)
    retention_hours = check_stream(args.stream, region)
    open_ledger(ledger_url).close()  # opened once here, so a ledger that can't be opened is said at start
    owners = lease_owners(args.application, region)
    if start is not None and (problem := check_start(args.timestamp, start, retention_hours, leased=bool(owners))):
        # A restart's remembered timestamp (a unit file's DEFENDER_HUB_TIMESTAMP) goes stale; refusing it would have
        # a supervisor restart `run` forever, for a start no shard with a checkpoint takes.
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
    )
    configure(args.log_format)
    # The worker's shard processes share each lane's quota through this folder, which is this worker's alone.
    quota_dir = tempfile.mkdtemp(prefix="defender-hub-quota-")
    metrics_dir = tempfile.mkdtemp(prefix="defender-hub-metrics-") if args.metrics_port else None
    sweeps: list[PeriodicSweep] = []
    try:
        delivery = replace(  # the sweeps', and the shard processes' through the environment
            chosen,
            dead_letter=chosen.dead_letter if "://" in chosen.dead_letter else str(Path(chosen.dead_letter).resolve()),
            ledger=ledger_url,
            quota_dir=quota_dir,
        )
        environment = {
            **delivery.environment(),
            **({"DEFENDER_HUB_HEALTH_DIR": str(Path(args.health_dir).resolve())} if args.health_dir else {}),
            "DEFENDER_HUB_DAEMON_LOG_LEVEL": "INFO" if args.verbose else "WARN",
            "DEFENDER_HUB_DAEMON_START_LOG_LEVEL": "INFO" if args.verbose else "ERROR",
            **({"PROMETHEUS_MULTIPROC_DIR": metrics_dir} if metrics_dir else {}),
            **{
                f"DEFENDER_HUB_{name.upper()}": str(value)
                for name in ("default_account", "region", "partition", "config", "log_format")
                if (value := getattr(args, name)) is not None
            },
        }
        if metrics_dir is not None:
            from defender_hub.metrics import serve  # noqa: PLC0415 - only with --metrics-port

            serve(args.metrics_port, Path(metrics_dir), args.metrics_address)
        sweeps.append(start_periodic_retry(delivery, args.parked_retry_seconds))
        if args.refresh_hours > 0:
            sweeps.append(start_periodic_refresh(delivery, args.refresh_hours * 3600))
        status = run_daemon(
            settings,
            environment,
            json_logs=args.log_format == "json",
            on_start=functools.partial(note_daemon, Path(args.health_dir)) if args.health_dir else lambda _: None,
        )
    finally:
        for sweep in sweeps:
            sweep.end()  # before the folders go: a sweep under way uses the quota's
        for folder in (quota_dir, metrics_dir):
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)
    if status == 0:
        log.info("stopped: each shard checkpointed at what was delivered")
    return EXIT_OK if status == 0 else EXIT_FAILURES


def _checked(args: argparse.Namespace) -> str:
    """Checks `run`'s settings before anything starts; returns the stream's Region. Raises ConfigError."""
    if not args.stream or not args.application:
        raise ConfigError(
            "run needs a stream and an application: --stream/--application, DEFENDER_HUB_STREAM/"
            "DEFENDER_HUB_APPLICATION, or [run] in the settings file"
        )
    if not isinstance(args.max_records, int):
        raise ConfigError(f"max records {args.max_records!r} is not a whole number")
    load_mapping_options(  # validated here, before the daemon starts, rather than in every shard's processor
        account_id=args.default_account, region=args.region, partition=args.partition, config_file=args.config
    )
    region = args.region or aws_region()
    if not 1 <= args.max_records <= MAX_RECORDS:
        raise ConfigError(f"--max-records must be 1..{MAX_RECORDS}")
    if not isinstance(args.refresh_hours, int) or args.refresh_hours < 0:
        raise ConfigError(f"refresh hours {args.refresh_hours!r} is not a whole number of hours, 0 or more")
    if not isinstance(args.max_clock_skew, int) or args.max_clock_skew < 0:
        raise ConfigError(f"max clock skew {args.max_clock_skew!r} is not a whole number of minutes, 0 or more")
    if not isinstance(args.parked_retry_seconds, int) or args.parked_retry_seconds < 1:
        raise ConfigError(f"parked retry seconds {args.parked_retry_seconds!r} is not a whole number, 1 or more")
    if args.metrics_port is not None and not (isinstance(args.metrics_port, int) and 0 < args.metrics_port < 65536):
        raise ConfigError(f"metrics port {args.metrics_port!r} is not a port number")
    from defender_hub.metrics import check_address  # noqa: PLC0415 - as `serve`: not loaded for the other commands

    check_address(args.metrics_address)
    if args.log_format not in LOG_FORMATS:
        raise ConfigError(f"log format {args.log_format!r} is not one of {', '.join(LOG_FORMATS)}")
    return region


def _absolute_ledger(url: str | None) -> str:
    """The ledger URL, checked, with a SQLite path made absolute: the processors may start elsewhere."""
    if url is None:
        raise ConfigError("run needs a ledger")  # delivery_settings gives run the state directory's by default
    kind, target = parse_ledger_url(url)
    return f"sqlite:///{Path(target).resolve()}" if kind == "sqlite" else url
