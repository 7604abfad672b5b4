"""The `defender-hub` command line: the parser from each command's module (`defender_hub.commands`), and dispatch."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from defender_hub import __version__
from defender_hub.commands import ALL
from defender_hub.commands.aws import aws_failure
from defender_hub.commands.common import EXIT_FAILURES, EXIT_USAGE
from defender_hub.errors import ConfigError
from defender_hub.settings.resolving import resolve

__all__ = ["main", "parse"]


class _Version(argparse.Action):
    """Prints defender-hub's version and the KCL's: what the jars found are, looked up only when asked."""

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        from defender_hub.consumer.launcher import kcl_version  # noqa: PLC0415

        print(f"defender-hub {__version__} (KCL {kcl_version() or 'not installed'})")
        parser.exit()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="defender-hub",
        description="AWS IoT Device Defender findings into AWS Security Hub.",
    )
    parser.add_argument("--version", action=_Version, nargs=0, help="print the version and the KCL's, and exit")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in ALL:
        command.add(commands)
    return parser


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command and its settings that `argv` gives, each setting resolved (flag, variable, settings file, default)
    and checked; raises ConfigError, or SystemExit for flags argparse refuses."""
    return resolve(_parser().parse_args(argv))


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit status: 1 for a failure at run time, 2 for bad usage or configuration,
    said in one line on stderr."""
    try:
        args = parse(argv)
        status: int = args.handler(args)
    except ConfigError as exc:
        print(f"defender-hub: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        # The reader went away (`| head`); the rest of the output has nowhere to go.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILURES
    except Exception as exc:
        # botocore's errors about credentials, endpoints and AWS's answers are the user's to fix, not defects: one
        # line each. Anything else is a defect, and its traceback is what it takes to fix it.
        failure = aws_failure(exc)
        if failure is None:
            raise
        status, line = failure
        print(f"defender-hub: {line}", file=sys.stderr)
    return status
