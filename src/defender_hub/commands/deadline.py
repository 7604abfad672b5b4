"""Ending a command on time: stop signals, --deadline, and the Deadline that stops a delivery as SIGTERM would."""

from __future__ import annotations

import argparse
import signal
import threading

from defender_hub.errors import SinkError, SinkStopped

__all__ = ["Deadline", "deadline_flag", "stop_on_signals"]


def stop_on_signals() -> threading.Event:
    """Returns an event that SIGINT or SIGTERM sets, for a command to finish what it is doing and stop."""
    stop = threading.Event()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signal_number, lambda *_: stop.set())
    return stop


def _seconds(text: str) -> float:
    """A --deadline: a number of seconds over 0."""
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < seconds < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds over 0")
    return seconds


def deadline_flag(parser: argparse.ArgumentParser, what: str) -> None:
    """Adds --deadline, after which the command stops as on SIGTERM: `what` says what is kept of the rest."""
    parser.add_argument(
        "--deadline",
        type=_seconds,
        metavar="SECONDS",
        help=f"stop after this many seconds, as on SIGTERM: {what}, exit status 1 (default: none: an unreachable "
        "Security Hub is retried for up to --outage-limit, then what is left is parked)",
    )


class Deadline:
    """While entered, sets `stop` once `seconds` have passed, as SIGTERM would (never, for None): a scheduler's job
    must end."""

    def __init__(self, stop: threading.Event, seconds: float | None) -> None:
        self.seconds, self._stop, self._passed = seconds, stop, threading.Event()
        self._timer = threading.Timer(seconds, self._expire) if seconds is not None else None

    def _expire(self) -> None:
        self._passed.set()
        self._stop.set()

    def __enter__(self) -> Deadline:
        if self._timer is not None:
            self._timer.daemon = True
            self._timer.start()
        return self

    def __exit__(self, *_: object) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer.join()  # so that no thread of the command outlives it

    def reason(self, error: SinkError) -> str:
        """Why a delivery ended short: the deadline, when it passed and stopped it; else `error` itself."""
        if isinstance(error, SinkStopped) and self._passed.is_set():
            return f"the deadline of {self.seconds:g} s passed"
        return str(error)
