"""`defender-hub put` puts a file's events on a stream; `defender-hub findings` lists what Security Hub holds."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from defender_hub.local.aws import LocalAws
from defender_hub.local.securityhub import LocalSecurityHub
from defender_hub.mapping.common import PRODUCT_NAME_CONFIG, PRODUCT_NAME_HEALTH
from tests.helpers import GOLDEN, Convert, cli, local_aws_env, local_client, unique

CLI = (sys.executable, "-m", "defender_hub")


def stream_records(kinesis: Any, stream: str) -> list[bytes]:
    records = []
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        records += [record["Data"] for record in kinesis.get_records(ShardIterator=iterator)["Records"]]
    return records


def test_put_skips_blank_lines_and_names_a_line_that_is_no_event(local_aws: LocalAws, tmp_path: Path) -> None:
    kinesis = local_client("kinesis", local_aws.endpoint_url)
    stream = unique("put-test")
    kinesis.create_stream(StreamName=stream, ShardCount=2)
    kinesis.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig={"Delay": 0.2})
    events = (GOLDEN / "reference-events.jsonl").read_bytes().splitlines()
    file = tmp_path / "events.jsonl"
    file.write_bytes(b"\n".join([events[0], b"", events[1], b"{not json", b"  ", events[2], b"[1, 2]", b""]))

    done = cli("put", "--stream", stream, str(file), env=local_aws_env(AWS_ENDPOINT_URL_KINESIS=local_aws.endpoint_url))

    assert done.returncode == 1  # a failure at run time: the other lines were put
    assert done.stderr.decode().splitlines() == [
        f"{file}: line 4: not a JSON object; not put",
        f"{file}: line 7: not a JSON object; not put",
        f"defender-hub: put 3 events on {stream}; 2 lines not put",
    ]
    assert sorted(stream_records(kinesis, stream)) == sorted(events)


def test_put_on_a_stream_that_does_not_exist_says_so(local_aws: LocalAws) -> None:
    done = cli("put", "--stream", "nowhere", env=local_aws_env(AWS_ENDPOINT_URL_KINESIS=local_aws.endpoint_url))

    assert done.returncode == 2
    assert b"there is no stream 'nowhere'" in done.stderr


def test_findings_lists_the_active_ones_newest_first_and_archived_on_request(
    hub: LocalSecurityHub, reference_events: list[dict[str, Any]], convert: Convert
) -> None:
    detect = convert(reference_events[2])[0]
    older, newer, archived = (dict(detect, Id=f"finding-{n}") for n in range(3))
    older["UpdatedAt"], newer["UpdatedAt"] = "2026-11-01T00:00:00.000Z", "2026-11-02T00:00:00.000Z"
    archived |= {"RecordState": "ARCHIVED", "UpdatedAt": "2026-11-03T00:00:00.000Z"}
    local_client("securityhub", hub.endpoint_url).batch_import_findings(Findings=[older, newer, archived])
    env = local_aws_env(AWS_ENDPOINT_URL_SECURITYHUB=hub.endpoint_url)

    table = cli("findings", env=env)
    everything = cli("findings", "--archived", "--json", env=env)

    rows = table.stdout.decode().splitlines()
    assert [row.split()[:2] for row in rows[1:]] == [
        ["2026-11-02T00:00:00", "ACTIVE"],
        ["2026-11-01T00:00:00", "ACTIVE"],
    ]
    assert table.stderr == b"2 findings\n"
    assert [json.loads(line)["Id"] for line in everything.stdout.splitlines()] == [
        "finding-2",
        "finding-1",
        "finding-0",
    ]


def test_put_of_a_file_that_does_not_exist_says_so(local_aws: LocalAws, tmp_path: Path) -> None:
    kinesis = local_client("kinesis", local_aws.endpoint_url)
    stream = unique("put-missing")
    kinesis.create_stream(StreamName=stream, ShardCount=1)
    kinesis.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig={"Delay": 0.2})

    done = cli(
        "put", "--stream", stream, str(tmp_path / "nope.jsonl"),
        env=local_aws_env(AWS_ENDPOINT_URL_KINESIS=local_aws.endpoint_url),
    )  # fmt: skip

    assert done.returncode == 2
    assert done.stderr.decode() == f"defender-hub: configuration error: no such file: {tmp_path / 'nope.jsonl'}\n"


def test_findings_lists_each_source_with_its_workflow_and_compliance(
    hub: LocalSecurityHub, reference_events: list[dict[str, Any]], convert: Convert
) -> None:
    detect = convert(reference_events[2])[0]
    config = detect | {
        "Id": "config-finding",
        "ProductName": PRODUCT_NAME_CONFIG,
        "Title": "s3-bucket-versioning-enabled",
        "Compliance": {"Status": "PASSED"},
        "UpdatedAt": "2026-11-02T00:00:00.000Z",
    }
    health = detect | {"Id": "health-finding", "ProductName": PRODUCT_NAME_HEALTH, "UpdatedAt": "2026-11-03T00:00:00Z"}
    other = detect | {"Id": "someone-elses", "ProductName": "Inspector", "UpdatedAt": "2026-11-04T00:00:00Z"}
    securityhub = local_client("securityhub", hub.endpoint_url)
    securityhub.batch_import_findings(Findings=[detect, config, health, other])
    securityhub.batch_update_findings(
        FindingIdentifiers=[{"Id": config["Id"], "ProductArn": config["ProductArn"]}], Workflow={"Status": "RESOLVED"}
    )
    env = local_aws_env(AWS_ENDPOINT_URL_SECURITYHUB=hub.endpoint_url)

    def ids(*args: str) -> list[str]:
        done = cli("findings", "--json", *args, env=env)
        assert done.returncode == 0, done.stderr
        return [json.loads(line)["Id"] for line in done.stdout.splitlines()]

    everything = cli("findings", env=env)
    device_defender = cli("findings", "--source", "device-defender", env=env)

    assert ids() == [health["Id"], config["Id"], detect["Id"]]
    assert ids("--source", "config") == [config["Id"]]
    assert ids("--source", "health") == [health["Id"]]
    assert ids("--source", "device-defender") == [detect["Id"]]
    assert ids("--workflow", "RESOLVED") == [config["Id"]]
    assert ids("--workflow", "NEW", "--source", "config") == []
    header, *rows = everything.stdout.decode().splitlines()
    assert header.split()[:4] == ["updated", "state", "workflow", "compliance"]
    assert [row.split()[1:4] for row in rows] == [
        ["ACTIVE", "NEW", "-"],
        ["ACTIVE", "RESOLVED", "PASSED"],
        ["ACTIVE", "NEW", "-"],
    ]
    assert [row.split()[5] for row in rows] == ["Health", "Config", "Detect"]
    assert device_defender.stdout.decode().split()[:4] == ["updated", "state", "workflow", "severity"]


def test_findings_refuses_a_source_it_does_not_know(hub: LocalSecurityHub) -> None:
    done = cli("findings", "--source", "guardduty", env=local_aws_env(AWS_ENDPOINT_URL_SECURITYHUB=hub.endpoint_url))

    assert done.returncode == 2
    assert b"invalid choice: 'guardduty'" in done.stderr
