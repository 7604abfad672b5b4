"""Local Kinesis, DynamoDB and SQS: moto served by hypercorn on 127.0.0.1 (or the address given), started as a child
process."""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from typing import IO

from defender_hub.errors import PortTaken

__all__ = ["LOOPBACK", "PID_PATH", "LocalAws", "free_port", "listen_address", "port_is_free", "reach_address"]

LOOPBACK = "127.0.0.1"
"""Where the local stack listens unless told otherwise: this host only."""
ANY = "0.0.0.0"  # noqa: S104 - only where asked: a container's interfaces, on its compose network
PID_PATH = "/_local/pid"
"""Where the local AWS server answers its process id and its parent's: a readiness check that another stack on the port
can't pass."""


def listen_address(address: str) -> str:
    """`address` if it is an IPv4 address to listen on (as the local stack's servers take it); else ValueError."""
    return str(ipaddress.IPv4Address(address))


def reach_address(address: str) -> str:
    """The address that reaches, from this host, a server listening on `address`: the address itself, but 127.0.0.1
    for 0.0.0.0 (every interface, loopback among them)."""
    return LOOPBACK if address == ANY else address


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    """Whether a server could listen on `port` of `host` (127.0.0.1 unless told) now."""
    with socket.socket() as probe:
        # As servers bind: a port left in TIME_WAIT by a stack just stopped is free; one listened on is not.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
        return True


def free_port(host: str = LOOPBACK) -> int:
    """Returns a port on `host` (127.0.0.1 unless told) that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


class LocalAws:
    """moto behind hypercorn: start it, point endpoints at `endpoint_url`, stop it.

    It listens on `host`, 127.0.0.1 unless told: 0.0.0.0 is for a container on a compose network, where every
    interface is the container's own (its loopback, and the network the other services reach it on)."""

    def __init__(self, port: int = 0, *, host: str = LOOPBACK) -> None:
        self.host = listen_address(host)
        self.port = port or free_port(self.host)
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def endpoint_url(self) -> str:
        """The one endpoint of every local service, as this host reaches it (127.0.0.1 when listening on 0.0.0.0)."""
        return f"http://{reach_address(self.host)}:{self.port}"

    def start(self, timeout: float = 30.0) -> LocalAws:
        """Starts hypercorn and returns once it answers; raises PortTaken if the port is another process's, and
        RuntimeError if it does not answer."""
        if not port_is_free(self.port, self.host):
            raise PortTaken(self.port, self.host)
        command = [
            sys.executable,
            "-m",
            "hypercorn",
            "--workers",
            "0",  # served by this process: a spawned worker would load moto again, a second slower
            "--bind",
            f"{self.host}:{self.port}",
            "defender_hub.local.moto_app:app",
        ]
        # hypercorn logs each error moto answers with its traceback, 4 to 5 KB. Into a pipe nobody reads while the
        # stack runs, 64 KiB of them would block the server for good (two KCL workers starting at once made nine); a
        # file takes them, and gives the last of them should the stack fail to start.
        self._log = tempfile.TemporaryFile(prefix="defender-hub-local-aws-")  # noqa: SIM115 - closed by stop()
        try:
            self._process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=self._log)  # noqa: S603
            return self._answering(timeout)
        except BaseException:
            self.stop()
            raise

    def _answering(self, timeout: float) -> LocalAws:
        """Returns once the server just started answers; raises PortTaken or RuntimeError, for `start` to stop it."""
        assert self._process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"the local AWS stack exited: {self._last_logged(500)}")
            try:
                with urllib.request.urlopen(self.endpoint_url + PID_PATH, timeout=1) as reply:  # noqa: S310 - loopback
                    answered_by = {int(pid) for pid in reply.read().split()}
            except (urllib.error.URLError, OSError, ValueError):
                time.sleep(0.2)
                continue
            if self._process.pid in answered_by:
                return self
            raise PortTaken(self.port, self.host)  # another stack took the port between the check and the start
        raise RuntimeError(
            f"the local AWS stack did not answer on {self.endpoint_url} within {timeout:.0f} s; it logged: "
            f"{self._last_logged(500)}"
        )

    def stop(self) -> None:
        """Stops hypercorn."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def _last_logged(self, size: int) -> str:
        """The last `size` bytes the server logged, read without moving the offset the server writes at."""
        if self._log is None:
            return ""
        end = os.fstat(self._log.fileno()).st_size
        return os.pread(self._log.fileno(), size, max(0, end - size)).decode(errors="replace")

    def __enter__(self) -> LocalAws:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
