"""What goes wrong is one line on stderr naming what to set, never a traceback; exit status 1 for a failure at run
time, 2 for bad usage or configuration; `import` and `refresh` end by their --deadline, and fail when they park."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError, ReadTimeoutError, SSLError

from defender_hub.checkpoints import SqliteLedger
from defender_hub.commands.aws import aws_failure
from defender_hub.commands.common import EXIT_FAILURES, EXIT_USAGE
from defender_hub.local.securityhub import LocalSecurityHub
from tests.helpers import GOLDEN, Convert, cli, local_aws_env

CREDENTIAL_VARIABLES = (
    "AWS_ACCESS_KEY",
    "AWS_SECRET",
    "AWS_SESSION",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_CONTAINER_",
    "AWS_WEB_IDENTITY",
    "AWS_ROLE_",
)
"""The beginnings of the variables that give botocore credentials."""


def updated_ms(ledger: Path, key: str) -> int:
    """The UpdatedAt the ledger says Security Hub holds for the finding of `key`."""
    with contextlib.closing(SqliteLedger(ledger)) as opened:
        return opened.entries([key])[key].updated_ms


@pytest.fixture
def finding(convert: Convert, reference_events: list[dict[str, Any]]) -> bytes:
    """One valid finding, as a line `import` reads."""
    return json.dumps(convert(reference_events[2] | {"region": "us-east-1"})[0]).encode() + b"\n"


@pytest.mark.parametrize("limit", ["0", "-5"])
def test_an_outage_limit_under_a_second_is_refused_in_one_line(tmp_path: Path, limit: str) -> None:
    done = cli("import", "--outage-limit", limit, "--state-dir", str(tmp_path), stdin=b"", env=local_aws_env())

    assert done.returncode == EXIT_USAGE
    assert done.stderr.decode().splitlines() == [
        f"defender-hub: configuration error: outage limit {limit} is not a whole number of seconds, 1 or more"
    ]


def test_findings_without_credentials_says_what_to_set(tmp_path: Path, unreachable: str) -> None:
    empty = tmp_path / "empty"
    empty.write_text("")
    env = {name: value for name, value in local_aws_env().items() if not name.startswith(CREDENTIAL_VARIABLES)}
    env |= {
        "AWS_CONFIG_FILE": str(empty),
        "AWS_SHARED_CREDENTIALS_FILE": str(empty),
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_ENDPOINT_URL_SECURITYHUB": unreachable,
    }

    done = cli("findings", env=env)

    assert done.returncode == EXIT_USAGE
    assert done.stderr.decode().splitlines() == [
        "defender-hub: configuration error: no AWS credentials: set AWS_PROFILE, or AWS_ACCESS_KEY_ID and "
        "AWS_SECRET_ACCESS_KEY, or run where a role gives them"
    ]


def test_put_to_an_endpoint_nobody_serves_names_the_variable_that_set_it(tmp_path: Path, unreachable: str) -> None:
    endpoint = unreachable

    done = cli("put", "--stream", "s", stdin=b"{}\n", env=local_aws_env(AWS_ENDPOINT_URL_KINESIS=endpoint))

    assert done.returncode == EXIT_USAGE
    assert done.stderr.decode().splitlines() == [
        f"defender-hub: configuration error: cannot reach {endpoint}/: check AWS_ENDPOINT_URL_KINESIS, and that "
        "something serves it"
    ]


def test_an_error_answer_of_aws_is_one_line_and_a_run_time_failure(hub: LocalSecurityHub) -> None:
    hub.outage(60)

    done = cli("findings", env=local_aws_env(AWS_ENDPOINT_URL_SECURITYHUB=hub.endpoint_url, AWS_MAX_ATTEMPTS="1"))

    assert done.returncode == EXIT_FAILURES
    assert done.stderr.decode().splitlines() == [
        "defender-hub: AWS answered GetFindings with InternalException (500): Internal service error"
    ]


def test_a_refusal_of_the_credentials_is_one_line_and_configuration() -> None:
    refused = ClientError(
        {
            "Error": {"Code": "UnrecognizedClientException", "Message": "The security token included is invalid."},
            "ResponseMetadata": {"HTTPStatusCode": 403},
        },
        "GetFindings",
    )

    assert aws_failure(refused) == (
        EXIT_USAGE,
        "configuration error: AWS refused GetFindings (UnrecognizedClientException, 403): The security token "
        "included is invalid.; check the credentials (AWS_PROFILE, AWS_ACCESS_KEY_ID) and what they may do",
    )
    assert aws_failure(ValueError("not botocore's")) is None


def test_a_line_that_fails_at_run_time_is_exit_status_1_and_bad_configuration_2() -> None:
    events = (GOLDEN / "reference-events.jsonl").read_bytes()

    failed = cli("convert", stdin=events + b"{not json\n")
    misconfigured = cli("convert", "--default-account", "nope", stdin=events)

    assert failed.returncode == EXIT_FAILURES
    assert misconfigured.returncode == EXIT_USAGE


@pytest.mark.parametrize("deadline", ["0", "-1", "soon"])
def test_a_deadline_is_a_positive_number_of_seconds(deadline: str, tmp_path: Path) -> None:
    done = cli("import", "--dead-letter", str(tmp_path / "l.jsonl"), "--deadline", deadline, env=local_aws_env())

    assert done.returncode == EXIT_USAGE
    assert b"--deadline" in done.stderr


def test_import_against_an_unreachable_security_hub_ends_at_its_deadline(
    finding: bytes, tmp_path: Path, unreachable: str
) -> None:
    env = local_aws_env(AWS_ENDPOINT_URL_SECURITYHUB=unreachable)
    started = time.monotonic()

    done = cli("import", "--dead-letter", str(tmp_path / "l.jsonl"), "--deadline", "1", stdin=finding * 3, env=env)

    assert time.monotonic() - started < 15
    assert done.returncode == EXIT_FAILURES
    *_, said, summary = done.stderr.decode().splitlines()
    assert said == "defender-hub: the deadline of 1 s passed; the rest is undelivered"
    assert summary.startswith("accepted 0, dead-lettered 0, parked 0"), summary
    assert "Traceback" not in done.stderr.decode()


def imported_into_a_ledger(hub: LocalSecurityHub, finding: bytes, tmp_path: Path) -> tuple[Path, list[str]]:
    """`finding` imported into `hub` with a ledger; the ledger's file, and the flags that name it and the dead
    letters."""
    ledger = tmp_path / "ledger.sqlite3"
    state = ["--ledger", f"sqlite:///{ledger}", "--dead-letter", str(tmp_path / "l.jsonl")]
    imported = cli("import", *state, stdin=finding, env=local_aws_env(AWS_ENDPOINT_URL_SECURITYHUB=hub.endpoint_url))
    assert imported.returncode == 0, imported.stderr
    return ledger, state


def test_refresh_against_an_unreachable_security_hub_ends_at_its_deadline_and_keeps_what_is_due(
    hub: LocalSecurityHub, finding: bytes, tmp_path: Path, unreachable: str
) -> None:
    ledger, state = imported_into_a_ledger(hub, finding, tmp_path)
    key = "{ProductArn}|{Id}".format(**json.loads(finding))
    before = updated_ms(ledger, key)

    stopped = cli("refresh", *state, "--deadline", "1", env=local_aws_env(AWS_ENDPOINT_URL_SECURITYHUB=unreachable))

    assert stopped.returncode == EXIT_FAILURES
    assert stopped.stderr.decode().splitlines()[-1] == "defender-hub: the deadline of 1 s passed; the rest is still due"
    assert updated_ms(ledger, key) == before  # not refreshed: due again once the stopped sweep's claim lapses


def findings(one: bytes, count: int) -> bytes:
    """`count` findings like `one`, each with an Id of its own."""
    finding = json.loads(one)
    return b"".join(json.dumps(finding | {"Id": f"{finding['Id']}-{n}"}).encode() + b"\n" for n in range(count))


def test_import_that_parks_every_finding_is_a_failure_left_for_a_redrive(
    finding: bytes, tmp_path: Path, unreachable: str
) -> None:
    letters = tmp_path / "l.jsonl"
    env = local_aws_env(AWS_ENDPOINT_URL_SECURITYHUB=unreachable)

    done = cli("import", "--dead-letter", str(letters), "--outage-limit", "1", stdin=findings(finding, 3), env=env)

    assert done.returncode == EXIT_FAILURES
    *_, summary, said = done.stderr.decode().splitlines()
    assert summary.startswith("accepted 0, dead-lettered 0, parked 3"), summary
    assert said == (
        "defender-hub: 3 findings parked in the dead letters: their account and Region refused them or failed every "
        "request; `defender-hub redrive` sends them again"
    )
    assert len(letters.read_text().splitlines()) == 3


def test_refresh_that_parks_what_is_due_is_a_failure_left_for_the_next_sweep(
    hub: LocalSecurityHub, finding: bytes, tmp_path: Path, unreachable: str
) -> None:
    _, state = imported_into_a_ledger(hub, finding, tmp_path)

    down = local_aws_env(AWS_ENDPOINT_URL_SECURITYHUB=unreachable)
    parked = cli("refresh", *state, "--outage-limit", "1", env=down)

    assert parked.returncode == EXIT_FAILURES
    assert parked.stderr.decode().splitlines()[-1] == (
        "defender-hub: 1 findings left due: their account and Region refused them or failed every request; the next "
        "refresh sends them again"
    )


def test_import_of_input_that_sends_nothing_still_ends_at_its_deadline(tmp_path: Path, unreachable: str) -> None:
    command = [sys.executable, "-m", "defender_hub", "import", "--dead-letter", str(tmp_path / "l.jsonl")]
    env = local_aws_env(AWS_ENDPOINT_URL_SECURITYHUB=unreachable)
    started = time.monotonic()

    with subprocess.Popen(
        [*command, "--deadline", "1"], stdin=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    ) as importing:
        assert importing.stdin is not None and importing.stderr is not None
        with contextlib.suppress(BrokenPipeError):  # it stopped reading: the test's end of the pipe breaks
            while importing.poll() is None and time.monotonic() - started < 10:
                importing.stdin.write(b"{not json\n")  # dead-lettered: no request is sent to notice the deadline
                importing.stdin.flush()
                time.sleep(0.05)
            importing.stdin.close()
        said = importing.stderr.read().decode()

    assert importing.returncode == EXIT_FAILURES, said
    assert time.monotonic() - started < 8
    *_, reason, summary = said.splitlines()
    assert reason == "defender-hub: the deadline of 1 s passed; the rest is undelivered"
    assert summary.startswith("accepted 0, dead-lettered "), summary


@pytest.fixture
def hanging_up() -> Iterator[str]:
    """An endpoint on loopback that closes each connection without an answer."""
    with socket.create_server(("127.0.0.1", 0)) as server:

        def hang_up() -> None:
            with contextlib.suppress(OSError):  # the server closed at the end of the test
                while True:
                    connection, _ = server.accept()
                    connection.recv(65536)
                    connection.close()

        threading.Thread(target=hang_up, daemon=True).start()
        yield f"http://127.0.0.1:{server.getsockname()[1]}"


def test_a_connection_closed_without_an_answer_is_a_run_time_failure_not_configuration(hanging_up: str) -> None:
    done = cli("findings", env=local_aws_env(AWS_ENDPOINT_URL_SECURITYHUB=hanging_up, AWS_MAX_ATTEMPTS="1"))

    assert done.returncode == EXIT_FAILURES
    assert done.stderr.decode().splitlines() == [
        f"defender-hub: {hanging_up}/findings closed the connection without an answer: run again later"
    ]


def test_a_certificate_refused_is_configuration_not_a_run_time_failure() -> None:
    refused = SSLError(endpoint_url="https://127.0.0.1:8443/", error="CERTIFICATE_VERIFY_FAILED")

    status, line = aws_failure(refused) or (0, "")

    assert status == EXIT_USAGE
    assert line.startswith("configuration error: the TLS connection to https://127.0.0.1:8443/ failed (")
    assert line.endswith(
        "check the endpoint's URL, and AWS_CA_BUNDLE where a proxy or a private endpoint has its own certificate"
    )


def test_a_read_timeout_is_a_run_time_failure_not_configuration() -> None:
    timed_out = ReadTimeoutError(endpoint_url="https://user:secret@securityhub.us-east-1.amazonaws.com/?token=x")

    assert aws_failure(timed_out) == (
        EXIT_FAILURES,
        "https://securityhub.us-east-1.amazonaws.com/ did not answer in time (a read timeout): run again later",
    )
