"""A strict local Security Hub: BatchImportFindings and GetFindings over HTTP on loopback, as the service behaves.

moto's Security Hub takes 101 findings a call, never throttles, accepts any Types and any length, lets an older
UpdatedAt overwrite a newer one and ignores GetFindings filters. This one does not:

- The caller is an account: the one the request's access key belongs to, asked of the local STS (moto, which issues
  role credentials in the role's account) when the hub knows its endpoint, else the hub's own account.
- BatchImportFindings refuses requests over 100 findings or 6 MB (InvalidInputException, 400); refuses a request
  carrying a finding of another account than the caller's whole, with AccessDeniedException (403); refuses every
  request of an account and Region marked not enabled with InvalidAccessException (401); checks each finding with
  `codecs.asff_rules`, reporting invalid ones in FailedFindings as InvalidInput; answers InvalidAccess for a product
  not the caller's, or of another Region than the request was signed for; applies the update rules (an UpdatedAt not
  newer than the stored one is ignored, CreatedAt and FirstObservedAt are kept, provider-immutable members too);
  throttles each account and Region at 10 requests/s, burst 30, with HTTP 429 TooManyRequestsException.
- GetFindings filters by Id, ProductArn, AwsAccountId, GeneratorId, RecordState, Title, ProductFields and
  CreatedAt/UpdatedAt ranges, pages with NextToken, and refuses a filter it does not implement instead of ignoring it.
- Faults for tests: outages answered with HTTP 500 or with refused connections, forced throttling, forced failures
  of chosen finding Ids, whole requests refused for carrying a chosen Id, accounts and Regions not enabled.
- Inspection: the stored findings and a log of every request, from Python or at `/_local/*` over HTTP.
"""

from __future__ import annotations

import base64
import copy
import errno
import json
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from http.server import ThreadingHTTPServer
from typing import Any

from defender_hub.codecs.asff_rules import (
    ACCOUNT_ID,
    IMPORT_BURST,
    IMPORT_RATE,
    MAX_FINDINGS_PER_REQUEST,
    MAX_REQUEST_BYTES,
    finding_problems,
)
from defender_hub.errors import PortTaken
from defender_hub.local.replies import JsonHandler, serve_in_background

__all__ = ["Faults", "LocalSecurityHub", "RequestRecord", "TokenBucket"]

DEFAULT_ACCOUNT = "123456789012"
DEFAULT_REGION = "us-east-1"
LOOPBACK = "127.0.0.1"
PROVIDER_IMMUTABLE = ("Note", "UserDefinedFields", "VerificationState", "Workflow", "WorkflowState")
"""Members a provider can't change through BatchImportFindings: silently kept as they were."""

STRING_FILTERS = frozenset({"Id", "ProductArn", "ProductName", "AwsAccountId", "GeneratorId", "RecordState", "Title"})
DATE_FILTERS = frozenset({"CreatedAt", "UpdatedAt"})


class TokenBucket:
    """Allows `rate` requests a second on average and `burst` at once, like the service's per-account quota."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate, self._burst, self._clock = rate, float(burst), clock
        self._tokens = float(burst)
        self._stamp = clock()

    def take(self) -> bool:
        """Takes one token; returns False, taking nothing, when the bucket is empty."""
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


@dataclass
class Faults:
    """Faults to inject; all of them end by themselves or are consumed."""

    outage_until: float = 0.0
    refuse_connections: bool = False
    throttle_until: float = 0.0
    failures: dict[str, list[Any]] = field(default_factory=dict)
    """Finding Id → [ErrorCode, ErrorMessage, how many more times (None: always)]."""
    poison: set[str] = field(default_factory=set)
    """Finding Ids that make a request refused whole, as a rule this stand-in does not model would."""


@dataclass(frozen=True)
class RequestRecord:
    """One request the hub answered."""

    operation: str
    status: int
    findings: int = 0
    accepted: int = 0
    failed: int = 0
    error: str | None = None
    at: float = 0.0
    caller: str = ""
    """The account the request was made as."""


class _Error(Exception):
    def __init__(self, status: HTTPStatus, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _instant(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _sort_key(field_name: Any) -> Callable[[dict[str, Any]], Any]:
    """How GetFindings' SortCriteria order findings by `field_name`: dates as instants, the rest as text."""
    if field_name in DATE_FILTERS:
        return lambda doc: _instant(doc[field_name]) if doc.get(field_name) else datetime.min.replace(tzinfo=UTC)
    if field_name in STRING_FILTERS:
        return lambda doc: str(doc.get(field_name, ""))
    raise _Error(HTTPStatus.BAD_REQUEST, "InvalidInputException", f"the local Security Hub can't sort by {field_name}")


def _string_match(value: Any, filters: list[Mapping[str, Any]]) -> bool:
    """Applies Security Hub's StringFilter semantics: positive filters are ORed, negative ones ANDed."""
    text = "" if value is None else str(value)
    positive, matched = False, False
    for spec in filters:
        wanted, comparison = str(spec.get("Value", "")), spec.get("Comparison", "EQUALS")
        outcome = {
            "EQUALS": text == wanted,
            "PREFIX": text.startswith(wanted),
            "CONTAINS": wanted in text,
            "NOT_EQUALS": text != wanted,
            "PREFIX_NOT_EQUALS": not text.startswith(wanted),
            "NOT_CONTAINS": wanted not in text,
        }.get(comparison)
        if outcome is None:
            raise _Error(HTTPStatus.BAD_REQUEST, "InvalidInputException", f"unknown Comparison {comparison}")
        if comparison.startswith(("NOT_", "PREFIX_NOT")):
            if not outcome:
                return False
        else:
            positive = True
            matched = matched or outcome
    return matched or not positive


def _date_match(value: Any, filters: list[Mapping[str, Any]], now: datetime) -> bool:
    if value is None:
        return False
    instant = _instant(value)
    for spec in filters:
        if "DateRange" in spec:
            days = spec["DateRange"].get("Value", 0)
            if instant < now - timedelta(days=days):
                return False
        if "Start" in spec and instant < _instant(spec["Start"]):
            return False
        if "End" in spec and instant > _instant(spec["End"]):
            return False
    return True


def _map_match(fields: Mapping[str, str], filters: list[Mapping[str, Any]]) -> bool:
    for spec in filters:
        value = fields.get(spec.get("Key", ""))
        comparison = spec.get("Comparison", "EQUALS")
        if not _string_match(value, [{"Value": spec.get("Value", ""), "Comparison": comparison}]):
            return False
    return True


class LocalSecurityHub:
    """The local Security Hub: start it, point boto3's `endpoint_url` at it, inspect it, break it on purpose."""

    def __init__(
        self,
        *,
        port: int = 0,
        account_id: str = DEFAULT_ACCOUNT,
        region: str = DEFAULT_REGION,
        rate: float = IMPORT_RATE,
        burst: int = IMPORT_BURST,
        clock: Callable[[], float] = time.monotonic,
        sts_endpoint: str | None = None,
    ) -> None:
        self.account_id, self.region = account_id, region
        """The account of a caller the local STS does not know, or of every caller without one."""
        self._sts_endpoint = sts_endpoint
        self._callers: dict[str, str] = {}
        self._disabled: set[tuple[str, str]] = set()
        self._clock = clock
        self._lock = threading.Lock()
        self._findings: dict[tuple[str, str], dict[str, Any]] = {}
        self._arrivals: dict[str, float] = {}
        self._requests: list[RequestRecord] = []
        self._faults = Faults()
        self._rate, self._burst = rate, burst
        self._import_buckets: dict[tuple[str, str], TokenBucket] = {}
        self._get_bucket = TokenBucket(3.0, 6, clock)  # GetFindings' own quota
        self._port = port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._reopen: threading.Timer | None = None

    # -- lifecycle

    @property
    def endpoint_url(self) -> str:
        """The URL to give boto3 as `endpoint_url`."""
        return f"http://{LOOPBACK}:{self._port}"

    def start(self) -> LocalSecurityHub:
        """Starts serving on 127.0.0.1 (a free port unless one was given); returns self. Raises PortTaken if the
        port is another process's."""
        self._listen()
        return self

    def stop(self) -> None:
        """Stops serving and closes the port."""
        if self._reopen is not None:
            self._reopen.cancel()
        self._close()

    def __enter__(self) -> LocalSecurityHub:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _listen(self) -> None:
        hub = self

        class Handler(_Handler):
            local_hub = hub

        try:
            server = ThreadingHTTPServer((LOOPBACK, self._port), Handler)
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise PortTaken(self._port) from None
            raise
        server.daemon_threads = True
        self._port = server.server_address[1]
        self._server = server
        self._thread = serve_in_background(server, "local-securityhub")

    def _close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    # -- faults

    def outage(self, seconds: float, *, refuse_connections: bool = False) -> None:
        """Makes the hub unavailable for `seconds`: HTTP 500 InternalException, or no connection at all."""
        with self._lock:
            self._faults.outage_until = self._clock() + seconds
            self._faults.refuse_connections = refuse_connections
        if refuse_connections:
            self._close()
            self._reopen = threading.Timer(seconds, self._listen)
            self._reopen.daemon = True
            self._reopen.start()

    def throttle(self, seconds: float) -> None:
        """Answers every import with TooManyRequestsException for `seconds`."""
        with self._lock:
            self._faults.throttle_until = self._clock() + seconds

    def fail(
        self, ids: Iterable[str], code: str = "InvalidInput", message: str = "forced", times: int | None = 1
    ) -> None:
        """Reports the findings `ids` in FailedFindings with `code`, the next `times` times each (None: always)."""
        with self._lock:
            for finding_id in ids:
                self._faults.failures[finding_id] = [code, message, times]

    def refuse_requests_with(self, ids: Iterable[str]) -> None:
        """Refuses any import request carrying one of `ids` whole, with InvalidInputException."""
        with self._lock:
            self._faults.poison.update(ids)

    def reset(self) -> None:
        """Forgets findings, requests and faults, and refills the quota."""
        with self._lock:
            self._findings.clear()
            self._arrivals.clear()
            self._requests.clear()
            self._faults = Faults()
            self._import_buckets.clear()
            self._disabled.clear()

    def disable(self, account: str, region: str) -> None:
        """Marks Security Hub not enabled for `account` in `region`: its requests get InvalidAccessException (401)."""
        with self._lock:
            self._disabled.add((account, region))

    def enable(self, account: str, region: str) -> None:
        """Enables Security Hub for `account` in `region` again."""
        with self._lock:
            self._disabled.discard((account, region))

    # -- inspection

    def findings(self) -> list[dict[str, Any]]:
        """Returns copies of every stored finding."""
        with self._lock:
            return [copy.deepcopy(doc) for doc in self._findings.values()]

    def count(self) -> int:
        """How many findings it holds: cheaper than `findings()` to watch a large import."""
        with self._lock:
            return len(self._findings)

    def arrivals(self) -> dict[str, float]:
        """When each finding Id was first stored, on the hub's clock: a load test's latencies end here."""
        with self._lock:
            return dict(self._arrivals)

    def finding(self, finding_id: str) -> dict[str, Any] | None:
        """Returns a copy of the stored finding with this Id, or None."""
        with self._lock:
            for (_, stored_id), doc in self._findings.items():
                if stored_id == finding_id:
                    return copy.deepcopy(doc)
        return None

    def requests(self, operation: str | None = None) -> list[RequestRecord]:
        """Returns the log of answered requests, of one operation or all."""
        with self._lock:
            return [record for record in self._requests if operation in (None, record.operation)]

    # -- the operations

    def _unavailable(self) -> str | None:
        now = self._clock()
        if now < self._faults.outage_until:
            return "refuse" if self._faults.refuse_connections else "error"
        return None

    def _log(self, record: RequestRecord) -> None:
        self._requests.append(record)

    def caller(self, access_key: str | None) -> str:
        """The account an access key belongs to: the local STS says, when the hub knows it; else the hub's own."""
        if not access_key or self._sts_endpoint is None:
            return self.account_id
        if access_key not in self._callers:
            import boto3  # noqa: PLC0415 - only a hub beside the local STS needs it

            sts = boto3.client(
                "sts",
                endpoint_url=self._sts_endpoint,
                region_name=self.region,
                aws_access_key_id=access_key,
                aws_secret_access_key="local",  # noqa: S106 - moto reads the key id only
            )
            self._callers[access_key] = sts.get_caller_identity()["Account"]
        return self._callers[access_key]

    def batch_import(self, body: bytes, region: str | None = None, caller: str | None = None) -> dict[str, Any]:
        """BatchImportFindings on a raw request body signed for `region` by `caller` (an account); raises _Error for
        request-level errors."""
        region, caller = region or self.region, caller or self.account_id
        now = self._clock()
        with self._lock:
            bucket = self._import_buckets.setdefault(
                (caller, region), TokenBucket(self._rate, self._burst, self._clock)
            )
            if now < self._faults.throttle_until or not bucket.take():
                raise _Error(HTTPStatus.TOO_MANY_REQUESTS, "TooManyRequestsException", "Rate exceeded")
        if len(body) > MAX_REQUEST_BYTES:
            raise _Error(HTTPStatus.BAD_REQUEST, "InvalidInputException", "request is larger than 6 MB")
        try:
            request = json.loads(body)
        except ValueError:
            raise _Error(HTTPStatus.BAD_REQUEST, "InvalidInputException", "request body is not JSON") from None
        docs = request.get("Findings") if isinstance(request, dict) else None
        if not isinstance(docs, list) or not 1 <= len(docs) <= MAX_FINDINGS_PER_REQUEST:
            raise _Error(
                HTTPStatus.BAD_REQUEST,
                "InvalidInputException",
                f"Findings must be a list of 1 to {MAX_FINDINGS_PER_REQUEST} findings",
            )
        foreign = next((doc for doc in docs if _foreign(doc, caller)), None)
        if foreign is not None:
            raise _Error(
                HTTPStatus.FORBIDDEN,
                "AccessDeniedException",
                f"User: arn:aws:iam::{caller}:user/local is not authorized to perform: "
                f"securityhub:BatchImportFindings on resource: {str(foreign.get('ProductArn'))[:200]}",
            )
        failed: list[dict[str, str]] = []
        with self._lock:
            if (caller, region) in self._disabled:
                raise _Error(
                    HTTPStatus.UNAUTHORIZED,
                    "InvalidAccessException",
                    f"Account {caller} is not subscribed to AWS Security Hub in {region}",
                )
            poisoned = [doc.get("Id") for doc in docs if isinstance(doc, dict) and doc.get("Id") in self._faults.poison]
            if poisoned:
                raise _Error(HTTPStatus.BAD_REQUEST, "InvalidInputException", f"finding {poisoned[0]} is refused")
            for doc in docs:
                failure = self._import_one(doc, region, caller)
                if failure is not None:
                    failed.append(failure)
            self._log(
                RequestRecord(
                    "BatchImportFindings", 200, len(docs), len(docs) - len(failed), len(failed), at=now, caller=caller
                )
            )
        return {"FailedCount": len(failed), "SuccessCount": len(docs) - len(failed), "FailedFindings": failed}

    def _import_one(self, doc: Any, region: str, caller: str) -> dict[str, str] | None:
        finding_id = str(doc.get("Id", "")) if isinstance(doc, dict) else ""
        forced = self._faults.failures.get(finding_id)
        if forced is not None:
            code, message, times = forced
            if times is not None:
                forced[2] = times - 1
                if forced[2] <= 0:
                    del self._faults.failures[finding_id]
            return {"Id": finding_id, "ErrorCode": code, "ErrorMessage": message}
        size = len(json.dumps(doc).encode())  # as botocore sends it
        problems = finding_problems(doc, encoded_size=size, account_id=caller)
        if problems:
            return {"Id": finding_id, "ErrorCode": "InvalidInput", "ErrorMessage": "; ".join(problems)[:1024]}
        # Security Hub is regional: a finding is imported in the Region its product ARN names, by that account.
        own_product = f"arn:{doc['ProductArn'].split(':')[1]}:securityhub:{region}:{caller}:product/"
        if not doc["ProductArn"].startswith(own_product):
            return {
                "Id": finding_id,
                "ErrorCode": "InvalidAccess",
                "ErrorMessage": f"not subscribed to this product in {region}",
            }
        key = (doc["ProductArn"], finding_id)
        stored = self._findings.get(key)
        if stored is not None:
            if _instant(doc["UpdatedAt"]) <= _instant(stored["UpdatedAt"]):
                return None  # not newer: ignored, and not reported as a failure
            kept = {
                name: stored[name] for name in ("CreatedAt", "FirstObservedAt", *PROVIDER_IMMUTABLE) if name in stored
            }
            workflow_reset = stored["RecordState"] == "ARCHIVED" and doc.get("RecordState", "ACTIVE") == "ACTIVE"
        else:
            kept = {"Workflow": {"Status": "NEW"}, "WorkflowState": "NEW"}
            workflow_reset = False
        updated = {key: value for key, value in doc.items() if key not in PROVIDER_IMMUTABLE} | kept
        updated.setdefault("RecordState", "ACTIVE")
        updated["Region"] = region
        if workflow_reset and updated["Workflow"].get("Status") in ("NOTIFIED", "RESOLVED"):
            updated["Workflow"] = {"Status": "NEW"}
        self._findings[key] = updated
        self._arrivals.setdefault(finding_id, self._clock())
        return None

    def get_findings(self, body: bytes) -> dict[str, Any]:
        """GetFindings on a raw request body; raises _Error for request-level errors."""
        now = self._clock()
        with self._lock:
            if not self._get_bucket.take():
                raise _Error(HTTPStatus.TOO_MANY_REQUESTS, "TooManyRequestsException", "Rate exceeded")
        request = json.loads(body or b"{}")
        filters: Mapping[str, list[Mapping[str, Any]]] = request.get("Filters") or {}
        unknown = set(filters) - STRING_FILTERS - DATE_FILTERS - {"ProductFields"}
        if unknown:
            raise _Error(
                HTTPStatus.BAD_REQUEST,
                "InvalidInputException",
                f"the local Security Hub does not implement the filter(s) {', '.join(sorted(unknown))}",
            )
        max_results = int(request.get("MaxResults") or 100)
        if not 1 <= max_results <= 100:
            raise _Error(HTTPStatus.BAD_REQUEST, "InvalidInputException", "MaxResults must be 1 to 100")
        offset = int(base64.b64decode(request["NextToken"])) if request.get("NextToken") else 0
        # The first criterion sorts last, so that it wins; each is checked before anything is answered.
        sorts = [
            (_sort_key(criterion.get("Field")), criterion.get("SortOrder") == "desc")
            for criterion in reversed(request.get("SortCriteria") or [])
        ]
        wall = datetime.now(UTC)
        with self._lock:
            matching = [
                doc
                for doc in self._findings.values()
                if all(_string_match(doc.get(name), specs) for name, specs in filters.items() if name in STRING_FILTERS)
                and all(
                    _date_match(doc.get(name), specs, wall) for name, specs in filters.items() if name in DATE_FILTERS
                )
                and _map_match(doc.get("ProductFields") or {}, list(filters.get("ProductFields", [])))
            ]
            self._log(RequestRecord("GetFindings", 200, len(matching), at=now))
        for key, descending in sorts:
            matching.sort(key=key, reverse=descending)
        page = matching[offset : offset + max_results]
        response: dict[str, Any] = {"Findings": copy.deepcopy(page)}
        if offset + max_results < len(matching):
            response["NextToken"] = base64.b64encode(str(offset + max_results).encode()).decode()
        return response

    def control(self, path: str, body: bytes) -> Any:
        """The `/_local/*` API: inspection and faults for other processes and the command line."""
        if path == "/_local/findings":
            return {"Findings": self.findings()}
        if path == "/_local/requests":
            return {"Requests": [asdict(record) for record in self.requests()]}
        request = json.loads(body or b"{}")
        if path == "/_local/reset":
            self.reset()
        elif path == "/_local/outage":
            self.outage(float(request["Seconds"]), refuse_connections=bool(request.get("RefuseConnections")))
        elif path == "/_local/throttle":
            self.throttle(float(request["Seconds"]))
        elif path == "/_local/disable":
            self.disable(str(request["Account"]), str(request["Region"]))
        elif path == "/_local/enable":
            self.enable(str(request["Account"]), str(request["Region"]))
        elif path == "/_local/fail":
            self.fail(
                request["Ids"],
                request.get("ErrorCode", "InvalidInput"),
                request.get("Message", "forced"),
                request.get("Times", 1),
            )
        else:
            raise _Error(HTTPStatus.NOT_FOUND, "ResourceNotFoundException", f"no {path}")
        return {}


_CREDENTIAL_SCOPE = re.compile(r"Credential=([^/,]+)/\d{8}/([a-z0-9-]+)/securityhub/aws4_request")
_CUSTOM_PRODUCT = re.compile(r"arn:[a-z-]+:securityhub:[a-z0-9-]+:(\d{12}):product/\1/default")


def _signature_scope(authorization: str) -> tuple[str | None, str | None]:
    """Returns the access key and the Region a SigV4-signed request was signed with, as the service reads them."""
    scope = _CREDENTIAL_SCOPE.search(authorization)
    return (scope.group(1), scope.group(2)) if scope else (None, None)


def _foreign(doc: Any, caller: str) -> bool:
    """Whether `doc` is another account's finding: its AwsAccountId, or its own product's account, is not `caller`."""
    if not isinstance(doc, dict):
        return False
    product = _CUSTOM_PRODUCT.fullmatch(str(doc.get("ProductArn", "")))
    account = doc.get("AwsAccountId")
    foreign_account = isinstance(account, str) and ACCOUNT_ID.fullmatch(account) is not None and account != caller
    return foreign_account or (product is not None and product.group(1) != caller)


class _Handler(JsonHandler):
    local_hub: LocalSecurityHub

    def do_GET(self) -> None:  # noqa: N802 - http.server names its handlers so
        """Serves the inspection API."""
        self._dispatch(b"")

    def do_POST(self) -> None:  # noqa: N802 - http.server names its handlers so
        """Serves the Security Hub operations and the control API."""
        length = int(self.headers.get("Content-Length") or 0)
        self._dispatch(self.rfile.read(length))

    def _dispatch(self, body: bytes) -> None:
        hub = self.local_hub
        path = self.path.split("?", 1)[0]
        caller = ""
        try:
            if path.startswith("/_local/"):
                self.answer(200, hub.control(path, body))
                return
            with hub._lock:
                unavailable = hub._unavailable()
            if unavailable == "refuse":
                self.close_connection = True  # drop a kept-alive connection without an answer
                return
            if unavailable == "error":
                raise _Error(HTTPStatus.INTERNAL_SERVER_ERROR, "InternalException", "Internal service error")
            if path == "/findings/import":
                access_key, region = _signature_scope(self.headers.get("Authorization", ""))
                caller = hub.caller(access_key)
                self.answer(200, hub.batch_import(body, region, caller))
            elif path == "/findings":
                self.answer(200, hub.get_findings(body))
            else:
                raise _Error(HTTPStatus.NOT_FOUND, "ResourceNotFoundException", f"no operation at {path}")
        except _Error as error:
            operation = {"/findings/import": "BatchImportFindings", "/findings": "GetFindings"}.get(path, path)
            with hub._lock:
                hub._log(RequestRecord(operation, int(error.status), error=error.code, at=hub._clock(), caller=caller))
            self.answer(int(error.status), {"Message": error.message}, error.code)
