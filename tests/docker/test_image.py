"""The image as users run it: the consumer in a container on the host network, against the local stack."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest

from defender_hub import __version__
from defender_hub.consumer.launcher import kcl_version
from defender_hub.local.aws import LocalAws
from defender_hub.local.securityhub import LocalSecurityHub
from defender_hub.local.stack import LocalStack
from defender_hub.synthetic import EventMix, generate_events
from tests.consumer.test_processor import (
    POISON,
    Stream,
    assert_checkpoints_behind_delivery,
    covered,
    findings_by_record,
    wait_for,
    wait_until_all_delivered,
)
from tests.docker.conftest import ROOT, Podman, build

# The first of these tests builds the image in its setup (tests/docker/conftest.py): a base made with mmdebstrap, up
# to 10 minutes, then the build, up to 20.
pytestmark = pytest.mark.timeout(2400)

STOP_SECONDS = 60
"""`podman stop`'s grace: the daemon drains and checkpoints in about 15 s (its shutdown grace)."""


@pytest.fixture(scope="module")
def local_aws() -> Iterator[LocalAws]:
    with LocalAws() as stack:
        yield stack


class Container:
    """`defender-hub run` in a container of the image, with a volume of its own for the ledger and dead letters."""

    def __init__(self, podman: Podman, image: str, stack: LocalStack, stream: Stream, *flags: str) -> None:
        self.podman, self.name = podman, f"defender-hub-{uuid.uuid4().hex[:8]}"
        settings = stack.environment() | {
            "DEFENDER_HUB_STREAM": stream.name,
            "DEFENDER_HUB_APPLICATION": stream.application,
            "DEFENDER_HUB_WORKER_ID": "container-1",
        }
        environment = [argument for name, value in settings.items() for argument in ("-e", f"{name}={value}")]
        podman(
            "run", "-d", "--name", self.name, "--network", "host", "--health-interval", "disable",
            "-v", f"{self.name}:/var/lib/defender-hub", *environment, image, "run", *flags,
        )  # fmt: skip

    def exec(self, *command: str) -> str:
        """Runs `command` in the container; returns its output."""
        return self.podman("exec", self.name, *command).stdout

    def healthy(self) -> bool:
        """What the image's HEALTHCHECK says now."""
        return self.podman("healthcheck", "run", self.name, check=False).returncode == 0

    def logs(self) -> list[str]:
        done = self.podman("logs", self.name)
        return [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]

    def stop(self) -> int:
        """Stops it as `docker stop` does (SIGTERM, then SIGKILL after the grace); returns its exit status."""
        self.podman("stop", "-t", str(STOP_SECONDS), self.name, timeout=STOP_SECONDS + 30)
        return int(self.podman("inspect", self.name, "--format", "{{.State.ExitCode}}").stdout)

    def remove(self) -> None:
        self.podman("rm", "-f", "-v", self.name, check=False)
        self.podman("volume", "rm", "-f", self.name, check=False)


def test_the_image_reports_the_versions_the_tests_run(podman: Podman, image: str) -> None:
    printed = podman("run", "--rm", "--network", "host", image, "--version").stdout.strip()

    assert printed == f"defender-hub {__version__} (KCL {kcl_version()})"


def test_the_images_version_label_is_the_packages(podman: Podman, image: str) -> None:
    label = podman("image", "inspect", image, "--format", '{{index .Labels "org.opencontainers.image.version"}}')

    assert label.stdout.strip() == __version__


def test_a_version_that_is_not_the_packages_fails_the_build(podman: Podman, image: str) -> None:
    # After `image`, so that the build stage's layers are cached: only the check runs again
    done = podman(*build("VERSION=0.0.0-not-it"), "--target", "build", str(ROOT), check=False, timeout=1200)

    assert done.returncode != 0
    assert f"--build-arg VERSION=0.0.0-not-it is not the package version {__version__}" in done.stdout + done.stderr


def test_the_container_delivers_a_stream_as_a_non_root_user_with_json_logs_and_a_health_check(
    podman: Podman, image: str, local_aws: LocalAws
) -> None:
    stream = Stream(local_aws, shards=2)
    events = list(generate_events(60, seed=21))
    payloads = [*events[:30], POISON[0], *events[30:]]
    placed = stream.put(payloads)
    with LocalSecurityHub() as hub:
        # --verbose: the daemon's INFO lines too, to see that its own lines come out as JSON like the rest
        container = Container(podman, image, LocalStack(local_aws, hub), stream, "--verbose")
        try:
            wait_until_all_delivered(stream, hub, events, placed)
            daemon = json.loads(container.exec("cat", "/var/lib/defender-hub/health/daemon.json"))
            status = container.exec("cat", f"/proc/{daemon['pid']}/status")
            assert "Uid:\t10001\t" in status  # the daemon, and so its processors, run as uid 10001, not root
            assert container.healthy()

            container.exec("sh", "-c", f"kill -STOP {daemon['pid']}")  # a daemon that no longer moves
            assert not container.healthy()
            container.exec("sh", "-c", f"kill -CONT {daemon['pid']}")
            assert container.stop() == 0
            lines = container.logs()
        finally:
            container.remove()
    parsed = [json.loads(line) for line in lines]  # every line a JSON object
    assert {"time", "level", "logger", "message"} <= parsed[0].keys()
    batches = [line for line in parsed if line["logger"] == "defender_hub.consumer" and "accepted" in line]
    assert sum(line["accepted"] for line in batches) >= 60 and all("shard" in line for line in batches)
    assert any(line["logger"].startswith("s.a.k") for line in parsed)  # the daemon's own lines, as JSON
    assert not any(finding["Title"] in line for finding in hub.findings() for line in lines)  # no finding bodies


def test_podman_stop_mid_stream_exits_0_and_a_restart_sends_only_the_rest(
    podman: Podman, image: str, local_aws: LocalAws
) -> None:
    stream = Stream(local_aws, shards=2)
    payloads = list(generate_events(200, seed=22, mix=EventMix(audit_task=0)))
    placed = stream.put(payloads)
    made = findings_by_record(payloads, placed)
    with LocalSecurityHub(rate=2, burst=2) as hub:  # slow enough to stop half-way
        container = Container(podman, image, LocalStack(local_aws, hub), stream, "--max-records", "10")
        try:
            wait_for("some findings", lambda: len(hub.findings()) >= 20, 180)
            assert container.stop() == 0
            at_stop = assert_checkpoints_behind_delivery(stream, hub, made)
            done = covered(made, at_stop)
            assert 0 < len(done) < len(payloads), "the stop should land mid-stream"
            sent_before = sum(r.findings for r in hub.requests("BatchImportFindings") if r.status == 200)
            window = sum(len(ids) for record, ids in made.items() if record not in done)

            podman("start", container.name)
            wait_until_all_delivered(stream, hub, payloads, placed)
            assert container.stop() == 0
        finally:
            container.remove()
        sent_after = sum(r.findings for r in hub.requests("BatchImportFindings") if r.status == 200) - sent_before
        assert sent_after <= window  # only the unacknowledged window is sent again
