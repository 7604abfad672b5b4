"""The commands of `defender-hub`, a module each: `add(commands)` declares its arguments, its handler runs it.

`defender_hub.cli` builds the parser from them and dispatches. A command that talks to AWS imports boto3 in its
handler, so `convert` and `--help` start quickly.
"""

from defender_hub.commands import build_forwarder, convert, deliver, forward, health, loadgen, local, put, refresh, run

__all__ = ["ALL"]

ALL = (convert, deliver, run, refresh, forward, build_forwarder, put, loadgen, health, local)
"""In the order `defender-hub --help` lists them."""
