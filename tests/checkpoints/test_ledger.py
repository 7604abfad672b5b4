"""The ledger contract, on both back ends: entries round-trip, and no writer moves a finding or a check backwards."""

from __future__ import annotations

import itertools
import random
import sqlite3
import threading
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from defender_hub.checkpoints import DynamoDbLedger, Ledger, SqliteLedger
from defender_hub.errors import ConfigError
from defender_hub.lifecycle import ACTIVE, ARCHIVED, CheckCompletion, LedgerEntry
from tests.helpers import another_connection, local_client


def entry(
    key: str, updated_ms: int, state: str = ACTIVE, check: str = "", task_ms: int = 0, revision: int = 1
) -> LedgerEntry:
    return LedgerEntry(
        key=key, created_at="2026-01-01T00:00:00.000Z", version_ms=updated_ms, updated_ms=updated_ms,
        sent_ms=updated_ms, record_state=state, fingerprint=f"f{updated_ms}", check=check, task_ms=task_ms,
        finding=b'{"Id": "%s"}' % key.encode(), revision=revision,
    )  # fmt: skip


def test_entries_round_trip_and_unknown_keys_are_absent(ledger: Ledger) -> None:
    written = [entry("arn|a", 5, check="arn|CHECK", task_ms=4), entry("arn|b", 7, ARCHIVED)]
    assert ledger.write(written) == set()

    assert ledger.entries(["arn|a", "arn|b", "arn|missing"]) == {e.key: e for e in written}


def test_a_write_is_refused_unless_it_follows_the_revision_it_read(ledger: Ledger) -> None:
    ledger.write([entry("arn|a", 10)])

    assert ledger.write([entry("arn|a", 11)]) == {"arn|a"}  # a second "new" entry: another writer came first
    assert ledger.write([entry("arn|a", 12, revision=3)]) == {"arn|a"}  # it did not read revision 2
    assert ledger.write([entry("arn|a", 13, revision=2), entry("arn|b", 1)]) == set()
    assert ledger.write([entry("arn|a", 14, revision=2)]) == {"arn|a"}  # revision 2 is taken
    assert ledger.entries(["arn|a"])["arn|a"] == entry("arn|a", 13, revision=2)


def test_concurrent_writers_lose_no_update(ledger: Ledger) -> None:
    keys = [f"arn|finding-{n}" for n in range(5)]
    ledger.write([entry(key, 0) for key in keys])

    def writer(seed: int) -> None:
        connection = another_connection(ledger)  # each writer its own, as each worker has
        chance = random.Random(seed)
        for _ in range(20):  # each adds 1 to a finding's version: read, then write what follows what it read
            key = chance.choice(keys)
            while True:
                read = connection.entries([key])[key]
                if not connection.write([entry(key, read.version_ms + 1, revision=read.revision + 1)]):
                    break
        connection.close()

    writers = [threading.Thread(target=writer, args=(seed,)) for seed in range(4)]
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join()

    assert sum(e.version_ms for e in ledger.entries(keys).values()) == 80


def test_a_check_keeps_its_latest_completion_and_owes_its_archival_until_done(ledger: Ledger) -> None:
    ledger.record_completions([CheckCompletion("arn|CHECK", "task-2", 200)])
    ledger.record_completions([CheckCompletion("arn|CHECK", "task-1", 100), CheckCompletion("arn|OTHER", "t", 5)])
    assert ledger.completions(["arn|CHECK", "arn|OTHER", "arn|NONE"]) == {
        "arn|CHECK": CheckCompletion("arn|CHECK", "task-2", 200),
        "arn|OTHER": CheckCompletion("arn|OTHER", "t", 5),
    }

    ledger.archival_done(CheckCompletion("arn|CHECK", "task-1", 100))  # not the latest: changes nothing
    ledger.archival_done(CheckCompletion("arn|OTHER", "t", 5))

    assert sorted(c.check for c in ledger.owed_archivals()) == ["arn|CHECK"]
    assert ledger.completions(["arn|OTHER"])["arn|OTHER"].archived
    ledger.record_completions([CheckCompletion("arn|OTHER", "t2", 6)])
    assert sorted(c.check for c in ledger.owed_archivals()) == ["arn|CHECK", "arn|OTHER"]


def test_archivable_pages_through_the_active_findings_of_older_tasks_of_the_check(ledger: Ledger) -> None:
    ledger.write([
        *(entry(f"arn|old-{n}", 1, check="arn|CHECK", task_ms=1) for n in range(7)),
        entry("arn|current", 1, check="arn|CHECK", task_ms=5), entry("arn|gone", 1, ARCHIVED, "arn|CHECK", 1),
        entry("arn|other", 1, check="arn|OTHER", task_ms=1), entry("arn|detect", 1),
    ])  # fmt: skip
    pages, cursor = [], ""
    while True:
        page, cursor = ledger.archivable("arn|CHECK", 5, cursor, 3)
        pages.append(page)
        if not cursor:
            break

    assert all(len(page) <= 3 for page in pages)
    assert sorted(e.key for page in pages for e in page) == [f"arn|old-{n}" for n in range(7)]


def test_refresh_claims_keep_a_second_sweep_off_and_lapse(ledger: Ledger) -> None:
    ledger.write([entry("arn|old", 10), entry("arn|new", 500), entry("arn|gone", 10, ARCHIVED)])
    due = ledger.due_for_refresh(100, now_ms=1000, limit=10)
    assert [e.key for e in due] == ["arn|old"]

    claimed = ledger.claim(due[0], now_ms=1000, until_ms=2000, sending_ms=1000)
    assert claimed is not None
    assert (claimed.revision, claimed.sent_ms) == (2, 1000)  # the next send of any writer goes past 1000
    assert ledger.entries(["arn|old"])["arn|old"] == claimed
    assert another_connection(ledger).claim(claimed, now_ms=1500, until_ms=2500, sending_ms=1500) is None
    assert ledger.due_for_refresh(100, now_ms=1500, limit=10) == []
    assert [e.key for e in ledger.due_for_refresh(100, now_ms=2000, limit=10)] == ["arn|old"]  # the claim lapsed


def test_a_finding_its_source_does_not_keep_alive_is_never_due(ledger: Ledger) -> None:
    kept, passed = entry("arn|failing", 10), replace(entry("arn|passed", 10), refresh=False)
    ledger.write([kept, passed])

    assert ledger.entries(["arn|passed"])["arn|passed"].refresh is False
    assert [e.key for e in ledger.due_for_refresh(100, now_ms=1000, limit=10)] == ["arn|failing"]


def test_an_owed_workflow_is_kept_until_done_for_the_version_it_was_owed_for(ledger: Ledger) -> None:
    owed = replace(entry("arn|resolved", 10), workflow="RESOLVED")
    ledger.write([owed, entry("arn|plain", 10)])
    assert [e.key for e in ledger.owed_workflows(10)] == ["arn|resolved"]

    newer = replace(entry("arn|resolved", 20, revision=2), workflow="RESOLVED")
    ledger.write([newer])
    ledger.workflow_done([owed])  # done for version 10: the news of version 20 owes its own update still
    assert [e.version_ms for e in ledger.owed_workflows(10)] == [20]

    ledger.workflow_done([newer])
    assert ledger.owed_workflows(10) == []
    assert ledger.entries(["arn|resolved"])["arn|resolved"].workflow == ""


def test_owed_workflows_come_a_page_at_a_time(ledger: Ledger) -> None:
    ledger.write([replace(entry(f"arn|{n}", 10), workflow="RESOLVED") for n in range(5)])

    assert len(ledger.owed_workflows(3)) == 3


def _old_layout(path: Path) -> None:
    """A ledger file of the layout before sources had rules of their own, holding one finding."""
    with sqlite3.connect(path) as database:
        database.execute(
            "CREATE TABLE findings (key TEXT PRIMARY KEY, created_at TEXT NOT NULL, version_ms INTEGER NOT NULL, "
            "updated_ms INTEGER NOT NULL, sent_ms INTEGER NOT NULL, record_state TEXT NOT NULL, "
            "fingerprint TEXT NOT NULL, check_key TEXT NOT NULL, task_ms INTEGER NOT NULL, finding BLOB NOT NULL, "
            "revision INTEGER NOT NULL, claimed_until INTEGER NOT NULL DEFAULT 0)"
        )
        database.execute(
            "INSERT INTO findings VALUES ('arn|a', '2026-01-01T00:00:00.000Z', 10, 10, 10, 'ACTIVE', 'f', '', 0, "
            "x'7b7d', 1, 0)"
        )
    database.close()


def test_a_sqlite_ledger_of_the_layout_before_refresh_and_workflow_gains_them(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    _old_layout(path)

    ledger = SqliteLedger(path)

    found = ledger.entries(["arn|a"])["arn|a"]
    assert (found.refresh, found.workflow) == (True, "")
    assert [e.key for e in ledger.due_for_refresh(100, now_ms=1000, limit=10)] == ["arn|a"]
    ledger.close()


def test_shard_processes_opening_an_earlier_layout_at_once_each_open_it(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    _old_layout(path)
    start, failures = threading.Barrier(8), []

    def open_it() -> None:
        start.wait()
        try:
            SqliteLedger(path).close()
        except ConfigError as exc:  # "duplicate column name" when two added the same column
            failures.append(exc)

    openers = [threading.Thread(target=open_it) for _ in range(8)]
    for opener in openers:
        opener.start()
    for opener in openers:
        opener.join()

    assert failures == []


def test_a_claim_fails_when_the_finding_changed_since_it_was_read(ledger: Ledger) -> None:
    ledger.write([entry("arn|a", 10)])
    [seen] = ledger.due_for_refresh(100, now_ms=1000, limit=10)
    ledger.write([entry("arn|a", 20, revision=2)])

    assert ledger.claim(seen, now_ms=1000, until_ms=2000, sending_ms=1000) is None


def _dynamodb_calls(client: Any, operation: str) -> list[dict[str, Any]]:
    """Records the parameters of every `operation` call the client makes from now on."""
    calls: list[dict[str, Any]] = []
    client.meta.events.register(f"provide-client-params.dynamodb.{operation}", lambda params, **_: calls.append(params))
    return calls


def test_reads_that_decide_what_to_send_are_strongly_consistent(local_dynamodb: Any) -> None:
    client = local_client("dynamodb", local_dynamodb.meta.endpoint_url)
    ledger = DynamoDbLedger(f"ledger-{uuid.uuid4().hex[:8]}", client)
    ledger.write([entry("arn|a", 1, check="arn|CHECK", task_ms=1)])
    gets = _dynamodb_calls(client, "BatchGetItem")

    ledger.entries(["arn|a"])
    ledger.completions(["arn|CHECK"])

    assert gets
    assert all(table["ConsistentRead"] for call in gets for table in call["RequestItems"].values())


def test_unprocessed_keys_are_asked_again_after_a_pause(local_dynamodb: Any) -> None:
    client = local_client("dynamodb", local_dynamodb.meta.endpoint_url)
    ledger = DynamoDbLedger(f"ledger-{uuid.uuid4().hex[:8]}", client)
    ledger.write([entry(f"arn|{n}", 1) for n in range(10)])
    asked_at: list[float] = []

    def leave_half_unprocessed(parsed: dict[str, Any], **_: Any) -> None:
        asked_at.append(time.monotonic())
        if len(asked_at) > 2:
            return
        for table, items in parsed.get("Responses", {}).items():
            held, parsed["Responses"][table] = items[len(items) // 2 :], items[: len(items) // 2]
            keys = [{"key": item["key"]} for item in held]
            parsed.setdefault("UnprocessedKeys", {})[table] = {"Keys": keys, "ConsistentRead": True}

    client.meta.events.register("after-call.dynamodb.BatchGetItem", leave_half_unprocessed)

    found = ledger.entries([f"arn|{n}" for n in range(10)])

    assert len(found) == 10
    assert len(asked_at) == 3
    assert all(later - earlier >= 0.04 for earlier, later in itertools.pairwise(asked_at))


def test_a_table_still_being_created_is_waited_for(local_dynamodb: Any) -> None:
    client = local_client("dynamodb", local_dynamodb.meta.endpoint_url)
    table = f"ledger-{uuid.uuid4().hex[:8]}"
    DynamoDbLedger(table, client)
    described: list[str] = []

    def still_creating(parsed: dict[str, Any], **_: Any) -> None:
        described.append(parsed["Table"]["TableStatus"])
        if len(described) <= 2:
            parsed["Table"]["TableStatus"] = "CREATING"

    client.meta.events.register("after-call.dynamodb.DescribeTable", still_creating)

    DynamoDbLedger(table, client)

    assert len(described) >= 3


def test_owed_workflows_are_read_from_their_index_not_by_a_scan(local_dynamodb: Any) -> None:
    ledger = DynamoDbLedger(f"ledger-{uuid.uuid4().hex[:8]}", local_dynamodb)
    ledger.write([replace(entry("arn|owed", 10), workflow="RESOLVED"), *(entry(f"arn|{n}", 10) for n in range(20))])
    scans = _dynamodb_calls(local_dynamodb, "Scan")

    assert [e.key for e in ledger.owed_workflows(10)] == ["arn|owed"]
    assert scans == []


def test_a_table_made_before_the_owed_workflow_index_is_scanned_instead(local_dynamodb: Any) -> None:
    table = f"ledger-{uuid.uuid4().hex[:8]}"
    local_dynamodb.create_table(  # as the ledger made its table before the index
        TableName=table,
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "key", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "key", "AttributeType": "S"}],
    )
    ledger = DynamoDbLedger(table, local_dynamodb)
    ledger.write([replace(entry("arn|owed", 10), workflow="RESOLVED"), entry("arn|plain", 10)])

    assert [e.key for e in ledger.owed_workflows(10)] == ["arn|owed"]


def test_a_table_of_an_earlier_layout_is_refused_not_misread(local_dynamodb: Any) -> None:
    table = f"ledger-{uuid.uuid4().hex[:8]}"
    local_dynamodb.create_table(
        TableName=table,
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "key", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "key", "AttributeType": "S"}],
    )
    local_dynamodb.put_item(TableName=table, Item={"key": {"S": "arn|a"}, "updated_ms": {"N": "1"}})

    with pytest.raises(ConfigError, match="earlier defender-hub"):
        DynamoDbLedger(table, local_dynamodb)


def test_an_old_sqlite_ledger_is_refused_not_misread(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as database:
        database.execute("CREATE TABLE findings (key TEXT PRIMARY KEY, updated_ms INTEGER)")

    with pytest.raises(ConfigError, match="earlier defender-hub"):
        SqliteLedger(path)


def test_a_finding_key_too_long_for_a_dynamodb_key_is_kept_under_its_digest(ledger: Ledger) -> None:
    key = "arn:aws:securityhub:us-east-1:123456789012:product/123456789012/default|" + "\U0001f6f0" * 510  # 2,112 bytes
    written = entry(key, 10, check="arn|CHECK", task_ms=5)

    assert ledger.write([written]) == set()

    assert ledger.entries([key]) == {key: written}
    assert ledger.archivable("arn|CHECK", 6, "", 10) == ([written], "")
    claimed = ledger.claim(written, now_ms=1000, until_ms=2000, sending_ms=1000)
    assert claimed is not None
    assert ledger.write([entry(key, 11, revision=claimed.revision + 1)]) == set()


def test_a_table_another_worker_is_starting_on_is_not_taken_for_an_earlier_layout(local_dynamodb: Any) -> None:
    table = f"ledger-{uuid.uuid4().hex[:8]}"
    DynamoDbLedger(table, local_dynamodb).write([entry("arn|a", 1)])
    local_dynamodb.delete_item(TableName=table, Key={"key": {"S": "ledger|schema"}})  # as if not marked yet

    DynamoDbLedger(table, local_dynamodb)  # its first item is an entry of this layout: no error
