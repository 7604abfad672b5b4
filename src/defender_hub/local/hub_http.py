"""The local Security Hub over HTTP: the service's operations at their botocore routes (rest-json, SigV4-signed), and
the `/_local/*` control API that other processes and the command line inspect and break it with."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import asdict
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from defender_hub.local.hub_core import BATCH_IMPORT, BATCH_UPDATE, GET_FINDINGS, HubError, invalid_input
from defender_hub.local.hub_store import FINDING_NOT_FOUND
from defender_hub.local.replies import JsonHandler

if TYPE_CHECKING:
    from defender_hub.local.securityhub import LocalSecurityHub

__all__ = ["ROUTES", "HubHandler", "control", "signature_scope"]

ROUTES: Mapping[tuple[str, str], str] = {
    ("POST", "/findings/import"): BATCH_IMPORT,
    ("POST", "/findings"): GET_FINDINGS,
    ("PATCH", "/findings/batchupdate"): BATCH_UPDATE,
}
"""The operations it serves by HTTP method and path, as botocore's service model routes them."""
CONTROL_PREFIX = "/_local/"

_CREDENTIAL_SCOPE = re.compile(r"Credential=([^/,]+)/\d{8}/([a-z0-9-]+)/securityhub/aws4_request")


def signature_scope(authorization: str) -> tuple[str | None, str | None]:
    """Returns the access key and the Region a SigV4-signed request was signed with, as the service reads them."""
    scope = _CREDENTIAL_SCOPE.search(authorization)
    return (scope.group(1), scope.group(2)) if scope else (None, None)


def control(hub: LocalSecurityHub, path: str, body: bytes) -> Any:
    """The `/_local/*` API: inspection and faults for other processes and the command line; raises HubError for a
    path it does not know (404) or a request it can't read (400)."""
    if path == "/_local/findings":
        return {"Findings": hub.findings()}
    if path == "/_local/requests":
        return {"Requests": [asdict(record) for record in hub.requests()]}
    if path == "/_local/arrivals":
        # Read on the hub's clock, with that clock's reading now: another process lines them up with its own.
        return {"Arrivals": hub.arrivals(), "Now": hub.now()}
    try:
        request = json.loads(body or b"{}")
        if path == "/_local/reset":
            hub.reset()
        elif path == "/_local/outage":
            hub.outage(
                float(request["Seconds"]),
                refuse_connections=bool(request.get("RefuseConnections")),
                region=request.get("Region"),
            )
        elif path == "/_local/throttle":
            hub.throttle(float(request["Seconds"]), operation=str(request.get("Operation", BATCH_IMPORT)))
        elif path == "/_local/disable":
            hub.disable(str(request["Account"]), str(request["Region"]))
        elif path == "/_local/enable":
            hub.enable(str(request["Account"]), str(request["Region"]))
        elif path == "/_local/fail":
            hub.fail(
                request["Ids"],
                request.get("ErrorCode", "InvalidInput"),
                request.get("Message", "forced"),
                request.get("Times", 1),
            )
        elif path == "/_local/fail-updates":
            hub.fail_updates(
                request["Ids"],
                request.get("ErrorCode", FINDING_NOT_FOUND[0]),
                request.get("Message", FINDING_NOT_FOUND[1]),
                request.get("Times", 1),
            )
        else:
            raise HubError(HTTPStatus.NOT_FOUND, "ResourceNotFoundException", f"no {path}")
    except (KeyError, TypeError, ValueError) as error:
        raise invalid_input(f"{path}: {type(error).__name__}: {error}") from None
    return {}


class HubHandler(JsonHandler):
    """Serves one connection of the local Security Hub `local_hub` (set on a subclass per hub)."""

    local_hub: LocalSecurityHub

    def do_GET(self) -> None:  # noqa: N802 - http.server names its handlers so
        """Serves the inspection API."""
        self._dispatch("GET", b"")

    def do_POST(self) -> None:  # noqa: N802 - http.server names its handlers so
        """Serves BatchImportFindings, GetFindings and the control API."""
        self._dispatch("POST", self._body())

    def do_PATCH(self) -> None:  # noqa: N802 - http.server names its handlers so
        """Serves BatchUpdateFindings."""
        self._dispatch("PATCH", self._body())

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _dispatch(self, method: str, body: bytes) -> None:
        hub = self.local_hub
        path = self.path.split("?", 1)[0]
        operation = ROUTES.get((method, path))
        caller = ""
        try:
            if path.startswith(CONTROL_PREFIX):
                self.answer(HTTPStatus.OK, control(hub, path, body))
                return
            access_key, region = signature_scope(self.headers.get("Authorization", ""))
            unavailable = hub._unavailable(region)
            if unavailable == "refuse":
                self.close_connection = True  # drop a kept-alive connection without an answer
                return
            if unavailable == "error":
                raise HubError(HTTPStatus.INTERNAL_SERVER_ERROR, "InternalException", "Internal service error")
            if operation == GET_FINDINGS:
                self.answer(HTTPStatus.OK, hub.get_findings(body))
            elif operation in (BATCH_IMPORT, BATCH_UPDATE):
                caller = hub.caller(access_key)
                run = hub.batch_import if operation == BATCH_IMPORT else hub.batch_update
                self.answer(HTTPStatus.OK, run(body, region, caller))
            else:
                raise HubError(HTTPStatus.NOT_FOUND, "ResourceNotFoundException", f"no operation at {method} {path}")
        except HubError as error:
            hub._record_error(operation or path, error, caller)
            # The error shapes carry Code and Message; botocore reads the code from x-amzn-ErrorType first.
            self.answer(int(error.status), {"Code": error.code, "Message": error.message}, error.code)
