"""Sweeps: one for a scheduler (`defender-hub refresh`), or one now and then every so often (`run`).

A sweep finishes the archivals still owed, then re-sends the ACTIVE findings near Security Hub's 90-day expiry.
"""

from __future__ import annotations

import logging
import threading
import time

from defender_hub.checkpoints.delivery import Clock, DeliverySettings, RefreshReport, open_delivery
from defender_hub.errors import ConfigError, SinkError
from defender_hub.lifecycle import REFRESH_AFTER_DAYS

__all__ = ["start_periodic_refresh", "sweep_once"]

log = logging.getLogger("defender_hub.refresh")


def sweep_once(
    settings: DeliverySettings,
    stop: threading.Event,
    after_days: float = REFRESH_AFTER_DAYS,
    clock: Clock = time.time,
) -> RefreshReport:
    """Finishes owed archivals and re-sends every ACTIVE finding not updated for `after_days`; raises SinkError when
    that can't be done."""
    if not 0 < after_days < 90:
        raise ConfigError("--after-days must be between 0 and 90: Security Hub deletes findings after 90 days")
    delivery = open_delivery(settings, stop, clock)
    if delivery.ledgered is None:
        raise ConfigError("a sweep needs a ledger")
    try:
        return delivery.ledgered.refresh(int(clock() * 1000), after_days)
    finally:
        delivery.close()


def start_periodic_refresh(
    settings: DeliverySettings, every_seconds: float, after_days: float = REFRESH_AFTER_DAYS, clock: Clock = time.time
) -> threading.Event:
    """Sweeps now and then every `every_seconds`, in a thread, until the returned event is set.

    A sweep that fails, however it fails, is logged and tried again next time: the findings stay due, and the next
    sweep takes them.
    """
    stop = threading.Event()

    def sweep_forever() -> None:
        while not stop.is_set():
            try:
                report = sweep_once(settings, stop, after_days, clock)
                log.info("refresh sweep: %d due, %d re-sent, %d archived", report.due, report.accepted, report.archived)
            except (SinkError, ConfigError) as exc:
                log.error("refresh sweep failed: %s; trying again in %.0f s", exc, every_seconds)
            except Exception:  # a defect or a surprise: the thread must live on, or nothing is refreshed again
                log.exception("refresh sweep failed unexpectedly; trying again in %.0f s", every_seconds)
            stop.wait(every_seconds)

    threading.Thread(target=sweep_forever, name="refresh", daemon=True).start()
    return stop
