"""This module is the one place that builds a worker's parts from resolved settings: the delivery settings of every
delivering command, a shard process's processor, and what `run` sets up around its daemon (the worker's sender, the
metrics, the sweeps and the environment of its shard processes).

Settings arrive resolved (by `settings.resolving.resolve` for the commands, `shard_settings` in a shard process), as a
mapping from each setting's name to its value.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from defender_hub.checkpoints import parse_ledger_url
from defender_hub.checkpoints.opening import Delivery, DeliverySettings, open_delivery
from defender_hub.config import default_dead_letters, default_ledger, load_mapping_options, refuse_former_defaults
from defender_hub.convert import EventConverter
from defender_hub.errors import ConfigError
from defender_hub.sender.client import SenderClient
from defender_hub.settings import named
from defender_hub.settings.resolving import shard_environment
from defender_hub.sink import SecurityHubSink
from defender_hub.sink.lanes import check_external_id, check_role

if TYPE_CHECKING:
    from defender_hub.checkpoints.sweeps import PeriodicSweep
    from defender_hub.consumer.processor import FindingsProcessor
    from defender_hub.sender.process import SenderProcess

__all__ = ["RunWorker", "ShardWorker", "absolute_ledger", "delivery_settings", "open_shard"]


def delivery_settings(values: Mapping[str, Any], *, ledger_by_default: bool = True) -> DeliverySettings:
    """The delivery settings of `values`, with the state directory's files where they name none (and, without
    `ledger_by_default`, no ledger unless one is named); raises ConfigError for a role or an external ID no lane could
    use, before anything starts (else every member account's findings would fail one by one)."""
    if values["assume_role"] is not None:
        check_role(values["assume_role"])
    if values["external_id"] is not None:
        check_external_id(values["external_id"])
    state = values["state_dir"]
    refuse_former_defaults(
        ledger_given=bool(values["ledger"]) or not ledger_by_default,
        dead_letter_given=bool(values["dead_letter"]),
        state=state,
    )
    return DeliverySettings(
        values["dead_letter"] or default_dead_letters(state),
        values["ledger"] or (default_ledger(state) if ledger_by_default else None),
        values["import_account"],
        values["max_clock_skew"],
        dead_letter_overflow=values["dead_letter_overflow"],
        assume_role=values["assume_role"],
        external_id=values["external_id"],
        outage_limit_seconds=values["outage_limit"],
        sender_socket=values.get("sender_socket"),
    )


@dataclass
class ShardWorker:
    """A shard process's parts: its processor, and the delivery it sends through, which the process closes as it
    ends."""

    processor: FindingsProcessor
    delivery: Delivery


def open_shard(values: Mapping[str, Any], stop: threading.Event) -> ShardWorker:
    """Builds a shard process's processor from `values` (as `run` handed them on): records become findings, findings
    go through the ledger to Security Hub, and each letter kept is counted. Raises ConfigError."""
    # The processor needs amazon_kclpy, which only a shard process loads.
    from defender_hub.consumer.processor import FindingsProcessor  # noqa: PLC0415

    options = load_mapping_options(
        account_id=values["default_account"],
        region=values["region"],
        partition=values["partition"],
        config_file=values["config"],
    )
    delivery = open_delivery(delivery_settings(values), stop)
    processor = FindingsProcessor(EventConverter(options), delivery.sink, delivery.dead_letters, values["health_dir"])
    if isinstance(delivery.sender, SenderClient):
        # Connected as the shard starts: the sender then knows of every shard that may add to a request.
        delivery.sender.connect()
    if isinstance(delivery.sender, SenderClient | SecurityHubSink):
        processor.count_letters_of(delivery.sender)
    return ShardWorker(processor, delivery)


_DAEMON_LOG_LEVELS = ("daemon_log_level", "daemon_start_log_level")
"""The settings of the daemon's logging (its `logback.xml`), each at INFO with `run --verbose`."""


def absolute_ledger(url: str | None) -> str:
    """The ledger URL, checked, with a SQLite path made absolute: the shard processes may start elsewhere."""
    if url is None:
        raise ConfigError("run needs a ledger")  # delivery_settings gives run the state directory's by default
    kind, target = parse_ledger_url(url)
    return f"sqlite:///{Path(target).resolve()}" if kind == "sqlite" else url


@dataclass
class RunWorker:
    """What `run` sets up around its daemon, while entered: the metrics its processes report into and their server,
    the worker's sender (watched: if it dies, the daemon is stopped), the sweeps (parked lanes, refresh), which send
    through the sender as the shard processes do, and the shard processes' environment."""

    values: Mapping[str, Any]
    """`run`'s resolved settings."""
    delivery: DeliverySettings
    """Where findings go, the ledger's URL absolute (`absolute_ledger`)."""
    verbose: bool = False
    environment: dict[str, str] = field(default_factory=dict)
    """The shard processes' environment, once entered."""
    sender_died: bool = False
    """Whether the sender ended while the daemon ran: the run failed, whatever the daemon's status."""
    _folders: list[str] = field(default_factory=list)
    _sweeps: list[PeriodicSweep] = field(default_factory=list)
    _sender: SenderProcess | None = None
    _daemon: int | None = None

    def __enter__(self) -> RunWorker:
        from defender_hub.checkpoints.sweeps import start_periodic_refresh, start_periodic_retry  # noqa: PLC0415
        from defender_hub.sender.process import SenderProcess  # noqa: PLC0415 - `run`'s alone

        try:
            metrics_dir = self._folder("defender-hub-metrics-") if self.values["metrics_port"] else None
            dead_letter = self.delivery.dead_letter
            # Every request of the worker goes through its sender, the shard processes' and the sweeps' alike: the
            # lanes' quotas are the sender's own, booked in its memory.
            delivery = replace(  # the sweeps', and through the environment the shard processes'
                self.delivery,
                dead_letter=dead_letter if "://" in dead_letter else str(Path(dead_letter).resolve()),
                sender_socket=str(Path(self._folder("defender-hub-sender-")) / "sender.sock"),
            )
            # The shard processes may start in another folder: every path they are given is absolute.
            health, state = self.values["health_dir"], self.values["state_dir"]
            self.environment = shard_environment(
                {
                    **self.values,
                    "dead_letter": delivery.dead_letter,
                    "ledger": delivery.ledger,
                    "import_account": delivery.account_id,
                    "sender_socket": delivery.sender_socket,
                    "health_dir": Path(health).resolve() if health else None,
                    "state_dir": Path(state).resolve() if state else None,
                    **{level: "INFO" if self.verbose else named(level).default for level in _DAEMON_LOG_LEVELS},
                }
            )
            if metrics_dir is not None:
                from defender_hub.metrics import serve  # noqa: PLC0415 - only with --metrics-port

                self.environment["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
                serve(self.values["metrics_port"], Path(metrics_dir), self.values["metrics_address"])
            # Started before the daemon and the sweeps, so the first shard process and the first sweep find it
            # listening.
            self._sender = SenderProcess(self.environment, self._sender_ended)
            self._sweeps.append(start_periodic_retry(delivery, self.values["parked_retry_seconds"]))
            if self.values["refresh_hours"] > 0:
                self._sweeps.append(start_periodic_refresh(delivery, self.values["refresh_hours"] * 3600))
        except BaseException:
            self.__exit__()
            raise
        return self

    def daemon_started(self, pid: int) -> None:
        """Notes the daemon's process, to stop should the sender die."""
        self._daemon = pid
        if self.sender_died:
            os.kill(pid, signal.SIGTERM)

    def _sender_ended(self, _status: int) -> None:
        """Stops the daemon: its shard processes can deliver nothing without the sender, and exit without
        checkpoint; `run` then exits non-zero."""
        self.sender_died = True
        if self._daemon is not None:
            with contextlib.suppress(ProcessLookupError):  # the daemon has ended already
                os.kill(self._daemon, signal.SIGTERM)

    def _folder(self, prefix: str) -> str:
        folder = tempfile.mkdtemp(prefix=prefix)
        self._folders.append(folder)
        return folder

    def __exit__(self, *_: object) -> None:
        self._daemon = None  # ended by now: its process number may be another process's soon
        for sweep in self._sweeps:
            sweep.end()  # before the sender: a sweep under way sends through it
        if self._sender is not None:
            self._sender.end()  # after the daemon, whose shard processes drained through it
        for folder in self._folders:
            shutil.rmtree(folder, ignore_errors=True)
