"""moto's Kinesis, DynamoDB and SQS as one app for hypercorn: HTTP/1.1 for boto3, cleartext HTTP/2 for the KCL.

The KCL builds its Kinesis client for HTTP/2, which moto's own server (HTTP/1.1 only) can't answer. moto's Kinesis is
mended first so that a split or merged shard ends as it does in Kinesis (see moto_kinesis).
"""

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

from defender_hub.local import moto_kinesis

__all__ = ["app"]

moto_kinesis.apply()
app = DomainDispatcherApplication(create_backend_app)
