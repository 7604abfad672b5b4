"""The shared ledger: one DynamoDB table for every worker, written with conditions so no writer moves it backwards.

Every read that decides what to send or archive is strongly consistent. The index of ACTIVE findings by check can't
be read that way, so what it lists is read again, consistently, before it is acted on.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from defender_hub.backoff import exponential
from defender_hub.codecs.asff_rules import WORKFLOW_STATUSES
from defender_hub.errors import ConfigError, LedgerError
from defender_hub.lifecycle import ACTIVE, CheckCompletion, LedgerEntry

__all__ = [
    "ACTIVE_BY_CHECK",
    "MAX_KEY_BYTES",
    "OWED_WORKFLOW",
    "SCHEMA",
    "DynamoDbLedger",
    "dynamodb_client",
    "storage_key",
]

ACTIVE_BY_CHECK = "active-by-check"
"""A sparse index: only ACTIVE audit findings carry its key, so an archival reads what it may archive and no more."""
OWED_WORKFLOW = "owed-workflow"
"""A sparse index: only findings owed a Workflow.Status carry its key, so the sweeps that run every minute read what
is owed, not the table. A table made before it scans instead (add the index to it to save the reads)."""
SCHEMA = 2
"""The ledger's layout; a table of another (an earlier defender-hub's) is refused, not misread."""
_SCHEMA_KEY = "ledger|schema"
_CHECK_PREFIX = "check|"
MAX_KEY_BYTES = 1024
"""Longer finding keys are stored under a digest: DynamoDB refuses a partition key over 2,048 bytes, and a 512-character
Id of four-byte characters with its ProductArn is more than that."""
_GET_BATCH = 100  # BatchGetItem's limit
_WRITERS = 8  # conditional writes are one item a call: a few at once
_UNPROCESSED_ATTEMPTS = 10
_UNPROCESSED_PAUSE_SECONDS = 0.05  # doubled after each round DynamoDB leaves keys unprocessed
_TABLE_WAIT = {"Delay": 1, "MaxAttempts": 120}


def dynamodb_client() -> Any:
    """A DynamoDB client in AWS_REGION, at AWS_ENDPOINT_URL_DYNAMODB when that is set (botocore reads it)."""
    import boto3  # noqa: PLC0415 - only the DynamoDB ledger needs it

    return boto3.client("dynamodb", region_name=os.environ.get("AWS_REGION") or None)


def storage_key(key: str) -> str:
    """The table key of a finding key: itself, or a stable digest of it when it is too long for DynamoDB."""
    if len(key.encode()) <= MAX_KEY_BYTES:
        return key
    return "sha256|" + hashlib.sha256(key.encode()).hexdigest()


def _entry(item: dict[str, Any]) -> LedgerEntry:
    updated_ms = int(item["updated_ms"]["N"])
    return LedgerEntry(
        key=item.get("finding_key", item["key"])["S"],
        created_at=item["created_at"]["S"],
        version_ms=int(item["version_ms"]["N"]),
        updated_ms=updated_ms,
        sent_ms=int(item["sent_ms"]["N"]),
        record_state=item["record_state"]["S"],
        fingerprint=item["fingerprint"]["S"],
        check=item.get("check", {}).get("S", ""),
        task_ms=int(item["task_ms"]["N"]),
        finding=bytes(item["finding"]["B"]),
        revision=int(item["revision"]["N"]),
        # Both absent from items written before they existed: those were refreshed always, and owed nothing.
        refresh=item.get("refresh", {}).get("BOOL", True),
        workflow=item.get("workflow", {}).get("S", ""),
    )


def _item(entry: LedgerEntry) -> dict[str, Any]:
    stored = storage_key(entry.key)
    item: dict[str, Any] = {
        "key": {"S": stored},
        "created_at": {"S": entry.created_at},
        "version_ms": {"N": str(entry.version_ms)},
        "updated_ms": {"N": str(entry.updated_ms)},
        "sent_ms": {"N": str(entry.sent_ms)},
        "record_state": {"S": entry.record_state},
        "fingerprint": {"S": entry.fingerprint},
        "task_ms": {"N": str(entry.task_ms)},
        "finding": {"B": entry.finding},
        "revision": {"N": str(entry.revision)},
        "claimed_until": {"N": "0"},
    }
    if stored != entry.key:
        item["finding_key"] = {"S": entry.key}
    if not entry.refresh:
        item["refresh"] = {"BOOL": False}
    if entry.workflow:  # present only while owed, so that what a sweep looks for is few items
        item["workflow"] = {"S": entry.workflow}
    if entry.check:
        item["check"] = {"S": entry.check}
        if entry.record_state == ACTIVE:  # what an archival may take, and nothing else, is in the index
            item["active_check"] = {"S": entry.check}
    return item


def _completion(item: dict[str, Any]) -> CheckCompletion:
    check = item["key"]["S"].removeprefix(_CHECK_PREFIX)
    return CheckCompletion(check, item["task_id"]["S"], int(item["task_ms"]["N"]), item["archived"]["BOOL"])


class DynamoDbLedger:
    """The ledger in a DynamoDB table (created on first use, on demand capacity), shared by every worker."""

    def __init__(self, table: str, client: Any = None, *, create: bool = True) -> None:
        self.table = table
        self.client = client if client is not None else dynamodb_client()
        self._errors = self.client.exceptions
        self._owed_index = True
        if create:
            self._ensure_table()

    def _ensure_table(self) -> None:
        try:
            table = self.client.describe_table(TableName=self.table)["Table"]
            status = table["TableStatus"]
            indexes = {index["IndexName"] for index in table.get("GlobalSecondaryIndexes", [])}
            self._owed_index = OWED_WORKFLOW in indexes
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
        """Refuses a table of another layout; marks an empty one as this layout's."""
        key = {"key": {"S": _SCHEMA_KEY}}
        marker = self.client.get_item(TableName=self.table, Key=key, ConsistentRead=True).get("Item")
        if marker is None:
            sample = self.client.scan(TableName=self.table, Limit=1, ConsistentRead=True)["Items"]
            if sample and not {"revision", "archived", "schema"} & sample[0].keys():  # not written by this layout
                raise ConfigError(f"the ledger table {self.table} is of an earlier defender-hub: use a new table")
        if marker is not None and int(marker["schema"]["N"]) != SCHEMA:
            raise ConfigError(f"the ledger table {self.table} has layout {marker['schema']['N']}, not {SCHEMA}")
        if marker is None:
            with contextlib.suppress(self._errors.ConditionalCheckFailedException):  # another worker marked it
                self.client.put_item(
                    TableName=self.table,
                    Item={**key, "schema": {"N": str(SCHEMA)}},
                    ConditionExpression="attribute_not_exists(#key)",
                    ExpressionAttributeNames={"#key": "key"},
                )

    def _create_table(self) -> str:
        try:
            self.client.create_table(
                TableName=self.table,
                BillingMode="PAY_PER_REQUEST",
                KeySchema=[{"AttributeName": "key", "KeyType": "HASH"}],
                AttributeDefinitions=[
                    {"AttributeName": "key", "AttributeType": "S"},
                    {"AttributeName": "active_check", "AttributeType": "S"},
                    {"AttributeName": "workflow", "AttributeType": "S"},
                ],
                GlobalSecondaryIndexes=[
                    {
                        "IndexName": ACTIVE_BY_CHECK,
                        "KeySchema": [{"AttributeName": "active_check", "KeyType": "HASH"}],
                        "Projection": {"ProjectionType": "KEYS_ONLY"},
                    },
                    {
                        "IndexName": OWED_WORKFLOW,
                        "KeySchema": [
                            {"AttributeName": "workflow", "KeyType": "HASH"},
                            {"AttributeName": "key", "KeyType": "RANGE"},
                        ],
                        "Projection": {"ProjectionType": "KEYS_ONLY"},
                    },
                ],
            )
        except self._errors.ResourceInUseException:
            pass  # another worker created it first
        except Exception as exc:
            raise ConfigError(f"can't create the ledger table {self.table}: {exc}") from exc
        return "CREATING"

    def entries(self, keys: Sequence[str]) -> dict[str, LedgerEntry]:
        """The entries of those `keys` that the ledger has (strongly consistent)."""
        return {entry.key: entry for entry in map(_entry, self._get_many(list(dict.fromkeys(keys))))}

    def completions(self, checks: Sequence[str]) -> dict[str, CheckCompletion]:
        """The last completion of those `checks` that the ledger has (strongly consistent)."""
        items = self._get_many([_CHECK_PREFIX + check for check in dict.fromkeys(checks)])
        return {completion.check: completion for completion in map(_completion, items)}

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
            self.client.put_item(TableName=self.table, Item=_item(entry), **condition)
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
                        "key": {"S": _CHECK_PREFIX + completion.check},
                        "task_id": {"S": completion.task_id},
                        "task_ms": {"N": str(completion.task_ms)},
                        "archived": {"BOOL": False},
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
                Key={"key": {"S": _CHECK_PREFIX + completion.check}},
                UpdateExpression="SET archived = :done",
                ConditionExpression="task_ms = :task",
                ExpressionAttributeValues={":done": {"BOOL": True}, ":task": {"N": str(completion.task_ms)}},
            )

    def owed_archivals(self) -> list[CheckCompletion]:
        """Every completion whose archival is not done (a scan: sweeps are rare)."""
        pages = self.client.get_paginator("scan").paginate(
            TableName=self.table,
            ConsistentRead=True,
            FilterExpression="archived = :owed",
            ExpressionAttributeValues={":owed": {"BOOL": False}},
        )
        return [_completion(item) for page in pages for item in page["Items"]]

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
        """Up to `limit` unclaimed ACTIVE findings last updated before `updated_before_ms` (a scan: sweeps are rare)."""
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
            due += (_entry(item) for item in page["Items"])
            if len(due) >= limit:
                break
        return sorted(due, key=lambda e: e.updated_ms)[:limit]

    def owed_workflows(self, limit: int) -> list[LedgerEntry]:
        """Up to `limit` entries owed a Workflow.Status: what the index lists, read again consistently."""
        if not self._owed_index:
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
            owed += (_entry(item) for item in page["Items"])
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
