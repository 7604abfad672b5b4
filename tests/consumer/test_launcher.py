"""The daemon's properties and the checks made before it starts."""

from __future__ import annotations

import pytest

from defender_hub.consumer.launcher import DaemonSettings, daemon_command, properties
from defender_hub.errors import ConfigError

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
    assert written["executableName"].endswith("-m defender_hub.consumer.processor")
    assert not {"kinesisEndpoint", "dynamoDBEndpoint", "metricsLevel"} & written.keys()


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
