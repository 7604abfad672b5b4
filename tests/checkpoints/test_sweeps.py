"""Refresh sweeps as `run` and `refresh` start them: a ledger connection of their own, a set clock."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from defender_hub.checkpoints import SqliteLedger
from defender_hub.checkpoints.delivery import DeliverySettings
from defender_hub.checkpoints.sweeps import start_periodic_refresh, sweep_once
from defender_hub.errors import ConfigError
from defender_hub.local.securityhub import LocalSecurityHub
from tests.helpers import ACCOUNT, DAY_MS, Pipeline, hub_clients, violation

T0 = 1_790_000_000_000


def settings(hub: LocalSecurityHub, tmp_path: Path) -> DeliverySettings:
    ledger = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    return DeliverySettings(str(tmp_path / "dl.jsonl"), ledger, ACCOUNT, clients=hub_clients(hub))


def test_periodic_sweeps_refresh_what_falls_due_as_the_clock_moves(hub: LocalSecurityHub, tmp_path: Path) -> None:
    pipeline = Pipeline(hub, SqliteLedger(tmp_path / "ledger.sqlite3"), tmp_path / "dl.jsonl")
    pipeline.deliver(violation("in-alarm", T0, T0, "early"), violation("in-alarm", T0 + 20 * DAY_MS, T0, "late"))
    now = [(T0 + 85 * DAY_MS) / 1000]

    stop = start_periodic_refresh(settings(hub, tmp_path), every_seconds=0.2, clock=lambda: now[0])
    try:
        deadline = time.monotonic() + 20
        while pipeline.stored()["early"]["UpdatedAt"] == "2026-09-21T14:13:20.000Z" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert pipeline.stored()["early"]["UpdatedAt"] == "2026-12-15T14:13:20.000Z"
        assert pipeline.stored()["late"]["UpdatedAt"] == "2026-10-11T14:13:20.000Z"  # 65 days: not yet

        now[0] += 20 * 86_400  # 20 days on: "late" is 85 days old, "early" only 20
        while pipeline.stored()["late"]["UpdatedAt"] == "2026-10-11T14:13:20.000Z" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert pipeline.stored()["late"]["UpdatedAt"] == "2027-01-04T14:13:20.000Z"
        assert pipeline.stored()["early"]["UpdatedAt"] == "2026-12-15T14:13:20.000Z"
    finally:
        stop.set()


def test_a_sweep_outside_security_hubs_retention_is_refused(hub: LocalSecurityHub, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="between 0 and 90"):
        sweep_once(settings(hub, tmp_path), threading.Event(), after_days=90)
