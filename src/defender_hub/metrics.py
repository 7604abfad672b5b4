"""Prometheus metrics of a worker, summed over its shard processes (`run --metrics-port`).

The shard processes are the daemon's children: each writes its samples to the folder in PROMETHEUS_MULTIPROC_DIR,
which `run` sets before they start (prometheus_client's multiprocess mode), and `run` serves their sum. Without that
folder the metrics are the process's own, and nothing serves them.

Label values are snake_case words from bounded sets (outcomes, sources, reasons, error codes, shards, accounts and
Regions): never a finding's Id, nor text an event or a service's message carries.
"""

from __future__ import annotations

import ipaddress
import os
import re
import threading
from collections.abc import Iterable
from pathlib import Path
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from defender_hub.errors import ConfigError

__all__ = [
    "DEFAULT_ADDRESS",
    "DELIVERY_SECONDS",
    "FINDINGS",
    "LANE_FINDINGS",
    "LEDGER_SECONDS",
    "OTHER",
    "OUTCOMES",
    "RECORDS",
    "REQUESTS",
    "SECONDS_BEHIND",
    "SET_ASIDE",
    "SKIPPED",
    "SOURCE_FINDINGS",
    "THROTTLED",
    "WHAT_DEAD_LETTERED",
    "WHAT_PARKED",
    "WHAT_SKIPPED",
    "WORKFLOW_LEFT_OWED",
    "WORKFLOW_PROCESSED",
    "WORKFLOW_UPDATES",
    "check_address",
    "reason_label",
    "serve",
    "worker_registry",
]

DEFAULT_ADDRESS = "127.0.0.1"
"""Where `run` serves the metrics unless told otherwise: this host only."""
OTHER = "other"
"""The label value of whatever is none of a label's known values."""
WHAT_SKIPPED, WHAT_DEAD_LETTERED, WHAT_PARKED = "skipped", "dead_lettered", "parked"
"""What SET_ASIDE counts: records skipped by their source's rules, and dead letters kept for good or until their
lane answers."""

RECORDS = Counter("defender_hub_records", "Kinesis records the processors took", ["shard"])
FINDINGS = Counter("defender_hub_findings", "What deliveries did with findings, by outcome", ["outcome"])
OUTCOMES = ("accepted", "unchanged", "archived", "dead_lettered", "parked", "superseded")
"""The outcomes FINDINGS counts: DeliveryReport's fields of the same names."""
LANE_FINDINGS = Counter(
    "defender_hub_lane_findings",
    "Findings by the account and Region imported in, and outcome",
    ["account", "region", "outcome"],
)
REQUESTS = Counter(
    "defender_hub_requests", "BatchImportFindings requests sent, by account and Region", ["account", "region"]
)
THROTTLED = Counter(
    "defender_hub_throttled", "BatchImportFindings requests throttled, by account and Region", ["account", "region"]
)
SKIPPED = Counter(
    "defender_hub_skipped_events",
    "Events that by their source's rules make no finding (a Health event not about security, say), by source",
    ["source"],
)
SET_ASIDE = Counter(
    "defender_hub_set_aside",
    "Records skipped by their source's rules, and dead letters kept: dead-lettered (a record that makes no finding, "
    "a finding Security Hub refuses) or parked until their lane answers; by what and why",
    ["what", "reason"],
)
SOURCE_FINDINGS = Counter(
    "defender_hub_source_findings", "Findings mapped from the stream's events, by source", ["source"]
)
WORKFLOW_UPDATES = Counter(
    "defender_hub_workflow_updates",
    "Workflow updates (BatchUpdateFindings) by outcome: processed, or left owed in the ledger for the next sweep",
    ["outcome"],
)
WORKFLOW_PROCESSED, WORKFLOW_LEFT_OWED = "processed", "left_owed"
"""The outcomes WORKFLOW_UPDATES counts."""
DELIVERY_SECONDS = Histogram(
    "defender_hub_delivery_seconds",
    "From a batch of records in hand to its findings accepted or kept, per batch",
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 5.0, 10.0, 30.0, 60.0),
)
LEDGER_SECONDS = Histogram("defender_hub_ledger_seconds", "Time of the ledger's operations", ["operation"])
SECONDS_BEHIND = Gauge(
    "defender_hub_seconds_behind_latest",
    "How far behind the tip of the stream each shard was at its last batch (the KCL's millisBehindLatest)",
    ["shard"],
    multiprocess_mode="livemax",  # a shard process that ended is behind nothing: its last lag goes with it
)

_REASON = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}")
"""The shape of an error code or a fixed reason; anything else (free text) is no label."""
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")


def reason_label(reason: str | None) -> str:
    """`reason`, an error code or a fixed reason, as a label value: InvalidAccessException → invalid_access_exception,
    "not about security" → not_about_security, 403 → http_403; OTHER for none, or for anything not shaped like one."""
    if reason is None or not _REASON.fullmatch(reason):
        return OTHER
    if reason.isdigit():
        return f"http_{reason}"
    return "_".join(word.lower() for word in _WORD.findall(reason)) or OTHER


def check_address(address: str | None) -> None:
    """Raises ConfigError unless `address` (None: the default) is an IP address to serve the metrics at."""
    if address is None:
        return
    try:
        ipaddress.ip_address(address)
    except ValueError:
        raise ConfigError(f"metrics address {address!r} is not an IP address") from None


_PROCESS_FILE = re.compile(r"_(\d+)\.db")
"""The end of a process's file in the multiprocess folder: its pid."""


class _LiveProcessesCollector(Collector):
    """The sum of the processes' metrics, once the live gauges of the processes that are gone are forgotten.

    A shard process that ends says so (`mark_process_dead`), but one killed (SIGKILL, the OOM killer) cannot: its last
    lag would be served as the worker's until `run` restarts. What the processes counted stays counted.
    """

    def __init__(self, folder: Path) -> None:
        self._folder = folder
        self._sum = MultiProcessCollector(None, path=str(folder))  # type: ignore[no-untyped-call]
        self._lock = threading.Lock()  # scrapes are answered in threads of their own

    def collect(self) -> Iterable[Metric]:
        """The metrics summed, after forgetting the live gauges of the processes that are gone."""
        with self._lock:
            for path in self._folder.glob("gauge_live*_*.db"):
                found = _PROCESS_FILE.search(path.name)
                if found is not None and not _alive(int(found.group(1))):
                    # A process that ended may also be forgetting its own, at this moment: gone is gone.
                    path.unlink(missing_ok=True)
            return self._sum.collect()  # type: ignore[no-untyped-call,no-any-return]


def _alive(pid: int) -> bool:
    """Whether the process `pid` still runs."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it runs, as another user
        return True
    return True


def worker_registry(folder: Path) -> CollectorRegistry:
    """The worker's metrics: the sum of what its processes wrote to `folder`, the live gauges of live ones only."""
    registry = CollectorRegistry()
    registry.register(_LiveProcessesCollector(folder))
    return registry


def serve(port: int, folder: Path, address: str | None = None) -> WSGIServer:
    """Serves the sum of the processes' metrics written to `folder` on `port` at `address` (None: DEFAULT_ADDRESS;
    0.0.0.0 in a container, for the scraper to reach); returns the server, which serves until shut down."""
    server, _ = start_http_server(port, addr=address or DEFAULT_ADDRESS, registry=worker_registry(folder))
    return server


for _outcome in OUTCOMES:  # known from the start, so that a dashboard sees zeros rather than nothing
    FINDINGS.labels(_outcome)
for _outcome in (WORKFLOW_PROCESSED, WORKFLOW_LEFT_OWED):
    WORKFLOW_UPDATES.labels(_outcome)
