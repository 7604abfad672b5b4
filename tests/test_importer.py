"""`defender-hub import` and `redrive` as processes against the local Security Hub (and SQS from moto's server)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from defender_hub.errors import SinkStopped
from defender_hub.importer import redrive
from defender_hub.local.aws import LocalAws
from defender_hub.local.securityhub import LocalSecurityHub
from defender_hub.mapping import MappingOptions
from defender_hub.sink import DeadLetter, DeliveryReport, JsonlDeadLetters, MappedFinding, RecordOrigin
from tests.helpers import Convert, cli, local_aws_env, local_client, unique


@pytest.fixture
def hub() -> Iterator[LocalSecurityHub]:
    with LocalSecurityHub() as running:
        yield running


@pytest.fixture
def template(convert: Convert, reference_events: list[dict[str, Any]]) -> dict[str, Any]:
    return convert(reference_events[2] | {"region": "us-east-1"})[0]


def aws_env(**endpoints: str) -> dict[str, str]:
    """The local environment, with an endpoint for each service named."""
    return local_aws_env(**{f"AWS_ENDPOINT_URL_{service.upper()}": url for service, url in endpoints.items()})


def lines(template: dict[str, Any], prefix: str, count: int, **changes: Any) -> bytes:
    return b"".join(json.dumps(template | {"Id": f"{prefix}-{i}"} | changes).encode() + b"\n" for i in range(count))


def test_import_reports_and_dead_letters_bad_lines(
    hub: LocalSecurityHub, template: dict[str, Any], tmp_path: Path
) -> None:
    letters = tmp_path / "letters.jsonl"
    stdin = lines(template, "a", 150) + b"{not json\n" + lines(template, "b", 1, Title="")

    done = cli("import", "--dead-letter", str(letters), stdin=stdin, env=aws_env(securityhub=hub.endpoint_url))

    assert done.returncode == 0, done.stderr.decode()
    assert b"accepted 150, dead-lettered 2" in done.stderr
    assert len(hub.findings()) == 150
    kept = [json.loads(line) for line in letters.read_text().splitlines()]
    assert [(k.get("origin"), "record" in k, "finding" in k) for k in kept] == [
        ({"line": 151}, True, False),
        ({"line": 152}, False, True),
    ]


@pytest.mark.parametrize("ledger", [False, True])
def test_a_finding_whose_id_or_product_arn_is_not_text_is_dead_lettered_with_its_line(
    hub: LocalSecurityHub, template: dict[str, Any], tmp_path: Path, ledger: bool
) -> None:
    letters = tmp_path / "letters.jsonl"
    odd = json.dumps(template | {"Id": {"not": "text"}}) + "\n" + json.dumps(template | {"ProductArn": [1]}) + "\n"
    stdin = lines(template, "a", 2) + odd.encode() + lines(template, "b", 1)
    flags = ["--ledger", f"sqlite:///{tmp_path / 'ledger.sqlite3'}"] if ledger else []

    done = cli("import", "--dead-letter", str(letters), *flags, stdin=stdin, env=aws_env(securityhub=hub.endpoint_url))

    assert done.returncode == 0, done.stderr.decode()
    assert b"accepted 3, dead-lettered 2" in done.stderr
    assert [json.loads(line)["origin"] for line in letters.read_text().splitlines()] == [{"line": 3}, {"line": 4}]


@pytest.mark.slow
def test_four_importers_share_the_quota_and_converge(
    hub: LocalSecurityHub, template: dict[str, Any], tmp_path: Path
) -> None:
    env = aws_env(securityhub=hub.endpoint_url)
    processes = []
    for index in range(4):
        process = subprocess.Popen(
            [sys.executable, "-m", "defender_hub", "import", "--dead-letter", str(tmp_path / f"l{index}.jsonl")],
            stdin=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        processes.append((process, lines(template, f"p{index}", 3000)))
    for process, stdin in processes:
        assert process.stdin is not None
        process.stdin.write(stdin)
        process.stdin.close()
    assert [process.wait(timeout=300) for process, _ in processes] == [0, 0, 0, 0]

    assert len(hub.findings()) == 12_000
    log = hub.requests("BatchImportFindings")
    settled = [r for r in log if r.at - log[0].at >= 5.0]
    throttled = sum(r.status == 429 for r in settled)
    assert len(settled) >= 40  # the quota was contended for well past the first seconds (120 requests in all)
    assert throttled <= 0.1 * len(settled), f"{throttled} of {len(settled)} requests throttled after 5 s"


def test_redrive_sends_the_dead_letters_again_after_a_fix(
    hub: LocalSecurityHub, template: dict[str, Any], tmp_path: Path
) -> None:
    letters = tmp_path / "letters.jsonl"
    env = aws_env(securityhub=hub.endpoint_url)
    hub.fail([f"r-{i}" for i in range(3)], "InvalidInput", "integration misconfigured", times=None)
    first = cli("import", "--dead-letter", str(letters), stdin=lines(template, "r", 10), env=env)
    assert b"accepted 7, dead-lettered 3" in first.stderr
    hub.reset()  # the fix

    ledger = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    again = cli("redrive", "--dead-letter", str(letters), "--ledger", ledger, stdin=b"", env=env)

    assert again.returncode == 0, again.stderr.decode()
    assert b"accepted 3, dead-lettered 0" in again.stderr
    assert {f["Id"] for f in hub.findings()} == {"r-0", "r-1", "r-2"}
    assert not letters.exists()
    assert list(tmp_path.glob("letters.jsonl.redrive-*")) == []


def test_redrive_maps_dead_lettered_records(hub: LocalSecurityHub, tmp_path: Path) -> None:
    event = (Path(__file__).parent / "golden" / "reference-events.jsonl").read_bytes().splitlines()[2]
    store = JsonlDeadLetters(tmp_path / "letters.jsonl")
    store.put([DeadLetter.for_record(event, "Security Hub was down", RecordOrigin("shard-0", "49"))])

    ledger = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    done = cli(
        "redrive",
        "--dead-letter",
        str(store.path),
        "--ledger",
        ledger,
        stdin=b"",
        env=aws_env(securityhub=hub.endpoint_url),
    )

    assert done.returncode == 0, done.stderr.decode()
    assert [f["Id"] for f in hub.findings()] == ["e92a782593c6f5b1fc7cb6a443dc1a12"]


def test_dead_letters_can_go_to_sqs_and_be_redriven_from_it(
    hub: LocalSecurityHub, template: dict[str, Any], local_aws: LocalAws, tmp_path: Path
) -> None:
    env = aws_env(securityhub=hub.endpoint_url, sqs=local_aws.endpoint_url)
    sqs = local_client("sqs", local_aws.endpoint_url)
    queue = sqs.create_queue(QueueName=unique("defender-hub-dead-letters"))["QueueUrl"]
    hub.fail(["q-1"], "InvalidInput", "refused", times=None)

    first = cli("import", "--dead-letter", queue, stdin=lines(template, "q", 3), env=env)
    assert b"accepted 2, dead-lettered 1" in first.stderr, first.stderr.decode()
    hub.reset()
    ledger = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    again = cli("redrive", "--dead-letter", queue, "--ledger", ledger, stdin=b"", env=env)

    assert b"accepted 1, dead-lettered 0" in again.stderr, again.stderr.decode()
    assert [f["Id"] for f in hub.findings()] == ["q-1"]
    attributes = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])["Attributes"]
    assert (attributes["ApproximateNumberOfMessages"], attributes["ApproximateNumberOfMessagesNotVisible"]) == (
        "0",
        "0",
    )


def test_missing_credentials_are_a_clear_error_not_a_retry(tmp_path: Path) -> None:
    env = {k: v for k, v in aws_env().items() if not k.startswith(("AWS_ACCESS_KEY", "AWS_SECRET", "AWS_SESSION"))}

    done = cli("import", "--dead-letter", str(tmp_path / "l.jsonl"), stdin=b"{}\n", env=env)

    assert done.returncode == 2
    assert b"configuration error: no AWS credentials" in done.stderr


@pytest.mark.parametrize("command", ["import", "redrive", "refresh"])
@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--assume-role", "arn:aws:iam::{account}:role/{RoleName}"], b"--assume-role"),
        (["--assume-role", "importer", "--external-id", "x"], b"--external-id"),
    ],
)
def test_a_role_or_external_id_no_lane_could_use_is_refused_at_start_in_one_line(
    command: str, flags: list[str], named: bytes, tmp_path: Path
) -> None:
    done = cli(command, "--dead-letter", str(tmp_path / "l.jsonl"), *flags, stdin=b"{}\n", env=aws_env())

    assert done.returncode == 2
    assert done.stderr.count(b"\n") == 1 and named in done.stderr, done.stderr


def test_import_with_a_ledger_sends_only_what_changes_security_hub(
    hub: LocalSecurityHub, template: dict[str, Any], tmp_path: Path
) -> None:
    ledger = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    env = aws_env(securityhub=hub.endpoint_url)
    stdin = lines(template, "l", 5)

    first = cli("import", "--dead-letter", str(tmp_path / "dl"), "--ledger", ledger, stdin=stdin, env=env)
    again = cli("import", "--dead-letter", str(tmp_path / "dl"), "--ledger", ledger, stdin=stdin, env=env)

    assert b"accepted 5, " in first.stderr, first.stderr.decode()
    assert b"accepted 0, " in again.stderr, again.stderr.decode()  # the ledger knows Security Hub has them
    assert len(hub.requests("BatchImportFindings")) == 1


class Unsent:
    """A sink that fails the test if anything is delivered to it."""

    def deliver(self, findings: Iterable[MappedFinding]) -> DeliveryReport:
        raise AssertionError(f"sent {list(findings)}")


def test_a_redrive_stopped_before_a_group_sends_none_of_it_and_keeps_it(tmp_path: Path) -> None:
    event = (Path(__file__).parent / "golden" / "reference-events.jsonl").read_bytes().splitlines()[2]
    store = JsonlDeadLetters(tmp_path / "letters.jsonl")
    store.put([DeadLetter.for_record(event, "Security Hub was down", RecordOrigin("shard-0", "49"))])
    stop = threading.Event()
    stop.set()  # a deadline passed while nothing was being sent: no request is there to notice it

    with pytest.raises(SinkStopped, match="dead letters were still unsent"):
        redrive(store, Unsent(), MappingOptions(), stop=stop)

    assert [letter.origin for letters, _ in store.drain() for letter in letters] == [RecordOrigin("shard-0", "49")]
