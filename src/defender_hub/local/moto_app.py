"""moto's Kinesis, DynamoDB, SQS and S3 as one app for hypercorn: HTTP/1.1 for boto3, cleartext HTTP/2 for the KCL.

The KCL builds its Kinesis client for HTTP/2, which moto's own server (HTTP/1.1 only) can't answer. moto's Kinesis is
mended first so that a split or merged shard ends as it does in Kinesis (see moto_kinesis), and its DynamoDB so that
an index created twice is refused as DynamoDB refuses it (see moto_dynamodb).

hypercorn runs each request in a thread of its own, and moto checks a DynamoDB condition and applies the write
without a lock: two conditional writes at once could both pass, which DynamoDB never allows. DynamoDB's requests are
therefore handled one at a time.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterable
from typing import Any

# Buckets by path (http://127.0.0.1:port/bucket/key): an IP address has no bucket subdomains. Read as moto loads.
os.environ.setdefault("S3_IGNORE_SUBDOMAIN_BUCKETNAME", "true")

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

from defender_hub.local import moto_dynamodb, moto_kinesis
from defender_hub.local.aws import PID_PATH

__all__ = ["app"]

moto_kinesis.apply()
moto_dynamodb.apply()
_moto = DomainDispatcherApplication(create_backend_app)
_dynamodb = threading.Lock()


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """moto, with DynamoDB's requests one at a time, so its conditional writes are atomic as DynamoDB's are."""
    if environ.get("PATH_INFO") == PID_PATH:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [f"{os.getpid()} {os.getppid()}".encode()]  # and the parent's, were hypercorn to serve from a worker
    dynamodb = environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB_")
    with _dynamodb if dynamodb else contextlib.nullcontext():
        body = list(_moto(environ, start_response))
    # hypercorn sends the status and headers with the first chunk: an empty body (S3's 204s) would send none.
    return body or [b""]
