"""The image, built once per test process with podman, and containers of it on the host network."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from defender_hub import __version__

ROOT = Path(__file__).parents[2]
IMAGE = "localhost/defender-hub:test"
LOCAL_BASE = "localhost/bookworm-python:local"
"""Where no registry is reachable: a Debian bookworm base with Python, made with mmdebstrap."""
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
TOOLS = ("podman", "runc", "mmdebstrap")


class Podman:
    """podman with the two settings this kind of machine needs: the runc runtime, and no raised ulimits."""

    def __init__(self, conf: Path) -> None:
        conf.write_text("[containers]\ndefault_ulimits = []\n")
        self.env = os.environ | {"CONTAINERS_CONF": str(conf)}

    def __call__(self, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """Runs `podman ARGS`; raises with its output when it fails and `check`."""
        done = subprocess.run(
            ["podman", "--runtime", "runc", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"podman {' '.join(args[:3])}… failed ({done.returncode}): {done.stderr[-3000:]}")
        return done


def build(*build_args: str) -> list[str]:
    """`podman build`'s arguments as a user's build, on the local base, with these `--build-arg`s; the context last."""
    secret = ["--secret", f"id=ca,src={CA_BUNDLE}"] if CA_BUNDLE.exists() else []
    arguments = [f"BASE_IMAGE={LOCAL_BASE}", *build_args]
    return [
        "build", "--format", "docker", "--network", "host", *secret,
        *(part for argument in arguments for part in ("--build-arg", argument)),
        "-f", str(ROOT / "docker" / "Dockerfile"),
    ]  # fmt: skip


@pytest.fixture(scope="session")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Podman:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"CI installs {', '.join(missing)} (.ci/run): they are missing")
        pytest.skip(f"the container tests need {', '.join(missing)} (apt-get install podman runc mmdebstrap)")
    return Podman(tmp_path_factory.mktemp("podman") / "containers.conf")


@pytest.fixture(scope="session")
def image(podman: Podman, tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config) -> Iterator[str]:
    """The image of docker/Dockerfile, built as a user would, on a local bookworm base; its size and KCL printed."""
    if podman("image", "exists", LOCAL_BASE, check=False).returncode != 0:
        base = tmp_path_factory.mktemp("base") / "base.tar"
        subprocess.run(
            ["mmdebstrap", "--quiet", "--variant=minbase", "--include=ca-certificates,python3,python3-venv",
             "bookworm", str(base)],
            check=True, capture_output=True, timeout=600,
        )  # fmt: skip
        podman("import", str(base), LOCAL_BASE)
    podman(*build(f"VERSION={__version__}"), "-t", IMAGE, str(ROOT), timeout=1200)  # the label's: pyproject's
    size = int(podman("image", "inspect", IMAGE, "--format", "{{.Size}}").stdout)
    version = podman("run", "--rm", "--network", "host", IMAGE, "--version").stdout.strip()
    capture = pytestconfig.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled():  # shown whatever pytest captures: the figures a reader of CI wants
        print(f"\nimage {IMAGE}: {size / 1e6:.0f} MB, {version}", flush=True)
    yield IMAGE
