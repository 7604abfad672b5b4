"""Configuration: flags over the TOML file, everything validated with a message that says what is wrong."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from defender_hub.cli import parse
from defender_hub.config import default_dead_letters, default_ledger, load_mapping_options, state_dir
from defender_hub.errors import ConfigError
from defender_hub.local.securityhub import LocalSecurityHub
from tests.helpers import cli, local_aws_env


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


def test_the_state_directory_is_the_flag_then_the_environment_then_the_users_state_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    monkeypatch.delenv("DEFENDER_HUB_STATE_DIR", raising=False)
    assert state_dir() == tmp_path / "home" / ".local" / "state" / "defender-hub"
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert state_dir() == tmp_path / "xdg" / "defender-hub"
    monkeypatch.setenv("DEFENDER_HUB_STATE_DIR", str(tmp_path / "env"))
    assert state_dir(parse(["redrive"]).state_dir) == tmp_path / "env"
    assert state_dir(parse(["redrive", "--state-dir", str(tmp_path / "flag")]).state_dir) == tmp_path / "flag"

    assert stat.S_IMODE((tmp_path / "xdg" / "defender-hub").stat().st_mode) == 0o700
    assert default_ledger(parse(["redrive"]).state_dir) == f"sqlite:///{tmp_path / 'env' / 'ledger.sqlite3'}"
    assert default_dead_letters(tmp_path / "flag") == str(tmp_path / "flag" / "dead-letters.jsonl")


def test_a_state_directory_that_cannot_be_made_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")

    with pytest.raises(ConfigError, match=r"the state directory .*file/state can't be made"):
        state_dir(tmp_path / "file" / "state")


def test_commands_keep_their_state_in_the_state_directory_not_the_working_one(
    tmp_path: Path, hub: LocalSecurityHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)

    env = local_aws_env(AWS_ENDPOINT_URL_SECURITYHUB=hub.endpoint_url, DEFENDER_HUB_STATE_DIR=str(tmp_path / "state"))

    done = cli("refresh", env=env)

    assert done.returncode == 0, done.stderr
    assert (tmp_path / "state" / "ledger.sqlite3").exists()
    assert list(work.iterdir()) == []


@pytest.mark.parametrize(
    ("former", "flag"),
    [("defender-hub-ledger.sqlite3", "--ledger sqlite:///defender-hub-ledger.sqlite3"),
     ("dead-letters.jsonl", "--dead-letter dead-letters.jsonl")],
)  # fmt: skip
def test_a_state_file_where_its_former_default_put_it_stops_the_command(
    tmp_path: Path, hub: LocalSecurityHub, monkeypatch: pytest.MonkeyPatch, former: str, flag: str
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    (work / former).write_text("")
    env = local_aws_env(AWS_ENDPOINT_URL_SECURITYHUB=hub.endpoint_url, DEFENDER_HUB_STATE_DIR=str(tmp_path / "state"))

    done = cli("refresh", env=env)

    assert done.returncode == 2
    said = f"{former} is here, where it was by default before the state directory: go on with it ({flag})"
    assert said in done.stderr.decode()
