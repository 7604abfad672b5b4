"""Configuration: flags over the TOML file, everything validated with a message that says what is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from defender_hub.config import load_mapping_options
from defender_hub.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "defender-hub.toml"
    path.write_text(text)
    return path


def test_the_file_sets_options(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
account_id = "123456789012"
region = "cn-north-1"
company_name = "Example Corp"

[detect]
severity = "LOW"
security_profile_severity = { Critical = "CRITICAL" }
behavior_severity = { "Auth failures" = "HIGH" }
""",
    )
    options = load_mapping_options(config_file=path)

    assert (options.account_id, options.region, options.partition) == ("123456789012", "cn-north-1", None)
    assert options.company_name == "Example Corp"
    assert options.detect_severity == "LOW"
    assert dict(options.security_profile_severity) == {"Critical": "CRITICAL"}
    assert dict(options.behavior_severity) == {"Auth failures": "HIGH"}


def test_flags_win_over_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, 'account_id = "123456789012"\nregion = "us-east-1"\n')

    options = load_mapping_options(account_id="210987654321", region="eu-west-1", config_file=path)

    assert (options.account_id, options.region) == ("210987654321", "eu-west-1")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('acount_id = "123456789012"', "unknown setting acount_id"),
        ('account_id = "12345"', "not 12 digits"),
        ('region = "US-EAST-1"', "not an AWS Region"),
        ('partition = "aws-mars"', "partition"),
        ("company_name = 5", "company_name"),
        (f'company_name = "{"x" * 129}"', "longer than 128"),
        ('[detect]\nseverity = "SEVERE"', "not a severity label"),
        ('[detect]\nsecurity_profile_severity = { P = "LOUD" }', "security_profile_severity.P"),
        ("[detect]\nbehaviour_severity = {}", "unknown setting behaviour_severity"),
        ("detect = 1", "detect must be a table"),
        ("this is not toml", "not valid TOML"),
    ],
)
def test_bad_settings_are_refused_with_a_clear_message(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_mapping_options(config_file=write(tmp_path, text))


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_mapping_options(config_file=tmp_path / "absent.toml")


def test_bad_flags_are_refused() -> None:
    with pytest.raises(ConfigError, match="12 digits"):
        load_mapping_options(account_id="abc")


def test_a_configured_region_without_security_hub_is_refused() -> None:
    with pytest.raises(ConfigError, match="'eu-wset-1' has no Security Hub endpoint"):
        load_mapping_options(region="eu-wset-1")
