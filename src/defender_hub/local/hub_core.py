"""What the local Security Hub's parts share: its operations' names, quotas, faults, request log and errors."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

__all__ = [
    "BATCH_IMPORT",
    "BATCH_UPDATE",
    "DEFAULT_ACCOUNT",
    "DEFAULT_REGION",
    "GET_BURST",
    "GET_FINDINGS",
    "GET_RATE",
    "Faults",
    "HubError",
    "RequestRecord",
    "TokenBucket",
    "instant",
    "invalid_input",
    "take_forced",
    "too_many_requests",
]

DEFAULT_ACCOUNT = "123456789012"
DEFAULT_REGION = "us-east-1"
BATCH_IMPORT = "BatchImportFindings"
BATCH_UPDATE = "BatchUpdateFindings"
GET_FINDINGS = "GetFindings"
"""The operations' names, as botocore and the request log spell them."""
GET_RATE = 3.0
"""GetFindings requests a second (Security Hub's quota), over all callers here."""
GET_BURST = 6


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
    regional_outages: dict[str, float] = field(default_factory=dict)
    """Region → until when, on the hub's clock, its requests are answered with HTTP 500."""
    throttled_until: dict[str, float] = field(default_factory=dict)
    """Operation name → until when, on the hub's clock, every request of it is throttled."""
    failures: dict[str, list[Any]] = field(default_factory=dict)
    """Finding Id → [ErrorCode, ErrorMessage, how many more times (None: always)], for BatchImportFindings."""
    update_failures: dict[str, list[Any]] = field(default_factory=dict)
    """The same for BatchUpdateFindings: the finding is answered in UnprocessedFindings."""
    poison: set[str] = field(default_factory=set)
    """Finding Ids that make an import request refused whole, as a rule this stand-in does not model would."""
    after_imports: list[Any] | None = None
    """[imports still to answer, what to run then] (`LocalSecurityHub.after_imports`)."""


@dataclass(frozen=True)
class RequestRecord:
    """One request the hub answered: for the batch operations, `findings` counts the findings or identifiers sent,
    `accepted` those imported or processed, `failed` those failed or unprocessed."""

    operation: str
    status: int
    findings: int = 0
    accepted: int = 0
    failed: int = 0
    error: str | None = None
    at: float = 0.0
    caller: str = ""
    """The account the request was made as."""


class HubError(Exception):
    """A request-level error, answered with its HTTP status and its code in `x-amzn-ErrorType`, as the service
    answers."""

    def __init__(self, status: HTTPStatus, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def invalid_input(message: str) -> HubError:
    """The service's answer to a malformed request: HTTP 400 InvalidInputException."""
    return HubError(HTTPStatus.BAD_REQUEST, "InvalidInputException", message)


def too_many_requests() -> HubError:
    """The service's answer to a request over its quota: HTTP 429 TooManyRequestsException."""
    return HubError(HTTPStatus.TOO_MANY_REQUESTS, "TooManyRequestsException", "Rate exceeded")


def instant(value: str) -> datetime:
    """An ASFF timestamp as an aware datetime (UTC when it names no offset)."""
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def take_forced(failures: dict[str, list[Any]], finding_id: str) -> tuple[str, str] | None:
    """Consumes one forced failure of `finding_id`, if one is set: returns its ErrorCode and ErrorMessage."""
    forced = failures.get(finding_id)
    if forced is None:
        return None
    code, message, times = forced
    if times is not None:
        forced[2] = times - 1
        if forced[2] <= 0:
            del failures[finding_id]
    return str(code), str(message)
