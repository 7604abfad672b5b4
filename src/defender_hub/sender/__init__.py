"""The worker's sender: one process of `run`'s that sends what every shard process of the worker hands it, so that
each lane's requests are filled across shards within the lane's one quota.

`server` is the sender, `client` a shard's way to it (the `Sender` its ledgered sink sends through), `wire` what they
say to each other, `process` how `run` starts and watches it, and `__main__` the process itself
(`python -m defender_hub.sender`).
"""

from defender_hub.sender.client import SenderClient

__all__ = ["SenderClient"]
