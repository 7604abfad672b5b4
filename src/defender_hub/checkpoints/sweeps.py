"""Refresh sweeps: one for a scheduler (`defender-hub refresh`), or one now and then every so often (`run`)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from defender_hub.checkpoints import open_ledger
from defender_hub.checkpoints.delivery import LedgeredSink, RefreshReport
from defender_hub.errors import ConfigError, SinkError
from defender_hub.lifecycle import REFRESH_AFTER_DAYS
from defender_hub.sink import Clients, SecurityHubSink, open_dead_letters, securityhub_clients

__all__ = ["Clock", "SweepSettings", "start_periodic_refresh", "sweep_once"]

log = logging.getLogger("defender_hub.refresh")

Clock = Callable[[], float]
"""Seconds since the epoch: time.time, or a test's own."""


@dataclass(frozen=True)
class SweepSettings:
    """Where a sweep reads the ledger and sends the findings it re-sends."""

    ledger: str
    dead_letter: str
    account_id: str | None = None
    after_days: float = REFRESH_AFTER_DAYS
    clients: Clients | None = None
    """Security Hub clients by Region; None: boto3's, from the environment."""


def sweep_once(settings: SweepSettings, stop: threading.Event, clock: Clock = time.time) -> RefreshReport:
    """Re-sends every ACTIVE finding not updated for `after_days`; raises SinkError when that can't be done."""
    if not 0 < settings.after_days < 90:
        raise ConfigError("--after-days must be between 0 and 90: Security Hub deletes findings after 90 days")
    dead_letters = open_dead_letters(settings.dead_letter)
    clients = settings.clients or securityhub_clients()
    sink = LedgeredSink(
        SecurityHubSink(clients, dead_letters, account_id=settings.account_id, stop=stop), open_ledger(settings.ledger)
    )
    try:
        return sink.refresh(int(clock() * 1000), settings.after_days)
    finally:
        sink.close()


def start_periodic_refresh(settings: SweepSettings, every_seconds: float, clock: Clock = time.time) -> threading.Event:
    """Sweeps now and then every `every_seconds`, in a thread, until the returned event is set.

    A sweep that fails, however it fails, is logged and tried again next time: the findings stay due, and the next
    sweep takes them.
    """
    stop = threading.Event()

    def sweep_forever() -> None:
        while not stop.is_set():
            try:
                report = sweep_once(settings, stop, clock)
                log.info("refresh sweep: %d due, %d re-sent", report.due, report.accepted)
            except (SinkError, ConfigError) as exc:
                log.error("refresh sweep failed: %s; trying again in %.0f s", exc, every_seconds)
            except Exception:  # a defect or a surprise: the thread must live on, or no finding is refreshed again
                log.exception("refresh sweep failed unexpectedly; trying again in %.0f s", every_seconds)
            stop.wait(every_seconds)

    threading.Thread(target=sweep_forever, name="refresh", daemon=True).start()
    return stop
