"""The botocore Configs of the project's clients: the named defaults, and a quick check's short tries."""

from __future__ import annotations

from defender_hub.aws_config import CONNECT_TIMEOUT_SECONDS, READ_TIMEOUT_SECONDS, aws_config, quick_check_config


def test_aws_config_uses_adaptive_retries_and_the_default_timeouts() -> None:
    config = aws_config(attempts=4)
    assert config.retries == {"mode": "adaptive", "total_max_attempts": 4}
    assert (config.connect_timeout, config.read_timeout) == (CONNECT_TIMEOUT_SECONDS, READ_TIMEOUT_SECONDS) == (5, 60)


def test_aws_config_takes_the_mode_and_timeouts_given() -> None:
    config = aws_config(attempts=10, retries_mode="standard", connect_timeout=1, read_timeout=30)
    assert config.retries == {"mode": "standard", "total_max_attempts": 10}
    assert (config.connect_timeout, config.read_timeout) == (1, 30)


def test_a_quick_check_leaves_the_retry_mode_to_the_environment() -> None:
    config = quick_check_config()
    assert config.retries == {"total_max_attempts": 2}
    assert (config.connect_timeout, config.read_timeout) == (3, 10)
