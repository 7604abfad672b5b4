"""The shared ledger: one DynamoDB table for every worker, written with conditions so no writer moves it backwards."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from defender_hub.errors import ConfigError
from defender_hub.lifecycle import ACTIVE, CheckCompletion, LedgerEntry

__all__ = ["DynamoDbLedger", "dynamodb_client"]

BY_CHECK = "by-check"
_CHECK_PREFIX = "check|"
_GET_BATCH = 100  # BatchGetItem's limit
_WRITERS = 8  # conditional writes are one item a call: a few at once


def dynamodb_client() -> Any:
    """A DynamoDB client in AWS_REGION, at AWS_ENDPOINT_URL_DYNAMODB when that is set (botocore reads it)."""
    import boto3  # noqa: PLC0415 - only the DynamoDB ledger needs it

    return boto3.client("dynamodb", region_name=os.environ.get("AWS_REGION") or None)


def _entry(item: dict[str, Any]) -> LedgerEntry:
    return LedgerEntry(
        key=item["key"]["S"],
        created_at=item["created_at"]["S"],
        updated_ms=int(item["updated_ms"]["N"]),
        record_state=item["record_state"]["S"],
        fingerprint=item["fingerprint"]["S"],
        check=item.get("check_key", {}).get("S", ""),
        task_ms=int(item["task_ms"]["N"]),
        finding=bytes(item["finding"]["B"]),
    )


def _item(entry: LedgerEntry) -> dict[str, Any]:
    item: dict[str, Any] = {
        "key": {"S": entry.key},
        "created_at": {"S": entry.created_at},
        "updated_ms": {"N": str(entry.updated_ms)},
        "record_state": {"S": entry.record_state},
        "fingerprint": {"S": entry.fingerprint},
        "task_ms": {"N": str(entry.task_ms)},
        "finding": {"B": entry.finding},
        "claimed_until": {"N": "0"},
    }
    if entry.check:  # only audit findings go into the by-check index
        item["check_key"] = {"S": entry.check}
    return item


class DynamoDbLedger:
    """The ledger in a DynamoDB table (created on first use, on demand capacity), shared by every worker."""

    def __init__(self, table: str, client: Any = None, *, create: bool = True) -> None:
        self.table = table
        self.client = client if client is not None else dynamodb_client()
        self._errors = self.client.exceptions
        if create:
            self._ensure_table()

    def _ensure_table(self) -> None:
        try:
            self.client.describe_table(TableName=self.table)
            return
        except self._errors.ResourceNotFoundException:
            pass
        except Exception as exc:
            raise ConfigError(f"can't reach the ledger table {self.table}: {exc}") from exc
        try:
            self.client.create_table(
                TableName=self.table,
                BillingMode="PAY_PER_REQUEST",
                KeySchema=[{"AttributeName": "key", "KeyType": "HASH"}],
                AttributeDefinitions=[
                    {"AttributeName": "key", "AttributeType": "S"},
                    {"AttributeName": "check_key", "AttributeType": "S"},
                ],
                GlobalSecondaryIndexes=[
                    {
                        "IndexName": BY_CHECK,
                        "KeySchema": [{"AttributeName": "check_key", "KeyType": "HASH"}],
                        "Projection": {"ProjectionType": "ALL"},
                    }
                ],
            )
            self.client.get_waiter("table_exists").wait(TableName=self.table)
        except self._errors.ResourceInUseException:
            pass  # another worker created it first
        except Exception as exc:
            raise ConfigError(f"can't create the ledger table {self.table}: {exc}") from exc

    def entries(self, keys: Sequence[str]) -> dict[str, LedgerEntry]:
        """The entries of those `keys` that the ledger has."""
        found: dict[str, LedgerEntry] = {}
        for item in self._get_many(list(dict.fromkeys(keys))):
            entry = _entry(item)
            found[entry.key] = entry
        return found

    def completions(self, checks: Sequence[str]) -> dict[str, CheckCompletion]:
        """The last completion of those `checks` that the ledger has."""
        found: dict[str, CheckCompletion] = {}
        for item in self._get_many([_CHECK_PREFIX + check for check in dict.fromkeys(checks)]):
            check = item["key"]["S"].removeprefix(_CHECK_PREFIX)
            found[check] = CheckCompletion(check, item["task_id"]["S"], int(item["task_ms"]["N"]))
        return found

    def _get_many(self, keys: list[str]) -> Iterator[dict[str, Any]]:
        for start in range(0, len(keys), _GET_BATCH):
            wanted: dict[str, Any] = {
                self.table: {"Keys": [{"key": {"S": k}} for k in keys[start : start + _GET_BATCH]]}
            }
            while wanted:
                answer = self.client.batch_get_item(RequestItems=wanted)
                yield from answer.get("Responses", {}).get(self.table, [])
                wanted = answer.get("UnprocessedKeys") or {}

    def active_in(self, check: str) -> Iterator[LedgerEntry]:
        """The ACTIVE audit findings of `check`."""
        pages = self.client.get_paginator("query").paginate(
            TableName=self.table,
            IndexName=BY_CHECK,
            KeyConditionExpression="check_key = :check",
            FilterExpression="record_state = :active",
            ExpressionAttributeValues={":check": {"S": check}, ":active": {"S": ACTIVE}},
        )
        for page in pages:
            yield from (_entry(item) for item in page["Items"])

    def record(self, entries: Iterable[LedgerEntry]) -> None:
        """Records accepted findings; an entry not newer than the one kept is ignored."""
        with ThreadPoolExecutor(_WRITERS) as pool:
            list(pool.map(self._put_if_newer, entries))

    def _put_if_newer(self, entry: LedgerEntry) -> None:
        with contextlib.suppress(self._errors.ConditionalCheckFailedException):  # a newer version is there
            self.client.put_item(
                TableName=self.table,
                Item=_item(entry),
                ConditionExpression="attribute_not_exists(#key) OR updated_ms < :updated",
                ExpressionAttributeNames={"#key": "key"},
                ExpressionAttributeValues={":updated": {"N": str(entry.updated_ms)}},
            )

    def record_completions(self, completions: Iterable[CheckCompletion]) -> None:
        """Records completed checks; one older than the one kept is ignored."""
        for completion in completions:
            with contextlib.suppress(self._errors.ConditionalCheckFailedException):  # a later task is there
                self.client.put_item(
                    TableName=self.table,
                    Item={
                        "key": {"S": _CHECK_PREFIX + completion.check},
                        "task_id": {"S": completion.task_id},
                        "task_ms": {"N": str(completion.task_ms)},
                    },
                    ConditionExpression="attribute_not_exists(#key) OR task_ms < :task",
                    ExpressionAttributeNames={"#key": "key"},
                    ExpressionAttributeValues={":task": {"N": str(completion.task_ms)}},
                )

    def due_for_refresh(self, updated_before_ms: int, now_ms: int, limit: int) -> list[LedgerEntry]:
        """Up to `limit` unclaimed ACTIVE findings last updated before `updated_before_ms` (a scan: sweeps are rare)."""
        pages = self.client.get_paginator("scan").paginate(
            TableName=self.table,
            FilterExpression="record_state = :active AND updated_ms < :before AND claimed_until <= :now",
            ExpressionAttributeValues={
                ":active": {"S": ACTIVE},
                ":before": {"N": str(updated_before_ms)},
                ":now": {"N": str(now_ms)},
            },
        )
        due: list[LedgerEntry] = []
        for page in pages:
            due += (_entry(item) for item in page["Items"])
            if len(due) >= limit:
                break
        return sorted(due, key=lambda e: e.updated_ms)[:limit]

    def claim(self, entry: LedgerEntry, now_ms: int, until_ms: int) -> bool:
        """Claims `entry` for one sweep until `until_ms`; False when another sweep has it or it changed since read."""
        try:
            self.client.update_item(
                TableName=self.table,
                Key={"key": {"S": entry.key}},
                UpdateExpression="SET claimed_until = :until",
                ConditionExpression="updated_ms = :seen AND claimed_until <= :now",
                ExpressionAttributeValues={
                    ":until": {"N": str(until_ms)},
                    ":seen": {"N": str(entry.updated_ms)},
                    ":now": {"N": str(now_ms)},
                },
            )
        except self._errors.ConditionalCheckFailedException:
            return False
        return True

    def close(self) -> None:
        """Nothing to release: the client's connections close with it."""
