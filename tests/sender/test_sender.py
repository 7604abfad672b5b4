"""The worker's sender: shards' findings handed over a Unix socket, sent in requests filled across shards within the
lane's quota, and each shard answered for its own before it records or checkpoints anything."""

from __future__ import annotations

import copy
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from defender_hub.checkpoints import SqliteLedger
from defender_hub.checkpoints.delivery import LedgeredSink
from defender_hub.codecs.asff_rules import IMPORT_BURST
from defender_hub.consumer.processor import FindingsProcessor
from defender_hub.convert import EventConverter
from defender_hub.errors import SinkError, SinkStopped
from defender_hub.lifecycle import finding_key
from defender_hub.local.securityhub import LocalSecurityHub
from defender_hub.mapping import MappingOptions
from defender_hub.sender import SenderClient
from defender_hub.sender.process import SenderProcess
from defender_hub.sender.server import SenderServer
from defender_hub.settings.resolving import shard_environment, shard_settings
from defender_hub.sink import JsonlDeadLetters, MappedFinding, RecordOrigin, RetryPolicy, SecurityHubSink
from defender_hub.sink.quota import Quota
from tests.helpers import (
    ACCOUNT,
    FAST,
    TESTS_NOW_MS,
    config_change,
    hub_clients,
    local_aws_env,
    many,
    read_jsonl,
    violation,
    wait_for,
)

T0 = 1_700_000_000_000


@pytest.fixture
def template(convert: Any, reference_events: list[dict[str, Any]]) -> dict[str, Any]:
    return convert(reference_events[2] | {"region": "us-east-1"})[0]


class InProcessSender:
    """The sender served from threads of the test's process, on the local hub, with the worker's quota."""

    def __init__(self, hub: LocalSecurityHub, folder: Path, wait_seconds: float, policy: RetryPolicy = FAST) -> None:
        self.stop = threading.Event()
        self.path = folder / "sender.sock"
        self.dead_letters = folder / "sender-dead-letters.jsonl"
        self.quota = Quota()
        self.sink = sink = SecurityHubSink(
            hub_clients(hub),
            JsonlDeadLetters(self.dead_letters),
            policy=policy,
            stop=self.stop,
            quota=self.quota,
        )
        self.server = SenderServer(sink, self.path, wait_seconds, self.stop)

    def client(self, folder: Path) -> SenderClient:
        """A shard's client, keeping its own letters in `folder`."""
        return SenderClient(self.path, JsonlDeadLetters(folder / "shard-dead-letters.jsonl"), threading.Event())

    def keep_busy(self) -> None:
        """Has the quota say every lane is busy, as other requests booking its slots would, for as long as the test
        takes: a partial request then fills rather than go at once."""
        self.sink.busy = lambda lanes: True  # type: ignore[method-assign]


@pytest.fixture
def sender(hub: LocalSecurityHub, tmp_path: Path) -> Iterator[InProcessSender]:
    served = InProcessSender(hub, tmp_path, wait_seconds=2.0)
    yield served
    served.server.close()


def shard_findings(template: dict[str, Any], shard: str, count: int, start: int = 0) -> list[MappedFinding]:
    """`count` distinct findings of `shard`, each from its own record."""
    return [
        MappedFinding(copy.deepcopy(template) | {"Id": f"{shard}-finding-{i}"}, RecordOrigin(shard, str(1000 + i)))
        for i in range(start, start + count)
    ]


def ledgered(client: SenderClient, path: Path) -> LedgeredSink:
    return LedgeredSink(client, SqliteLedger(path), clock=lambda: TESTS_NOW_MS / 1000)


def test_a_shard_records_exactly_what_the_hub_accepted_once_the_sender_answered(
    hub: LocalSecurityHub, sender: InProcessSender, tmp_path: Path, template: dict[str, Any]
) -> None:
    idle = sender.client(tmp_path)  # a second shard, connected and idle: the busy lane's request waits for it to fill
    idle.connect()
    sender.keep_busy()
    shard = ledgered(sender.client(tmp_path), tmp_path / "ledger.sqlite3")
    findings = shard_findings(template, "shard-1", 5)
    findings[2] = MappedFinding(findings[2].finding | {"Severity": {"Label": "NOT A LABEL"}}, findings[2].origin)
    hub.fail(["shard-1-finding-3"], code="InvalidInput", times=None)  # refused by the hub for good

    started = time.monotonic()
    report = shard.deliver(findings)

    assert time.monotonic() - started >= 1.5  # the sender waited for the request to fill, and the shard with it
    assert (report.accepted, report.dead_lettered, report.parked) == (3, 2, 0)
    stored = {finding_key(doc) for doc in hub.findings()}
    keys = [finding_key(item.finding) for item in findings]  # type: ignore[arg-type]
    recorded = set(SqliteLedger(tmp_path / "ledger.sqlite3").entries(keys))
    assert recorded == stored and len(stored) == 3
    # The shard keeps the letter of what it screened out, the sender those of what it sent; each with its origin.
    screened_out = read_jsonl(tmp_path / "shard-dead-letters.jsonl")
    assert [letter["origin"]["sequence_number"] for letter in screened_out] == ["1002"]
    assert [letter["origin"]["sequence_number"] for letter in read_jsonl(sender.dead_letters)] == ["1003"]


def test_a_partial_request_of_an_idle_lane_goes_at_once_whatever_the_wait(
    hub: LocalSecurityHub, tmp_path: Path, template: dict[str, Any]
) -> None:
    served = InProcessSender(hub, tmp_path, wait_seconds=60.0)
    try:
        idle = served.client(tmp_path)  # connected and not waiting: it may hand nothing for a long while
        idle.connect()
        started = time.monotonic()
        report = ledgered(served.client(tmp_path), tmp_path / "ledger.sqlite3").deliver(
            shard_findings(template, "shard-1", 5)
        )
        took = time.monotonic() - started
    finally:
        served.server.close()
    assert report.accepted == 5 and [r.findings for r in hub.requests("BatchImportFindings")] == [5]
    assert took < 30  # not the minute a request of a busy lane may fill for


def test_two_shards_findings_share_one_request_of_a_busy_lane(
    hub: LocalSecurityHub, sender: InProcessSender, tmp_path: Path, template: dict[str, Any]
) -> None:
    clients = [sender.client(tmp_path) for _ in range(2)]
    for client in clients:
        client.connect()  # as a shard process does as it starts
    sender.keep_busy()  # a request now would take one of the lane's last slots: the first shard's waits
    shards = [ledgered(client, tmp_path / f"ledger-{n}.sqlite3") for n, client in enumerate(clients)]
    reports = []

    def deliver(n: int) -> None:
        reports.append(shards[n].deliver(shard_findings(template, f"shard-{n}", 30)))

    threads = [threading.Thread(target=deliver, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
        time.sleep(0.2)  # one shard's findings wait in the sender for the other's
    for thread in threads:
        thread.join()

    assert [(r.findings, r.accepted) for r in hub.requests("BatchImportFindings")] == [(60, 60)]
    assert sorted(report.accepted for report in reports) == [30, 30]
    assert sum(report.requests for report in reports) == 1


def test_shards_sending_through_the_sender_never_exceed_the_quota_and_fill_every_request(
    tmp_path: Path, template: dict[str, Any]
) -> None:
    with LocalSecurityHub(rate=10, burst=30) as hub:
        served = InProcessSender(hub, tmp_path, wait_seconds=0.25)
        try:
            clients = [served.client(tmp_path) for _ in range(3)]
            clients[2].probe = True  # a sweep's, as `run`'s sweeps send through the sender: the same quota
            for client in clients:
                client.connect()
            # Three shards (one of them a sweep) hand over uneven parts: alone, each would end in a partial request a
            # part.
            parts = [
                [shard_findings(template, f"shard-{n}", 1000 + 37 * n, start) for start in (0, 5000)] for n in range(3)
            ]

            def deliver(n: int) -> None:
                sink = LedgeredSink(clients[n], SqliteLedger(tmp_path / f"ledger-{n}.sqlite3"))
                for part in parts[n]:
                    sink.deliver(part)

            threads = [threading.Thread(target=deliver, args=(n,)) for n in range(3)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            requests = hub.requests("BatchImportFindings")
        finally:
            served.server.close()

    statuses = [r.status for r in requests]
    assert 429 not in statuses and statuses.count(200) == len(statuses)
    total = sum(2 * (1000 + 37 * n) for n in range(3))
    assert sum(r.accepted for r in requests) == total
    assert len(requests) > IMPORT_BURST  # past the burst: the quota's rate held them
    assert len(requests) <= total // 100 + 3  # filled across shards: a partial request a round, not one a part


# -- the sender as `run` starts it: a process of its own, which may die


def sender_environment(hub: LocalSecurityHub, folder: Path, wait_millis: int) -> dict[str, str]:
    values = shard_settings({}) | {
        "dead_letter": str(folder / "sender-dead-letters.jsonl"),
        "ledger": f"sqlite:///{folder / 'unused.sqlite3'}",
        "state_dir": str(folder),
        "import_account": ACCOUNT,
        "sender_socket": str(folder / "sender.sock"),
        "send_wait_millis": wait_millis,
    }
    return local_aws_env(AWS_ENDPOINT_URL_SECURITYHUB=hub.endpoint_url) | shard_environment(values)


class Checkpoints:
    def __init__(self) -> None:
        self.taken: list[str | None] = []

    def checkpoint(self, sequence_number: str | None, sub_sequence: int | None) -> None:
        self.taken.append(sequence_number)


def shard_processor(folder: Path, ledger: Path) -> tuple[FindingsProcessor, SenderClient]:
    client = SenderClient(folder / "sender.sock", JsonlDeadLetters(folder / "shard.jsonl"), threading.Event())
    sink = LedgeredSink(client, SqliteLedger(ledger))
    processor = FindingsProcessor(EventConverter(MappingOptions()), sink, client.dead_letters)
    processor.initialize(SimpleNamespace(shard_id="shardId-000000000000", sequence_number="0"))
    return processor, client


def test_a_sender_killed_mid_request_loses_nothing(hub: LocalSecurityHub, tmp_path: Path) -> None:
    environment = sender_environment(hub, tmp_path, wait_millis=0)
    deaths: list[int] = []
    first = SenderProcess(environment, deaths.append)
    events = [violation("in-alarm", 1_700_000_000_000 + n, 1_700_000_000_000, f"v-{n}") for n in range(150)]
    records = [
        SimpleNamespace(sequence_number=str(n), sub_sequence_number=None, binary_data=e) for n, e in enumerate(events)
    ]
    processor, _ = shard_processor(tmp_path, tmp_path / "ledger.sqlite3")
    checkpoints = Checkpoints()
    hub.throttle(60)  # every request is throttled: the sender keeps trying the shard's first request

    def kill_once_a_request_is_under_way() -> None:
        wait_for("a request of the sender", lambda: hub.requests("BatchImportFindings"), 30, every=0.05)
        first.process.kill()

    killer = threading.Thread(target=kill_once_a_request_is_under_way)
    killer.start()
    with pytest.raises(SystemExit) as exited:
        processor.process_records(SimpleNamespace(records=records, millis_behind_latest=0, checkpointer=checkpoints))
    killer.join()

    assert exited.value.code == 1 and checkpoints.taken == []  # SinkError: no checkpoint past what was not answered
    wait_for("the death of the sender noticed", lambda: deaths, 10, every=0.05)
    assert SqliteLedger(tmp_path / "ledger.sqlite3").entries([finding_key(doc) for doc in hub.findings()]) == {}

    hub.reset()  # the records come again, to a new run's sender
    again = SenderProcess(environment, deaths.append)
    try:
        processor, client = shard_processor(tmp_path, tmp_path / "ledger.sqlite3")
        processor.process_records(SimpleNamespace(records=records, millis_behind_latest=0, checkpointer=checkpoints))
        client.close()
    finally:
        again.end()
    assert checkpoints.taken == ["149"]
    assert len(hub.findings()) == 150
    assert len(deaths) == 1  # the second was ended, not dead


def test_a_deliver_raises_sink_error_when_no_sender_listens(tmp_path: Path, template: dict[str, Any]) -> None:
    client = SenderClient(tmp_path / "nobody.sock", JsonlDeadLetters(tmp_path / "dl.jsonl"), threading.Event())
    with pytest.raises(SinkError, match="can't be reached"):
        ledgered(client, tmp_path / "ledger.sqlite3").deliver(many(template, 3))


def test_workflow_updates_go_through_the_sender_asking_the_shard_what_is_still_owed(
    hub: LocalSecurityHub, sender: InProcessSender, tmp_path: Path
) -> None:
    converter = EventConverter(MappingOptions())
    shard = ledgered(sender.client(tmp_path), tmp_path / "ledger.sqlite3")
    events = [config_change("born-passing", "COMPLIANT", T0), config_change("failing", "NON_COMPLIANT", T0)]
    findings = [
        MappedFinding(finding, RecordOrigin("shard-1", str(n)))
        for n, event in enumerate(events)
        for finding in converter.findings(event)
    ]

    report = shard.deliver(findings)

    assert (report.accepted, report.workflow_updated, report.workflow_owed) == (2, 1, 0)
    workflows = {f["Resources"][0]["Id"]: f["Workflow"]["Status"] for f in hub.findings()}
    assert workflows == {"arn:aws:s3:::born-passing": "RESOLVED", "arn:aws:s3:::failing": "NEW"}
    assert [r.findings for r in hub.requests("BatchUpdateFindings")] == [1]
    assert SqliteLedger(tmp_path / "ledger.sqlite3").owed_workflows(10) == []


def test_a_shard_goes_on_while_another_shards_finding_of_their_request_is_tried_again(
    hub: LocalSecurityHub, sender: InProcessSender, tmp_path: Path, template: dict[str, Any]
) -> None:
    clients = {name: sender.client(tmp_path) for name in ("shard-a", "shard-b")}
    for client in clients.values():
        client.connect()
    hub.fail(["shard-a-finding-0"], code="InternalException", times=9)  # accepted at its tenth try
    sender.keep_busy()  # the first shard's finding waits for the second's
    requests_when_b_was_answered: list[int] = []

    def deliver(name: str) -> None:
        ledgered(clients[name], tmp_path / f"{name}.sqlite3").deliver(shard_findings(template, name, 1))
        if name == "shard-b":
            requests_when_b_was_answered.append(len(hub.requests("BatchImportFindings")))

    threads = [threading.Thread(target=deliver, args=(name,)) for name in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    requests = hub.requests("BatchImportFindings")
    assert [request.findings for request in requests[:1]] == [2]  # the two shards' findings shared a request
    assert len(requests) == 10 and len(hub.findings()) == 2
    # shard-b was answered once its finding was accepted, not after shard-a's nine failures more.
    assert requests_when_b_was_answered and requests_when_b_was_answered[0] <= 2


@pytest.fixture
def mute_sender(tmp_path: Path) -> Iterator[Path]:
    """The path of a socket that takes connections, yet never reads from them nor answers: a sender alive but stuck."""
    path = tmp_path / "mute.sock"
    taken: list[socket.socket] = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(str(path))
        listener.listen(1)
        threading.Thread(target=lambda: taken.append(listener.accept()[0]), daemon=True).start()
        yield path
    for connection in taken:
        connection.close()


def assert_nothing_recorded(findings: list[MappedFinding], ledger: Path) -> None:
    """None of `findings` is in the shard's ledger: nothing of theirs is checkpointed."""
    keys = [finding_key(item.finding) for item in findings]  # type: ignore[arg-type]
    assert SqliteLedger(ledger).entries(keys) == {}


def test_a_shard_takes_a_sender_that_says_nothing_for_stuck_and_fails_its_delivery(
    mute_sender: Path, tmp_path: Path, template: dict[str, Any]
) -> None:
    client = SenderClient(mute_sender, JsonlDeadLetters(tmp_path / "dl.jsonl"), threading.Event(), silence_seconds=1.0)
    shard = ledgered(client, tmp_path / "ledger.sqlite3")

    findings = shard_findings(template, "shard-1", 3)
    with pytest.raises(SinkError, match="said nothing for 1 s"):
        shard.deliver(findings)

    assert_nothing_recorded(findings, tmp_path / "ledger.sqlite3")


@pytest.mark.parametrize("ended_by", ["its silence limit", "a stop"])
def test_a_delivery_to_a_sender_that_reads_nothing_fails_and_records_nothing(
    ended_by: str, mute_sender: Path, tmp_path: Path, template: dict[str, Any]
) -> None:
    stop = threading.Event()
    silence = 1.0 if ended_by == "its silence limit" else 600.0
    client = SenderClient(mute_sender, JsonlDeadLetters(tmp_path / "dl.jsonl"), stop, silence_seconds=silence)
    shard = ledgered(client, tmp_path / "ledger.sqlite3")
    if ended_by == "a stop":
        threading.Timer(1.0, stop.set).start()

    # A part of 5,000 findings, some 9 MB: more than a socket's buffers take while nobody reads them.
    findings = shard_findings(template, "shard-1", 5000)
    error, message = {
        "its silence limit": (SinkError, "took nothing of a delivery for 1 s: taken for stuck"),
        "a stop": (SinkStopped, "stop requested while the sender was still taking a delivery"),
    }[ended_by]
    with pytest.raises(error, match=message):
        shard.deliver(findings)

    assert_nothing_recorded(findings, tmp_path / "ledger.sqlite3")


def test_a_lane_in_an_outage_holds_no_other_lanes_delivery(
    hub: LocalSecurityHub, sender: InProcessSender, tmp_path: Path, template: dict[str, Any]
) -> None:
    elsewhere = json.loads(json.dumps(template).replace("us-east-1", "us-west-2"))
    clients = {name: sender.client(tmp_path) for name in ("shard-east", "shard-west")}
    for client in clients.values():
        client.connect()
    hub.outage(120, region="us-west-2")  # every request of the west lane fails, until the lane is parked
    outcomes: dict[str, Any] = {}

    def deliver(name: str, finding: dict[str, Any]) -> None:
        try:
            outcomes[name] = ledgered(clients[name], tmp_path / f"{name}.sqlite3").deliver(
                shard_findings(finding, name, 3)
            )
        except SinkError as exc:
            outcomes[name] = exc

    west = threading.Thread(target=deliver, args=("shard-west", elsewhere))
    west.start()
    wait_for("the west lane's first failed request", lambda: hub.requests("BatchImportFindings"), 30, every=0.05)
    deliver("shard-east", template)

    assert outcomes["shard-east"].accepted == 3  # answered while the west lane's request is still retried
    assert west.is_alive() and "shard-west" not in outcomes
    sender.server.close()  # as run ends its sender: the west shard's delivery ends without a checkpoint
    west.join(30)
    assert isinstance(outcomes["shard-west"], SinkError)
