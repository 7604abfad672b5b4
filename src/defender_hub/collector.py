"""The garbage collector in a long-running process: what it made as it started out of sight, and paused while a batch
it could free nothing of is delivered."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

__all__ = ["collector_paused", "freeze_startup"]


def freeze_startup() -> None:
    """Takes what a long-running process made as it started (its modules, settings and tables) out of the garbage
    collector's sight: all of it lives as long as the process, and each full collection walked it again. The
    collector was two fifths of the sender's CPU and a sixth of a shard process's (py-spy, ten accounts' backlog)."""
    gc.collect()
    gc.freeze()


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Pauses the garbage collector's automatic runs for the block, when they are on; they resume after it.

    A batch's findings live until the batch is delivered, and they are many containers: each full collection in the
    middle of a batch walked all of them, to free none: 8 % of a shard process's CPU.
    Memory is freed by reference counts all the same; only cycles wait for the next run, after the block.

    For one thread at a time: the collector is the whole process's, and a second block inside the first's time would
    find it off, and leave it to the first to turn on again.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
