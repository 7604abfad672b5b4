"""The shared ledger: one DynamoDB table for every worker, written with conditions so no writer moves it backwards.

Every read that decides what to send or archive is strongly consistent. The indexes can't be read that way, so what
they list is read again, consistently, before it is acted on.

Each sweep queries a sparse index of what it looks for (what is due for refresh, the archivals and workflow updates
owed), so that it reads what it will act on, not the table: at ten million findings a scan reads some 10 GB a sweep.
A table made before an index scans instead (add the index to it to save the reads). So does a table written, in
part, by a defender-hub that did not write the keys of the sweeps' own indexes (its schema marker lacks
`sweep_keys`): its findings written then are in no index, and a query would miss them until they expire.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import json
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from defender_hub.backoff import exponential
from defender_hub.checkpoints.dynamodb_items import (
    ACTIVE_BY_CHECK,
    CHECK_PREFIX,
    DUE_FOR_REFRESH,
    DUE_SHARDS,
    INDEXES,
    KEY_ATTRIBUTES,
    OWED,
    OWED_ARCHIVAL,
    OWED_WORKFLOW,
    SWEEP_KEYS,
    completion_of,
    entry_of,
    index_definition,
    is_due,
    item_of,
    storage_key,
)
from defender_hub.codecs.asff_rules import WORKFLOW_STATUSES
from defender_hub.errors import ConfigError, LedgerError
from defender_hub.lifecycle import ACTIVE, CheckCompletion, LedgerEntry

__all__ = ["SCHEMA", "DynamoDbLedger", "dynamodb_client"]

SCHEMA = 2
"""The ledger's layout; a table of another (an earlier defender-hub's) is refused, not misread."""
_SCHEMA_KEY = "ledger|schema"
_GET_BATCH = 100  # BatchGetItem's limit
_WRITERS = 8  # conditional writes are one item a call: a few at once
_UNPROCESSED_ATTEMPTS = 10
_UNPROCESSED_PAUSE_SECONDS = 0.05  # doubled after each round DynamoDB leaves keys unprocessed
_TABLE_WAIT = {"Delay": 1, "MaxAttempts": 120}


def dynamodb_client() -> Any:
    """A DynamoDB client in AWS_REGION, at AWS_ENDPOINT_URL_DYNAMODB when that is set (botocore reads it)."""
    import boto3  # noqa: PLC0415 - only the DynamoDB ledger needs it

    return boto3.client("dynamodb", region_name=os.environ.get("AWS_REGION") or None)


class DynamoDbLedger:
    """The ledger in a DynamoDB table (created on first use, on demand capacity), shared by every worker."""

    def __init__(self, table: str, client: Any = None, *, create: bool = True) -> None:
        self.table = table
        self.client = client if client is not None else dynamodb_client()
        self._errors = self.client.exceptions
        self._indexes = set(INDEXES)
        self._sweep_keys = True
        if create:
            self._ensure_table()

    def _ensure_table(self) -> None:
        try:
            table = self.client.describe_table(TableName=self.table)["Table"]
            status = table["TableStatus"]
            self._indexes = {index["IndexName"] for index in table.get("GlobalSecondaryIndexes", [])}
        except self._errors.ResourceNotFoundException:
            status = self._create_table()
        except Exception as exc:
            raise ConfigError(f"can't reach the ledger table {self.table}: {exc}") from exc
        if status != "ACTIVE":  # a table still being created (by us or another worker) takes no writes yet
            try:
                self.client.get_waiter("table_exists").wait(TableName=self.table, WaiterConfig=_TABLE_WAIT)
            except Exception as exc:
                raise ConfigError(f"the ledger table {self.table} did not become ACTIVE: {exc}") from exc
        try:
            self._check_schema()
        except ConfigError:
            raise
        except Exception as exc:
            raise ConfigError(f"can't read the ledger table {self.table}: {exc}") from exc

    def _check_schema(self) -> None:
        """Refuses a table of another layout; marks an empty one as this layout's; learns whether its items carry the
        keys of the sweeps' own indexes."""
        key = {"key": {"S": _SCHEMA_KEY}}
        marker = self.client.get_item(TableName=self.table, Key=key, ConsistentRead=True).get("Item")
        if marker is None:
            sample = self.client.scan(TableName=self.table, Limit=1, ConsistentRead=True)["Items"]
            if sample and not {"revision", "archived", "schema"} & sample[0].keys():  # not written by this layout
                raise ConfigError(f"the ledger table {self.table} is of an earlier defender-hub: use a new table")
            marker = self._mark(key)
        if int(marker["schema"]["N"]) != SCHEMA:
            raise ConfigError(f"the ledger table {self.table} has layout {marker['schema']['N']}, not {SCHEMA}")
        self._sweep_keys = marker.get(SWEEP_KEYS, {}).get("BOOL", False)

    def _mark(self, key: dict[str, Any]) -> dict[str, Any]:
        """Marks the table as this layout's, every item of it written with the sweeps' keys; returns the marker kept."""
        marker = {**key, "schema": {"N": str(SCHEMA)}, SWEEP_KEYS: {"BOOL": True}}
        try:
            self.client.put_item(
                TableName=self.table,
                Item=marker,
                ConditionExpression="attribute_not_exists(#key)",
                ExpressionAttributeNames={"#key": "key"},
            )
        except self._errors.ConditionalCheckFailedException:  # another worker marked it first: its marker stands
            marker = self.client.get_item(TableName=self.table, Key=key, ConsistentRead=True)["Item"]
        return marker

    def _create_table(self) -> str:
        try:
            self.client.create_table(
                TableName=self.table,
                BillingMode="PAY_PER_REQUEST",
                KeySchema=[{"AttributeName": "key", "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": a, "AttributeType": t} for a, t in KEY_ATTRIBUTES.items()],
                GlobalSecondaryIndexes=[index_definition(name) for name in INDEXES],
            )
        except self._errors.ResourceInUseException:
            pass  # another worker created it first
        except Exception as exc:
            raise ConfigError(f"can't create the ledger table {self.table}: {exc}") from exc
        return "CREATING"

    def entries(self, keys: Sequence[str]) -> dict[str, LedgerEntry]:
        """The entries of those `keys` that the ledger has (strongly consistent)."""
        return {entry.key: entry for entry in map(entry_of, self._get_many(list(dict.fromkeys(keys))))}

    def completions(self, checks: Sequence[str]) -> dict[str, CheckCompletion]:
        """The last completion of those `checks` that the ledger has (strongly consistent)."""
        items = self._get_many([CHECK_PREFIX + check for check in dict.fromkeys(checks)])
        return {completion.check: completion for completion in map(completion_of, items)}

    def _get_many(self, keys: list[str]) -> Iterator[dict[str, Any]]:
        for start in range(0, len(keys), _GET_BATCH):
            batch = [{"key": {"S": storage_key(k)}} for k in keys[start : start + _GET_BATCH]]
            wanted: dict[str, Any] = {self.table: {"Keys": batch, "ConsistentRead": True}}
            for attempt in range(_UNPROCESSED_ATTEMPTS):
                if attempt:  # DynamoDB left some keys unprocessed: it is busy, so give it a moment
                    time.sleep(exponential(attempt, _UNPROCESSED_PAUSE_SECONDS))
                answer = self.client.batch_get_item(RequestItems=wanted)
                yield from answer.get("Responses", {}).get(self.table, [])
                wanted = answer.get("UnprocessedKeys") or {}
                if not wanted:
                    break
            else:
                raise LedgerError(f"DynamoDB left keys unprocessed {_UNPROCESSED_ATTEMPTS} times in a row")

    def write(self, entries: Sequence[LedgerEntry]) -> set[str]:
        """Writes each entry whose stored revision is the one before it; returns the keys another writer changed."""
        with ThreadPoolExecutor(_WRITERS) as pool:
            return {key for key in pool.map(self._put_if_unchanged, entries) if key is not None}

    def _put_if_unchanged(self, entry: LedgerEntry) -> str | None:
        condition: dict[str, Any] = (
            {"ConditionExpression": "attribute_not_exists(#key)", "ExpressionAttributeNames": {"#key": "key"}}
            if entry.revision == 1
            else {
                "ConditionExpression": "revision = :read",
                "ExpressionAttributeValues": {":read": {"N": str(entry.revision - 1)}},
            }
        )
        try:
            self.client.put_item(TableName=self.table, Item=item_of(entry), **condition)
        except self._errors.ConditionalCheckFailedException:
            return entry.key
        return None

    def record_completions(self, completions: Iterable[CheckCompletion]) -> None:
        """Records completed checks, their archival owed; one not newer than the one kept is ignored."""
        for completion in completions:
            try:
                self.client.put_item(
                    TableName=self.table,
                    Item={
                        "key": {"S": CHECK_PREFIX + completion.check},
                        "task_id": {"S": completion.task_id},
                        "task_ms": {"N": str(completion.task_ms)},
                        "archived": {"BOOL": False},
                        "owed_archival": OWED,  # in the owed-archival index until the archival is done
                    },
                    ConditionExpression="attribute_not_exists(#key) OR task_ms < :task",
                    ExpressionAttributeNames={"#key": "key"},
                    ExpressionAttributeValues={":task": {"N": str(completion.task_ms)}},
                )
            except self._errors.ConditionalCheckFailedException:
                continue  # a later task is there

    def archival_done(self, completion: CheckCompletion) -> None:
        """Marks the archival of `completion` done, unless a later task completed the check meanwhile."""
        # A failed condition: a later task completed the check, and its own archival is owed now.
        with contextlib.suppress(self._errors.ConditionalCheckFailedException):
            self.client.update_item(
                TableName=self.table,
                Key={"key": {"S": CHECK_PREFIX + completion.check}},
                UpdateExpression="SET archived = :done REMOVE owed_archival",
                ConditionExpression="task_ms = :task",
                ExpressionAttributeValues={":done": {"BOOL": True}, ":task": {"N": str(completion.task_ms)}},
            )

    def _queryable(self, index: str) -> bool:
        """Whether `index` lists all its sweep looks for: the table has it, and every item carries the sweeps' keys."""
        return index in self._indexes and self._sweep_keys

    def owed_archivals(self) -> list[CheckCompletion]:
        """Every completion whose archival is not done: what the index lists, read again consistently."""
        if not self._queryable(OWED_ARCHIVAL):
            return self._scan_owed_archivals()
        pages = self.client.get_paginator("query").paginate(
            TableName=self.table,
            IndexName=OWED_ARCHIVAL,
            KeyConditionExpression="owed_archival = :owed",
            ExpressionAttributeValues={":owed": OWED},
        )
        listed = [item["key"]["S"].removeprefix(CHECK_PREFIX) for page in pages for item in page["Items"]]
        found = self.completions(listed)
        return [found[check] for check in listed if check in found and not found[check].archived]

    def _scan_owed_archivals(self) -> list[CheckCompletion]:
        """`owed_archivals` on a table its index can't serve: a scan of the whole table."""
        pages = self.client.get_paginator("scan").paginate(
            TableName=self.table,
            ConsistentRead=True,
            FilterExpression="archived = :owed",
            ExpressionAttributeValues={":owed": {"BOOL": False}},
        )
        return [completion_of(item) for page in pages for item in page["Items"]]

    def archivable(self, check: str, before_task_ms: int, cursor: str, limit: int) -> tuple[list[LedgerEntry], str]:
        """A page of ACTIVE audit findings of `check` from tasks before `before_task_ms`; the index lists the
        check's ACTIVE findings, and each is read again, consistently, before it counts."""
        query: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": ACTIVE_BY_CHECK,
            "KeyConditionExpression": "active_check = :check",
            "ExpressionAttributeValues": {":check": {"S": check}},
            "Limit": limit,
        }
        if cursor:
            query["ExclusiveStartKey"] = json.loads(cursor)
        answer = self.client.query(**query)
        listed = [item["key"]["S"] for item in answer["Items"]]
        found = {storage_key(entry.key): entry for entry in self.entries(listed).values()}
        page = [
            found[key]
            for key in listed
            if key in found and found[key].record_state == ACTIVE and found[key].task_ms < before_task_ms
        ]
        following = answer.get("LastEvaluatedKey")
        return page, json.dumps(following) if following else ""

    def due_for_refresh(self, updated_before_ms: int, now_ms: int, limit: int) -> list[LedgerEntry]:
        """Up to `limit` unclaimed ACTIVE findings kept alive, last updated before `updated_before_ms`, oldest first:
        what the index lists, read again consistently."""
        if not self._queryable(DUE_FOR_REFRESH):
            return self._scan_due(updated_before_ms, now_ms, limit)
        # Each shard lists its findings oldest first; merged, they are the oldest of all, read only as far as needed.
        shards = (self._listed_due(shard, updated_before_ms, now_ms, limit) for shard in range(DUE_SHARDS))
        listed = (key for _, key in heapq.merge(*shards))
        due: list[LedgerEntry] = []
        while len(due) < limit and (keys := list(itertools.islice(listed, min(limit - len(due), _GET_BATCH)))):
            found = {item["key"]["S"]: item for item in self._get_many(keys)}
            due += (entry_of(found[k]) for k in keys if k in found and is_due(found[k], updated_before_ms, now_ms))
        return due

    def _listed_due(self, shard: int, updated_before_ms: int, now_ms: int, page: int) -> Iterator[tuple[int, str]]:
        """The unclaimed findings the index lists as due in `shard`, oldest first: (updated_ms, table key)."""
        pages = self.client.get_paginator("query").paginate(
            TableName=self.table,
            IndexName=DUE_FOR_REFRESH,
            KeyConditionExpression="due_shard = :shard AND updated_ms < :before",
            FilterExpression="claimed_until <= :now",
            ExpressionAttributeValues={
                ":shard": {"N": str(shard)},
                ":before": {"N": str(updated_before_ms)},
                ":now": {"N": str(now_ms)},
            },
            PaginationConfig={"PageSize": page},
        )
        for answer in pages:
            yield from ((int(item["updated_ms"]["N"]), item["key"]["S"]) for item in answer["Items"])

    def _scan_due(self, updated_before_ms: int, now_ms: int, limit: int) -> list[LedgerEntry]:
        """`due_for_refresh` on a table its index can't serve: a scan of the whole table."""
        pages = self.client.get_paginator("scan").paginate(
            TableName=self.table,
            FilterExpression=(
                "record_state = :active AND updated_ms < :before AND claimed_until <= :now "
                "AND (attribute_not_exists(refresh) OR refresh = :kept)"
            ),
            ExpressionAttributeValues={
                ":active": {"S": ACTIVE},
                ":before": {"N": str(updated_before_ms)},
                ":now": {"N": str(now_ms)},
                ":kept": {"BOOL": True},
            },
        )
        due: list[LedgerEntry] = []
        for page in pages:
            due += (entry_of(item) for item in page["Items"])
            if len(due) >= limit:
                break
        return sorted(due, key=lambda e: e.updated_ms)[:limit]

    def owed_workflows(self, limit: int) -> list[LedgerEntry]:
        """Up to `limit` entries owed a Workflow.Status: what the index lists, read again consistently."""
        if OWED_WORKFLOW not in self._indexes:
            return self._scan_owed_workflows(limit)
        listed: list[str] = []
        for status in sorted(WORKFLOW_STATUSES):
            pages = self.client.get_paginator("query").paginate(
                TableName=self.table,
                IndexName=OWED_WORKFLOW,
                KeyConditionExpression="workflow = :status",
                ExpressionAttributeValues={":status": {"S": status}},
            )
            for page in pages:
                listed += (item["key"]["S"] for item in page["Items"])
                if len(listed) >= limit:
                    break
        found = {storage_key(entry.key): entry for entry in self.entries(listed[:limit]).values()}
        return [found[key] for key in listed[:limit] if key in found and found[key].workflow]

    def _scan_owed_workflows(self, limit: int) -> list[LedgerEntry]:
        """`owed_workflows` on a table made before its index: a scan of the whole table."""
        pages = self.client.get_paginator("scan").paginate(
            TableName=self.table, ConsistentRead=True, FilterExpression="attribute_exists(workflow)"
        )
        owed: list[LedgerEntry] = []
        for page in pages:
            owed += (entry_of(item) for item in page["Items"])
            if len(owed) >= limit:
                break
        return owed[:limit]

    def workflow_done(self, done: Sequence[LedgerEntry]) -> None:
        """Clears the owed Workflow.Status of each entry in `done` whose version is still the one stored."""
        for entry in done:
            # A failed condition: newer news came, and what it owes stands.
            with contextlib.suppress(self._errors.ConditionalCheckFailedException):
                self.client.update_item(
                    TableName=self.table,
                    Key={"key": {"S": storage_key(entry.key)}},
                    UpdateExpression="REMOVE workflow",
                    ConditionExpression="workflow = :owed AND version_ms = :version",
                    ExpressionAttributeValues={
                        ":owed": {"S": entry.workflow},
                        ":version": {"N": str(entry.version_ms)},
                    },
                )

    def claim(self, entry: LedgerEntry, now_ms: int, until_ms: int, sending_ms: int) -> LedgerEntry | None:
        """Claims `entry` for one sweep until `until_ms`; None when another sweep has it or it changed since read."""
        claimed = entry.claimed(sending_ms)
        try:
            self.client.update_item(
                TableName=self.table,
                Key={"key": {"S": storage_key(entry.key)}},
                UpdateExpression="SET claimed_until = :until, sent_ms = :sent, revision = :claimed",
                ConditionExpression="revision = :read AND claimed_until <= :now",
                ExpressionAttributeValues={
                    ":until": {"N": str(until_ms)},
                    ":sent": {"N": str(claimed.sent_ms)},
                    ":claimed": {"N": str(claimed.revision)},
                    ":read": {"N": str(entry.revision)},
                    ":now": {"N": str(now_ms)},
                },
            )
        except self._errors.ConditionalCheckFailedException:
            return None
        return claimed

    def close(self) -> None:
        """Nothing to release: the client's connections close with it."""
