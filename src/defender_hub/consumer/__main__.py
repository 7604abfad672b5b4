"""A shard process: the KCL MultiLangDaemon's child program (`python -m defender_hub.consumer`), one per shard lease,
built by the worker (`defender_hub.worker`) from the settings `defender-hub run` handed on in the environment."""

from __future__ import annotations

import os
import signal
import threading

from amazon_kclpy import kcl

from defender_hub.collector import freeze_startup
from defender_hub.consumer.protocol import fast_records
from defender_hub.logs import configure
from defender_hub.settings.resolving import shard_settings
from defender_hub.worker import open_shard

__all__ = ["main"]


def main() -> None:
    """Runs a shard's processor for the daemon until the daemon ends it."""
    values = shard_settings(os.environ)
    configure(values["log_format"])
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    shard = open_shard(values, stop)
    freeze_startup()
    try:
        fast_records(kcl.KCLProcess(shard.processor)).run()
    finally:  # however it ends, SystemExit included
        shard.processor.ended()
        shard.delivery.close()


if __name__ == "__main__":
    main()
