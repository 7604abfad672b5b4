"""moto's DynamoDB made to refuse an index that already exists as DynamoDB does.

moto raises a bare ValueError there, which its server answers with a 500 and hypercorn logs with its traceback. Two
KCL workers that start at once on a new lease table both create its LeaseOwnerToLeaseKeyIndex; DynamoDB refuses the
second with a ValidationException, which the KCL takes as it takes any failed start, and tries again. On a 500 the
AWS SDK tried eight times more first. `apply()` mends this on moto's backend; tests/local/test_moto_dynamodb.py checks
it against boto3.
"""

from __future__ import annotations

from typing import Any

from moto.dynamodb.exceptions import MockValidationException
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.table import Table

__all__ = ["apply"]

_APPLIED = False


def apply() -> None:
    """Mends moto's DynamoDB in this process; calling it again does nothing."""
    global _APPLIED  # noqa: PLW0603 - patching moto is process-wide by nature
    if _APPLIED:
        return
    _APPLIED = True
    update_indexes = DynamoDBBackend.update_table_global_indexes

    def update_table_global_indexes(self: DynamoDBBackend, table: Table, updates: list[dict[str, Any]]) -> None:
        try:
            update_indexes(self, table, updates)
        except ValueError as exc:
            if not str(exc).startswith("Global Secondary Index already exists"):
                raise
            raise MockValidationException("Attempting to create an index which already exists") from exc

    DynamoDBBackend.update_table_global_indexes = update_table_global_indexes  # type: ignore[method-assign,assignment]
