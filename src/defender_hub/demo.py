"""`defender-hub demo`: generated events through the real consumer into the local Security Hub, and what arrived."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from defender_hub.codecs.config import CONFIG_SOURCE
from defender_hub.codecs.health import HEALTH_SOURCE
from defender_hub.config import state_dir
from defender_hub.convert import EventConverter
from defender_hub.errors import EventSkipped
from defender_hub.loadgen import put_events as put_load
from defender_hub.local import DEMO_EVENTS
from defender_hub.local.securityhub import LocalSecurityHub
from defender_hub.local.stack import LocalStack, consumer_command, fresh_folder, local_stack
from defender_hub.mapping import MappingOptions
from defender_hub.mapping.common import (
    CHECK_SUMMARY,
    PRODUCT_NAME_AUDIT,
    PRODUCT_NAME_CONFIG,
    PRODUCT_NAME_DETECT,
    PRODUCT_NAME_HEALTH,
)
from defender_hub.settings import from_environment
from defender_hub.synthetic import EventMix, generate_events

__all__ = ["explain", "run_demo"]

DEMO_MIX = EventMix(config=0.25, health=0.1)
"""The demo's stream: Device Defender's events, with AWS Config's and AWS Health's beside them (a fifth of it)."""


def _table(findings: list[dict[str, Any]]) -> str:
    counts = Counter(
        (f["ProductName"], f["RecordState"], f["Severity"]["Label"], f.get("Workflow", {}).get("Status", ""))
        for f in findings
    )
    rows = [f"  {'product':30s} {'record state':12s} {'severity':13s} {'workflow':9s} {'findings':>8s}"]
    rows += [f"  {p:30s} {r:12s} {s:13s} {w:9s} {n:8d}" for (p, r, s, w), n in sorted(counts.items())]
    return "\n".join(rows)


def _put_events(stack: LocalStack, stream: str, shards: int, events: int) -> list[bytes]:
    """Creates `stream` on the stack with `shards` shards and puts `events` generated events on it; returns them."""
    kinesis = stack.create_stream(stream, shards)
    payloads = list(generate_events(events, seed=2026, mix=DEMO_MIX))
    put_load(kinesis, stream, payloads)
    return payloads


def _stream_ends(kinesis: Any, stream: str) -> dict[str, str]:
    """Each shard's last sequence number: where the consumer's checkpoint is once all of it was delivered."""
    ends: dict[str, str] = {}
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            answer = kinesis.get_records(ShardIterator=iterator, Limit=10_000)
            if answer["Records"]:
                ends[shard["ShardId"]] = answer["Records"][-1]["SequenceNumber"]
            if not answer["Records"] and not answer.get("MillisBehindLatest"):
                break
            iterator = answer.get("NextShardIterator")
    return ends


def _checkpoints(dynamodb: Any, application: str) -> dict[str, str]:
    """Each shard's checkpoint in the consumer's lease table (none before the KCL made it)."""
    try:
        items = dynamodb.scan(TableName=application)["Items"]
    except dynamodb.exceptions.ResourceNotFoundException:
        return {}
    return {item["leaseKey"]["S"]: item.get("checkpoint", {}).get("S", "") for item in items}


def run_demo(
    events: int = DEMO_EVENTS, shards: int = 2, timeout: float = 300.0, out: Any = sys.stdout, *, keep: bool = False
) -> int:
    """Streams `events` generated events through the real consumer into the local Security Hub and explains what
    arrived; returns 0 when all of it did. With `keep`, the stack stays up until SIGINT or SIGTERM and the consumer's
    log, ledger and dead letters stay in the state directory."""
    started = time.monotonic()
    with _demo_folder(keep) as folder, local_stack() as stack:
        print(f"local stack: AWS {stack.aws.endpoint_url}, Security Hub {stack.hub.endpoint_url}", file=out)
        payloads = _put_events(stack, "defender-hub-demo", shards, events)
        ends = _stream_ends(stack.client("kinesis"), "defender-hub-demo")
        made, skipped = _expected(payloads)
        expected = set(made)
        print(
            f"put {len(payloads)} events on a {shards}-shard stream: {len(expected)} distinct findings to expect",
            file=out,
        )
        ledger = f"sqlite:///{folder / 'ledger.sqlite3'}"
        dead_letters = folder / "dead-letters.jsonl"
        command = consumer_command("defender-hub-demo", "defender-hub-demo", "demo", dead_letters, ledger)
        log = (folder / "consumer.log").open("wb")
        environment = os.environ | stack.environment()
        consumer = subprocess.Popen(command, env=environment, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
        try:
            arrived = _follow(stack.hub, len(expected), consumer, started + timeout, out)
            # Every finding is in; what the consumer still does (Config's workflow updates) ends with each shard
            # checkpointed at its last record.
            dynamodb = stack.client("dynamodb")
            while time.monotonic() < started + timeout and consumer.poll() is None:
                if _checkpoints(dynamodb, "defender-hub-demo") == ends:
                    break
                time.sleep(1)
        finally:
            consumer.send_signal(signal.SIGTERM)
            consumer.wait(timeout=90)
        findings = stack.hub.findings()
        print(f"\n{_table(findings)}", file=out)
        requests = stack.hub.requests("BatchImportFindings")
        print(
            f"\n{arrived} of {len(expected)} findings in Security Hub, {len(requests)} BatchImportFindings requests, "
            f"{time.monotonic() - started:.1f} s in all (the KCL's start-up included)",
            file=out,
        )
        letters = len(dead_letters.read_bytes().splitlines()) if dead_letters.exists() else 0
        print(explain(len(payloads), made, findings, letters, skipped), file=out)
        if arrived != len(expected):
            print((folder / "consumer.log").read_text()[-2000:], file=sys.stderr)
            return 1
        if keep:
            _stay_up(stack, folder, out)
        return 0


def _expected(payloads: list[bytes]) -> tuple[list[str], Counter[str]]:
    """The finding Ids the events make, in order, and how many events of each source make none by its rules."""
    converter = EventConverter(MappingOptions())
    made: list[str] = []
    skipped: Counter[str] = Counter()
    for data in payloads:
        try:
            made += (finding.id for finding in converter.findings(data))
        except EventSkipped as skip:
            skipped[skip.source] += 1
    return made, skipped


def explain(
    events: int, made: list[str], findings: list[dict[str, Any]], dead_letters: int, skipped: Counter[str]
) -> str:
    """What the demo's numbers mean: why events and findings differ, why findings are archived or resolved, what
    made no finding, the dead letters."""
    summaries = [f for f in findings if f.get("ProductFields", {}).get("ReportType") == CHECK_SUMMARY]
    archived = Counter(
        "summary" if f in summaries else f["ProductName"] for f in findings if f["RecordState"] == "ARCHIVED"
    )
    config = [f for f in findings if f["ProductName"] == PRODUCT_NAME_CONFIG]
    resolved = sum(f.get("Workflow", {}).get("Status") == "RESOLVED" for f in config)
    passed = sum(f.get("Compliance", {}).get("Status") == "PASSED" for f in config)
    health = sum(f["ProductName"] == PRODUCT_NAME_HEALTH for f in findings)
    return "\n".join(
        [
            "\nWhat the numbers mean:",
            f"- {events} events made {len(made)} findings, {len(set(made))} of them distinct: "
            f"{len(made) - len(set(made))} were later news of a finding already made (an alarm that cleared, a "
            "resource a later audit task reported again) and updated it rather than adding one.",
            f"- {len(summaries)} of the findings are check summaries: each audit task adds one a check, updated by the "
            "check's next task.",
            f"- {archived[PRODUCT_NAME_AUDIT]} audit findings are ARCHIVED: a later task of their audit no longer "
            "reported the resource (it became compliant), or Device Defender suppressed it, so it was archived, "
            "as Security Hub's own integration does; "
            f"{archived['summary']} check summaries are ARCHIVED as their checks passed.",
            f"- {archived[PRODUCT_NAME_DETECT]} Detect findings are ARCHIVED: their alarms cleared.",
            f"- {len(config)} AWS Config findings, one a rule and resource; {passed} are PASSED, and {resolved} of "
            "those are RESOLVED: created PASSED, or gone from FAILED to PASSED, as Config's own integration marks "
            "them. An import can't set a workflow, so defender-hub sets it with BatchUpdateFindings once Security Hub "
            "accepted the import. (A PASSED finding that was WARNING or NOT_AVAILABLE before stays NEW, as there.)",
            f"- {health} AWS Health findings, one an event: only security-related events make one.",
            f"- {sum(skipped.values())} events made no finding by their source's rules: "
            f"{skipped[HEALTH_SOURCE.name]} AWS Health events not about security, and {skipped[CONFIG_SOURCE.name]} "
            "AWS Config events "
            "that are evaluations of service-linked rules (securityhub-…, Security Hub's own controls) or not "
            "compliance changes at all.",
            f"- {dead_letters} dead letters: events or findings that could not be imported go there, with the reason "
            "and the shard and sequence number they came from.",
        ]
    )


def _stay_up(stack: LocalStack, folder: Path, out: Any) -> None:
    """Keeps the stack up for a look around until SIGINT or SIGTERM."""
    stop = threading.Event()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signal_number, lambda *_: stop.set())
    exports = "\n".join(stack.exports(folder))  # the consumer's ledger, not yours
    print(
        f"\nKept: the consumer's log, ledger and dead letters in {folder}. The stack stays up until Ctrl-C; to look "
        f"around from another shell:\n{exports}\n  defender-hub findings",
        file=out,
        flush=True,
    )
    stop.wait()


def _follow(hub: LocalSecurityHub, expected: int, consumer: Any, deadline: float, out: Any) -> int:
    """Shows progress until every expected finding arrived, the consumer died, or time ran out; returns how many."""
    arrived, shown = 0, -1
    on_terminal = out.isatty()
    while time.monotonic() < deadline and consumer.poll() is None:
        arrived = len(hub.findings())
        if on_terminal:
            print(f"\r  {arrived}/{expected} findings in Security Hub", end="", file=out, flush=True)
        elif arrived != shown:
            print(f"  {arrived}/{expected} findings in Security Hub", file=out, flush=True)
        shown = arrived
        if arrived >= expected:
            break
        time.sleep(1)
    return arrived


@contextmanager
def _demo_folder(keep: bool) -> Iterator[Path]:
    """A folder for the demo's files: `demo` in the state directory (emptied first) to keep, else a temporary one."""
    if keep:
        yield fresh_folder(state_dir(from_environment("state_dir")) / "demo")
        return
    with tempfile.TemporaryDirectory(prefix="defender-hub-demo-") as temporary:
        yield Path(temporary)
