"""The Region and credentials come from where boto3 and the AWS CLI take them: flag, AWS_REGION/AWS_DEFAULT_REGION,
then the profile AWS_PROFILE names."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from defender_hub.commands.aws import aws_region
from defender_hub.errors import ConfigError
from defender_hub.local.aws import LocalAws, free_port
from defender_hub.local.securityhub import LocalSecurityHub
from tests.helpers import cli, local_aws_env

PROFILE_REGION = "eu-west-1"


def profile_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The local environment with no Region and no credentials of its own: profile `lab` of a config file has both."""
    config = tmp_path / "aws-config"
    config.write_text(
        f"[profile lab]\nregion = {PROFILE_REGION}\naws_access_key_id = test\naws_secret_access_key = test\n"
    )
    left_out = ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
    env = {name: value for name, value in local_aws_env().items() if name not in left_out}
    nowhere = f"http://127.0.0.1:{free_port()}"  # what a test does not point elsewhere reaches nothing but loopback
    return env | {"AWS_CONFIG_FILE": str(config), "AWS_PROFILE": "lab", "AWS_ENDPOINT_URL": nowhere} | extra


def test_the_region_is_the_variables_then_the_profiles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in profile_env(tmp_path).items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)

    from_profile = aws_region()
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-central-1")
    from_default_variable = aws_region()
    monkeypatch.setenv("AWS_REGION", "ap-south-1")
    from_region_variable = aws_region()

    assert (from_profile, from_default_variable, from_region_variable) == (PROFILE_REGION, "eu-central-1", "ap-south-1")


def test_no_region_anywhere_says_what_to_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))

    with pytest.raises(ConfigError, match="no AWS Region: set AWS_REGION, or region in the profile"):
        aws_region()


def test_a_profile_that_does_not_exist_is_one_line_of_configuration_error(tmp_path: Path) -> None:
    done = cli("findings", env=profile_env(tmp_path, AWS_PROFILE="nowhere"))

    assert done.returncode == 2
    assert done.stderr.decode().splitlines() == [
        f"defender-hub: configuration error: there is no AWS profile 'nowhere' in {tmp_path / 'aws-config'} or "
        f"{os.devnull}: check AWS_PROFILE"
    ]


def test_findings_takes_the_region_and_credentials_of_the_profile(hub: LocalSecurityHub, tmp_path: Path) -> None:
    done = cli("findings", env=profile_env(tmp_path, AWS_ENDPOINT_URL_SECURITYHUB=hub.endpoint_url))

    assert done.returncode == 0, done.stderr
    assert done.stderr == b"0 findings\n"


def test_run_takes_the_region_of_the_profile(local_aws: LocalAws, tmp_path: Path) -> None:
    env = profile_env(tmp_path, AWS_ENDPOINT_URL_KINESIS=local_aws.endpoint_url)

    done = cli("run", "--stream", "nope", "--application", "a", env=env)

    assert done.returncode == 2
    assert b"stream 'nope' not found" in done.stderr, done.stderr
