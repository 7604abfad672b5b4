"""Times the CPU the send path takes per finding: mapped findings through the real sink to a local Security Hub.

    uv run python benchmarks/bench_send.py [--findings 20000] [--batch 2500] [--repeat 3]

The findings come from a generated corpus, mapped as the consumer maps them (not timed). They go through the real
`SecurityHubSink` as the consumer's do (coalescing, the strict screen, lanes, requests of 100 through a botocore
client made as `securityhub_clients` makes one, with its Config) to the local Security Hub, which runs in a process of
its own with a quota too large to throttle, so that its work is not counted. Prints, for the sending process alone
(time.process_time: every thread of it), the CPU seconds per 1,000 findings and the findings a CPU second, best of
the repeats; and, apart, what each piece of the path costs a finding in a loop of its own (no requests), to say where
the time goes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3

from defender_hub.codecs.asff_rules import finding_problems
from defender_hub.convert import EventConverter
from defender_hub.errors import EventError, EventSkipped
from defender_hub.local.hub_core import DEFAULT_ACCOUNT
from defender_hub.mapping import MappingOptions
from defender_hub.sink import JsonlDeadLetters, MappedFinding, SecurityHubClients, SecurityHubSink, coalesce
from defender_hub.sink.lanes import EncodedFindings
from defender_hub.sink.shapes import shape_problem
from defender_hub.synthetic import generate_events

HUB_RATE = 1_000_000
"""Requests a second the local Security Hub allows: its quota never throttles what is timed here."""


def findings(count: int, seed: int) -> list[MappedFinding]:
    """`count` distinct findings of the generated corpus, mapped as the processor maps them: a later version of a
    finding is left out, so that every finding handed in is one sent."""
    converter = EventConverter(MappingOptions())
    mapped: dict[tuple[str, str], MappedFinding] = {}
    for data in generate_events(4 * count, seed=seed):
        try:
            for finding in converter.findings(data):
                mapped.setdefault((finding.product_arn, finding.id), MappedFinding(finding))
        except (EventSkipped, EventError):
            continue
        if len(mapped) >= count:
            break
    return list(mapped.values())[:count]


class HubProcess:
    """The local Security Hub in a process of its own (`defender-hub local-securityhub`), so its CPU is not ours."""

    def __enter__(self) -> HubProcess:
        command = [sys.executable, "-m", "defender_hub", "local-securityhub", "--rate", str(HUB_RATE)]
        self._process = subprocess.Popen([*command, "--burst", str(HUB_RATE)], stdout=subprocess.PIPE, text=True)
        assert self._process.stdout is not None
        self.endpoint_url = self._process.stdout.readline().strip()
        if not self.endpoint_url.startswith("http"):
            self._process.kill()
            sys.exit(f"the local Security Hub did not start: {self.endpoint_url!r}")
        return self

    def reset(self) -> None:
        """Forgets every finding and request, so each repeat starts from the same empty hub."""
        request = urllib.request.Request(f"{self.endpoint_url}/_local/reset", data=b"{}", method="POST")
        with urllib.request.urlopen(request, timeout=10):
            pass

    def __exit__(self, *_: object) -> None:
        self._process.terminate()
        self._process.wait(timeout=10)


def sink_to(endpoint_url: str, dead_letters: Path) -> SecurityHubSink:
    """The sink the consumer builds, its clients pointed at the local hub, with the clients' own default Config."""
    session = boto3.Session(aws_access_key_id="bench", aws_secret_access_key="bench", region_name="us-east-1")
    clients = SecurityHubClients(session, own_account=DEFAULT_ACCOUNT, endpoint_url=endpoint_url)
    return SecurityHubSink(clients, JsonlDeadLetters(dead_letters))


def one_run(sink: SecurityHubSink, work: list[MappedFinding], batch: int) -> tuple[float, float, int, int]:
    """Delivers `work` in batches of `batch`; returns CPU seconds, wall seconds, findings accepted, requests made."""
    accepted = requests = 0
    cpu, wall = time.process_time(), time.perf_counter()
    for start in range(0, len(work), batch):
        report = sink.deliver(work[start : start + batch])
        accepted += report.accepted
        requests += report.requests
    return time.process_time() - cpu, time.perf_counter() - wall, accepted, requests


def per_finding(label: str, count: int, run: Callable[[], Any], repeat: int) -> None:
    """Prints the CPU µs a finding of `run`, which handles `count` findings, best of `repeat`."""
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        run()
        best = min(best, time.process_time() - started)
    print(f"  {label:44s} {best / count * 1e6:7.1f} µs/finding")


def pieces(sink: SecurityHubSink, work: list[MappedFinding], repeat: int) -> None:
    """Prints what each step of the send path costs a finding, each in a loop of its own, no request sent."""
    encoded = coalesce(work)
    client = sink._clients(next(iter(sink._clients._made)))  # type: ignore[attr-defined]
    model = client.meta.service_model.operation_model("BatchImportFindings")
    serializer = client._serializer  # botocore's own, as the client calls it
    from botocore.validate import ParamValidator  # noqa: PLC0415

    validator = ParamValidator()
    shape_problem(encoded[0].doc)  # its types built first: once a process, not per finding
    bare = getattr(serializer, "_serializer", serializer)  # without the validation botocore may wrap it in
    requests = [{"Findings": [item.doc for item in encoded[i : i + 100]]} for i in range(0, len(encoded), 100)]
    print("where a finding's CPU goes, each step alone (no requests):")
    per_finding("coalesce (as JSON documents, bodies)", len(work), lambda: coalesce(work), repeat)
    per_finding(
        "strict screen (asff_rules.finding_problems)",
        len(encoded),
        lambda: [finding_problems(item.doc, encoded_size=len(item.body)) for item in encoded],
        repeat,
    )
    per_finding(
        "shape screen (sink/shapes.py)", len(encoded), lambda: [shape_problem(item.doc) for item in encoded], repeat
    )
    per_finding(
        "the request's body (EncodedFindings)",
        len(encoded),
        lambda: [EncodedFindings(item.body for item in encoded[i : i + 100]) for i in range(0, len(encoded), 100)],
        repeat,
    )
    # The two that follow are what the lanes' clients no longer do (validation off, the body joined from the findings'
    # own bodies): timed for what they would cost.
    per_finding(
        "botocore's parameter validation (not run)",
        len(encoded),
        lambda: [validator.validate(params, model.input_shape) for params in requests],
        repeat,
    )
    per_finding(
        "botocore's serializer (not run: EncodedFindings)",
        len(encoded),
        lambda: [bare.serialize_to_request(params, model) for params in requests],
        repeat,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--findings", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=2_500, help="findings a delivery")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-pieces", action="store_true", help="leave out the steps timed alone")
    args = parser.parse_args()
    work = findings(args.findings, args.seed)
    print(f"corpus: {len(work):,} findings of generated events, {args.batch:,} a delivery, best of {args.repeat}")
    with HubProcess() as hub, tempfile.TemporaryDirectory() as folder:
        sink = sink_to(hub.endpoint_url, Path(folder) / "dead-letters.jsonl")
        sink.deliver(work[:100])  # the client made, its model loaded and its connection opened: start-up, not timed
        runs = []
        for _ in range(args.repeat):
            hub.reset()
            runs.append(one_run(sink, work, args.batch))
        cpu, wall, accepted, requests = min(runs)
        if accepted != len(work):
            sys.exit(f"only {accepted:,} of {len(work):,} findings accepted; the figures are void")
        print(
            f"send: {accepted:,} findings in {requests:,} requests: {cpu / accepted * 1000:.3f} CPU s per 1,000 "
            f"findings ({accepted / cpu:,.0f} findings a CPU second), {accepted / wall:,.0f} findings/s wall; "
            f"CPU of the runs: {', '.join(f'{run[0]:.2f} s' for run in runs)}"
        )
        if not args.no_pieces:
            pieces(sink, work, args.repeat)
        print(json.dumps({"cpu_s_per_1000": round(cpu / accepted * 1000, 4), "findings": accepted}))


if __name__ == "__main__":
    main()
