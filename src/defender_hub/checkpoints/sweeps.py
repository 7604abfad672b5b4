"""Sweeps: one for a scheduler (`defender-hub refresh`), or one now and then every so often (`run`).

A refresh sweep finishes the archivals and workflow updates still owed, then re-sends the ACTIVE findings near
Security Hub's 90-day expiry that their source keeps alive. A parked sweep sends the findings of parked lanes again,
through the ledger: those whose lane answers now arrive, the others are parked again; and it sets the workflow
updates a parked lane left owed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable

from defender_hub.checkpoints.delivery import Clock, RefreshReport
from defender_hub.checkpoints.opening import DeliverySettings, open_delivery
from defender_hub.codecs.asff_rules import RETENTION_DAYS
from defender_hub.errors import ConfigError, SinkError
from defender_hub.importer import redrive
from defender_hub.lifecycle import REFRESH_AFTER_DAYS
from defender_hub.mapping import MappingOptions
from defender_hub.sender.client import SenderClient
from defender_hub.settings import PARKED_RETRY_SECONDS
from defender_hub.sink import DeadLetter, Lane, SecurityHubSink

__all__ = ["PeriodicSweep", "retry_parked_once", "start_periodic_refresh", "start_periodic_retry", "sweep_once"]

END_SECONDS = 60.0
"""How long ending a sweep waits for the one under way: told to stop, a sweep ends at its next request or wait."""

log = logging.getLogger("defender_hub.refresh")


def _parked(letter: DeadLetter) -> bool:
    return letter.lane is not None


def sweep_once(
    settings: DeliverySettings,
    stop: threading.Event,
    after_days: float = REFRESH_AFTER_DAYS,
    clock: Clock = time.time,
) -> RefreshReport:
    """Finishes owed archivals and re-sends every ACTIVE finding not updated for `after_days`; raises SinkError when
    that can't be done."""
    if not 0 < after_days < RETENTION_DAYS:
        raise ConfigError(
            f"--after-days must be between 0 and {RETENTION_DAYS}: Security Hub deletes findings after "
            f"{RETENTION_DAYS} days"
        )
    delivery = open_delivery(settings, stop, clock, probe=True)  # a lane the worker's sender parks is asked too
    if delivery.ledgered is None:
        raise ConfigError("a sweep needs a ledger")
    try:
        return delivery.ledgered.refresh(int(clock() * 1000), after_days)
    finally:
        delivery.close()


def retry_parked_once(settings: DeliverySettings, stop: threading.Event, clock: Clock = time.time) -> Counter[Lane]:
    """Sends the parked findings again, through the ledger; returns how many are parked still, by lane."""
    # Through the worker's sender, which parks a refused lane's findings at once for a while: a sweep asks it again.
    delivery = open_delivery(settings, stop, clock, probe=True)
    try:
        report = redrive(delivery.dead_letters, delivery.sink, MappingOptions(), select=_parked)
        if delivery.ledgered is not None:  # what a parked lane left owed, whatever the refresh hours
            delivery.ledgered.finish_archivals(report)
            delivery.ledgered.finish_workflows(report)
    finally:
        delivery.close()
    if report.accepted or report.unchanged:
        log.info("parked lanes: %d findings delivered, %d no longer news", report.accepted, report.unchanged)
    # Its own sink, or the worker's sender for it, counts what it parked (open_delivery makes no other kind).
    sender = delivery.sender
    return sender.parked_findings if isinstance(sender, SecurityHubSink | SenderClient) else Counter()


class PeriodicSweep:
    """A sweep run now and then in a thread of its own, until it is ended."""

    def __init__(self, stop: threading.Event, thread: threading.Thread) -> None:
        self._stop, self._thread = stop, thread

    def end(self) -> None:
        """Stops the sweeps and waits for the one under way: what it sends through (the worker's sender) may go right
        after."""
        self._stop.set()
        self._thread.join(END_SECONDS)
        if self._thread.is_alive():
            log.warning(
                "the %s sweep did not end within %.0f s; left to end on its own", self._thread.name, END_SECONDS
            )


def _periodically(name: str, every_seconds: float, sweep: Callable[[threading.Event], None]) -> PeriodicSweep:
    """Runs `sweep` now and then every `every_seconds`, in a thread, until it is ended.

    A sweep that fails, however it fails, is logged and tried again next time: what it was to do is still owed (due
    findings, parked letters), and the next sweep takes it.
    """
    stop = threading.Event()

    def sweep_forever() -> None:
        while not stop.is_set():
            try:
                sweep(stop)
            except (SinkError, ConfigError) as exc:
                log.error("%s sweep failed: %s; trying again in %.0f s", name, exc, every_seconds)
            except Exception:  # a defect or a surprise: the thread must live on, or the sweeps end
                log.exception("%s sweep failed unexpectedly; trying again in %.0f s", name, every_seconds)
            stop.wait(every_seconds)

    thread = threading.Thread(target=sweep_forever, name=name, daemon=True)
    thread.start()
    return PeriodicSweep(stop, thread)


def start_periodic_refresh(
    settings: DeliverySettings, every_seconds: float, after_days: float = REFRESH_AFTER_DAYS, clock: Clock = time.time
) -> PeriodicSweep:
    """Refresh sweeps now and then every `every_seconds`, in a thread, until ended."""

    def sweep(stop: threading.Event) -> None:
        report = sweep_once(settings, stop, after_days, clock)
        log.info("refresh sweep: %d due, %d re-sent, %d archived", report.due, report.accepted, report.archived)
        if report.parked:
            log.error("refresh sweep: %d findings of parked lanes left for the next sweep", report.parked)

    return _periodically("refresh", every_seconds, sweep)


def start_periodic_retry(
    settings: DeliverySettings, every_seconds: float = PARKED_RETRY_SECONDS, clock: Clock = time.time
) -> PeriodicSweep:
    """Sends parked findings again now and then every `every_seconds`, in a thread, until ended;
    says which lanes are parked still, and how many findings wait in each."""

    def sweep(stop: threading.Event) -> None:
        for lane, waiting in sorted(retry_parked_once(settings, stop, clock).items(), key=str):
            log.error(
                "lane %s is parked: %d findings wait in the dead letters; tried again every %.0f s",
                lane,
                waiting,
                every_seconds,
            )

    return _periodically("parked", every_seconds, sweep)
