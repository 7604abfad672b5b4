"""The Security Hub sink: batched, rate-limited, partial-failure-aware imports with dead letters.

The seam is `SecurityHubSink.deliver`: it takes findings and returns when every one was accepted by Security Hub
or is durably dead-lettered, and raises a `SinkError` when that can't be done (stop requested, dead letters broken).
"""

from defender_hub.sink.batching import Outbound, RecordOrigin
from defender_hub.sink.deadletters import DeadLetter, DeadLetters, JsonlDeadLetters, SqsDeadLetters, open_dead_letters
from defender_hub.sink.securityhub import Clients, DeliveryReport, RetryPolicy, SecurityHubSink, securityhub_clients

__all__ = [
    "Clients",
    "DeadLetter",
    "DeadLetters",
    "DeliveryReport",
    "JsonlDeadLetters",
    "Outbound",
    "RecordOrigin",
    "RetryPolicy",
    "SecurityHubSink",
    "SqsDeadLetters",
    "open_dead_letters",
    "securityhub_clients",
]
