"""What the commands share: exit statuses, DEFENDER_HUB_* variables, the mapping flags, stop signals, summaries."""

from __future__ import annotations

import argparse
import os
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from defender_hub.sink import DeliveryReport

__all__ = [
    "DEFAULT_DEAD_LETTERS",
    "EXIT_FAILURES",
    "EXIT_OK",
    "env",
    "mapping_flags",
    "stop_on_signals",
    "summary",
]

DEFAULT_DEAD_LETTERS = "dead-letters.jsonl"
EXIT_OK = 0
EXIT_FAILURES = 2
"""Some input could not be handled, or the command was used wrongly: argparse's own code for bad usage."""


def env(name: str) -> str | None:
    """The value of DEFENDER_HUB_`name`, or None when it is unset or empty."""
    return os.environ.get(f"DEFENDER_HUB_{name}") or None


def mapping_flags(parser: argparse.ArgumentParser) -> None:
    """Adds the flags that shape findings: account, Region, partition, settings file."""
    parser.add_argument("--account-id", default=env("ACCOUNT_ID"), help="account for events that carry none")
    parser.add_argument("--region", default=env("REGION"), help="Region for events that carry none, e.g. us-east-1")
    parser.add_argument(
        "--partition", default=env("PARTITION"), help="aws, aws-cn or aws-us-gov (default: the Region's)"
    )
    parser.add_argument("--config", type=Path, default=env("CONFIG"), metavar="FILE", help="TOML settings file")


def stop_on_signals() -> threading.Event:
    """Returns an event that SIGINT or SIGTERM sets, for a command to finish what it is doing and stop."""
    stop = threading.Event()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signal_number, lambda *_: stop.set())
    return stop


def summary(report: DeliveryReport, elapsed: float) -> str:
    """One line of what a delivery did."""
    return (
        f"accepted {report.accepted}, dead-lettered {report.dead_lettered}, superseded {report.superseded}, "
        f"requests {report.requests}, throttled {report.throttled}, retries {report.retried}, "
        f"elapsed {elapsed:.1f} s"
    )
