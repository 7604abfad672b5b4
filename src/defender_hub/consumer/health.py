"""Health: whether the daemon lives and the shards move, for a container's HEALTHCHECK (`defender-hub health`).

`run` notes the daemon's process id in the health folder; each processor notes, after a batch, when it was and how
far behind the stream's tip its shard was (the KCL's millisBehindLatest): at once when that lag changed, else every
few seconds (the processor's NOTE_SECONDS). Unhealthy: the daemon is gone or stopped, or no shard has made progress
for a while although records were waiting.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["STALL_SECONDS", "Health", "check", "note_daemon", "note_shard"]

log = logging.getLogger(__name__)

STALL_SECONDS = 300
"""How long shards may stand still, with records waiting, before the worker is unhealthy."""
_DAEMON = "daemon.json"


def _write(path: Path, value: dict[str, object]) -> None:
    """Writes `value` whole or not at all: a reader never sees half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(json.dumps(value))
    partial.replace(path)


def note_daemon(folder: Path, pid: int) -> None:
    """Notes the daemon's process id, and forgets what earlier daemons' shards noted; says in one warning line when
    the folder can't be made or written (a full disk, say) and goes on."""
    try:
        for old in folder.glob("shard-*.json"):
            old.unlink(missing_ok=True)
        _write(folder / _DAEMON, {"pid": pid, "started": time.time()})
    except OSError as exc:
        # Health notes are best effort: the worker runs on, and `defender-hub health` reports what it can't read.
        log.warning(
            "health folder %s: can't note the daemon (%s); going on without it, and `defender-hub health` with none",
            folder,
            exc,
        )


def note_shard(folder: Path, shard: str, behind_ms: int | None) -> None:
    """Notes that `shard` made progress now, `behind_ms` behind the tip of the stream."""
    _write(folder / f"shard-{shard}.json", {"at": time.time(), "behind_ms": behind_ms})


@dataclass(frozen=True)
class Health:
    """A verdict, and why."""

    healthy: bool
    reason: str


def _state(pid: int) -> str | None:
    """The process's state letter (R, S, T, Z…), or None when there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def check(folder: Path, stall_seconds: float = STALL_SECONDS, now: float | None = None) -> Health:
    """Whether the worker noted in `folder` is healthy."""
    now = time.time() if now is None else now
    try:
        daemon = json.loads((folder / _DAEMON).read_text())
    except (OSError, ValueError):
        return Health(False, f"no daemon noted in {folder}: is `defender-hub run` running?")
    state = _state(int(daemon["pid"]))
    if state is None or state in "ZXx":
        return Health(False, f"the KCL daemon (pid {daemon['pid']}) is gone")
    if state in "Tt":
        return Health(False, f"the KCL daemon (pid {daemon['pid']}) is stopped")
    shards = {}
    for path in folder.glob("shard-*.json"):
        try:
            shards[path.stem.removeprefix("shard-")] = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # being replaced: the next check reads it
    waiting = [s for s, noted in shards.items() if (noted.get("behind_ms") or 0) > 0]
    latest = max((float(noted["at"]) for noted in shards.values()), default=float(daemon["started"]))
    if waiting and now - latest > stall_seconds:
        return Health(
            False, f"no shard made progress for {now - latest:.0f} s while records wait ({', '.join(sorted(waiting))})"
        )
    return Health(True, f"the daemon runs; {len(shards)} shards noted, last progress {now - latest:.0f} s ago")
