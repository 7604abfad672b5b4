"""The load test: the real consumer against the local Security Hub at its real quota (10 requests/s, burst 30).

    uv run python benchmarks/loadtest.py [--findings 20000] [--shards 4] [--import-findings 5000] [--chart FILE.svg]

Scenarios (figures printed as a table):
- backlog: a stream holding events that make `--findings` distinct findings, `--shards` shards, one account; the
  consumer (`defender-hub run`, the KCL daemon) drains it. Throughput is measured from the first import request to
  the last, against the token bucket's ideal (30 requests at once, then 10 a second, 100 findings each); with the
  share of requests throttled and the findings a request carried.
- import: `--import-findings` findings through the sink with 1 % of their Ids failing once: findings a request.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import boto3

from defender_hub.convert import EventConverter
from defender_hub.demo import LocalStack, consumer_command
from defender_hub.loadgen import generated, put_events
from defender_hub.local.aws import LocalAws
from defender_hub.local.securityhub import LocalSecurityHub, RequestRecord
from defender_hub.mapping import MappingOptions
from defender_hub.sink import JsonlDeadLetters, Outbound, SecurityHubClients, SecurityHubSink
from defender_hub.sink.quota import IMPORT_BURST, IMPORT_RATE

FINDINGS_PER_REQUEST = 100


def ideal_seconds(findings_by_lane: Counter[str]) -> float:
    """How long the token buckets take at best: each lane's findings in full requests, its burst at once, then its
    rate; the lanes side by side."""
    return max(
        (
            max(0, math.ceil(count / FINDINGS_PER_REQUEST) - IMPORT_BURST) / IMPORT_RATE
            for count in findings_by_lane.values()
        ),
        default=0.0,
    )


def events_for(findings: int, seed: int) -> tuple[list[bytes], Counter[str]]:
    """Generated events that make at least `findings` distinct findings, and those findings by lane (Region)."""
    converter = EventConverter(MappingOptions())
    count = int(findings / 0.8)
    while True:
        events = list(generated(count, seed, 1))
        made = {
            finding.id: finding.product_arn.split(":")[3] for event in events for finding in converter.findings(event)
        }
        if len(made) >= findings:
            return events, Counter(made.values())
        count = int(count * findings / len(made)) + 100


def import_stats(hub: LocalSecurityHub) -> dict[str, float]:
    log = hub.requests("BatchImportFindings")
    done = [r for r in log if r.status == 200]
    throttled = sum(r.status == 429 for r in log)
    return {
        "requests": len(done),
        "throttled %": 100 * throttled / max(1, len(log)),
        "findings/request": sum(r.findings for r in done) / max(1, len(done)),
        "seconds": (done[-1].at - done[0].at) if done else 0.0,
    }


def chart(log: list[RequestRecord], path: Path, title: str) -> None:
    """Writes an SVG of findings accepted, requests and throttled requests per second over the run."""
    if not log:
        return
    start = log[0].at
    seconds = int(log[-1].at - start) + 1
    series = {
        "findings accepted /s ÷ 10": [0.0] * seconds,
        "requests /s": [0.0] * seconds,
        "throttled /s": [0.0] * seconds,
    }
    for record in log:
        second = int(record.at - start)
        if record.status == 200:
            series["findings accepted /s ÷ 10"][second] += record.accepted / 10
            series["requests /s"][second] += 1
        elif record.status == 429:
            series["throttled /s"][second] += 1
    width, height, margin = 720, 300, 40
    top = max(max(values) for values in series.values()) or 1.0
    colours = ("#1f77b4", "#2ca02c", "#d62728")
    lines = []
    for (name, values), colour in zip(series.items(), colours, strict=True):
        points = " ".join(
            f"{margin + i * (width - 2 * margin) / max(1, seconds - 1):.1f},"
            f"{height - margin - v * (height - 2 * margin) / top:.1f}"
            for i, v in enumerate(values)
        )
        lines.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{points}"/>')
        lines.append(
            f'<text x="{width - 250}" y="{20 + 16 * len(lines) // 2}" fill="{colour}" font-size="12">{name}</text>'
        )
    axis = (
        f'<line x1="{margin}" y1="{height - margin}" x2="{width - margin}" y2="{height - margin}" stroke="#888"/>'
        f'<line x1="{margin}" y1="{margin}" x2="{margin}" y2="{height - margin}" stroke="#888"/>'
        f'<text x="{margin}" y="{height - 10}" font-size="12">0 s</text>'
        f'<text x="{width - margin - 30}" y="{height - 10}" font-size="12">{seconds} s</text>'
        f'<text x="4" y="{margin}" font-size="12">{top:.0f}</text>'
        f'<text x="{margin}" y="16" font-size="13">{title}</text>'
    )
    path.write_text(
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif">'
        f'<rect width="100%" height="100%" fill="white"/>{axis}{"".join(lines)}</svg>\n'
    )


def backlog(findings: int, shards: int, seed: int, timeout: float, chart_path: Path | None = None) -> dict[str, Any]:
    """Drains a backlog through the real consumer; returns its figures."""
    events, by_lane = events_for(findings, seed)
    expected = sum(by_lane.values())
    with (
        LocalAws() as aws,
        LocalSecurityHub(sts_endpoint=aws.endpoint_url) as hub,
        tempfile.TemporaryDirectory() as tmp,
    ):
        stack = LocalStack(aws, hub)
        kinesis = stack.client("kinesis")
        kinesis.create_stream(StreamName="load", ShardCount=shards)
        kinesis.get_waiter("stream_exists").wait(StreamName="load", WaiterConfig={"Delay": 0.5})
        put_events(kinesis, "load", events)
        folder = Path(tmp)
        command = consumer_command("load", "load", "worker-1", folder / "dl.jsonl", f"sqlite:///{folder / 'l.db'}")
        with (folder / "run.log").open("wb") as log:
            consumer = subprocess.Popen(command, env=os.environ | stack.environment(), stdout=log, stderr=log)
            deadline = time.monotonic() + timeout
            try:
                while hub.count() < expected and time.monotonic() < deadline and consumer.poll() is None:
                    time.sleep(0.5)
            finally:
                consumer.send_signal(signal.SIGTERM)
                consumer.wait(timeout=90)
        stats = import_stats(hub)
        stored = hub.count()
        if chart_path is not None:
            log = hub.requests("BatchImportFindings")
            chart(log, chart_path, f"backlog of {expected:,} findings, {shards} shards: per second")
    ideal = ideal_seconds(by_lane)
    return {
        "scenario": f"backlog, {shards} shards, 1 account, {len(by_lane)} Regions",
        "findings": stored,
        "of": expected,
        "findings/s": stored / max(stats["seconds"], 1e-9),
        "% of ideal": 100 * ideal / max(stats["seconds"], 1e-9),
        **stats,
    }


def flaky_import(findings: int, seed: int) -> dict[str, Any]:
    """Imports `findings` findings through the sink with 1 % of their Ids failing once; returns its figures."""
    converter = EventConverter(MappingOptions())
    latest = {
        finding.id: finding
        for event in generated(int(findings / 0.8), seed, 1)
        for finding in converter.findings(event)
    }
    chosen = list(latest.values())[:findings]
    with LocalSecurityHub() as hub, tempfile.TemporaryDirectory() as tmp:
        hub.fail([finding.id for finding in chosen[::100]], "InternalError", "flaky", times=1)
        session = boto3.Session(aws_access_key_id="local", aws_secret_access_key="local", region_name="us-east-1")
        sink = SecurityHubSink(
            SecurityHubClients(session, endpoint_url=hub.endpoint_url), JsonlDeadLetters(Path(tmp) / "dl.jsonl")
        )
        report = sink.deliver(Outbound(finding) for finding in chosen)
        stats = import_stats(hub)
    return {"scenario": "import, 1 % failing once", "findings": report.accepted, "of": len(chosen), **stats}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--findings", type=int, default=20_000)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--import-findings", type=int, default=5_000)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--chart", type=Path, help="write an SVG of the backlog's run here")
    args = parser.parse_args()
    rows = [
        backlog(args.findings, args.shards, args.seed, args.timeout, args.chart),
        flaky_import(args.import_findings, args.seed),
    ]
    columns = ["scenario", "findings", "of", "seconds", "findings/s", "% of ideal", "requests", "throttled %",
               "findings/request"]  # fmt: skip
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        cells = [f"{row[c]:.1f}" if isinstance(row.get(c), float) else str(row.get(c, "")) for c in columns]
        print("| " + " | ".join(cells) + " |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
