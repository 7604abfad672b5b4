"""The botocore Configs of the project's clients, so that their retry mode and timeouts are chosen in one place."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from botocore.config import Config

__all__ = ["CONNECT_TIMEOUT_SECONDS", "READ_TIMEOUT_SECONDS", "RETRY_MODE", "aws_config", "quick_check_config"]

RETRY_MODE = "adaptive"
"""botocore's adaptive retry mode: it retries throttling, 5xx and connection errors, and its client-side token bucket
slows the requests down while the service throttles them."""
CONNECT_TIMEOUT_SECONDS = 5
"""How long a client waits for a connection before the attempt counts as failed."""
READ_TIMEOUT_SECONDS = 60
"""How long a client waits for an answer before the attempt counts as failed."""

_QUICK_CHECK_ATTEMPTS = 2
_QUICK_CHECK_CONNECT_TIMEOUT_SECONDS = 3
_QUICK_CHECK_READ_TIMEOUT_SECONDS = 10


def aws_config(
    *,
    attempts: int,
    retries_mode: str | None = RETRY_MODE,
    connect_timeout: float = CONNECT_TIMEOUT_SECONDS,
    read_timeout: float = READ_TIMEOUT_SECONDS,
) -> Config:
    """Returns a botocore Config that makes at most `attempts` tries of a request in `retries_mode` (None leaves the
    mode to AWS_RETRY_MODE, the profile or botocore), each within the timeouts given in seconds."""
    # botocore is imported only when a client is made, so that the commands that call no AWS service never load it.
    from botocore.config import Config  # noqa: PLC0415

    mode: dict[str, object] = {} if retries_mode is None else {"mode": retries_mode}
    return Config(
        retries={**mode, "total_max_attempts": attempts}, connect_timeout=connect_timeout, read_timeout=read_timeout
    )


def quick_check_config() -> Config:
    """Returns the Config of a check made before a command starts: two tries with short timeouts, in the retry mode
    that the environment chooses."""
    # A check at start says what is wrong (a wrong endpoint, a missing stream) at once, rather than retry for minutes.
    return aws_config(
        attempts=_QUICK_CHECK_ATTEMPTS,
        retries_mode=None,
        connect_timeout=_QUICK_CHECK_CONNECT_TIMEOUT_SECONDS,
        read_timeout=_QUICK_CHECK_READ_TIMEOUT_SECONDS,
    )
