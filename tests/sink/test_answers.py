"""What an error answer means to a sender, read from answers as botocore parses them."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from defender_hub.sink.answers import is_throttling, is_transient, refuses_lane


def answer(code: str, status: int, operation: str = "BatchImportFindings") -> ClientError:
    """The ClientError botocore raises for an error answer with `code` and HTTP `status`."""
    return ClientError(
        {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}, operation
    )


@pytest.mark.parametrize(
    ("code", "status", "operation"),
    [
        ("Throttling", 400, "AssumeRole"),  # STS's throttling is a 400
        ("TooManyRequestsException", 429, "BatchImportFindings"),
        ("LimitExceededException", 429, "BatchUpdateFindings"),
        ("", 429, "BatchImportFindings"),  # a 429 with no code
    ],
)
def test_throttling_in_any_of_its_shapes_is_busy_not_refused(code: str, status: int, operation: str) -> None:
    error = answer(code, status, operation)

    assert is_throttling(error) and is_transient(error) and not refuses_lane(error)


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("ValidationError", 400),
        ("MalformedPolicyDocument", 400),
        ("AccessDenied", 403),
        ("InvalidAccessException", 401),
    ],
)
def test_a_client_error_no_retry_fixes_refuses_the_lane(code: str, status: int) -> None:
    error = answer(code, status, "AssumeRole")

    assert refuses_lane(error) and not is_transient(error)


@pytest.mark.parametrize(("code", "status"), [("InternalException", 500), ("RequestTimeout", 400), ("", 408), ("", 0)])
def test_a_fault_or_a_timeout_may_pass(code: str, status: int) -> None:
    error = answer(code, status)

    assert is_transient(error) and not is_throttling(error) and not refuses_lane(error)


def test_a_request_refused_whole_for_what_it_holds_is_neither_a_refused_lane_nor_transient() -> None:
    error = answer("InvalidInputException", 400)

    assert not refuses_lane(error) and not is_transient(error)
