"""One meaning per flag: --default-account is the account of events that carry none (convert, run), --import-account
the account imported into without a role (import, redrive, refresh); --account-id still works where it did, with a
warning naming the new flag, and DEFENDER_HUB_ACCOUNT_ID likewise."""

from __future__ import annotations

import json
from typing import Any

import pytest

from defender_hub.cli import parse
from defender_hub.commands.common import EXIT_USAGE, delivery_settings
from defender_hub.local.aws import free_port
from tests.helpers import cli, local_aws_env

ACCOUNT = "210987654321"
DELIVERING = ("import", "redrive", "refresh")


@pytest.fixture
def bare(reference_events: list[dict[str, Any]]) -> bytes:
    """A Detect event that carries no account and no Region."""
    event = {name: value for name, value in reference_events[2].items() if name not in ("accountId", "region")}
    return json.dumps(event).encode() + b"\n"


def converted_account(done: Any) -> str:
    assert done.returncode == 0, done.stderr
    [finding] = [json.loads(line) for line in done.stdout.splitlines()]
    return str(finding["AwsAccountId"])


def test_convert_gives_events_that_carry_no_account_the_default_account(bare: bytes) -> None:
    by_flag = cli("convert", "--default-account", ACCOUNT, "--region", "eu-west-1", stdin=bare)
    by_variable = cli(
        "convert", "--region", "eu-west-1", stdin=bare, env=local_aws_env(DEFENDER_HUB_DEFAULT_ACCOUNT=ACCOUNT)
    )

    assert converted_account(by_flag) == converted_account(by_variable) == ACCOUNT
    assert by_flag.stderr == by_variable.stderr == b""


def test_account_id_still_works_in_convert_with_a_warning_naming_default_account(bare: bytes) -> None:
    by_flag = cli("convert", "--account-id", ACCOUNT, "--region", "eu-west-1", stdin=bare)
    by_variable = cli(
        "convert", "--region", "eu-west-1", stdin=bare, env=local_aws_env(DEFENDER_HUB_ACCOUNT_ID=ACCOUNT)
    )

    assert converted_account(by_flag) == converted_account(by_variable) == ACCOUNT
    assert by_flag.stderr.decode() == (
        "defender-hub: warning: --account-id is deprecated here: use --default-account (the account of events that "
        "carry none)\n"
    )
    assert by_variable.stderr.decode() == (
        "defender-hub: warning: DEFENDER_HUB_ACCOUNT_ID is deprecated here: use DEFENDER_HUB_DEFAULT_ACCOUNT (the "
        "account of events that carry none)\n"
    )


@pytest.mark.parametrize("command", DELIVERING)
def test_import_account_is_the_account_imported_into(command: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DEFENDER_HUB_ACCOUNT_ID", raising=False)
    by_flag = parse([command, "--import-account", ACCOUNT])
    monkeypatch.setenv("DEFENDER_HUB_IMPORT_ACCOUNT", ACCOUNT)
    by_variable = parse([command])

    assert delivery_settings(by_flag).account_id == delivery_settings(by_variable).account_id == ACCOUNT


@pytest.mark.parametrize("command", DELIVERING)
def test_account_id_still_works_where_it_meant_the_account_imported_into_with_a_warning(
    command: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DEFENDER_HUB_IMPORT_ACCOUNT", raising=False)
    monkeypatch.delenv("DEFENDER_HUB_ACCOUNT_ID", raising=False)
    by_flag = parse([command, "--account-id", ACCOUNT])
    flag_warning = capsys.readouterr().err
    monkeypatch.setenv("DEFENDER_HUB_ACCOUNT_ID", ACCOUNT)
    by_variable = parse([command])
    variable_warning = capsys.readouterr().err

    assert delivery_settings(by_flag).account_id == delivery_settings(by_variable).account_id == ACCOUNT
    assert flag_warning == (
        "defender-hub: warning: --account-id is deprecated here: use --import-account (the account imported into "
        "without a role)\n"
    )
    assert variable_warning == (
        "defender-hub: warning: DEFENDER_HUB_ACCOUNT_ID is deprecated here: use DEFENDER_HUB_IMPORT_ACCOUNT (the "
        "account imported into without a role)\n"
    )


def test_the_new_variable_wins_over_the_old_one_and_nothing_is_said(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DEFENDER_HUB_ACCOUNT_ID", "111122223333")
    monkeypatch.setenv("DEFENDER_HUB_IMPORT_ACCOUNT", ACCOUNT)

    parsed = parse(["import"])

    assert delivery_settings(parsed).account_id == ACCOUNT
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    ("command", "flag"),
    [
        ("convert", "--import-account"),
        ("run", "--import-account"),
        *((command, "--default-account") for command in DELIVERING),
    ],
)
def test_each_account_flag_is_only_where_it_means_something(command: str, flag: str) -> None:
    with pytest.raises(SystemExit) as refused:
        parse([command, flag, ACCOUNT])

    assert refused.value.code == EXIT_USAGE


@pytest.mark.parametrize(
    ("flags", "variables"),
    [
        (["--default-account", "12"], {}),
        ([], {"DEFENDER_HUB_DEFAULT_ACCOUNT": "12"}),
        (["--account-id", "12"], {}),
    ],
)
def test_run_checks_its_default_account_before_it_starts(flags: list[str], variables: dict[str, str]) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"  # should the check not come first, nothing but loopback is asked

    done = cli(
        "run", "--stream", "s", "--application", "a", *flags, env=local_aws_env(AWS_ENDPOINT_URL=nowhere, **variables)
    )

    assert done.returncode == EXIT_USAGE
    assert (
        done.stderr.decode().splitlines()[-1] == "defender-hub: configuration error: account id '12' is not 12 digits"
    )


def test_run_imports_as_its_own_account_not_as_its_default_account(monkeypatch: pytest.MonkeyPatch) -> None:
    # A hub account's `run --assume-role R --default-account 111`: 111's findings go through the role in 111.
    monkeypatch.delenv("DEFENDER_HUB_ACCOUNT_ID", raising=False)
    parsed = parse(["run", "--assume-role", "importer", "--default-account", ACCOUNT, "--outage-limit", "300"])

    assert delivery_settings(parsed).account_id is None  # STS says, once a role is to be assumed
