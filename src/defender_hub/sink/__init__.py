"""The Security Hub sink: batched, rate-limited, partial-failure-aware imports with dead letters.

The seam is `SecurityHubSink.deliver`: it takes findings and returns when every one was accepted by Security Hub
or is durably dead-lettered, and raises a `SinkError` when that can't be done (stop requested, dead letters broken).
"""

from defender_hub.sink.base import Accepted, Clients, DeliveryReport, RetryPolicy, Sender, Sink
from defender_hub.sink.batching import EncodedFinding, MappedFinding, RecordOrigin, as_document, coalesce
from defender_hub.sink.deadletters import DeadLetter, DeadLetters, JsonlDeadLetters, SqsDeadLetters, open_dead_letters
from defender_hub.sink.lanes import Lane, SecurityHubClients, securityhub_clients
from defender_hub.sink.securityhub import SecurityHubSink
from defender_hub.sink.workflow import WorkflowReport, WorkflowUpdate

__all__ = [
    "Accepted",
    "Clients",
    "DeadLetter",
    "DeadLetters",
    "DeliveryReport",
    "EncodedFinding",
    "JsonlDeadLetters",
    "Lane",
    "MappedFinding",
    "RecordOrigin",
    "RetryPolicy",
    "SecurityHubClients",
    "SecurityHubSink",
    "Sender",
    "Sink",
    "SqsDeadLetters",
    "WorkflowReport",
    "WorkflowUpdate",
    "as_document",
    "coalesce",
    "open_dead_letters",
    "securityhub_clients",
]
