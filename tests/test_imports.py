"""What each entry point loads: the command line and the Lambda forwarder start without the packages only some of
their work needs."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("boto3", "botocore", "prometheus_client", "amazon_kclpy")


def loaded(module: str) -> list[str]:
    """The heavy packages a fresh interpreter holds once it has imported `module`."""
    code = f"import sys, {module}; print(' '.join(name for name in {HEAVY!r} if name in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return done.stdout.split()


def test_the_command_line_loads_no_aws_sdk_metrics_or_kcl_until_a_command_needs_them() -> None:
    # `defender-hub health` runs every 30 s in the image, and `convert` and `--help` should answer at once.
    assert loaded("defender_hub.cli") == []


@pytest.mark.parametrize("module", ["defender_hub.forwarder", "defender_hub.settings"])
def test_the_forwarder_and_the_settings_table_load_neither_metrics_nor_the_kcl(module: str) -> None:
    # The forwarder's Lambda zip has neither; boto3 it loads itself, at its first invocation.
    assert not {"prometheus_client", "amazon_kclpy"} & set(loaded(module))
