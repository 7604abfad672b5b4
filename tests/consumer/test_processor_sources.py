"""Device Defender, AWS Config and AWS Health events on one stream, through the real daemon into the local hub."""

from __future__ import annotations

import json
import re
from pathlib import Path

from defender_hub.convert import EventConverter
from defender_hub.local.aws import LocalAws
from defender_hub.local.securityhub import LocalSecurityHub
from defender_hub.mapping import MappingOptions
from tests.consumer.test_processor import Stream, kill_all, start_consumer, stop
from tests.helpers import (
    DAY_MS,
    audit_finding,
    audit_task,
    config_change,
    health_event,
    violation,
    wait_for,
)

T0 = 1_790_000_000_000  # 2026-09-21
CONFIGURATION_ITEM = json.dumps({
    "version": "0", "id": "item-1", "detail-type": "Config Configuration Item Change", "source": "aws.config",
    "account": "123456789012", "time": "2026-09-21T14:13:20Z", "region": "us-east-1", "resources": [],
    "detail": {"messageType": "ConfigurationItemChangeNotification", "configurationItem": {}},
}).encode()  # fmt: skip


def skipped_in(log: Path) -> int:
    """The events the consumer's batch lines say were skipped by their source's rules."""
    return sum(int(n) for n in re.findall(r"(\d+) skipped by their source's rules", log.read_text()))


def workflows(hub: LocalSecurityHub) -> dict[str, str]:
    """The S3 bucket of each stored Config finding → its Workflow.Status."""
    return {
        f["Resources"][0]["Id"].removeprefix("arn:aws:s3:::"): f["Workflow"]["Status"]
        for f in hub.findings()
        if f.get("ProductName") == "Config"
    }


def test_three_sources_on_one_stream_land_as_their_tables_say_and_a_replay_sends_nothing(
    local_aws: LocalAws, hub: LocalSecurityHub, tmp_path: Path
) -> None:
    stream = Stream(local_aws, shards=2)
    broken = json.loads(config_change("broken", "COMPLIANT", T0))
    del broken["detail"]["configRuleARN"]
    records = [
        (violation("in-alarm", T0, T0), "thing-1"),
        (audit_finding("task-1", T0, "A"), "audit"),
        (audit_task("task-1", T0, 1), "audit"),
        (config_change("flips", "NON_COMPLIANT", T0), "flips"),
        (config_change("flips", "COMPLIANT", T0 + DAY_MS, before="NON_COMPLIANT"), "flips"),
        (config_change("born-passing", "COMPLIANT", T0), "born-passing"),
        (config_change("control", "COMPLIANT", T0, rule="securityhub-s3-bucket-ssl"), "control"),
        (CONFIGURATION_ITEM, "item"),
        (health_event("AWS_GUARDDUTY_SECURITY_NOTIFICATION", "open", T0), "health"),
        (health_event("AWS_EC2_INSTANCE_STORE_DRIVE_PERFORMANCE_DEGRADED", "open", T0, service="EC2"), "health"),
        (json.dumps(broken).encode(), "broken"),
    ]
    placed = stream.put_keyed(records)
    dead_letters, log = tmp_path / "dead-letters.jsonl", tmp_path / "run.log"

    consumer = start_consumer(stream, local_aws, hub, dead_letters, log)
    try:
        wait_for("six findings", lambda: len(hub.findings()) == 6, 180)
        wait_for("both Config findings resolved", lambda: set(workflows(hub).values()) == {"RESOLVED"}, 60)
        wait_for("checkpoints at each shard's last record", lambda: stream.checkpoints() == dict(placed), 60)
    finally:
        stop(consumer, log)
    products = sorted(f["ProductName"] for f in hub.findings())
    assert products == ["Config", "Config", "Health", "IoT Device Defender - Audit", "IoT Device Defender - Audit",
                        "IoT Device Defender - Detect"]  # fmt: skip
    assert workflows(hub) == {"flips": "RESOLVED", "born-passing": "RESOLVED"}
    [health] = [f for f in hub.findings() if f["ProductName"] == "Health"]
    assert health["Title"] == "AWS Health - AWS_GUARDDUTY_SECURITY_NOTIFICATION"
    assert skipped_in(log) == 3  # the service-linked rule, the configuration item, the health event not about security
    [letter] = [json.loads(line) for line in dead_letters.read_text().splitlines()]
    assert "configRuleARN" in letter["reason"]
    assert (letter["origin"]["shard_id"], letter["origin"]["sequence_number"]) == placed[-1]
    imports, updates = len(hub.requests("BatchImportFindings")), len(hub.requests("BatchUpdateFindings"))

    replay = stream.fresh_application()  # the same stream from TRIM_HORIZON, over the same ledger
    consumer = start_consumer(replay, local_aws, hub, tmp_path / "replay-dead-letters.jsonl", tmp_path / "replay.log")
    try:
        wait_for("the replay's checkpoints", lambda: replay.checkpoints() == dict(placed), 120)
    finally:
        stop(consumer, tmp_path / "replay.log")
    assert (len(hub.requests("BatchImportFindings")), len(hub.requests("BatchUpdateFindings"))) == (imports, updates)


def test_a_sigkill_between_an_import_and_its_workflow_update_loses_neither(
    local_aws: LocalAws, hub: LocalSecurityHub, tmp_path: Path
) -> None:
    stream = Stream(local_aws, shards=1)
    event = config_change("killed", "COMPLIANT", T0)
    placed = stream.put_keyed([(event, "killed")])
    [finding] = EventConverter(MappingOptions()).findings(event)
    dead_letters, log = tmp_path / "dead-letters.jsonl", tmp_path / "run.log"
    hub.fail_updates([finding.id], times=None)  # the import goes in; its update fails until lifted

    consumer = start_consumer(stream, local_aws, hub, dead_letters, log)
    wait_for("the import and a try of its update", lambda: hub.requests("BatchUpdateFindings"), 120)
    kill_all(consumer)
    assert workflows(hub) == {"killed": "NEW"}
    hub.fail_updates([finding.id], times=0)

    consumer = start_consumer(stream, local_aws, hub, dead_letters, log)
    try:
        wait_for("the update", lambda: workflows(hub) == {"killed": "RESOLVED"}, 180)
        wait_for("the checkpoint at the record", lambda: stream.checkpoints() == dict(placed), 60)
    finally:
        stop(consumer, log)
    assert len(hub.findings()) == 1
    assert not dead_letters.exists() or dead_letters.read_text() == ""
