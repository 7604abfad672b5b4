"""The daemon's properties and the checks made before it starts."""

from __future__ import annotations

import subprocess
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from defender_hub.consumer.launcher import DaemonSettings, daemon_command, properties
from defender_hub.errors import ConfigError
from defender_hub.local.aws import LocalAws
from tests.helpers import cli, local_aws_env, local_client, unique

SETTINGS = DaemonSettings(stream="s", application="a", worker_id="w", region="eu-west-1")


def parse(text: str) -> dict[str, str]:
    return dict(line.split(" = ", 1) for line in text.splitlines())


def test_real_aws_gets_no_endpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_KINESIS",
        "AWS_ENDPOINT_URL_DYNAMODB",
        "AWS_ENDPOINT_URL_CLOUDWATCH",
    ):
        monkeypatch.delenv(name, raising=False)

    written = parse(properties(SETTINGS))

    assert (written["streamName"], written["applicationName"], written["regionName"]) == ("s", "a", "eu-west-1")
    assert written["executableName"].endswith("-m defender_hub.consumer")
    assert not {"kinesisEndpoint", "dynamoDBEndpoint", "metricsLevel"} & written.keys()


def test_the_wait_between_a_shards_reads_is_the_poll_setting() -> None:
    assert parse(properties(SETTINGS))["idleTimeBetweenReadsInMillis"] == "1000"  # the KCL's own default
    assert parse(properties(replace(SETTINGS, poll_millis=250)))["idleTimeBetweenReadsInMillis"] == "250"


def test_local_endpoints_come_from_the_standard_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:8000")
    monkeypatch.delenv("AWS_ENDPOINT_URL_CLOUDWATCH", raising=False)

    written = parse(properties(SETTINGS))

    assert (written["kinesisEndpoint"], written["dynamoDBEndpoint"]) == (
        "http://127.0.0.1:4566",
        "http://127.0.0.1:8000",
    )
    assert written["cloudWatchClient.endpointOverride"] == "http://127.0.0.1:4566"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"initial_position": "EARLIEST"}, "initial position"),
        ({"retrieval_mode": "PUSH"}, "retrieval mode"),
        ({"initial_position": "AT_TIMESTAMP"}, "needs --timestamp"),
    ],
)
def test_bad_settings_are_refused(changes: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        properties(DaemonSettings(stream="s", application="a", worker_id="w", region="r", **changes))  # type: ignore[arg-type]


def test_missing_java_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    monkeypatch.setenv("JAVA_HOME", "/nonexistent")

    with pytest.raises(ConfigError, match="no Java"):
        daemon_command(tmp_path)  # type: ignore[arg-type]


def test_missing_jars_are_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    monkeypatch.setenv("DEFENDER_HUB_KCL_JARS", str(tmp_path))
    monkeypatch.delenv("JAVA_HOME", raising=False)

    with pytest.raises(ConfigError, match="no KCL jars"):
        daemon_command(tmp_path)  # type: ignore[arg-type]


def run_env(**extra: str) -> dict[str, str]:
    return local_aws_env(**extra)


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    return cli("run", *args, env=env)


def test_run_says_when_the_stream_does_not_exist(local_aws: LocalAws) -> None:
    done = run("--stream", "nope", "--application", "a", env=run_env(AWS_ENDPOINT_URL_KINESIS=local_aws.endpoint_url))

    assert done.returncode == 2
    assert b"stream 'nope' not found" in done.stderr


def test_run_says_when_kinesis_is_unreachable(unreachable: str) -> None:
    done = run("--stream", "s", "--application", "a", env=run_env(AWS_ENDPOINT_URL_KINESIS=unreachable))

    assert done.returncode == 2
    assert b"can't reach http://127.0.0.1:" in done.stderr


def test_run_takes_its_settings_from_the_environment_too(unreachable: str) -> None:
    done = run(
        env=run_env(
            DEFENDER_HUB_STREAM="s",
            DEFENDER_HUB_APPLICATION="a",
            DEFENDER_HUB_ACCOUNT_ID="12",
            AWS_ENDPOINT_URL_KINESIS=unreachable,
        )
    )

    assert done.returncode == 2
    assert b"account id '12' is not 12 digits" in done.stderr  # read from DEFENDER_HUB_ACCOUNT_ID, checked first
    assert b"run needs a stream and an application" in run(env=run_env()).stderr


def test_run_reads_its_settings_from_the_file_under_the_environment_and_flags(
    local_aws: LocalAws, tmp_path: Path
) -> None:
    config = tmp_path / "defender-hub.toml"
    config.write_text('[run]\nstream = "from-file"\napplication = "a"\nmax_records = 10\n')

    env = run_env(AWS_ENDPOINT_URL_KINESIS=local_aws.endpoint_url)
    by_file = run("--config", str(config), env=env)
    by_env = run("--config", str(config), env=env | {"DEFENDER_HUB_STREAM": "from-env"})
    by_flag = run("--config", str(config), "--stream", "from-flag", env=env | {"DEFENDER_HUB_STREAM": "from-env"})

    assert b"stream 'from-file' not found" in by_file.stderr
    assert b"stream 'from-env' not found" in by_env.stderr
    assert b"stream 'from-flag' not found" in by_flag.stderr


def test_a_bad_run_table_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "defender-hub.toml"
    config.write_text('[run]\nstream = "s"\nmax_records = "many"\n')

    done = run("--config", str(config), env=run_env())

    assert done.returncode == 2
    assert b"[run].max_records must be a int" in done.stderr


@pytest.mark.parametrize("ledger", ["sqlite://relative-without-third-slash", "dynamodb://", "postgres://x"])
def test_a_bad_ledger_url_is_refused(ledger: str) -> None:
    done = run("--stream", "s", "--application", "a", "--ledger", ledger, env=run_env())

    assert done.returncode == 2
    assert b"ledger: expected sqlite:///PATH or dynamodb://TABLE" in done.stderr


def test_run_warns_when_other_workers_share_the_application_but_the_ledger_is_sqlite(
    local_aws: LocalAws, tmp_path: Path
) -> None:
    stream, application = unique("s"), unique("app")
    kinesis, dynamodb = (
        local_client("kinesis", local_aws.endpoint_url),
        local_client("dynamodb", local_aws.endpoint_url),
    )
    kinesis.create_stream(StreamName=stream, ShardCount=1)
    dynamodb.create_table(
        TableName=application,
        KeySchema=[{"AttributeName": "leaseKey", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "leaseKey", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    dynamodb.put_item(TableName=application, Item={"leaseKey": {"S": "shard-0"}, "leaseOwner": {"S": "other-host"}})
    env = run_env(
        AWS_ENDPOINT_URL=local_aws.endpoint_url,
        DEFENDER_HUB_KCL_JARS=str(tmp_path),  # no jars: `run` stops right after its checks
    )
    flags = ("--stream", stream, "--application", application)
    sqlite = run(*flags, "--ledger", f"sqlite:///{tmp_path / 'l.db'}", env=env)
    shared = run(*flags, "--ledger", f"dynamodb://{unique('shared-ledger')}", env=env)

    assert f"other workers (other-host) share application '{application}', but the SQLite ledger".encode() in (
        sqlite.stderr
    )
    assert b"other workers" not in shared.stderr
    assert b"no KCL jars" in shared.stderr  # it got as far as starting the daemon


def test_the_daemon_runs_kcl_3_with_the_sdk_v2_credential_chain(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DEFENDER_HUB_KCL_PROPERTIES", raising=False)

    written = parse(properties(SETTINGS))

    assert written["clientVersionConfig"] == "CLIENT_VERSION_CONFIG_3X"
    assert written["AWSCredentialsProvider"] == "DefaultCredentialsProvider"
    assert "leaseAssignmentIntervalMillis" not in written  # the KCL's own defaults against AWS


def test_further_daemon_properties_tune_it_and_a_malformed_one_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEFENDER_HUB_KCL_PROPERTIES", "leaseAssignmentIntervalMillis=1000; maxLeasesForWorker = 4")

    written = parse(properties(SETTINGS))

    assert (written["leaseAssignmentIntervalMillis"], written["maxLeasesForWorker"]) == ("1000", "4")
    monkeypatch.setenv("DEFENDER_HUB_KCL_PROPERTIES", "maxLeasesForWorker")
    with pytest.raises(ConfigError, match="NAME=VALUE"):
        properties(SETTINGS)


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--assume-role", "arn:aws:iam::{account}:role/{RoleName}"], b"--assume-role"),
        (["--assume-role", "importer", "--external-id", "has spaces"], b"--external-id"),
    ],
)
def test_run_refuses_a_role_or_external_id_no_lane_could_use_before_it_starts(flags: list[str], named: bytes) -> None:
    done = run("--stream", "s", "--application", "a", *flags, env=run_env())

    assert done.returncode == 2
    assert done.stderr.count(b"\n") == 1 and named in done.stderr, done.stderr


def test_a_start_at_a_timestamp_is_the_extended_position_alone_in_epoch_seconds() -> None:
    at = DaemonSettings(
        stream="s", application="a", worker_id="w", region="r", initial_position="AT_TIMESTAMP", timestamp=1_796_112_000
    )

    written = parse(properties(at))

    # The KCL refuses initialPositionInStream = AT_TIMESTAMP ("Invalid InitialPosition"), whatever else is set.
    assert "initialPositionInStream" not in written
    assert written["initialPositionInStreamExtended"] == "1796112000"
    assert parse(properties(SETTINGS))["initialPositionInStream"] == "TRIM_HORIZON"
    assert "initialPositionInStreamExtended" not in parse(properties(SETTINGS))


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--initial-position", "AT_TIMESTAMP"], b"--initial-position AT_TIMESTAMP needs --timestamp"),
        (["--timestamp", "1796112000"], b"--timestamp is only for --initial-position AT_TIMESTAMP"),
        (["--initial-position", "LATEST", "--timestamp", "1796112000"], b"only for --initial-position AT_TIMESTAMP"),
        (["--initial-position", "AT_TIMESTAMP", "--timestamp", "yesterday"], b"'yesterday' is neither ISO 8601"),
    ],
)
def test_run_refuses_a_start_timestamp_missing_unneeded_or_unreadable(
    flags: list[str], message: bytes, unreachable: str
) -> None:
    done = run("--stream", "s", "--application", "a", *flags, env=run_env(AWS_ENDPOINT_URL_KINESIS=unreachable))

    assert done.returncode == 2
    assert done.stderr.count(b"\n") == 1 and message in done.stderr, done.stderr


def test_a_new_application_refuses_a_start_timestamp_before_the_streams_retention_or_to_come_and_takes_one_within_it(
    local_aws: LocalAws, tmp_path: Path
) -> None:
    stream = unique("s")
    local_client("kinesis", local_aws.endpoint_url).create_stream(StreamName=stream, ShardCount=1)  # 24 hours
    env = run_env(AWS_ENDPOINT_URL=local_aws.endpoint_url, DEFENDER_HUB_KCL_JARS=str(tmp_path))
    flags = ("--stream", stream, "--application", unique("app"), "--initial-position", "AT_TIMESTAMP", "--timestamp")
    an_hour_ago = datetime.now(timezone(timedelta(hours=5, minutes=30))) - timedelta(hours=1)

    too_old = run(*flags, str(int(time.time()) - 25 * 3600), env=env)
    to_come = run(*flags, "2999-01-01T00:00:00Z", env=env)
    within = run(*flags, an_hour_ago.isoformat(timespec="seconds"), env=env)

    assert too_old.returncode == to_come.returncode == 2
    assert too_old.stderr.count(b"\n") == 1 and b"before the stream's retention of 24 hours" in too_old.stderr
    assert to_come.stderr.count(b"\n") == 1 and b"is in the future" in to_come.stderr
    assert b"no KCL jars" in within.stderr, within.stderr  # it got as far as starting the daemon


def test_an_application_with_leases_restarts_with_a_start_timestamp_out_of_the_retention_said_in_a_warning(
    local_aws: LocalAws, tmp_path: Path
) -> None:
    stream, application = unique("s"), unique("app")
    local_client("kinesis", local_aws.endpoint_url).create_stream(StreamName=stream, ShardCount=1)  # 24 hours
    dynamodb = local_client("dynamodb", local_aws.endpoint_url)
    dynamodb.create_table(  # the lease table as the KCL leaves it: a shard checkpointed, its lease unowned
        TableName=application,
        KeySchema=[{"AttributeName": "leaseKey", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "leaseKey", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    dynamodb.put_item(
        TableName=application, Item={"leaseKey": {"S": "shardId-000000000000"}, "checkpoint": {"S": "4963"}}
    )
    env = run_env(AWS_ENDPOINT_URL=local_aws.endpoint_url, DEFENDER_HUB_KCL_JARS=str(tmp_path))
    flags = ("--stream", stream, "--application", application, "--initial-position", "AT_TIMESTAMP", "--timestamp")

    too_old = run(*flags, str(int(time.time()) - 25 * 3600), env=env)  # remembered in a unit file since yesterday
    to_come = run(*flags, "2999-01-01T00:00:00Z", env=env)

    for done, problem in ((too_old, b"is before the stream's retention of 24 hours"), (to_come, b"is in the future")):
        warning, *_ = done.stderr.splitlines()
        assert warning.startswith(b"defender-hub: warning: --timestamp ") and problem in warning, done.stderr
        said = f"run goes on, as application '{application}' has leases: its shards start at their checkpoints"
        assert warning.endswith(said.encode()), warning
        assert b"no KCL jars" in done.stderr, done.stderr  # it got as far as starting the daemon
