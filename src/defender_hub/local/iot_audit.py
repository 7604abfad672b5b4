"""A local Device Defender audit API: ListAuditFindings and DescribeAuditTask over HTTP on loopback.

moto has neither. This one pages as the service does (at most 250 findings a page, NextToken), refuses a larger
page with InvalidRequestException, answers an unknown task with ResourceNotFoundException, and can throttle every
n-th request with ThrottlingException (HTTP 429), which botocore retries.
"""

from __future__ import annotations

import json
import threading
from http import HTTPStatus
from http.server import ThreadingHTTPServer
from typing import Any

from defender_hub.local.replies import JsonHandler, serve_in_background

__all__ = ["LocalIotAudit"]

LOOPBACK = "127.0.0.1"
MAX_PAGE = 250


class LocalIotAudit:
    """Audit tasks and their findings, served to boto3's `iot` client (`endpoint_url`)."""

    def __init__(self, *, throttle_every: int = 0) -> None:
        self.tasks: dict[str, dict[str, Any]] = {}
        """Task id → what DescribeAuditTask answers (times in epoch seconds)."""
        self.findings: dict[str, list[dict[str, Any]]] = {}
        """Task id → its findings, as ListAuditFindings answers them (times in epoch seconds)."""
        self.requests: list[str] = []
        self._throttle_every = throttle_every
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def endpoint_url(self) -> str:
        """The URL to give boto3 as `endpoint_url`."""
        assert self._server is not None, "not started"
        return f"http://{LOOPBACK}:{self._server.server_address[1]}"

    def __enter__(self) -> LocalIotAudit:
        audit = self

        class Handler(_Handler):
            local_audit = audit

        self._server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self._server.daemon_threads = True
        serve_in_background(self._server, "local-iot-audit")
        return self

    def __exit__(self, *_: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def answer(self, method: str, path: str, body: bytes) -> tuple[int, dict[str, Any], str | None]:
        """(status, payload, error code) for one request."""
        with self._lock:
            self.requests.append(f"{method} {path}")
            if self._throttle_every and len(self.requests) % self._throttle_every == 0:
                return HTTPStatus.TOO_MANY_REQUESTS, {"message": "Rate exceeded"}, "ThrottlingException"
        if method == "POST" and path == "/audit/findings":
            request = json.loads(body or b"{}")
            size = int(request.get("maxResults") or MAX_PAGE)
            if not 1 <= size <= MAX_PAGE:
                return (
                    HTTPStatus.BAD_REQUEST,
                    {"message": f"maxResults must be 1..{MAX_PAGE}"},
                    "InvalidRequestException",
                )
            findings = self.findings.get(str(request.get("taskId")), [])
            start = int(request.get("nextToken") or 0)
            page: dict[str, Any] = {"findings": findings[start : start + size]}
            if start + size < len(findings):
                page["nextToken"] = str(start + size)
            return HTTPStatus.OK, page, None
        if method == "GET" and path.startswith("/audit/tasks/"):
            task = self.tasks.get(path.removeprefix("/audit/tasks/"))
            if task is None:
                return HTTPStatus.NOT_FOUND, {"message": "no such task"}, "ResourceNotFoundException"
            return HTTPStatus.OK, task, None
        return HTTPStatus.NOT_FOUND, {"message": f"no operation at {method} {path}"}, "ResourceNotFoundException"


class _Handler(JsonHandler):
    local_audit: LocalIotAudit

    def _serve(self, method: str) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.answer(*self.local_audit.answer(method, self.path.split("?", 1)[0], body))

    def do_GET(self) -> None:  # noqa: N802 - http.server names its handlers so
        """DescribeAuditTask."""
        self._serve("GET")

    def do_POST(self) -> None:  # noqa: N802 - http.server names its handlers so
        """ListAuditFindings."""
        self._serve("POST")
