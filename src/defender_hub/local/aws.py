"""Local Kinesis, DynamoDB and SQS: moto served by hypercorn on 127.0.0.1, started as a child process."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

from defender_hub.errors import PortTaken

__all__ = ["PID_PATH", "LocalAws", "free_port", "port_is_free"]

LOOPBACK = "127.0.0.1"
PID_PATH = "/_local/pid"
"""Where the local AWS server answers its process id and its parent's: a readiness check that another stack on the port
can't pass."""


def port_is_free(port: int) -> bool:
    """Whether a server could listen on `port` of 127.0.0.1 now."""
    with socket.socket() as probe:
        # As servers bind: a port left in TIME_WAIT by a stack just stopped is free; one listened on is not.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((LOOPBACK, port))
        except OSError:
            return False
        return True


def free_port() -> int:
    """Returns a port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        port: int = probe.getsockname()[1]
        return port


class LocalAws:
    """moto behind hypercorn: start it, point endpoints at `endpoint_url`, stop it."""

    def __init__(self, port: int = 0) -> None:
        self.port = port or free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint_url(self) -> str:
        """The one endpoint of every local service."""
        return f"http://{LOOPBACK}:{self.port}"

    def start(self, timeout: float = 30.0) -> LocalAws:
        """Starts hypercorn and returns once it answers; raises PortTaken if the port is another process's, and
        RuntimeError if it does not answer."""
        if not port_is_free(self.port):
            raise PortTaken(self.port)
        command = [
            sys.executable,
            "-m",
            "hypercorn",
            "--workers",
            "0",  # served by this process: a spawned worker would load moto again, a second slower
            "--bind",
            f"{LOOPBACK}:{self.port}",
            "defender_hub.local.moto_app:app",
        ]
        self._process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # noqa: S603
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                error = self._process.stderr.read().decode()[-500:] if self._process.stderr else ""
                raise RuntimeError(f"the local AWS stack exited: {error}")
            try:
                with urllib.request.urlopen(self.endpoint_url + PID_PATH, timeout=1) as reply:  # noqa: S310 - loopback
                    answered_by = {int(pid) for pid in reply.read().split()}
            except (urllib.error.URLError, OSError, ValueError):
                time.sleep(0.2)
                continue
            if self._process.pid in answered_by:
                return self
            self.stop()  # another stack took the port between the check and the start
            raise PortTaken(self.port)
        self.stop()
        raise RuntimeError(f"the local AWS stack did not answer on {self.endpoint_url} within {timeout:.0f} s")

    def stop(self) -> None:
        """Stops hypercorn."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    def __enter__(self) -> LocalAws:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
