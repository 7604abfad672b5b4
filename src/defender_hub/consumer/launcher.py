"""Starts the KCL MultiLangDaemon with a generated properties file and the findings processor as its child program."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO, Any

from defender_hub.aws_config import quick_check_config
from defender_hub.errors import NO_CREDENTIALS, ConfigError
from defender_hub.logs import daemon_line
from defender_hub.settings import (
    INITIAL_POSITIONS,
    MAX_RECORDS,
    POLL_MILLIS,
    RETRIEVAL_MODES,
    from_environment,
    variable,
)
from defender_hub.timestamps import format_iso, parse_epoch_seconds

__all__ = [
    "DAEMON_JVM_OPTIONS",
    "DaemonSettings",
    "check_daemon",
    "check_start",
    "check_stream",
    "daemon_command",
    "kcl_jars",
    "kcl_version",
    "lease_owners",
    "properties",
    "run_daemon",
    "start_timestamp",
    "tuning",
]

_NEEDS_TIMESTAMP = "--initial-position AT_TIMESTAMP needs --timestamp (ISO 8601 or epoch seconds)"
DAEMON_JVM_OPTIONS = ("-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1")
"""How the daemon's JVM runs: its work is glue (the KCL's calls, the protocol's JSON lines), and the cores are the
shard processes'. The serial collector needs no threads of its own; C1's code is enough for glue, and C2's compiling
was half the daemon's CPU. Measured on the load test's ten accounts: the daemon's CPU per 1,000 findings fell from
0.067 s to 0.037 s, and the consumer's before its first import from 16.1 s to 10.3 s."""
LOG_CONFIGURATION = Path(__file__).with_name("logback.xml")
"""The daemon's logging: the processor's lines once, per-batch chatter off."""


@dataclass(frozen=True)
class DaemonSettings:
    """What `defender-hub run` tells the daemon."""

    stream: str
    application: str
    worker_id: str
    region: str
    initial_position: str = "TRIM_HORIZON"
    timestamp: int | None = None
    """With AT_TIMESTAMP: where shards without a checkpoint start, in whole epoch seconds (see `start_timestamp`)."""
    retrieval_mode: str = "POLLING"
    max_records: int = MAX_RECORDS
    poll_millis: int = POLL_MILLIS
    failover_millis: int = 10_000
    shutdown_grace_millis: int = 15_000


def kcl_jars() -> Path:
    """Returns the folder of the KCL jars: the kcl_jars setting's, else those amazon_kclpy ships."""
    configured = from_environment("kcl_jars")
    if configured:
        folder = Path(configured)
    else:
        try:
            import amazon_kclpy  # noqa: PLC0415 - only the consumer needs the KCL

            folder = Path(amazon_kclpy.__file__).parent / "jars"
        except ImportError:
            raise ConfigError("amazon_kclpy is not installed (the kcl dependency group, or amazon-kclpy)") from None
    if not any(folder.glob("*.jar")):
        raise ConfigError(f"no KCL jars in {folder}: install amazon-kclpy with its jars, or set {variable('kcl_jars')}")
    return folder


def kcl_version() -> str | None:
    """The version of the KCL jars `kcl_jars` finds, or None without them."""
    try:
        folder = kcl_jars()
    except ConfigError:
        return None
    for jar in folder.glob("amazon-kinesis-client-*.jar"):
        version = jar.stem.removeprefix("amazon-kinesis-client-")
        if version[:1].isdigit():  # not amazon-kinesis-client-multilang-…
            return version
    return None


def _java() -> str:
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if not java or not Path(java).exists():
        raise ConfigError("no Java: install a Java 17 runtime (openjdk-17-jre-headless) or set JAVA_HOME")
    return java


def _endpoint(service: str) -> str | None:
    return os.environ.get(f"AWS_ENDPOINT_URL_{service}") or os.environ.get("AWS_ENDPOINT_URL")


def properties(settings: DaemonSettings) -> str:
    """Returns the daemon's properties file for `settings` and the endpoints in the environment."""
    if settings.initial_position not in INITIAL_POSITIONS:
        raise ConfigError(
            f"initial position {settings.initial_position!r} is not one of {', '.join(INITIAL_POSITIONS)}"
        )
    if settings.retrieval_mode not in RETRIEVAL_MODES:
        raise ConfigError(f"retrieval mode {settings.retrieval_mode!r} is not one of {', '.join(RETRIEVAL_MODES)}")
    if settings.initial_position == "AT_TIMESTAMP":
        if settings.timestamp is None:
            raise ConfigError(_NEEDS_TIMESTAMP)
        # The KCL refuses initialPositionInStream = AT_TIMESTAMP ("Invalid InitialPosition"), and the file's order is
        # lost as the daemon reads it: a start at a moment is the extended position alone, in whole epoch seconds.
        position = {"initialPositionInStreamExtended": str(settings.timestamp)}
    else:
        position = {"initialPositionInStream": settings.initial_position}
    lines = {
        "executableName": f"{sys.executable} -m defender_hub.consumer",
        "streamName": settings.stream,
        "applicationName": settings.application,
        "workerId": settings.worker_id,
        "regionName": settings.region,
        "AWSCredentialsProvider": "DefaultCredentialsProvider",  # the AWS SDK v2 chain's name, as KCL 3 reads it
        "clientVersionConfig": "CLIENT_VERSION_CONFIG_3X",
        **position,
        "retrievalMode": settings.retrieval_mode,
        "maxRecords": str(settings.max_records),
        "idleTimeBetweenReadsInMillis": str(settings.poll_millis),
        "failoverTimeMillis": str(settings.failover_millis),
        "shutdownGraceMillis": str(settings.shutdown_grace_millis),
        "shardSyncIntervalMillis": "1000",
        "parentShardPollIntervalMillis": "1000",
        # An empty poll still calls the processor, so a shard at the tip notes its progress for the health check.
        "callProcessRecordsEvenForEmptyRecordList": "true",
    }
    kinesis, dynamodb, cloudwatch = _endpoint("KINESIS"), _endpoint("DYNAMODB"), _endpoint("CLOUDWATCH")
    if kinesis:
        lines["kinesisEndpoint"] = kinesis
    if dynamodb:
        lines["dynamoDBEndpoint"] = dynamodb
    if cloudwatch:
        lines["cloudWatchClient.endpointOverride"] = cloudwatch
    elif kinesis:
        lines["metricsLevel"] = "NONE"  # a local stack has no CloudWatch to publish to
    lines |= tuning(from_environment("kcl_properties") or "")
    return "".join(f"{key} = {value}\n" for key, value in lines.items())


_PROPERTY = re.compile(r"\s*([A-Za-z][A-Za-z0-9.]*)\s*=\s*([^;\n]*?)\s*")


def tuning(spec: str) -> dict[str, str]:
    """Further daemon properties from `NAME=VALUE;NAME=VALUE` (the kcl_properties setting); raises ConfigError for
    anything else."""

    tuned: dict[str, str] = {}
    for part in filter(str.strip, spec.split(";")):
        matched = _PROPERTY.fullmatch(part)
        if matched is None or not matched.group(2):
            raise ConfigError(f"{variable('kcl_properties')}: {part[:80]!r} is not NAME=VALUE")
        tuned[matched.group(1)] = matched.group(2)
    return tuned


def check_stream(stream: str, region: str) -> int:
    """Returns the retention of `stream` in hours; raises ConfigError when Kinesis can't be reached or has no such
    stream: better said at start than retried by the daemon."""
    import boto3  # noqa: PLC0415 - only `run` needs it
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError  # noqa: PLC0415

    endpoint = _endpoint("KINESIS")
    kinesis = boto3.client("kinesis", region_name=region, endpoint_url=endpoint, config=quick_check_config())
    where = endpoint or f"Kinesis in {region}"
    try:
        summary: dict[str, Any] = kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]
    except NoCredentialsError:
        raise ConfigError(NO_CREDENTIALS) from None
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code == "ResourceNotFoundException":
            raise ConfigError(f"stream {stream!r} not found at {where}") from None
        raise ConfigError(f"{where} refused DescribeStreamSummary for {stream!r}: {code}") from None
    except BotoCoreError as exc:
        raise ConfigError(f"can't reach {where}: {type(exc).__name__}") from None
    return int(summary["RetentionPeriodHours"])


def start_timestamp(initial_position: str, timestamp: str | None) -> int | None:
    """Returns `timestamp` (ISO 8601 or epoch seconds) as the whole epoch second where shards without a checkpoint
    start, None for a start at either end; raises ConfigError for a timestamp missing, unneeded or unreadable."""
    if initial_position != "AT_TIMESTAMP":
        if timestamp is not None:
            raise ConfigError(f"--timestamp is only for --initial-position AT_TIMESTAMP, not {initial_position}")
        return None
    if timestamp is None:
        raise ConfigError(_NEEDS_TIMESTAMP)
    try:
        return parse_epoch_seconds(timestamp)
    except ValueError:
        raise ConfigError(
            f"--timestamp {timestamp[:64]!r} is neither ISO 8601 (2026-12-01T08:00:00Z) nor epoch seconds"
        ) from None


def check_start(timestamp: str, start: int, retention_hours: int, *, leased: bool) -> str | None:
    """Checks a start at `timestamp` (read as epoch second `start`) against now and the stream's retention: None when
    it is within; else, for an application without leases (`leased` False), raises ConfigError; for one with leases,
    whose shards start at their checkpoints, returns what is wrong with it, for a warning."""
    now = time.time()
    oldest = now - retention_hours * 3600
    if oldest <= start <= now:
        return None
    shown = repr(timestamp[:64])
    if start > now:
        problem, advice = f"--timestamp {shown} is in the future: it is {format_iso(int(now * 1000))} now", ""
    else:
        problem = (
            f"--timestamp {shown} is before the stream's retention of {retention_hours} hours, which starts at "
            f"{format_iso(int(oldest * 1000))}"
        )
        advice = ": what was put before is gone; TRIM_HORIZON starts at the oldest record"
    if not leased:
        raise ConfigError(problem + advice)
    return problem


def lease_owners(application: str, region: str) -> set[str]:
    """The workers holding leases of `application` now, "" for a lease none holds; empty when it has no leases or its
    lease table can't be read (yet)."""
    import boto3  # noqa: PLC0415 - only `run` needs it

    config = quick_check_config()
    dynamodb = boto3.client("dynamodb", region_name=region, endpoint_url=_endpoint("DYNAMODB"), config=config)
    try:
        # The KCL leaves out the leaseOwner of a lease none holds (one whose worker stopped, or not yet taken).
        pages = dynamodb.get_paginator("scan").paginate(
            TableName=application, ProjectionExpression="leaseKey, leaseOwner"
        )
        return {item.get("leaseOwner", {}).get("S", "") for page in pages for item in page["Items"]}
    except Exception:
        return set()


def check_daemon() -> None:
    """Raises ConfigError unless Java and the KCL's jars are found: said before `run` starts anything."""
    _java()
    kcl_jars()


def daemon_command(properties_file: Path) -> list[str]:
    """Returns the command that starts the MultiLangDaemon."""
    return [
        _java(),
        *DAEMON_JVM_OPTIONS,
        "-Daws.cborEnabled=false",  # moto and kinesalite speak JSON only; real Kinesis speaks both
        "-cp",
        f"{kcl_jars()}/*",
        "software.amazon.kinesis.multilang.MultiLangDaemon",
        "--properties-file",
        str(properties_file),
        "--log-configuration",
        str(LOG_CONFIGURATION),
    ]


def run_daemon(
    settings: DaemonSettings,
    environment: dict[str, str],
    *,
    json_logs: bool = False,
    on_start: Callable[[int], None] = lambda _: None,
) -> int:
    """Runs the daemon until it exits; SIGTERM and SIGINT are passed on so it drains and checkpoints.

    With `json_logs`, each line of its output (its own log and its processors') goes to stdout as a JSON line.
    `on_start` hears the daemon's process id. Returns 0 when the daemon ended cleanly, including after a stop we
    passed on; its exit status otherwise.
    """
    with tempfile.TemporaryDirectory(prefix="defender-hub-") as folder:
        properties_file = Path(folder) / "kcl.properties"
        properties_file.write_text(properties(settings))
        command = daemon_command(properties_file)
        env = os.environ | environment | {"CBOR_ENABLED": "false"}
        output = subprocess.PIPE if json_logs else None
        daemon = subprocess.Popen(  # noqa: S603 - our own command line
            command, env=env, stdout=output, stderr=subprocess.STDOUT if json_logs else None
        )
        on_start(daemon.pid)
        if daemon.stdout is not None:
            relay = threading.Thread(target=_relay_as_json, args=(daemon.stdout,), name="daemon-log", daemon=True)
            relay.start()

        stopped: list[int] = []

        def forward(signal_number: int, _: FrameType | None) -> None:
            stopped.append(signal_number)
            daemon.send_signal(signal_number)

        for signal_number in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signal_number, forward)
        status = daemon.wait()
        if daemon.stdout is not None:
            relay.join(timeout=5)
        # The JVM ends with 128 + the signal once its shutdown hooks (the KCL's drain) have run.
        drained = stopped and status in {0, 128 + stopped[0], -stopped[0]}
        return 0 if drained else status


def _relay_as_json(lines: IO[bytes]) -> None:
    for line in lines:
        text = line.decode("utf-8", "replace").rstrip("\n")
        if text.strip():
            print(daemon_line(text), flush=True)
