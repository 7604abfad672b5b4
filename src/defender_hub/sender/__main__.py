"""The worker's sender as a process (`python -m defender_hub.sender`), which `run` starts before its daemon, with the
settings it hands its shard processes in the environment."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from defender_hub.checkpoints.opening import open_hub
from defender_hub.collector import freeze_startup
from defender_hub.errors import ConfigError
from defender_hub.logs import configure
from defender_hub.sender.process import READY
from defender_hub.sender.server import SenderServer
from defender_hub.settings import variable
from defender_hub.settings.resolving import shard_settings
from defender_hub.sink import open_dead_letters
from defender_hub.sink.counted_letters import CountedLetters
from defender_hub.worker import delivery_settings

__all__ = ["main"]

log = logging.getLogger("defender_hub.sender")


def main() -> None:
    """Serves the worker's shard processes until `run` closes this process's standard input (as it ends, or dies)."""
    values = shard_settings(os.environ)
    configure(values["log_format"])
    # A stop signal to the whole process group (Ctrl-C, a unit's stop) must not end the sender before the shards
    # have drained through it: `run` ends it once the daemon is gone, by closing its standard input.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if not values["sender_socket"]:
        raise ConfigError(f"the sender needs its socket's path ({variable('sender_socket')})")
    settings = delivery_settings(values)
    stop = threading.Event()
    letters = open_dead_letters(settings.dead_letter, overflow=settings.dead_letter_overflow)
    # Counted as the shard processes count theirs; a metric that can't be written costs no letter.
    hub = open_hub(settings, CountedLetters(letters, lambda _: contextlib.suppress(OSError)), stop, paced=True)
    server = SenderServer(hub, Path(values["sender_socket"]), values["send_wait_millis"] / 1000, stop)
    log.info("the worker's sender listens on %s (pid %d)", values["sender_socket"], os.getpid())
    freeze_startup()
    try:
        print(READY, flush=True)
        # Nobody reads this process's output after the ready line: anything written there later could fill the pipe
        # and block the sender, so it goes nowhere.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.stdin.buffer.read()
    finally:
        server.close()


if __name__ == "__main__":
    main()
