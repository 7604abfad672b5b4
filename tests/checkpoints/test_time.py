"""The lifecycle in time: refreshes, sweeps racing live shards, interrupted archivals, bad clocks, redrive.

Each test reproduces a way today's findings ended in the wrong state in Security Hub (issue 9), on both ledgers.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from defender_hub.checkpoints import DynamoDbLedger, Ledger, SqliteLedger
from defender_hub.errors import SinkStopped
from defender_hub.local.securityhub import LocalSecurityHub
from tests.helpers import (
    ACCOUNT,
    DAY_MS,
    Pipeline,
    another_connection,
    audit_finding,
    audit_task,
    cli,
    local_aws_env,
    violation,
)

T0 = 1_790_000_000_000  # 2026-09-21, in the past
FINDING_ID = "123456789012/DEVICE_CERTIFICATE/{}/DEVICE_CERTIFICATE_KEY_QUALITY_CHECK/WEAK_KEY"
YEAR_2100_MS = 4_102_444_800_000


class Interleaved:
    """A ledger that runs `then` once, at the `call`-th call of `method`: after it returned, or just `before` it."""

    def __init__(self, ledger: Ledger, method: str, then: Any, *, call: int = 1, before: bool = False) -> None:
        self._ledger, self._method, self.then = ledger, method, then
        self._countdown, self._before = call, before

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._ledger, name)
        if name != self._method:
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            self._countdown -= 1
            then = self.then if self._countdown == 0 else None
            if then is not None and self._before:
                then()
            result = attribute(*args, **kwargs)
            if then is not None and not self._before:
                then()
            return result

        return call


def test_news_older_than_a_refresh_still_reaches_security_hub(pipeline: Pipeline) -> None:
    pipeline.deliver(violation("in-alarm", T0, T0))
    assert pipeline.sink.refresh(T0 + 85 * DAY_MS, after_days=80).accepted == 1  # UpdatedAt: 85 days after T0

    pipeline.deliver(violation("alarm-cleared", T0 + 600_000, T0))  # the consumer lagged: older than the refresh

    stored = pipeline.stored()["violation-1"]
    assert (stored["RecordState"], stored["ProductFields"]["ViolationEventType"]) == ("ARCHIVED", "alarm-cleared")
    assert stored["UpdatedAt"] > "2026-12-15T14:13:20.000Z"  # past the refresh, or Security Hub ignores it
    assert pipeline.sink.refresh(T0 + 170 * DAY_MS, after_days=80).due == 0  # archived: never refreshed again


def test_a_refreshed_finding_replayed_from_the_stream_is_not_sent_again(pipeline: Pipeline) -> None:
    raised = violation("in-alarm", T0, T0)
    pipeline.deliver(raised)
    pipeline.sink.refresh(T0 + 85 * DAY_MS, after_days=80)
    sent = pipeline.sent()

    report = pipeline.deliver(raised)

    assert (report.accepted, pipeline.sent()) == (0, sent)


@pytest.mark.parametrize(
    ("method", "before"),
    [
        ("claim", False),  # the sweep has claimed the ACTIVE finding when a live shard delivers its alarm-cleared
        ("write", True),  # the sweep's request was accepted; before the sweep records it, the live shard delivers
    ],
)
def test_a_sweep_never_overwrites_news_delivered_while_it_runs(
    hub: LocalSecurityHub, ledger: Ledger, tmp_path: Path, method: str, before: bool
) -> None:
    live = Pipeline(hub, ledger, tmp_path / "dl.jsonl")
    live.deliver(violation("in-alarm", T0, T0))

    def live_shard_delivers_the_clearing() -> None:
        live.deliver(violation("alarm-cleared", T0 + 600_000, T0))

    sweeping = Interleaved(another_connection(ledger), method, live_shard_delivers_the_clearing, before=before)
    sweeper = Pipeline(hub, sweeping, tmp_path / "dl-sweep.jsonl")  # type: ignore[arg-type]
    sweeper.sink.refresh(T0 + 85 * DAY_MS, after_days=80)

    assert live.stored()["violation-1"]["RecordState"] == "ARCHIVED"
    assert live.sink.refresh(T0 + 170 * DAY_MS, after_days=80).due == 0  # the ledger says ARCHIVED too


def _archival_of_150_stopped_after_its_first_request(hub: LocalSecurityHub, ledger: Ledger, tmp_path: Path) -> None:
    """Task 1 reports 150 certificates; task 2 none: its archival takes two requests, stopped after the first."""
    loader = Pipeline(hub, ledger, tmp_path / "dl.jsonl")
    certificates = [f"cert-{n:03d}" for n in range(150)]
    loader.deliver(*(audit_finding("task-1", T0, c) for c in certificates), audit_task("task-1", T0, 150))
    stopping = Pipeline(hub, ledger, tmp_path / "dl.jsonl")
    # As a SIGTERM would, once the archival's first request was accepted (after the check summary's).
    hub.after_imports(2, stopping.stop.set)
    with pytest.raises(SinkStopped):
        stopping.deliver(audit_task("task-2", T0 + DAY_MS, 0))
    states = [f["RecordState"] for f in loader.stored().values() if "/DEVICE_CERTIFICATE/" in f["Id"]]
    assert 0 < states.count("ARCHIVED") < 150, "the stop should land between the archival's requests"


def test_an_archival_stopped_between_requests_is_finished_when_the_notification_comes_again(
    hub: LocalSecurityHub, ledger: Ledger, tmp_path: Path
) -> None:
    _archival_of_150_stopped_after_its_first_request(hub, ledger, tmp_path)

    Pipeline(hub, ledger, tmp_path / "dl.jsonl").deliver(audit_task("task-2", T0 + DAY_MS, 0))  # the replay

    states = {f["Id"]: f["RecordState"] for f in hub.findings() if "/DEVICE_CERTIFICATE/" in f["Id"]}
    assert list(states.values()).count("ARCHIVED") == 150


def test_an_archival_stopped_between_requests_is_finished_by_the_next_sweep(
    hub: LocalSecurityHub, ledger: Ledger, tmp_path: Path
) -> None:
    _archival_of_150_stopped_after_its_first_request(hub, ledger, tmp_path)

    Pipeline(hub, ledger, tmp_path / "dl.jsonl").sink.refresh(T0 + 2 * DAY_MS, after_days=80)  # nothing due

    states = {f["Id"]: f["RecordState"] for f in hub.findings() if "/DEVICE_CERTIFICATE/" in f["Id"]}
    assert list(states.values()).count("ARCHIVED") == 150


def test_a_notification_from_the_future_is_dead_lettered_and_archives_nothing(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    pipeline.deliver(*(audit_finding("task-1", T0, c) for c in "AB"), audit_task("task-1", T0, 2))

    report = pipeline.deliver(audit_task("task-bad-clock", YEAR_2100_MS, 0))
    pipeline.deliver(audit_finding("task-2", T0 + DAY_MS, "A"), audit_task("task-2", T0 + DAY_MS, 1))

    stored = pipeline.stored()
    assert (stored[FINDING_ID.format("A")]["RecordState"], stored[FINDING_ID.format("B")]["RecordState"]) == (
        "ACTIVE",  # reported by task 2, not archived as of 2100
        "ARCHIVED",  # archived by task 2
    )
    assert report.dead_lettered == 1
    [letter] = [json.loads(line) for line in (tmp_path / "dead-letters.jsonl").read_text().splitlines()]
    assert "in the future" in letter["reason"]
    assert letter["origin"]["shard_id"] == "shard-1"
    assert not any(f["ProductFields"]["TaskId"] == "task-bad-clock" for f in stored.values())


def test_an_audit_finding_without_a_task_start_time_takes_its_finding_time(pipeline: Pipeline) -> None:
    pipeline.deliver(audit_finding("task-1", T0, "A"), audit_task("task-1", T0, 1))
    late = json.loads(audit_finding("task-2", T0 + DAY_MS, "A"))
    del late["taskStartTime"]

    pipeline.deliver(json.dumps(late).encode())

    a = pipeline.stored()[FINDING_ID.format("A")]
    assert (a["RecordState"], a["ProductFields"]["TaskId"]) == ("ACTIVE", "task-2")


def _redrive(hub: LocalSecurityHub, ledger: Ledger, dead_letters: Path) -> subprocess.CompletedProcess[bytes]:
    """`defender-hub redrive` as a user runs it, on the same ledger as `ledger`."""
    if isinstance(ledger, SqliteLedger):
        url, env = f"sqlite:///{ledger.path}", local_aws_env()
    else:
        assert isinstance(ledger, DynamoDbLedger)
        url, env = (
            f"dynamodb://{ledger.table}",
            local_aws_env(AWS_ENDPOINT_URL_DYNAMODB=ledger.client.meta.endpoint_url),
        )
    return cli(
        "redrive", "--dead-letter", str(dead_letters), "--ledger", url, "--account-id", ACCOUNT,
        env=env | {"AWS_ENDPOINT_URL_SECURITYHUB": hub.endpoint_url},
    )  # fmt: skip


def test_redrive_records_what_it_delivers_in_the_ledger(pipeline: Pipeline, ledger: Ledger, tmp_path: Path) -> None:
    pipeline.deliver(violation("in-alarm", T0, T0))
    pipeline.hub.fail(["violation-1"], "InvalidInput", times=1)  # the clearing is refused once, then fixed
    pipeline.deliver(violation("alarm-cleared", T0 + 600_000, T0))
    assert pipeline.stored()["violation-1"]["RecordState"] == "ACTIVE"

    done = _redrive(pipeline.hub, ledger, tmp_path / "dead-letters.jsonl")

    assert done.returncode == 0, done.stderr
    assert pipeline.stored()["violation-1"]["RecordState"] == "ARCHIVED"
    assert pipeline.sink.refresh(T0 + 85 * DAY_MS, after_days=80).due == 0  # the ledger knows it is archived
    assert pipeline.stored()["violation-1"]["RecordState"] == "ARCHIVED"


def test_a_redriven_audit_finding_is_archived_by_a_later_task(
    pipeline: Pipeline, ledger: Ledger, tmp_path: Path
) -> None:
    pipeline.hub.fail([FINDING_ID.format("B")], "InvalidInput", times=1)
    pipeline.deliver(*(audit_finding("task-1", T0, c) for c in "AB"), audit_task("task-1", T0, 2))
    assert _redrive(pipeline.hub, ledger, tmp_path / "dead-letters.jsonl").returncode == 0
    assert pipeline.stored()[FINDING_ID.format("B")]["RecordState"] == "ACTIVE"

    pipeline.deliver(audit_finding("task-2", T0 + DAY_MS, "A"), audit_task("task-2", T0 + DAY_MS, 1))

    assert pipeline.stored()[FINDING_ID.format("B")]["RecordState"] == "ARCHIVED"


def test_a_sweep_carries_on_after_an_unexpected_error(hub: LocalSecurityHub, tmp_path: Path) -> None:
    import sqlite3  # noqa: PLC0415

    from defender_hub.checkpoints.opening import DeliverySettings  # noqa: PLC0415
    from defender_hub.checkpoints.sweeps import start_periodic_refresh  # noqa: PLC0415
    from tests.helpers import hub_clients  # noqa: PLC0415

    ledger_file = tmp_path / "ledger.sqlite3"
    pipeline = Pipeline(hub, SqliteLedger(ledger_file), tmp_path / "dl.jsonl")
    pipeline.deliver(violation("in-alarm", T0, T0, "bad"), violation("in-alarm", T0, T0, "good"))
    database = sqlite3.connect(ledger_file, isolation_level=None)
    blob = database.execute("SELECT finding FROM findings WHERE key LIKE '%|bad'").fetchone()[0]
    database.execute("UPDATE findings SET finding = ? WHERE key LIKE '%|bad'", (b"{not json",))
    settings = DeliverySettings(
        str(tmp_path / "dl.jsonl"), f"sqlite:///{ledger_file}", ACCOUNT, clients=hub_clients(hub)
    )
    now = (T0 + 85 * DAY_MS) / 1000

    stop = start_periodic_refresh(settings, every_seconds=0.2, clock=lambda: now)
    try:
        time.sleep(1.5)
        database.execute("UPDATE findings SET finding = ? WHERE key LIKE '%|bad'", (blob,))  # an operator mends it
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and pipeline.stored()["bad"]["UpdatedAt"] < "2026-12":
            time.sleep(0.1)
        assert pipeline.stored()["bad"]["UpdatedAt"] == "2026-12-15T14:13:20.000Z"
        assert pipeline.stored()["good"]["UpdatedAt"] == "2026-12-15T14:13:20.000Z"
    finally:
        stop.end()
        database.close()


def test_a_redriven_refresh_never_outranks_later_news(pipeline: Pipeline, ledger: Ledger, tmp_path: Path) -> None:
    raised_ms = int(time.time() * 1000) - 100 * DAY_MS  # the refresh 85 days later is in the past too
    pipeline.deliver(violation("in-alarm", raised_ms, raised_ms))
    pipeline.hub.fail(["violation-1"], "InvalidInput", times=1)
    pipeline.sink.refresh(raised_ms + 85 * DAY_MS, after_days=80)  # the refresh is refused, so dead-lettered
    pipeline.deliver(violation("alarm-cleared", raised_ms + 600_000, raised_ms))

    assert _redrive(pipeline.hub, ledger, tmp_path / "dead-letters.jsonl").returncode == 0

    assert pipeline.stored()["violation-1"]["RecordState"] == "ARCHIVED"  # the refresh carried in-alarm of T0


def test_a_future_version_in_a_batch_does_not_take_the_timely_ones_with_it(pipeline: Pipeline) -> None:
    report = pipeline.deliver(violation("in-alarm", T0, T0), violation("alarm-cleared", YEAR_2100_MS, T0))

    assert (report.accepted, report.dead_lettered) == (1, 1)
    assert pipeline.stored()["violation-1"]["ProductFields"]["ViolationEventType"] == "in-alarm"


def test_of_two_completions_of_a_check_in_one_batch_the_latest_archives(pipeline: Pipeline, ledger: Ledger) -> None:
    def task(name: str, start_ms: int, audit: str) -> bytes:
        return json.dumps(json.loads(audit_task(name, start_ms, 0)) | {"scheduledAuditName": audit}).encode()

    pipeline.deliver(audit_finding("task-1", T0, "A"), audit_task("task-1", T0, 1))
    pipeline.deliver(audit_finding("task-between", T0 + DAY_MS + 3_600_000, "C"))

    pipeline.deliver(task("weekly", T0 + 2 * DAY_MS, "weekly"), task("daily", T0 + DAY_MS, "daily"))

    stored = pipeline.stored()
    assert [stored[FINDING_ID.format(c)]["RecordState"] for c in "AC"] == ["ARCHIVED", "ARCHIVED"]
    assert ledger.owed_archivals() == []
