"""What Security Hub's error answers mean to a sender: which pass with time, which refuse a lane, which never pass.

Imports (`securityhub.py`) and workflow updates (`workflow.py`) read the same answers the same way.
"""

from __future__ import annotations

from botocore.exceptions import ClientError

__all__ = ["ACCESS_CODES", "INPUT_CODES", "REFUSED_STATUSES", "THROTTLING_CODES", "is_transient", "refuses_lane"]

THROTTLING_CODES = frozenset({"TooManyRequestsException", "LimitExceededException", "ThrottlingException"})
ACCESS_CODES = frozenset({"InvalidAccess", "InvalidAccessException", "AccessDeniedException", "AccessDenied"})
"""Refusals of a lane, not of a finding: Security Hub not enabled, the integration not accepted, or the credentials
(a role that can't be assumed, among them) not allowed; it takes a person to fix them."""
REFUSED_STATUSES = frozenset({401, 403})
INPUT_CODES = frozenset({"InvalidInputException"})
"""A request refused whole for what it holds: the sender splits it to find the finding refused, the lane is fine."""
_TRANSIENT_CLIENT_STATUSES = frozenset({408, 429})
"""The client errors that pass with time: a request timeout, and throttling under whatever code."""


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
    return (
        400 <= status < 500
        and status not in _TRANSIENT_CLIENT_STATUSES
        and code not in THROTTLING_CODES
        and code not in INPUT_CODES
    )


def is_transient(error: ClientError) -> bool:
    """Whether `error` may pass when asked again: throttling, or a fault of the service (5xx, or no status at all)."""
    code, status = _code_and_status(error)
    return code in THROTTLING_CODES or status >= 500 or status == 0 or status in _TRANSIENT_CLIENT_STATUSES
