"""What Security Hub's error answers mean to a sender: which pass with time, which refuse a lane, which never pass.

Imports (`securityhub.py`) and workflow updates (`workflow.py`) read the same answers the same way.
"""

from __future__ import annotations

from botocore.exceptions import ClientError
from botocore.retries.standard import ThrottledRetryableChecker, TransientRetryableChecker

__all__ = [
    "ACCESS_CODES",
    "INPUT_CODES",
    "REFUSED_STATUSES",
    "THROTTLING_CODES",
    "is_throttling",
    "is_transient",
    "refuses_lane",
]

# botocore's own lists, which its retry modes keep up to date: STS's "Throttling" is a 400, Security Hub's
# "TooManyRequestsException" a 429, and a code missing here would park a lane that is only busy.
THROTTLING_CODES = frozenset(ThrottledRetryableChecker._THROTTLED_ERROR_CODES)
_TRANSIENT_CODES = frozenset(TransientRetryableChecker._TRANSIENT_ERROR_CODES)
ACCESS_CODES = frozenset({"InvalidAccess", "InvalidAccessException", "AccessDeniedException", "AccessDenied"})
"""Refusals of a lane, not of a finding: Security Hub not enabled, the integration not accepted, or the credentials
(a role that can't be assumed, among them) not allowed; it takes a person to fix them."""
REFUSED_STATUSES = frozenset({401, 403})
INPUT_CODES = frozenset({"InvalidInputException"})
"""A request refused whole for what it holds: the sender splits it to find the finding refused, the lane is fine."""
_THROTTLING_STATUS = 429
_TIMEOUT_STATUS = 408


def _code_and_status(error: ClientError) -> tuple[str, int]:
    code = str(error.response.get("Error", {}).get("Code", ""))
    return code, int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)


def refuses_lane(error: ClientError) -> bool:
    """Whether `error` refuses the whole account and Region until a person acts: access, Security Hub not enabled,
    or any other client error (4xx) no retry can fix, such as STS refusing the role (400 ValidationError)."""
    code, status = _code_and_status(error)
    if code in ACCESS_CODES or status in REFUSED_STATUSES:
        return True
    # Retrying a client error asks the same question again and gets the same answer: the shard would stall behind
    # it for ever. Parked, the lane's findings wait in the dead letters and are tried again every minute.
    return 400 <= status < 500 and not is_transient(error) and code not in INPUT_CODES


def is_throttling(error: ClientError) -> bool:
    """Whether `error` says the service is busy: an answer, so the lane is up, only to be asked more slowly."""
    code, status = _code_and_status(error)
    return code in THROTTLING_CODES or status == _THROTTLING_STATUS


def is_transient(error: ClientError) -> bool:
    """Whether `error` may pass when asked again: throttling, a timeout, or a fault of the service (5xx, or no status
    at all)."""
    code, status = _code_and_status(error)
    return is_throttling(error) or code in _TRANSIENT_CODES or status >= 500 or status in {0, _TIMEOUT_STATUS}
