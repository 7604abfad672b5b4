"""`defender-hub forward`: Device Defender's SNS notifications onto the stream, where no Lambda runs the forwarder."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from defender_hub.commands.common import EXIT_FAILURES, EXIT_OK
from defender_hub.commands.deadline import stop_on_signals
from defender_hub.errors import ForwardError
from defender_hub.settings.resolving import add_flags

__all__ = ["add"]


def add(commands: Any) -> None:
    """Declares `forward`."""
    forward = commands.add_parser(
        "forward",
        help="put Device Defender's SNS notifications on the stream (the producer, as the Lambda does)",
        description=(
            "Reads SNS notifications (as SNS delivers them to SQS or HTTP, or Lambda events), one JSON object a line "
            "on stdin, or from an SQS queue subscribed to the Detect and audit topics, and puts their records on the "
            "stream: a Detect alarm as it is, a completed audit task as each of its findings (ListAuditFindings) and "
            "then its notification. Exit status 1 when a message could not be forwarded (it is named on stderr)."
        ),
    )
    add_flags(forward, "stream", required=("stream",))
    forward.add_argument("--sqs-queue", metavar="URL", help="read from this queue until interrupted (default: stdin)")
    forward.set_defaults(handler=_forward)


def _forward(args: argparse.Namespace) -> int:
    from defender_hub.forwarder import forwarder_from_environment, sns_messages  # noqa: PLC0415 - boto3

    forwarder = forwarder_from_environment(args.stream)
    if args.sqs_queue:
        return _from_queue(forwarder, args.sqs_queue)
    failed = put = 0
    for number, line in enumerate(sys.stdin.buffer, start=1):
        try:
            put += sum(forwarder.forward(message, topic) for message, topic in sns_messages([line]))
        except ForwardError as exc:
            failed += 1
            print(f"defender-hub: forward: line {number}: {exc}", file=sys.stderr)
    print(f"defender-hub: forward: {put} records put, {failed} messages not forwarded", file=sys.stderr)
    return EXIT_FAILURES if failed else EXIT_OK


def _from_queue(forwarder: Any, queue_url: str) -> int:
    """Forwards the queue's messages until SIGINT or SIGTERM; a message is deleted once its records are on the stream,
    and one that can't be forwarded is left for the queue's redrive policy to set aside."""
    import boto3  # noqa: PLC0415

    from defender_hub.forwarder import sns_messages  # noqa: PLC0415

    sqs = boto3.client("sqs")
    stop = stop_on_signals()
    while not stop.is_set():
        for message in sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=10).get(
            "Messages", []
        ):
            try:
                for body, topic in sns_messages([message["Body"]]):
                    forwarder.forward(body, topic)
            except ForwardError as exc:
                print(f"defender-hub: forward: message {message['MessageId']}: {exc}", file=sys.stderr)
                continue
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    return EXIT_OK
