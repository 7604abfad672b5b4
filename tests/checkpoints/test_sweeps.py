"""Refresh sweeps as `run` and `refresh` start them: a ledger connection of their own, a set clock."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from defender_hub.checkpoints import SqliteLedger
from defender_hub.checkpoints.delivery import LedgeredSink
from defender_hub.checkpoints.opening import DeliverySettings
from defender_hub.checkpoints.sweeps import retry_parked_once, start_periodic_refresh, sweep_once
from defender_hub.convert import EventConverter
from defender_hub.errors import ConfigError
from defender_hub.local.securityhub import LocalSecurityHub
from defender_hub.mapping import MappingOptions
from defender_hub.sink import DeadLetter, JsonlDeadLetters, Lane, MappedFinding, RecordOrigin, coalesce
from tests.helpers import ACCOUNT, DAY_MS, FAST, Pipeline, hub_clients, violation, wait_for
from tests.sender.test_sender import InProcessSender

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
        stop.end()


def test_ending_the_sweeps_waits_for_the_one_under_way(hub: LocalSecurityHub, tmp_path: Path) -> None:
    pipeline = Pipeline(hub, SqliteLedger(tmp_path / "ledger.sqlite3"), tmp_path / "dl.jsonl")
    pipeline.deliver(violation("in-alarm", T0, T0, "due"))
    hub.outage(60)  # the sweep retries until it is told to stop
    sweeps = start_periodic_refresh(settings(hub, tmp_path), every_seconds=60, clock=lambda: (T0 + 85 * DAY_MS) / 1000)
    wait_for("the sweep under way", lambda: hub.requests("BatchImportFindings")[-1].status == 500, 20)

    sweeps.end()

    # `run` ends the sender the sweep sends through right after: a sweep still running would fail without it.
    assert not [thread for thread in threading.enumerate() if thread.name == "refresh"]


def test_a_sweep_outside_security_hubs_retention_is_refused(hub: LocalSecurityHub, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="between 0 and 90"):
        sweep_once(settings(hub, tmp_path), threading.Event(), after_days=90)


def test_a_refresh_sweep_with_one_region_refusing_refreshes_every_other_region_and_leaves_it_owed(
    hub: LocalSecurityHub, tmp_path: Path
) -> None:
    pipeline = Pipeline(hub, SqliteLedger(tmp_path / "ledger.sqlite3"), tmp_path / "dl.jsonl")
    regions = ("us-east-1", "us-west-2", "eu-west-1")
    pipeline.deliver(*(violation("in-alarm", T0, T0, region, region=region) for region in regions))
    hub.disable(ACCOUNT, "us-west-2")
    later = (T0 + 85 * DAY_MS) / 1000

    refused = sweep_once(settings(hub, tmp_path), threading.Event(), clock=lambda: later)

    updated = {f["Region"]: f["UpdatedAt"] for f in hub.findings()}
    assert (refused.due, refused.accepted, refused.parked) == (3, 2, 1)
    assert updated == {
        "us-east-1": "2026-12-15T14:13:20.000Z",
        "us-west-2": "2026-09-21T14:13:20.000Z",
        "eu-west-1": "2026-12-15T14:13:20.000Z",
    }
    assert not (tmp_path / "dl.jsonl").exists()  # a sweep's own work stays owed, not parked

    hub.enable(ACCOUNT, "us-west-2")
    again = sweep_once(settings(hub, tmp_path), threading.Event(), clock=lambda: later + 16 * 60)  # past the claim
    assert (again.accepted, again.parked) == (1, 0)
    assert {f["Region"]: f["UpdatedAt"] for f in hub.findings()}["us-west-2"] > "2026-12-15"


def test_parked_findings_arrive_through_the_ledger_once_their_lane_answers(
    hub: LocalSecurityHub, tmp_path: Path
) -> None:
    pipeline = Pipeline(hub, SqliteLedger(tmp_path / "ledger.sqlite3"), tmp_path / "dl.jsonl")
    hub.disable(ACCOUNT, "us-west-2")
    first = pipeline.deliver(violation("in-alarm", T0, T0, "west", region="us-west-2"))
    time.sleep(0.3)  # FAST parks a lane this long
    second = pipeline.deliver(
        violation("alarm-cleared", T0 + 60_000, T0, "west", region="us-west-2"),
        violation("in-alarm", T0, T0, "east"),
    )
    JsonlDeadLetters(tmp_path / "dl.jsonl").put([DeadLetter.for_record(b"{", "not JSON", RecordOrigin("shard-1", "9"))])
    assert (first.parked, second.parked, second.accepted) == (1, 1, 1)

    still = retry_parked_once(settings(hub, tmp_path), threading.Event(), clock=lambda: T0 / 1000 + 3600)
    assert still == {Lane("aws", ACCOUNT, "us-west-2"): 1}  # refused still: parked again (its versions as one)
    hub.enable(ACCOUNT, "us-west-2")
    assert retry_parked_once(settings(hub, tmp_path), threading.Event(), clock=lambda: T0 / 1000 + 3600) == {}

    assert pipeline.stored()["west"]["RecordState"] == "ARCHIVED"  # the newest version won
    left = [json.loads(line) for line in (tmp_path / "dl.jsonl").read_text().splitlines()]
    assert [letter.get("lane") for letter in left] == [None]  # the poison record stays for a person


def test_the_worker_sweeps_parked_findings_through_its_sender_which_asks_a_parked_lane_again(
    hub: LocalSecurityHub, tmp_path: Path
) -> None:
    # In `run`, the sweeps send through the worker's sender, whose quota is then the one booked for every request. The
    # sender parks a refused lane for minutes; the parked sweep must ask it all the same, or it would only ever find
    # the lane parked.
    sender = InProcessSender(hub, tmp_path, wait_seconds=0.1, policy=replace(FAST, park_seconds=600))
    try:
        client = sender.client(tmp_path)
        pipeline = Pipeline(hub, SqliteLedger(tmp_path / "ledger.sqlite3"), sender.dead_letters)
        hub.disable(ACCOUNT, "us-west-2")
        shard = LedgeredSink(client, SqliteLedger(tmp_path / "ledger.sqlite3"))
        assert shard.deliver(mapped(violation("in-alarm", T0, T0, "west", region="us-west-2"))).parked == 1
        assert sender.sink.parked_lanes().keys() == {Lane("aws", ACCOUNT, "us-west-2")}  # for ten minutes
        through_sender = replace(settings(hub, tmp_path), dead_letter=str(sender.dead_letters), clients=None)
        through_sender = replace(through_sender, sender_socket=str(sender.path))
        requests_before = len(hub.requests("BatchImportFindings"))

        still = retry_parked_once(through_sender, threading.Event(), clock=lambda: T0 / 1000 + 3600)

        assert still == {Lane("aws", ACCOUNT, "us-west-2"): 1}  # told by the sender, lane by lane
        assert len(hub.requests("BatchImportFindings")) > requests_before  # asked, though the sender parks the lane
        hub.enable(ACCOUNT, "us-west-2")
        assert retry_parked_once(through_sender, threading.Event(), clock=lambda: T0 / 1000 + 3600) == {}
        assert pipeline.stored()["west"]["RecordState"] == "ACTIVE"
        later = violation("in-alarm", T0 + 1000, T0, "west-2", region="us-west-2")
        assert client.deliver_encoded(coalesce(mapped(later))).accepted == 1  # no longer parked, for anyone
    finally:
        sender.server.close()


def mapped(event: bytes) -> list[MappedFinding]:
    """The findings `event` makes, as a shard hands them to its sink."""
    return [MappedFinding(finding) for finding in EventConverter(MappingOptions()).findings(event)]
