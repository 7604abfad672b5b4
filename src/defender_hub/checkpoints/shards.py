"""How far each shard is: its KCL checkpoint, taken only past records whose findings were delivered.

The KCL keeps the checkpoint in its lease table; this is the policy for asking it to: retry while DynamoDB is
throttling, stop quietly when the shard is shutting down, and exit on anything else, so the daemon hands the shard
on from its last good checkpoint rather than carry on from a state nobody knows.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from amazon_kclpy.checkpoint_error import CheckpointError

from defender_hub.backoff import exponential

__all__ = ["CHECKPOINT_ATTEMPTS", "checkpoint"]

log = logging.getLogger("defender_hub.consumer")

CHECKPOINT_ATTEMPTS = 10
_FIRST_PAUSE_SECONDS = 0.4  # after the first throttled attempt; doubled after each one that follows
_MAX_PAUSE_SECONDS = 10.0


def checkpoint(
    checkpointer: Any, shard: str, sequence_number: str | None = None, sub_sequence: int | None = None
) -> bool:
    """Checkpoints `shard` at the record given (its end when none); returns False when the shard is shutting down
    (handed on: nothing more of it is this worker's), and raises SystemExit when checkpointing fails for good."""
    for attempt in range(1, CHECKPOINT_ATTEMPTS + 1):
        try:
            checkpointer.checkpoint(sequence_number, sub_sequence)
            return True
        except CheckpointError as error:
            if error.value == "ShutdownException":
                log.info("%s is shutting down: no checkpoint", shard)
                return False
            if error.value == "ThrottlingException" and attempt < CHECKPOINT_ATTEMPTS:
                time.sleep(exponential(attempt, _FIRST_PAUSE_SECONDS, _MAX_PAUSE_SECONDS))
                continue
            log.error("checkpoint of %s failed: %s; exiting", shard, error.value)
            raise SystemExit(1) from None
    raise AssertionError("unreachable: the last attempt returns or exits")  # for the type checker
