"""Times decode → map → encode on a generated mixed corpus, beside a floor and a stdlib reference.

    uv run python benchmarks/bench_convert.py [--events 100000] [--repeat 3]

Prints events/s on one core (the process is pinned to one CPU) for:
- floor: a bare msgspec decode + encode of the same lines, nothing mapped;
- defender-hub: the real `convert` path (decode, map, encode);
- stdlib: the same mapping written with json and dicts (`stdlib_reference.py`), checked equal first;
in process and as whole processes reading the corpus on stdin, with each process's peak RSS.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import msgspec

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import stdlib_reference  # noqa: E402
from defender_hub.convert import convert_stream  # noqa: E402
from defender_hub.mapping import MappingOptions  # noqa: E402
from defender_hub.synthetic import generate_events  # noqa: E402

TARGET_EVENTS_PER_SECOND = 50_000
TARGET_FLOOR_RATIO = 3.0
TARGET_STDLIB_SPEEDUP = 4.0
EQUIVALENCE_SAMPLE = 5_000

# Each program reports its own peak RSS: ru_maxrss would include the image it was forked from before exec.
_PEAK_RSS = """
import atexit, sys
def _report():
    with open("/proc/self/status") as status:
        peak = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
    sys.stderr.write(f"peak-rss-kib {peak}\\n")
atexit.register(_report)
"""
PROGRAMS = {
    "floor": """
import sys, msgspec
decode, encode, out = msgspec.json.decode, msgspec.json.encode, sys.stdout.buffer
for line in sys.stdin.buffer:
    out.write(encode(decode(line)) + b"\\n")
""",
    "defender-hub": "from defender_hub.cli import main; main(['convert'])",
    "stdlib": f"import sys; sys.path.insert(0, {str(HERE)!r}); import stdlib_reference; stdlib_reference.main()",
}


def best_of(repeat: int, run: Callable[[], None]) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def check_equivalence(lines: list[bytes]) -> None:
    """Exits when the stdlib reference and defender-hub disagree on any finding of the sample."""
    ours = io.BytesIO()
    convert_stream(io.BytesIO(b"\n".join(lines) + b"\n"), ours, io.BytesIO(), MappingOptions())
    mine = [json.loads(line) for line in ours.getvalue().splitlines()]
    theirs = [finding for line in lines for finding in stdlib_reference.convert_line(line)]
    if mine != theirs:
        differing = next(i for i, (a, b) in enumerate(zip(mine, theirs, strict=False)) if a != b)
        sys.exit(f"stdlib reference disagrees with defender-hub (finding {differing}); the comparison is void")


def in_process(lines: list[bytes], corpus: bytes, repeat: int) -> dict[str, float]:
    decode, encode = msgspec.json.decode, msgspec.json.encode
    options = MappingOptions()

    def floor() -> None:
        for line in lines:
            encode(decode(line))

    def ours() -> None:
        with open(os.devnull, "wb") as sink:
            convert_stream(io.BytesIO(corpus), sink, io.BytesIO(), options)

    def stdlib() -> None:
        dumps = json.dumps
        for line in lines:
            for finding in stdlib_reference.convert_line(line):
                dumps(finding, separators=(",", ":"), ensure_ascii=False)

    return {name: best_of(repeat, run) for name, run in (("floor", floor), ("defender-hub", ours), ("stdlib", stdlib))}


def one_process(program: str, corpus_path: Path) -> tuple[float, int]:
    """Returns (wall seconds, peak RSS in KiB) of a Python `program` reading the corpus on stdin."""
    with corpus_path.open("rb") as stdin, open(os.devnull, "wb") as stdout:
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", _PEAK_RSS + program], stdin=stdin, stdout=stdout, stderr=subprocess.PIPE, check=False
        )
        elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{program!r} exited with status {done.returncode}: {done.stderr.decode()[-500:]}")
    peak = next(line for line in done.stderr.decode().splitlines() if line.startswith("peak-rss-kib"))
    return elapsed, int(peak.split()[1])


def whole_process(corpus_path: Path, repeat: int) -> dict[str, tuple[float, int]]:
    results = {}
    for name, program in PROGRAMS.items():
        runs = [one_process(program, corpus_path) for _ in range(repeat)]
        results[name] = (min(r[0] for r in runs), max(r[1] for r in runs))
    return results


def verdict(ok: bool) -> str:
    return "meets" if ok else "MISSES"


def report(title: str, events: int, seconds: dict[str, float], rss: dict[str, int] | None = None) -> bool:
    floor, ours, stdlib = seconds["floor"], seconds["defender-hub"], seconds["stdlib"]
    print(f"\n{title}")
    print(f"  {'':14s} {'events/s':>10s} {'µs/event':>9s}" + (f" {'peak RSS':>9s}" if rss else ""))
    for name in ("floor", "defender-hub", "stdlib"):
        line = f"  {name:14s} {events / seconds[name]:10,.0f} {seconds[name] / events * 1e6:9.2f}"
        if rss:
            line += f" {rss[name] / 1024:7.1f}MiB"
        print(line)
    rate, floor_ratio, speedup = events / ours, ours / floor, stdlib / ours
    checks = (
        (f"{rate:,.0f} events/s", f">= {TARGET_EVENTS_PER_SECOND:,}", rate >= TARGET_EVENTS_PER_SECOND),
        (f"{floor_ratio:.2f}x the floor", f"<= {TARGET_FLOOR_RATIO}", floor_ratio <= TARGET_FLOOR_RATIO),
        (f"{speedup:.2f}x the stdlib reference", f">= {TARGET_STDLIB_SPEEDUP}", speedup >= TARGET_STDLIB_SPEEDUP),
    )
    print("  targets: " + ", ".join(f"{figure} ({target}: {verdict(ok)})" for figure, target, ok in checks))
    return rate >= TARGET_EVENTS_PER_SECOND and floor_ratio <= TARGET_FLOOR_RATIO and speedup >= TARGET_STDLIB_SPEEDUP


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # children inherit the one CPU

    lines = list(generate_events(args.events, seed=args.seed))
    corpus = b"\n".join(lines) + b"\n"
    kinds = {
        kind: sum(marker in line for line in lines)
        for kind, marker in (
            ("detect", b'"violationId"'),
            ("audit finding", b'"nonCompliantResource"'),
            ("audit task", b'"auditDetails"'),
        )
    }
    print(
        f"corpus: {len(lines):,} events, {len(corpus) / 1e6:.1f} MB, "
        + ", ".join(f"{count / len(lines):.0%} {kind}" for kind, count in kinds.items())
        + f"; Python {sys.version.split()[0]}, msgspec {msgspec.__version__}, one CPU, best of {args.repeat}"
    )
    check_equivalence(lines[:EQUIVALENCE_SAMPLE])
    print(f"stdlib reference: same findings as defender-hub on the first {EQUIVALENCE_SAMPLE:,} events")

    met = report("in process (decode → map → encode)", len(lines), in_process(lines, corpus, args.repeat))
    with tempfile.TemporaryDirectory() as folder:
        corpus_path = Path(folder) / "corpus.jsonl"
        corpus_path.write_bytes(corpus)
        processes = whole_process(corpus_path, args.repeat)
    met &= report(
        "whole process (stdin → stdout, start-up included)",
        len(lines),
        {name: result[0] for name, result in processes.items()},
        {name: result[1] for name, result in processes.items()},
    )
    print("\nall targets met" if met else "\nsome targets missed")


if __name__ == "__main__":
    main()
