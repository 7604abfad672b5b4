"""The local stack: moto's Kinesis, DynamoDB, SQS, S3 and STS and the local Security Hub, on 127.0.0.1 together (or
on the address given: 0.0.0.0 in a container on a compose network)."""

from __future__ import annotations

import shlex
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3

from defender_hub.errors import ConfigError, PortTaken
from defender_hub.local.aws import LOOPBACK, LocalAws, port_is_free
from defender_hub.local.securityhub import LocalSecurityHub
from defender_hub.settings import variable

__all__ = ["LOCAL_KCL_PROPERTIES", "REGION", "LocalStack", "consumer_command", "fresh_folder", "local_stack"]

REGION = "us-east-1"
"""The Region that the stack's environment names for every AWS tool pointed at it."""

LOCAL_KCL_PROPERTIES = "leaseAssignmentIntervalMillis=1000;workerMetricsReporterFreqInMillis=1000"
"""KCL 3 assigns leases once its workers reported their metrics, every 20 s by default: a minute to the first
record. On the local stack it does so every second; against AWS, the defaults stand (each pass reads the tables)."""

OWNED = ".defender-hub"
"""The file that marks a folder of the state directory as defender-hub's own, to empty at will."""


class LocalStack:
    """The running local stack: moto's Kinesis, DynamoDB, SQS, S3 and STS, and the strict local Security Hub."""

    def __init__(self, aws: LocalAws, hub: LocalSecurityHub) -> None:
        self.aws, self.hub = aws, hub

    def environment(self) -> dict[str, str]:
        """The variables that point AWS tools, defender-hub among them, at this stack and nowhere else."""
        return {
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_ENDPOINT_URL_KINESIS": self.aws.endpoint_url,
            "AWS_ENDPOINT_URL_DYNAMODB": self.aws.endpoint_url,
            "AWS_ENDPOINT_URL_SQS": self.aws.endpoint_url,
            "AWS_ENDPOINT_URL_S3": self.aws.endpoint_url,
            "AWS_ENDPOINT_URL_STS": self.aws.endpoint_url,
            "AWS_ENDPOINT_URL_SECURITYHUB": self.hub.endpoint_url,
            variable("kcl_properties"): LOCAL_KCL_PROPERTIES,
        }

    def exports(self, state: Path) -> list[str]:
        """The shell's `export` lines of the stack's environment, with the consumer's state kept in the folder
        `state`."""
        environment = self.environment() | {variable("state_dir"): str(state)}
        return [f"export {name}={shlex.quote(value)}" for name, value in environment.items()]

    def client(self, service: str) -> Any:
        """A client of one of the stack's services."""
        env = self.environment()
        return boto3.client(
            service,
            endpoint_url=env[f"AWS_ENDPOINT_URL_{service.upper()}"],
            region_name=REGION,
            aws_access_key_id="local",
            aws_secret_access_key="local",  # noqa: S106 - throw-away credentials of the local stack
        )

    def create_stream(self, stream: str, shards: int) -> Any:
        """Creates `stream` with `shards` shards and waits until it is active; returns the Kinesis client."""
        kinesis = self.client("kinesis")
        kinesis.create_stream(StreamName=stream, ShardCount=shards)
        for _ in range(60):
            if kinesis.describe_stream(StreamName=stream)["StreamDescription"]["StreamStatus"] == "ACTIVE":
                return kinesis
            time.sleep(0.5)
        raise RuntimeError(f"stream {stream} did not become active")


@contextmanager
def local_stack(aws_port: int = 0, hub_port: int = 0, host: str = LOOPBACK) -> Iterator[LocalStack]:
    """Runs the local stack on `host` (127.0.0.1 unless told) for the duration of the block. The hub asks moto's STS
    at moto's endpoint as this host reaches it: on 0.0.0.0, that is 127.0.0.1, inside the stack's own container."""
    if hub_port and not port_is_free(hub_port, host):
        raise PortTaken(hub_port, host)  # before moto's start, which takes seconds
    with (
        LocalAws(aws_port, host=host) as aws,
        LocalSecurityHub(port=hub_port, sts_endpoint=aws.endpoint_url, host=host) as hub,
    ):
        yield LocalStack(aws, hub)


def consumer_command(
    stream: str, application: str, worker: str, dead_letters: Path, ledger: str, *flags: str
) -> list[str]:
    """Returns the command line of `defender-hub run` for a stream of the local stack."""
    return [
        sys.executable, "-m", "defender_hub", "run", "--stream", stream, "--application", application,
        "--worker-id", worker, "--dead-letter", str(dead_letters), "--ledger", ledger, *flags,
    ]  # fmt: skip


def fresh_folder(folder: Path) -> Path:
    """Empties `folder` (making it if missing) and marks it defender-hub's; a ConfigError if it holds anything and
    is not marked: a state directory set to a home folder must not cost its `local` or `demo` subfolder."""
    if folder.exists() and not (folder / OWNED).exists() and any(folder.iterdir()):
        raise ConfigError(f"{folder} is not defender-hub's, so it is left alone: move it, or pick another --state-dir")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    (folder / OWNED).write_text("made by defender-hub, which empties this folder when it needs it afresh\n")
    return folder
