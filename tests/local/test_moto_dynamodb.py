"""moto's DynamoDB refuses an index that already exists as DynamoDB does: a ValidationException, not a 500."""

from __future__ import annotations

from collections.abc import Iterator
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


@pytest.fixture
def dynamodb(local_aws: LocalAws) -> Iterator[Any]:
    client = local_client("dynamodb", local_aws.endpoint_url, config=Config(retries={"total_max_attempts": 1}))
    client.create_table(
        TableName="leases",
        AttributeDefinitions=[{"AttributeName": "key", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "key", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    yield client
    client.delete_table(TableName="leases")


def create_index(dynamodb: Any) -> None:
    dynamodb.update_table(
        TableName="leases",
        AttributeDefinitions=[{"AttributeName": "owner", "AttributeType": "S"}],
        GlobalSecondaryIndexUpdates=[{"Create": INDEX}],
    )


def test_creating_an_index_that_exists_is_a_validation_exception(dynamodb: Any) -> None:
    # Two KCL workers starting at once both create the lease table's index: the second must hear what DynamoDB says.
    create_index(dynamodb)

    with pytest.raises(ClientError) as refused:
        create_index(dynamodb)

    assert refused.value.response["Error"]["Code"] == "ValidationException"
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert "already exists" in refused.value.response["Error"]["Message"]
