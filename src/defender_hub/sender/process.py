"""The worker's sender as `run` starts and watches it: a process of its own, ready once it listens, ended when `run`
closes its standard input, and fatal to the run when it dies before that."""

from __future__ import annotations

import logging
import os
import select
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping

from defender_hub.errors import ConfigError

__all__ = ["READY", "START_SECONDS", "SenderProcess"]

log = logging.getLogger("defender_hub.sender")

READY = "sender listening"
"""The line the sender writes on its standard output once it listens."""
START_SECONDS = 60.0
"""How long the sender may take to listen (boto3's import, the dead letters' check) before `run` gives up."""
END_SECONDS = 30.0


class SenderProcess:
    """The sender, started with `environment` added to this process's; `on_death` is called (from a thread of its
    own) if it ends before `end`."""

    def __init__(self, environment: Mapping[str, str], on_death: Callable[[int], None]) -> None:
        self._on_death = on_death
        self._ending = False
        self.process = subprocess.Popen(
            [sys.executable, "-m", "defender_hub.sender"],
            env=os.environ | dict(environment),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        try:
            self._wait_until_ready()
        except BaseException:
            self.process.kill()
            self.process.wait()
            raise
        self._watcher = threading.Thread(target=self._watch, name="sender-watch", daemon=True)
        self._watcher.start()

    def _wait_until_ready(self) -> None:
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], START_SECONDS)
        line = self.process.stdout.readline().decode(errors="replace").strip() if ready else ""
        if line != READY:
            raise ConfigError(
                f"the worker's sender did not start (it said {line[:200]!r}; its error is above): the consumer can't "
                "send without it"
            )

    def _watch(self) -> None:
        status = self.process.wait()
        if not self._ending:
            log.error("the worker's sender ended (status %d): stopping the daemon; run exits non-zero", status)
            self._on_death(status)

    def end(self) -> None:
        """Ends the sender: closing its standard input tells it to stop, and it is killed if it does not."""
        self._ending = True
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(END_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
