"""How the DynamoDB ledger stores its entries and check completions as items, and the keys and sparse indexes of
its table: each item carries the key of an index only while a sweep or an archival may act on it."""

from __future__ import annotations

import hashlib
import zlib
from typing import Any

from defender_hub.lifecycle import ACTIVE, CheckCompletion, LedgerEntry

__all__ = [
    "ACTIVE_BY_CHECK",
    "CHECK_PREFIX",
    "DUE_FOR_REFRESH",
    "DUE_SHARDS",
    "INDEXES",
    "KEY_ATTRIBUTES",
    "MAX_KEY_BYTES",
    "OWED",
    "OWED_ARCHIVAL",
    "OWED_WORKFLOW",
    "SWEEP_KEYS",
    "completion_of",
    "due_shard",
    "entry_of",
    "index_definition",
    "is_due",
    "item_of",
    "storage_key",
]

ACTIVE_BY_CHECK = "active-by-check"
"""A sparse index: only ACTIVE audit findings carry its key, so an archival reads what it may archive and no more."""
OWED_WORKFLOW = "owed-workflow"
"""A sparse index: only findings owed a Workflow.Status carry its key, so the sweeps that run every minute read what
is owed, not the table. A table made before it scans instead (add the index to it to save the reads)."""
DUE_FOR_REFRESH = "due-for-refresh"
"""A sparse index: only ACTIVE findings their source keeps alive carry its key (a shard, and `updated_ms` to sort by),
so a refresh sweep reads what is due and no more; the claim is projected, so findings claimed are left out unread."""
DUE_SHARDS = 16
"""The partition keys of the due-for-refresh index, one per finding by a digest of its key. Every write of an ACTIVE
finding writes the index too (twice, when `updated_ms` moves), and one partition key takes some 1,000 writes a
second, about what Security Hub accepts of one account and Region; 16 keys take 16 times that, for 16 small queries a
sweep. The number may grow but never shrink: a sweep queries only the shards below it."""
OWED_ARCHIVAL = "owed-archival"
"""A sparse index: only check completions whose archival is owed carry its key, so the sweeps that run every minute
read what is owed, not the table."""
OWED = {"S": "owed"}  # the one partition key of the owed-archival index: completions are few, and written rarely
SWEEP_KEYS = "sweep_keys"  # on the schema marker: every item was written with the keys of the sweeps' own indexes
KEY_ATTRIBUTES = {
    "key": "S",
    "active_check": "S",
    "workflow": "S",
    "due_shard": "N",
    "updated_ms": "N",
    "owed_archival": "S",
}
"""The type of each attribute a key of the table or of an index is made of."""
INDEXES = {
    ACTIVE_BY_CHECK: (("active_check", "HASH"),),
    OWED_WORKFLOW: (("workflow", "HASH"), ("key", "RANGE")),
    DUE_FOR_REFRESH: (("due_shard", "HASH"), ("updated_ms", "RANGE")),
    OWED_ARCHIVAL: (("owed_archival", "HASH"), ("key", "RANGE")),
}
"""Each index's key; each projects the table's key and its own, and due-for-refresh the claim too."""
PROJECTED = {DUE_FOR_REFRESH: ["claimed_until"]}
MAX_KEY_BYTES = 1024
"""Longer finding keys are stored under a digest: DynamoDB refuses a partition key over 2,048 bytes, and a 512-character
Id of four-byte characters with its ProductArn is more than that."""
CHECK_PREFIX = "check|"
"""What a check completion's item key starts with, apart from the findings' keys."""


def storage_key(key: str) -> str:
    """The table key of a finding key: itself, or a stable digest of it when it is too long for DynamoDB."""
    if len(key.encode()) <= MAX_KEY_BYTES:
        return key
    return "sha256|" + hashlib.sha256(key.encode()).hexdigest()


def due_shard(stored_key: str) -> int:
    """The due-for-refresh index's shard of a finding, from its table key: stable across processes and versions."""
    return zlib.crc32(stored_key.encode()) % DUE_SHARDS


def is_due(item: dict[str, Any], updated_before_ms: int, now_ms: int) -> bool:
    """Whether the stored `item` is due for refresh and unclaimed at `now_ms`: what an index listed may have moved."""
    return (
        item["record_state"]["S"] == ACTIVE
        and item.get("refresh", {}).get("BOOL", True)
        and int(item["updated_ms"]["N"]) < updated_before_ms
        and int(item["claimed_until"]["N"]) <= now_ms
    )


def index_definition(name: str) -> dict[str, Any]:
    """The definition of index `name` that CreateTable takes."""
    projected = PROJECTED.get(name)
    return {
        "IndexName": name,
        "KeySchema": [{"AttributeName": attribute, "KeyType": kind} for attribute, kind in INDEXES[name]],
        "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": projected}
        if projected
        else {"ProjectionType": "KEYS_ONLY"},
    }


def entry_of(item: dict[str, Any]) -> LedgerEntry:
    """The ledger entry a stored finding item holds."""
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


def item_of(entry: LedgerEntry) -> dict[str, Any]:
    """The item that stores `entry`, with the keys of the indexes it belongs in and no others."""
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
    if entry.record_state == ACTIVE and entry.refresh:  # what a refresh sweep may take, and nothing else, is indexed
        item["due_shard"] = {"N": str(due_shard(stored))}
    if entry.check:
        item["check"] = {"S": entry.check}
        if entry.record_state == ACTIVE:  # what an archival may take, and nothing else, is in the index
            item["active_check"] = {"S": entry.check}
    return item


def completion_of(item: dict[str, Any]) -> CheckCompletion:
    """The check completion a stored completion item holds."""
    check = item["key"]["S"].removeprefix(CHECK_PREFIX)
    return CheckCompletion(check, item["task_id"]["S"], int(item["task_ms"]["N"]), item["archived"]["BOOL"])
