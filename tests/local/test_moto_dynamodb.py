"""moto's DynamoDB refuses an index that already exists as DynamoDB does: a ValidationException, not a 500."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from defender_hub.local.aws import LocalAws
from tests.helpers import local_client

INDEX = {
    "IndexName": "by_owner",
    "KeySchema": [{"AttributeName": "owner", "KeyType": "HASH"}],
    "Projection": {"ProjectionType": "KEYS_ONLY"},
}


def create_index(dynamodb: Any, table: str) -> None:
    dynamodb.update_table(
        TableName=table,
        AttributeDefinitions=[{"AttributeName": "owner", "AttributeType": "S"}],
        GlobalSecondaryIndexUpdates=[{"Create": INDEX}],
    )


def test_creating_an_index_that_exists_is_a_validation_exception(local_aws: LocalAws) -> None:
    dynamodb = local_client("dynamodb", local_aws.endpoint_url, config=Config(retries={"total_max_attempts": 1}))
    table = f"leases-{uuid.uuid4().hex}"  # the stack is this test process's, shared with its other tests
    dynamodb.create_table(
        TableName=table,
        AttributeDefinitions=[{"AttributeName": "key", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "key", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    # Two KCL workers starting at once both create the lease table's index: the second must hear what DynamoDB says.
    create_index(dynamodb, table)

    with pytest.raises(ClientError) as refused:
        create_index(dynamodb, table)

    assert refused.value.response["Error"]["Code"] == "ValidationException"
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert refused.value.response["Error"]["Message"] == "Attempting to create an index which already exists"
    assert [
        index["IndexName"] for index in dynamodb.describe_table(TableName=table)["Table"]["GlobalSecondaryIndexes"]
    ] == ["by_owner"]
