"""moto's Kinesis, DynamoDB and SQS as one app for hypercorn: HTTP/1.1 for boto3, cleartext HTTP/2 for the KCL.

The KCL builds its Kinesis client for HTTP/2, which moto's own server (HTTP/1.1 only) can't answer. moto's Kinesis is
mended first so that a split or merged shard ends as it does in Kinesis (see moto_kinesis).

hypercorn runs each request in a thread of its own, and moto checks a DynamoDB condition and applies the write
without a lock: two conditional writes at once could both pass, which DynamoDB never allows. DynamoDB's requests are
therefore handled one at a time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

from defender_hub.local import moto_kinesis

__all__ = ["app"]

moto_kinesis.apply()
_moto = DomainDispatcherApplication(create_backend_app)
_dynamodb = threading.Lock()


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """moto, with DynamoDB's requests one at a time, so its conditional writes are atomic as DynamoDB's are."""
    if environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB_"):
        with _dynamodb:
            return list(_moto(environ, start_response))
    return _moto(environ, start_response)  # type: ignore[no-any-return]
