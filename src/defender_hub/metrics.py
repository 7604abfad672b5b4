"""Prometheus metrics of a worker, summed over its shard processes (`run --metrics-port`).

The shard processes are the daemon's children: each writes its samples to the folder in PROMETHEUS_MULTIPROC_DIR,
which `run` sets before they start (prometheus_client's multiprocess mode), and `run` serves their sum. Without that
folder the metrics are the process's own, and nothing serves them.
"""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.multiprocess import MultiProcessCollector

__all__ = [
    "DELIVERY_SECONDS",
    "FINDINGS",
    "LANE_FINDINGS",
    "LEDGER_SECONDS",
    "MILLIS_BEHIND",
    "OUTCOMES",
    "RECORDS",
    "REQUESTS",
    "SKIPPED",
    "SOURCE_FINDINGS",
    "THROTTLED",
    "WORKFLOW_UPDATES",
    "serve",
]

RECORDS = Counter("defender_hub_records", "Kinesis records the processors took", ["shard"])
FINDINGS = Counter("defender_hub_findings", "What deliveries did with findings, by outcome", ["outcome"])
OUTCOMES = ("accepted", "unchanged", "archived", "dead_lettered", "parked", "superseded")
"""The outcomes FINDINGS counts: DeliveryReport's fields of the same names."""
LANE_FINDINGS = Counter("defender_hub_lane_findings", "Findings by lane and outcome", ["lane", "outcome"])
REQUESTS = Counter("defender_hub_requests", "BatchImportFindings requests sent, by lane", ["lane"])
THROTTLED = Counter("defender_hub_throttled", "BatchImportFindings requests throttled, by lane", ["lane"])
SKIPPED = Counter(
    "defender_hub_skipped_events",
    "Events that by their source's rules make no finding (a Health event not about security, say), by source",
    ["source"],
)
SOURCE_FINDINGS = Counter(
    "defender_hub_source_findings", "Findings mapped from the stream's events, by source", ["source"]
)
WORKFLOW_UPDATES = Counter(
    "defender_hub_workflow_updates",
    "Workflow updates (BatchUpdateFindings) by outcome: processed, or left owed in the ledger for the next sweep",
    ["outcome"],
)
DELIVERY_SECONDS = Histogram(
    "defender_hub_delivery_seconds",
    "From a batch of records in hand to its findings accepted or kept, per batch",
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 5.0, 10.0, 30.0, 60.0),
)
LEDGER_SECONDS = Histogram("defender_hub_ledger_seconds", "Time of the ledger's operations", ["operation"])
MILLIS_BEHIND = Gauge(
    "defender_hub_millis_behind_latest",
    "How far behind the tip of the stream each shard was at its last batch",
    ["shard"],
    multiprocess_mode="max",
)


def serve(port: int, folder: Path) -> None:
    """Serves the sum of the processes' metrics written to `folder` on `port`, at 127.0.0.1 unless
    DEFENDER_HUB_METRICS_ADDRESS says otherwise (0.0.0.0 in a container, for the scraper to reach)."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(folder))  # type: ignore[no-untyped-call]
    start_http_server(port, addr=os.environ.get("DEFENDER_HUB_METRICS_ADDRESS", "127.0.0.1"), registry=registry)
