"""`defender-hub health`: exit 0 while the worker is healthy, 1 when not (a container's HEALTHCHECK)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from defender_hub.commands.common import EXIT_OK
from defender_hub.consumer.health import STALL_SECONDS, check
from defender_hub.settings import said
from defender_hub.settings.resolving import add_flags

__all__ = ["add"]

EXIT_UNHEALTHY = 1
"""What a HEALTHCHECK command returns for unhealthy."""


def add(commands: Any) -> None:
    """Declares `health`."""
    health = commands.add_parser(
        "health",
        help="whether `run` is healthy: its daemon alive, its shards moving",
        description=(
            "Reads what `run --health-dir DIR` notes: exits 1 when the KCL daemon is gone or stopped, or when no "
            "shard has made progress for --stall-seconds while records were waiting; 0 otherwise. Says why."
        ),
    )
    add_flags(health, "health_dir", required=("health_dir",))
    health.add_argument(
        "--stall-seconds",
        type=float,
        default=STALL_SECONDS,
        help=f"unhealthy when no shard made progress this long with records waiting (default: {STALL_SECONDS:g})",
    )
    health.set_defaults(handler=_health)


def _health(args: argparse.Namespace) -> int:
    if args.health_dir is None:
        print(f"defender-hub: health: give {said('health_dir')}, as `run` has", file=sys.stderr)
        return EXIT_UNHEALTHY
    verdict = check(args.health_dir, args.stall_seconds)
    print(f"{'healthy' if verdict.healthy else 'unhealthy'}: {verdict.reason}")
    return EXIT_OK if verdict.healthy else EXIT_UNHEALTHY
