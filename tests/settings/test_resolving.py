"""The one resolver (flag, then variable, then the settings file, then the default) and the environment `run` hands
its shard processes."""

from __future__ import annotations

from pathlib import Path

import pytest

from defender_hub.cli import parse
from defender_hub.errors import ConfigError
from defender_hub.settings import OUTAGE_LIMIT_SECONDS
from defender_hub.settings.resolving import shard_environment, shard_settings
from defender_hub.worker import delivery_settings

ACCOUNT = "210987654321"


@pytest.fixture(autouse=True)
def no_settings_of_this_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    """Leaves out whatever defender-hub variables the shell running the tests has set."""
    import os  # noqa: PLC0415

    for name in os.environ:
        if name.startswith("DEFENDER_HUB_"):
            monkeypatch.delenv(name)


def settings_file(tmp_path: Path, run_table: str) -> Path:
    path = tmp_path / "settings.toml"
    path.write_text(f"[run]\n{run_table}\n")
    return path


def test_a_setting_is_the_flag_then_the_variable_then_the_file_then_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = settings_file(tmp_path, "outage_limit = 30")
    run = ["run", "--config", str(config)]

    assert parse(["run"]).outage_limit == OUTAGE_LIMIT_SECONDS
    assert parse(run).outage_limit == 30
    monkeypatch.setenv("DEFENDER_HUB_OUTAGE_LIMIT", "20")
    assert parse(run).outage_limit == 20
    assert parse([*run, "--outage-limit", "10"]).outage_limit == 10


def test_only_run_reads_the_settings_file_for_its_settings(tmp_path: Path) -> None:
    config = settings_file(tmp_path, 'dead_letter = "from-file.jsonl"')

    assert parse(["run", "--config", str(config)]).dead_letter == "from-file.jsonl"
    assert parse(["redrive", "--config", str(config)]).dead_letter is None  # the state directory's, later


def test_the_settings_file_is_itself_taken_from_its_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEFENDER_HUB_CONFIG", str(settings_file(tmp_path, "max_records = 10")))

    assert parse(["run"]).max_records == 10


@pytest.mark.parametrize(
    ("variable", "text", "said"),
    [
        ("DEFENDER_HUB_OUTAGE_LIMIT", "soon", "DEFENDER_HUB_OUTAGE_LIMIT: 'soon' is not a whole number"),
        ("DEFENDER_HUB_OUTAGE_LIMIT", "0", "outage limit 0 is not a whole number of seconds, 1 or more"),
        ("DEFENDER_HUB_MAX_RECORDS", "10001", "--max-records must be 1..10000"),
        ("DEFENDER_HUB_POLL_MILLIS", "100", "poll millis 100 is not a whole number of milliseconds, 200 or more"),
        ("DEFENDER_HUB_RETRIEVAL_MODE", "PUSH", "retrieval mode 'PUSH' is not one of POLLING, FANOUT"),
        ("DEFENDER_HUB_METRICS_PORT", "70000", "metrics port 70000 is not a port number"),
        ("DEFENDER_HUB_METRICS_ADDRESS", "localhost", "metrics address 'localhost' is not an IP address"),
    ],
)
def test_a_variable_the_setting_cannot_take_is_a_configuration_error_naming_it(
    variable: str, text: str, said: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, text)

    with pytest.raises(ConfigError) as refused:
        parse(["run"])

    assert str(refused.value) == said


@pytest.mark.parametrize(
    ("line", "said"),
    [
        ('max_records = "many"', "[run].max_records must be a int"),
        ("health_dir = 3", "[run].health_dir must be a str"),
        ("refresh_hours = -1", "refresh hours -1 is not a whole number of hours, 0 or more"),
        ('import_account = "210987654321"', "[run]: unknown setting import_account"),
    ],
)
def test_a_settings_file_value_the_setting_cannot_take_is_a_configuration_error(
    line: str, said: str, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match=said.replace("[", r"\[").replace("]", r"\]")):
        parse(["run", "--config", str(settings_file(tmp_path, line))])


def test_the_settings_reach_the_shard_processes_whole_through_the_environment(tmp_path: Path) -> None:
    given = parse(
        [
            "run",
            "--dead-letter",
            "/var/lib/defender-hub/dead-letters.jsonl",
            "--ledger",
            "dynamodb://ledger",
            "--dead-letter-overflow",
            "s3://bucket/letters",
            "--assume-role",
            "defender-hub-import",
            "--external-id",
            "org-1234",
            "--outage-limit",
            "90",
            "--max-clock-skew",
            "7",
            "--default-account",
            ACCOUNT,
            "--region",
            "eu-west-1",
            "--config",
            str(settings_file(tmp_path, "")),
            "--health-dir",
            str(tmp_path),
            "--log-format",
            "json",
        ]
    )
    values = vars(given) | {
        "import_account": ACCOUNT,
        "sender_socket": "/tmp/sender/sender.sock",
    }

    environment = shard_environment(values)
    read = shard_settings(environment)

    assert all(name.startswith("DEFENDER_HUB_") for name in environment)
    assert environment["DEFENDER_HUB_IMPORT_ACCOUNT"] == ACCOUNT  # not the mapping's default account
    handed_on = {name: value for name, value in values.items() if name in read and value is not None}
    assert {name: read[name] for name in handed_on} == handed_on
    assert len(handed_on) == 15  # all that were given
    assert delivery_settings(read) == delivery_settings(values)


def test_what_run_leaves_unset_is_unset_in_the_shards_whatever_runs_own_environment_holds() -> None:
    # The daemon passes `run`'s own environment on beneath the settings.
    inherited = {"DEFENDER_HUB_IMPORT_ACCOUNT": "111122223333", "DEFENDER_HUB_ASSUME_ROLE": "someone-else"}

    read = shard_settings(inherited | shard_environment(vars(parse(["run"]))))

    assert read["import_account"] is None
    assert read["assume_role"] is None
