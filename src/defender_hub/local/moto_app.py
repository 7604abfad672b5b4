"""moto's Kinesis, DynamoDB and SQS as one app for hypercorn: HTTP/1.1 for boto3, cleartext HTTP/2 for the KCL.

The KCL builds its Kinesis client for HTTP/2, which moto's own server (HTTP/1.1 only) can't answer.
"""

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

__all__ = ["app"]

app = DomainDispatcherApplication(create_backend_app)
