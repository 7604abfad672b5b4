"""A strict local Security Hub: BatchImportFindings, BatchUpdateFindings and GetFindings over HTTP on loopback, as the
service behaves.

moto's Security Hub takes 101 findings a call, never throttles, accepts any Types and any length, lets an older
UpdatedAt overwrite a newer one and ignores GetFindings filters. This one does not:

- The caller is an account: the one the request's access key belongs to, asked of the local STS (moto, which issues
  role credentials in the role's account) when the hub knows its endpoint, else the hub's own account.
- BatchImportFindings refuses requests over 100 findings or 6 MB (InvalidInputException, 400); refuses a request
  carrying a finding of another account than the caller's whole, with AccessDeniedException (403); refuses every
  request of an account and Region marked not enabled with InvalidAccessException (401); checks each finding with
  `codecs.asff_rules`, reporting invalid ones in FailedFindings as InvalidInput; answers InvalidAccess for a product
  not the caller's, or of another Region than the request was signed for; applies the update rules (`hub_store`).
- BatchUpdateFindings (PATCH /findings/batchupdate) refuses a malformed request (InvalidInputException, 400): 0 or
  over 100 identifiers, nothing to update, a member of the wrong shape or value; answers each identifier in
  ProcessedFindings or UnprocessedFindings (FindingNotFound for a finding the caller can't see, another account's
  among them; DuplicatedFindingIdentifier; InvalidInput; FindingSizeExceeded); sets the members given, Workflow and
  the retired WorkflowState among them, and never UpdatedAt, so that the provider's later imports still apply.
- Each account and Region has a quota per operation: imports 10 requests/s, burst 30; updates 10/s, burst 30, apart;
  HTTP 429 TooManyRequestsException beyond it. GetFindings: 3/s, burst 6.
- GetFindings filters by Id, ProductArn, ProductName, AwsAccountId, GeneratorId, RecordState, Title, WorkflowStatus,
  ComplianceStatus, ProductFields and CreatedAt/UpdatedAt ranges, pages with NextToken, and refuses a filter it does
  not implement instead of ignoring it.
- Faults for tests: outages answered with HTTP 500 or with refused connections, forced throttling, forced failures
  of chosen finding Ids (imports) and forced unprocessed identifiers (updates), whole requests refused for carrying a
  chosen Id, accounts and Regions not enabled.
- Inspection: the stored findings, their workflow statuses, when each was first stored and a log of every request,
  from Python or at `/_local/*` over HTTP (`hub_http`).
"""

from __future__ import annotations

import copy
import errno
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import ThreadingHTTPServer
from typing import Any

from defender_hub.codecs.asff_rules import IMPORT_BURST, IMPORT_RATE, UPDATE_BURST, UPDATE_RATE
from defender_hub.errors import PortTaken
from defender_hub.local.aws import LOOPBACK, listen_address, reach_address
from defender_hub.local.hub_core import (
    BATCH_IMPORT,
    BATCH_UPDATE,
    DEFAULT_ACCOUNT,
    DEFAULT_REGION,
    GET_BURST,
    GET_FINDINGS,
    GET_RATE,
    Faults,
    HubError,
    RequestRecord,
    TokenBucket,
    invalid_input,
    take_forced,
    too_many_requests,
)
from defender_hub.local.hub_filters import parse_query
from defender_hub.local.hub_http import HubHandler
from defender_hub.local.hub_requests import foreign, foreign_refusal, import_docs, import_problem, parse_update
from defender_hub.local.hub_store import DUPLICATED, FINDING_NOT_FOUND, FindingStore
from defender_hub.local.replies import serve_in_background
from defender_hub.text import one_of

__all__ = ["DEFAULT_ACCOUNT", "DEFAULT_REGION", "Faults", "LocalSecurityHub", "RequestRecord", "TokenBucket"]


def _force(failures: dict[str, list[Any]], ids: Iterable[str], code: str, message: str, times: int | None) -> None:
    """Sets, or with `times` 0 lifts, the forced failure of each finding Id."""
    for finding_id in ids:
        if times is not None and times <= 0:
            failures.pop(finding_id, None)
        else:
            failures[finding_id] = [code, message, times]


def _identifier(key: tuple[str, str]) -> dict[str, str]:
    return {"Id": key[1], "ProductArn": key[0]}


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
        update_rate: float = UPDATE_RATE,
        update_burst: int = UPDATE_BURST,
        host: str = LOOPBACK,
    ) -> None:
        """Serves on `host`, 127.0.0.1 unless told (0.0.0.0: a container's interfaces, on its compose network)."""
        self.host = listen_address(host)
        self.account_id, self.region = account_id, region
        """The account of a caller the local STS does not know, or of every caller without one."""
        self._sts_endpoint = sts_endpoint
        self._callers: dict[str, str] = {}
        self._disabled: set[tuple[str, str]] = set()
        self._clock = clock
        self._lock = threading.Lock()
        self._store = FindingStore(clock)
        self._requests: list[RequestRecord] = []
        self._faults = Faults()
        self._quotas = {BATCH_IMPORT: (rate, burst), BATCH_UPDATE: (update_rate, update_burst)}
        self._buckets: dict[tuple[str, str, str], TokenBucket] = {}
        self._get_bucket = TokenBucket(GET_RATE, GET_BURST, clock)  # GetFindings' own quota
        self._port = port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._reopen: threading.Timer | None = None

    # -- lifecycle

    @property
    def endpoint_url(self) -> str:
        """The URL to give boto3 as `endpoint_url`, as this host reaches it (127.0.0.1 when serving on 0.0.0.0)."""
        return f"http://{reach_address(self.host)}:{self._port}"

    def start(self) -> LocalSecurityHub:
        """Starts serving on its host (a free port unless one was given); returns self. Raises PortTaken if the
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

        class Handler(HubHandler):
            local_hub = hub

        try:
            server = ThreadingHTTPServer((self.host, self._port), Handler)
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise PortTaken(self._port, self.host) from None
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

    def outage(self, seconds: float, *, refuse_connections: bool = False, region: str | None = None) -> None:
        """Makes the hub unavailable for `seconds`: HTTP 500 InternalException, or no connection at all; with
        `region`, only that Region's requests get the 500s, as in a Regional outage."""
        if region is not None:
            if refuse_connections:
                raise ValueError("a Region's outage answers 500s: the hub's connections are all Regions'")
            with self._lock:
                self._faults.regional_outages[region] = self._clock() + seconds
            return
        with self._lock:
            self._faults.outage_until = self._clock() + seconds
            self._faults.refuse_connections = refuse_connections
        if refuse_connections:
            self._close()
            self._reopen = threading.Timer(seconds, self._listen)
            self._reopen.daemon = True
            self._reopen.start()

    def throttle(self, seconds: float, *, operation: str = BATCH_IMPORT) -> None:
        """Answers every request of `operation` (BatchImportFindings unless told) with TooManyRequestsException for
        `seconds`."""
        with self._lock:
            self._faults.throttled_until[operation] = self._clock() + seconds

    def fail(
        self, ids: Iterable[str], code: str = "InvalidInput", message: str = "forced", times: int | None = 1
    ) -> None:
        """Reports the findings `ids` in FailedFindings with `code`, the next `times` times each (None: always; 0:
        no more)."""
        with self._lock:
            _force(self._faults.failures, ids, code, message, times)

    def fail_updates(
        self,
        ids: Iterable[str],
        code: str = FINDING_NOT_FOUND[0],
        message: str = FINDING_NOT_FOUND[1],
        times: int | None = 1,
    ) -> None:
        """Answers the findings `ids` in BatchUpdateFindings' UnprocessedFindings with `code`, unchanged, the next
        `times` times each (None: always; 0: no more): as the service does for a finding it does not show yet."""
        with self._lock:
            _force(self._faults.update_failures, ids, code, message, times)

    def refuse_requests_with(self, ids: Iterable[str]) -> None:
        """Refuses any import request carrying one of `ids` whole, with InvalidInputException."""
        with self._lock:
            self._faults.poison.update(ids)

    def after_imports(self, count: int, action: Callable[[], None]) -> None:
        """Runs `action` once, as the hub has taken `count` more import requests, before its answer to the last of
        them leaves: a stop then lands between that request and the caller's next."""
        if count < 1:
            raise ValueError(f"after {count} imports: 1 or more")
        with self._lock:
            self._faults.after_imports = [count, action]

    def reset(self) -> None:
        """Forgets findings, requests and faults, and refills the quotas."""
        with self._lock:
            self._store.clear()
            self._requests.clear()
            self._faults = Faults()
            self._buckets.clear()
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
            return copy.deepcopy(self._store.values())

    def count(self) -> int:
        """How many findings it holds: cheaper than `findings()` to watch a large import."""
        with self._lock:
            return len(self._store)

    def arrivals(self) -> dict[str, float]:
        """When each finding Id was first stored, on the hub's clock: a load test's latencies end here."""
        with self._lock:
            return self._store.arrivals()

    def now(self) -> float:
        """The hub's clock now: the clock of `arrivals()` and of the request log's `at`."""
        return self._clock()

    def finding(self, finding_id: str) -> dict[str, Any] | None:
        """Returns a copy of the stored finding with this Id, or None."""
        with self._lock:
            return copy.deepcopy(self._store.by_id(finding_id))

    def workflow(self, finding_id: str) -> str | None:
        """The Workflow.Status of the stored finding with this Id, or None when there is no such finding."""
        with self._lock:
            doc = self._store.by_id(finding_id)
            return None if doc is None else str(doc["Workflow"]["Status"])

    def workflows(self) -> dict[str, str]:
        """The Workflow.Status of every stored finding, by Id."""
        with self._lock:
            return {doc["Id"]: str(doc["Workflow"]["Status"]) for doc in self._store.values()}

    def requests(self, operation: str | None = None) -> list[RequestRecord]:
        """Returns the log of answered requests, of one operation (BatchImportFindings, BatchUpdateFindings,
        GetFindings) or all."""
        with self._lock:
            return [record for record in self._requests if operation in (None, record.operation)]

    # -- the operations

    def _unavailable(self, region: str | None) -> str | None:
        """During an outage (of every Region, or of `region`), how requests are answered: "refuse" (no answer) or
        "error" (HTTP 500); else None."""
        with self._lock:
            now = self._clock()
            if now < self._faults.outage_until:
                return "refuse" if self._faults.refuse_connections else "error"
            return "error" if region is not None and now < self._faults.regional_outages.get(region, 0.0) else None

    def _record_error(self, operation: str, error: HubError, caller: str) -> None:
        with self._lock:
            self._requests.append(
                RequestRecord(operation, int(error.status), error=error.code, at=self._clock(), caller=caller)
            )

    def _take(self, operation: str, caller: str, region: str) -> None:
        """Takes one request of `operation` from the caller's quota in `region`; raises HubError (429) when it is
        spent or throttled on purpose. The lock is held."""
        now = self._clock()
        key = (operation, caller, region)
        if key not in self._buckets:
            self._buckets[key] = TokenBucket(*self._quotas[operation], self._clock)
        if now < self._faults.throttled_until.get(operation, 0.0) or not self._buckets[key].take():
            raise too_many_requests()

    def _check_enabled(self, caller: str, region: str) -> None:
        """Raises HubError (401) if Security Hub is marked not enabled for the caller in `region`. The lock is held."""
        if (caller, region) in self._disabled:
            raise HubError(
                HTTPStatus.UNAUTHORIZED,
                "InvalidAccessException",
                f"Account {caller} is not subscribed to AWS Security Hub in {region}",
            )

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
        """BatchImportFindings on a raw request body signed for `region` by `caller` (an account); raises HubError for
        request-level errors."""
        region, caller = region or self.region, caller or self.account_id
        now = self._clock()
        with self._lock:
            self._take(BATCH_IMPORT, caller, region)
        sized = import_docs(body)
        docs = [doc for doc, _ in sized]
        theirs = next((doc for doc in docs if foreign(doc, caller)), None)
        if theirs is not None:
            raise foreign_refusal(theirs, caller)
        failed: list[dict[str, str]] = []
        with self._lock:
            self._check_enabled(caller, region)
            poisoned = [
                doc.get("Id") for doc in docs if isinstance(doc, dict) and one_of(doc.get("Id"), self._faults.poison)
            ]
            if poisoned:
                raise invalid_input(f"finding {poisoned[0]} is refused")
            for doc, size in sized:
                finding_id = str(doc.get("Id", "")) if isinstance(doc, dict) else ""
                problem = take_forced(self._faults.failures, finding_id) or import_problem(doc, size, region, caller)
                if problem is None:
                    self._store.put_import(doc, region)
                else:
                    failed.append({"Id": finding_id, "ErrorCode": problem[0], "ErrorMessage": problem[1]})
            accepted = len(docs) - len(failed)
            self._requests.append(
                RequestRecord(BATCH_IMPORT, 200, len(docs), accepted, len(failed), at=now, caller=caller)
            )
            action = None
            if self._faults.after_imports is not None:
                self._faults.after_imports[0] -= 1
                if self._faults.after_imports[0] == 0:
                    action, self._faults.after_imports = self._faults.after_imports[1], None
        if action is not None:
            action()
        return {"FailedCount": len(failed), "SuccessCount": accepted, "FailedFindings": failed}

    def batch_update(self, body: bytes, region: str | None = None, caller: str | None = None) -> dict[str, Any]:
        """BatchUpdateFindings on a raw request body signed for `region` by `caller` (an account); raises HubError for
        request-level errors."""
        region, caller = region or self.region, caller or self.account_id
        now = self._clock()
        with self._lock:
            self._take(BATCH_UPDATE, caller, region)
        request = parse_update(body)
        copies = Counter(request.identifiers)
        processed: list[dict[str, str]] = []
        unprocessed: list[dict[str, Any]] = []
        with self._lock:
            self._check_enabled(caller, region)
            for key in dict.fromkeys(request.identifiers):  # each identifier once, in the request's order
                if copies[key] > 1:
                    problem: tuple[str, str] | None = DUPLICATED
                elif forced := take_forced(self._faults.update_failures, key[1]):
                    problem = forced
                elif request.problems:
                    problem = ("InvalidInput", f"Invalid Input: {'; '.join(request.problems)}"[:1024])
                else:
                    problem = self._store.update(key, request.changes, caller, region)
                if problem is None:
                    processed.append(_identifier(key))
                else:
                    unprocessed.append(
                        {"FindingIdentifier": _identifier(key), "ErrorCode": problem[0], "ErrorMessage": problem[1]}
                    )
            self._requests.append(
                RequestRecord(
                    BATCH_UPDATE, 200, len(request.identifiers), len(processed), len(unprocessed), at=now, caller=caller
                )
            )
        return {"ProcessedFindings": processed, "UnprocessedFindings": unprocessed}

    def get_findings(self, body: bytes) -> dict[str, Any]:
        """GetFindings on a raw request body; raises HubError for request-level errors."""
        now = self._clock()
        with self._lock:
            if not self._get_bucket.take():
                raise too_many_requests()
        query = parse_query(body)
        wall = datetime.now(UTC)
        with self._lock:
            matching = [doc for doc in self._store.values() if query.matches(doc, wall)]
            self._requests.append(RequestRecord(GET_FINDINGS, 200, len(matching), at=now))
            return query.page(matching)
