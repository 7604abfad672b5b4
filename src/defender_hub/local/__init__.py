"""Local stand-ins for the AWS services defender-hub talks to, served on 127.0.0.1 for tests and demos."""

__all__ = ["AWS_PORT", "DEMO_EVENTS", "LOCAL_STREAM", "SECURITYHUB_PORT"]

AWS_PORT = 4566
"""moto's port unless told otherwise: LocalStack's, which AWS tools' local setups already expect."""
SECURITYHUB_PORT = 4510
DEMO_EVENTS = 3000
LOCAL_STREAM = "device-defender"
