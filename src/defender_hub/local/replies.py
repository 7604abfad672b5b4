"""What the local stand-ins share: an HTTP handler that answers JSON as AWS's JSON protocols do."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

__all__ = ["JsonHandler", "serve_in_background"]

STOP_POLL_SECONDS = 0.05
"""How often a serving loop looks for a stop: the standard library's half a second made each stop take that long."""


def serve_in_background(server: HTTPServer, name: str) -> threading.Thread:
    """Serves `server` from a daemon thread named `name` until its `shutdown()`; returns the thread."""
    thread = threading.Thread(target=server.serve_forever, args=(STOP_POLL_SECONDS,), name=name, daemon=True)
    thread.start()
    return thread


class JsonHandler(BaseHTTPRequestHandler):
    """Answers JSON, with the error code in `x-amzn-ErrorType` as botocore reads it; keeps connections alive."""

    protocol_version = "HTTP/1.1"  # keep-alive, as boto3's connection pool expects
    # An answer goes out in two writes, its head and then its body. With Nagle's algorithm the body would wait for
    # the client to acknowledge the head, which the client delays by some 40 ms: a wait AWS's services do not add,
    # in every request the load test times.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        """Stays quiet: the stand-ins keep their own request logs."""

    def answer(self, status: int, payload: Any, error_code: str | None = None) -> None:
        """Sends `payload` as JSON with `status`, and `error_code` when it is an error."""
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if error_code is not None:
            self.send_header("x-amzn-ErrorType", error_code)
        self.end_headers()
        self.wfile.write(body)
