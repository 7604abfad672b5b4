"""The DynamoDB ledger's sweeps: they query sparse indexes of what they look for and read what they act on; a table
the indexes can't serve is scanned instead, with the same answers."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import Any

import pytest

from defender_hub.checkpoints import DynamoDbLedger
from defender_hub.checkpoints.dynamodb_items import DUE_FOR_REFRESH, DUE_SHARDS, due_shard
from defender_hub.lifecycle import ARCHIVED, CheckCompletion, LedgerEntry
from tests.checkpoints.test_ledger import entry
from tests.helpers import local_client, unique

NOW_MS = 10_000
CUTOFF_MS = 1_000


class Reads:
    """What a client reads from now on, told by botocore's events on the real client: calls by operation, and items
    read (a query's or a scan's ScannedCount, a batch get's items)."""

    def __init__(self, client: Any) -> None:
        self.calls: Counter[str] = Counter()
        self.items = 0
        client.meta.events.register("after-call.dynamodb", self._count)

    def _count(self, parsed: dict[str, Any], model: Any, **_: Any) -> None:
        self.calls[model.name] += 1
        self.items += parsed.get("ScannedCount", 0)
        self.items += sum(len(items) for items in parsed.get("Responses", {}).values())


@pytest.fixture
def client(local_dynamodb: Any) -> Any:
    """A client of its own, so that the events a test registers on it stay in that test."""
    return local_client("dynamodb", local_dynamodb.meta.endpoint_url)


def a_ledger_of_all_kinds(ledger: DynamoDbLedger) -> None:
    """Findings due, recent, archived, not kept alive and claimed; checks owed an archival and done."""
    ledger.write(
        [
            *(entry(f"arn|due-{n}", 100 + n) for n in range(5)),
            *(entry(f"arn|recent-{n}", 5_000 + n) for n in range(40)),
            entry("arn|archived", 100, ARCHIVED),
            replace(entry("arn|not-kept-alive", 100), refresh=False),
            entry("arn|claimed", 50),
        ]
    )
    assert ledger.claim(entry("arn|claimed", 50), now_ms=NOW_MS, until_ms=NOW_MS + 1, sending_ms=NOW_MS)
    ledger.record_completions([CheckCompletion("arn|OWED", "t1", 5), CheckCompletion("arn|DONE", "t2", 6)])
    ledger.archival_done(CheckCompletion("arn|DONE", "t2", 6))


def sweep(ledger: DynamoDbLedger) -> tuple[list[LedgerEntry], list[CheckCompletion]]:
    """What each of the two sweeps would act on."""
    return ledger.due_for_refresh(CUTOFF_MS, NOW_MS, limit=100), ledger.owed_archivals()


def an_old_table(client: Any) -> str:
    """A table as the ledger made it before its indexes."""
    table = unique("ledger")
    client.create_table(
        TableName=table,
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "key", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "key", "AttributeType": "S"}],
    )
    return table


def test_the_sweeps_query_their_indexes_and_read_only_what_they_act_on(client: Any) -> None:
    ledger = DynamoDbLedger(unique("ledger"), client)
    a_ledger_of_all_kinds(ledger)
    reads = Reads(client)

    due, owed = sweep(ledger)

    assert [e.key for e in due] == [f"arn|due-{n}" for n in range(5)]
    assert owed == [CheckCompletion("arn|OWED", "t1", 5)]
    assert reads.calls["Scan"] == 0
    assert reads.calls["Query"] == DUE_SHARDS + 1
    # Listed and read again: the five due and the owed check, and the claimed finding the index holds but filters.
    assert reads.items == 2 * (5 + 1) + 1


def test_with_nothing_due_a_sweep_reads_nothing_however_large_the_ledger(client: Any) -> None:
    ledger = DynamoDbLedger(unique("ledger"), client)
    ledger.write([entry(f"arn|recent-{n}", 5_000 + n) for n in range(300)])
    reads = Reads(client)

    assert sweep(ledger) == ([], [])
    assert reads.items == 0


def test_a_table_made_before_the_indexes_is_scanned_and_answers_the_same(client: Any) -> None:
    indexed, old = DynamoDbLedger(unique("ledger"), client), DynamoDbLedger(an_old_table(client), client)
    a_ledger_of_all_kinds(indexed)
    a_ledger_of_all_kinds(old)
    reads = Reads(client)

    assert sweep(old) == sweep(indexed)
    assert reads.calls["Scan"] == 2  # the old table's two sweeps; the indexed table's none


def test_a_table_written_before_the_sweeps_keys_is_scanned_though_it_has_the_indexes(client: Any) -> None:
    ledger = DynamoDbLedger(unique("ledger"), client)
    ledger.write([entry("arn|written-before", 100)])
    ledger.record_completions([CheckCompletion("arn|OWED", "t1", 5)])
    # As an earlier defender-hub left them: items without the sweeps' keys, a marker that does not vouch for them.
    client.update_item(
        TableName=ledger.table, Key={"key": {"S": "arn|written-before"}}, UpdateExpression="REMOVE due_shard"
    )
    client.update_item(
        TableName=ledger.table, Key={"key": {"S": "check|arn|OWED"}}, UpdateExpression="REMOVE owed_archival"
    )
    client.update_item(
        TableName=ledger.table, Key={"key": {"S": "ledger|schema"}}, UpdateExpression="REMOVE sweep_keys"
    )
    reopened = DynamoDbLedger(ledger.table, client)
    reads = Reads(client)

    due, owed = sweep(reopened)

    assert [e.key for e in due] == ["arn|written-before"]
    assert owed == [CheckCompletion("arn|OWED", "t1", 5)]
    assert reads.calls["Scan"] == 2


def test_due_findings_of_every_shard_come_oldest_first_up_to_the_limit(client: Any) -> None:
    ledger = DynamoDbLedger(unique("ledger"), client)
    written = [entry(f"arn|{n}", 900 - n * 7 % 600) for n in range(80)]
    ledger.write(written)
    assert len({due_shard(e.key) for e in written}) == DUE_SHARDS  # the test spans every shard

    due = ledger.due_for_refresh(CUTOFF_MS, NOW_MS, limit=25)

    assert due == sorted(written, key=lambda e: e.updated_ms)[:25]


def test_what_the_index_lists_is_read_again_and_left_out_if_no_longer_due(client: Any) -> None:
    ledger = DynamoDbLedger(unique("ledger"), client)
    ledger.write([entry("arn|due", 100), entry("arn|refreshed", 5_000)])

    asked: list[dict[str, Any]] = []
    stale = {"key": {"S": "arn|refreshed"}, "updated_ms": {"N": "200"}, "claimed_until": {"N": "0"}}

    def lagging(parsed: dict[str, Any], **_: Any) -> None:
        """The index, eventually consistent, still lists a finding as it was before its refresh."""
        shard = asked[-1]["ExpressionAttributeValues"].get(":shard", {}).get("N")
        if asked[-1].get("IndexName") == DUE_FOR_REFRESH and shard == str(due_shard("arn|refreshed")):
            parsed["Items"] = sorted([*parsed["Items"], stale], key=lambda item: int(item["updated_ms"]["N"]))

    client.meta.events.register("provide-client-params.dynamodb.Query", lambda params, **_: asked.append(params))
    client.meta.events.register("after-call.dynamodb.Query", lagging)

    assert [e.key for e in ledger.due_for_refresh(CUTOFF_MS, NOW_MS, limit=10)] == ["arn|due"]


def test_an_archival_done_leaves_the_index_and_a_later_task_puts_it_back(client: Any) -> None:
    ledger = DynamoDbLedger(unique("ledger"), client)
    ledger.record_completions([CheckCompletion("arn|CHECK", "t1", 5)])
    ledger.archival_done(CheckCompletion("arn|CHECK", "t1", 5))
    assert ledger.owed_archivals() == []

    ledger.record_completions([CheckCompletion("arn|CHECK", "t2", 9)])

    assert ledger.owed_archivals() == [CheckCompletion("arn|CHECK", "t2", 9)]
