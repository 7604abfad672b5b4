"""Dead letters counted as they are kept: the shard process's, and the worker's sender's, whichever keeps them."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any

from defender_hub.metrics import SET_ASIDE, WHAT_DEAD_LETTERED, WHAT_PARKED, reason_label
from defender_hub.sink.deadletters import DeadLetter, DeadLetters

__all__ = ["CountedLetters"]


class CountedLetters:
    """Dead letters that count each letter once it is kept (SET_ASIDE): a parked one by its lane's refusal code, any
    other by its error code. `best_effort` wraps the counting, which must never cost a letter."""

    def __init__(self, kept: DeadLetters, best_effort: Callable[[str], AbstractContextManager[None]]) -> None:
        self._kept, self._best_effort = kept, best_effort

    def __getattr__(self, name: str) -> Any:  # drain and unreadable: the kept letters' own
        return getattr(self._kept, name)

    def put(self, letters: Sequence[DeadLetter]) -> None:
        """Keeps `letters`, then counts them."""
        self._kept.put(letters)
        kinds = Counter(
            (WHAT_PARKED if letter.lane is not None else WHAT_DEAD_LETTERED, reason_label(letter.error_code))
            for letter in letters
        )
        with self._best_effort("metrics"):
            for (what, reason), count in kinds.items():
                SET_ASIDE.labels(what, reason).inc(count)
