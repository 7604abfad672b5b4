"""Dead letters: what Security Hub can never take, kept durably with the reason and the origin, to re-drive later.

Destinations: a local JSON-lines file (the embedded default; each write is fsynced before `put` returns) or an
SQS queue (`https://sqs.…` URL). `put` returns only once the letters are durable, or raises DeadLetterError.
"""

from __future__ import annotations

import base64
import fcntl
import functools
import logging
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import msgspec

from defender_hub.errors import ConfigError, DeadLetterError
from defender_hub.sink.batching import EncodedFinding, RecordOrigin
from defender_hub.timestamps import format_iso

__all__ = ["DeadLetter", "DeadLetters", "JsonlDeadLetters", "S3Overflow", "SqsDeadLetters", "open_dead_letters"]

log = logging.getLogger(__name__)

MAX_REASON = 2048
"""Reasons are cut to this many characters: Security Hub's messages can be long."""
SQS_BATCH_BYTES = 1_048_576
"""SQS' limit on a message, and on the total of a SendMessageBatch; a queue may set a lower MaximumMessageSize."""
SQS_BATCH_MESSAGES = 10


class DeadLetter(msgspec.Struct, omit_defaults=True):
    """One rejected finding (as JSON) or undecodable record (base64), why, and where it came from."""

    reason: str
    error_code: str | None = None
    finding: dict[str, Any] | None = None
    record: str | None = None
    origin: RecordOrigin | None = None
    at: str = ""
    version_ms: int | None = None
    """For a finding, the time of its news when its UpdatedAt was moved past earlier sends."""
    overflow: str | None = None
    """In a queue, for a letter too large for it: where the letter itself is (s3://…)."""
    lane: str | None = None
    """For a parked finding, the lane (account/Region) Security Hub refused: it is sent again once that answers."""

    @classmethod
    def for_finding(
        cls, item: EncodedFinding, reason: str, error_code: str | None, lane: str | None = None
    ) -> list[DeadLetter]:
        """Returns the letters, one per origin, for a finding Security Hub rejected, would reject, or parked."""
        finding = msgspec.json.decode(item.body, type=dict[str, Any])
        at = format_iso(int(time.time() * 1000))
        reason = reason[:MAX_REASON]
        return [
            cls(reason, error_code, finding, None, origin, at, item.version_ms, lane=lane) for origin in item.origins
        ]

    def redriven_finding(self) -> dict[str, Any] | None:
        """The finding this letter carries as its news was mapped: at the time of its news."""
        if self.finding is None or self.version_ms is None:
            return self.finding
        return {**self.finding, "UpdatedAt": format_iso(self.version_ms)}

    @classmethod
    def for_record(cls, data: bytes, reason: str, origin: RecordOrigin | None) -> DeadLetter:
        """Returns the letter for a record that could not be turned into findings."""
        record = base64.b64encode(data).decode()
        return cls(reason, None, None, record, origin, format_iso(int(time.time() * 1000)))

    def record_bytes(self) -> bytes | None:
        """Returns the undecodable record's bytes, if this letter carries one."""
        return base64.b64decode(self.record) if self.record is not None else None


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(DeadLetter)
Select = Callable[[DeadLetter], bool]
"""Chooses the letters a drain takes: the parked ones, say."""


class DeadLetters(Protocol):
    """Where rejected findings and records go."""

    unreadable: int
    """Letters a drain found it could not read, and left where a person can look at them."""

    def put(self, letters: Sequence[DeadLetter]) -> None:
        """Keeps `letters` durably, or raises DeadLetterError."""

    def drain(self, select: Select | None = None) -> Iterator[tuple[list[DeadLetter], Callable[[], None]]]:
        """Yields the kept letters (those `select` chooses, else all) a group at a time, with a function that forgets
        that group once re-driven; the others stay as they were."""


class JsonlDeadLetters:
    """Dead letters in a local JSON-lines file, appended and fsynced.

    Appends and a redrive's move of the file take the file's lock, so no letter lands in a file a redrive has
    already read: an append that finds the file moved away appends to the new one.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.unreadable = 0
        """Lines a drain could not read (a crash mid-append tears the last one): kept in `*.unreadable`, not sent."""

    def put(self, letters: Sequence[DeadLetter]) -> None:
        """Appends `letters` and fsyncs the file before returning."""
        if not letters:
            return
        data = b"".join(_encoder.encode(letter) + b"\n" for letter in letters)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            while True:
                with self.path.open("a+b") as file:
                    fcntl.flock(file, fcntl.LOCK_EX)
                    if not _still_at(file, self.path):
                        continue  # a redrive moved it away while we waited: append to the new one
                    file.seek(0, os.SEEK_END)
                    if file.tell() and not _ends_a_line(file):
                        data = b"\n" + data  # a torn last line stays a line of its own
                    file.write(data)
                    file.flush()
                    os.fsync(file.fileno())
                    return
        except OSError as exc:
            raise DeadLetterError(f"dead letters at {self.path}: {exc.strerror}") from exc

    def drain(self, select: Select | None = None) -> Iterator[tuple[list[DeadLetter], Callable[[], None]]]:
        """Yields the file's letters; the file is first moved aside, so letters rejected again are new lines.

        With `select`, only the chosen letters are moved aside (to `*.selected-*`); the rest stay in the file.
        """
        if select is not None:
            yield from self._drain_selected(select)
            return
        aside = self._aside("redrive", "selected")  # left by an interrupted redrive
        if self.path.exists():
            moved = self.path.with_name(f"{self.path.name}.redrive-{time.time_ns()}")
            with self.path.open("ab") as file:
                fcntl.flock(file, fcntl.LOCK_EX)  # no append is half done when it moves
                if _still_at(file, self.path):  # not moved by another redrive while we waited
                    self.path.rename(moved)
                    aside.append(moved)
        yield from self._groups(aside)

    def _aside(self, *kinds: str) -> list[Path]:
        return sorted(path for kind in kinds for path in self.path.parent.glob(f"{self.path.name}.{kind}-*"))

    def _groups(self, paths: list[Path]) -> Iterator[tuple[list[DeadLetter], Callable[[], None]]]:
        for path in paths:
            if path.exists():  # another redrive may have taken it
                yield self._read(path), functools.partial(path.unlink, missing_ok=True)

    def _drain_selected(self, select: Select) -> Iterator[tuple[list[DeadLetter], Callable[[], None]]]:
        """Moves the chosen letters to a file of their own, keeping the others where they were; yields them."""
        aside = self._aside("selected")  # left by an interrupted drain: all of them were chosen
        if self.path.exists():
            with self.path.open("r+b") as file:
                fcntl.flock(file, fcntl.LOCK_EX)
                if _still_at(file, self.path):
                    chosen: list[bytes] = []
                    kept: list[bytes] = []
                    for line in file.read().splitlines(keepends=True):
                        if not line.strip():
                            continue
                        try:
                            (chosen if select(_decoder.decode(line)) else kept).append(line)
                        except msgspec.DecodeError:
                            kept.append(line)  # for a whole redrive to set aside, where a person can look
                    if chosen:
                        stamp = time.time_ns()
                        moved = self.path.with_name(f"{self.path.name}.selected-{stamp}")
                        _write_durably(moved, b"".join(_line(line) for line in chosen))
                        # The others go to a file of their own that replaces this one whole: a crash leaves one or
                        # the other. Appenders waiting on this lock see the file moved and append to the new one.
                        rest = self.path.with_name(f"{self.path.name}.rest-{stamp}")
                        _write_durably(rest, b"".join(_line(line) for line in kept))
                        rest.replace(self.path)
                        _sync_folder(self.path.parent)
                        aside.append(moved)
        yield from self._groups(aside)

    def _read(self, path: Path) -> list[DeadLetter]:
        """The letters in `path`; a line that is none is kept in `*.unreadable` and counted, not fatal."""
        letters: list[DeadLetter] = []
        unreadable: list[bytes] = []
        for line in path.read_bytes().splitlines():
            if not line.strip():
                continue
            try:
                letters.append(_decoder.decode(line))
            except msgspec.DecodeError:
                unreadable.append(line + b"\n")
        if unreadable:  # one file per moved file: a redrive tried again rewrites it rather than adding to it
            kept = self.path.with_name(f"{self.path.name}.unreadable-{path.name.rsplit('-', 1)[-1]}")
            _write_durably(kept, b"".join(unreadable))
            self.unreadable += len(unreadable)
            log.warning("%d unreadable dead letters in %s kept in %s", len(unreadable), path, kept)
        return letters


def _still_at(file: BinaryIO, path: Path) -> bool:
    """Whether the open `file` is still the one at `path`."""
    try:
        return os.fstat(file.fileno()).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False


def _write_durably(path: Path, data: bytes) -> None:
    with path.open("wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())


def _sync_folder(folder: Path) -> None:
    """Makes a rename in `folder` durable."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _line(line: bytes) -> bytes:
    return line if line.endswith(b"\n") else line + b"\n"


def _ends_a_line(file: BinaryIO) -> bool:
    file.seek(-1, os.SEEK_END)
    return file.read(1) == b"\n"


class S3Overflow:
    """Where a letter too large for its queue goes (`s3://bucket/prefix`): the queue gets a pointer to it, as SQS's
    extended clients do."""

    def __init__(self, uri: str, client: Any) -> None:
        bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        if not uri.startswith("s3://") or not bucket:
            raise ConfigError(f"dead-letter overflow: expected s3://BUCKET[/PREFIX], got {uri[:200]!r}")
        self.bucket, self.prefix, self._client = bucket, prefix.rstrip("/") + "/" if prefix else "", client

    def put(self, body: bytes) -> str:
        """Stores `body`; returns its s3:// URI."""
        key = f"{self.prefix}{uuid.uuid4().hex}.json"
        self._client.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType="application/json")
        return f"s3://{self.bucket}/{key}"

    def get(self, uri: str) -> bytes:
        """The body stored at `uri`."""
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        body: bytes = self._client.get_object(Bucket=bucket, Key=key)["Body"].read()
        return body

    def delete(self, uri: str) -> None:
        """Forgets the body at `uri`."""
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        self._client.delete_object(Bucket=bucket, Key=key)


class SqsDeadLetters:
    """Dead letters in an SQS queue, one message each; one larger than the queue takes goes to S3, with a pointer."""

    def __init__(self, queue_url: str, client: Any, overflow: S3Overflow | None = None) -> None:
        self.queue_url = queue_url
        self._client = client
        self._overflow = overflow
        self._message_bytes: int | None = None
        self.unreadable = 0
        """Messages a drain could not read: left in the queue, not sent."""

    def _limit(self) -> int:
        """The queue's MaximumMessageSize, read once: batches are sized by it, and a larger letter overflows."""
        if self._message_bytes is None:
            try:
                attributes = self._client.get_queue_attributes(
                    QueueUrl=self.queue_url, AttributeNames=["MaximumMessageSize"]
                )["Attributes"]
            except Exception as exc:
                raise DeadLetterError(f"dead letters to {self.queue_url}: {exc}") from exc
            self._message_bytes = min(int(attributes["MaximumMessageSize"]), SQS_BATCH_BYTES)
        return self._message_bytes

    def _body(self, letter: DeadLetter) -> str:
        """The message for `letter`: itself, or a pointer to it in S3 when the queue can't take it."""
        body = _encoder.encode(letter)
        if len(body) <= self._limit():
            return body.decode()
        if self._overflow is None:
            raise DeadLetterError(
                f"a dead letter of {len(body)} bytes is over the {self._limit()}-byte limit of {self.queue_url}: "
                "give --dead-letter-overflow s3://BUCKET/PREFIX for such letters"
            )
        try:
            uri = self._overflow.put(body)
        except Exception as exc:
            raise DeadLetterError(f"dead letters to {self._overflow.bucket}: {exc}") from exc
        pointer = DeadLetter(
            letter.reason, letter.error_code, origin=letter.origin, at=letter.at, overflow=uri, lane=letter.lane
        )
        return _encoder.encode(pointer).decode()

    def put(self, letters: Sequence[DeadLetter]) -> None:
        """Sends `letters`, in batches of at most ten and the queue's size; returns once SQS has every one."""
        limit = self._limit()
        batch: list[str] = []
        size = 0
        for body in (self._body(letter) for letter in letters):
            if batch and (len(batch) == SQS_BATCH_MESSAGES or size + len(body.encode()) > limit):
                self._send(batch)
                batch, size = [], 0
            batch.append(body)
            size += len(body.encode())
        if batch:
            self._send(batch)

    def _send(self, bodies: list[str]) -> None:
        entries = [{"Id": str(i), "MessageBody": body} for i, body in enumerate(bodies)]
        try:
            answer = self._client.send_message_batch(QueueUrl=self.queue_url, Entries=entries)
        except Exception as exc:  # botocore's errors, network errors: all mean the letters are not kept
            raise DeadLetterError(f"dead letters to {self.queue_url}: {exc}") from exc
        if answer.get("Failed"):
            raise DeadLetterError(f"dead letters to {self.queue_url}: {answer['Failed'][0].get('Message')}")

    def drain(self, select: Select | None = None) -> Iterator[tuple[list[DeadLetter], Callable[[], None]]]:
        """Yields the queue's letters (those `select` chooses, else all) ten at a time, pointers followed; each group
        (and what it points to in S3) is deleted only after it was re-driven. Letters not chosen are made visible
        again once the drain is over."""
        passed: list[str] = []
        # Letters sent once the drain began (put back by what it drained, a lane still refused) wait for the next.
        began_ms = int(time.time() * 1000)
        try:
            while True:
                answer = self._client.receive_message(
                    QueueUrl=self.queue_url,
                    MaxNumberOfMessages=10,
                    WaitTimeSeconds=1,
                    VisibilityTimeout=300,
                    AttributeNames=["SentTimestamp"],
                )
                messages = answer.get("Messages", [])
                older = [m for m in messages if int(m.get("Attributes", {}).get("SentTimestamp", 0)) < began_ms]
                passed += [m["ReceiptHandle"] for m in messages if m not in older]
                if not older:
                    return
                letters: list[DeadLetter] = []
                read: list[dict[str, Any]] = []
                pointers: list[str] = []
                for message in older:
                    try:
                        letter = _decoder.decode(message["Body"])
                        if select is not None and not select(letter):
                            passed.append(message["ReceiptHandle"])
                            continue
                        if letter.overflow is not None:
                            pointers.append(letter.overflow)
                            letter = _decoder.decode(self._followed(letter.overflow))
                    except (msgspec.DecodeError, DeadLetterError) as exc:  # left in the queue for a person to look at
                        self.unreadable += 1
                        log.warning("a dead letter stays in %s: %s (%s)", self.queue_url, message["MessageId"], exc)
                        continue
                    letters.append(letter)
                    read.append(message)
                if letters:
                    yield letters, functools.partial(self._forget, read, pointers)
        finally:
            for start in range(0, len(passed), SQS_BATCH_MESSAGES):
                entries = [
                    {"Id": str(i), "ReceiptHandle": handle, "VisibilityTimeout": 0}
                    for i, handle in enumerate(passed[start : start + SQS_BATCH_MESSAGES])
                ]
                self._client.change_message_visibility_batch(QueueUrl=self.queue_url, Entries=entries)

    def _forget(self, read: list[dict[str, Any]], pointers: list[str]) -> None:
        handles = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(read)]
        if handles:
            self._client.delete_message_batch(QueueUrl=self.queue_url, Entries=handles)
        for uri in pointers:
            if self._overflow is not None:
                self._overflow.delete(uri)

    def _followed(self, uri: str) -> bytes:
        if self._overflow is None:
            raise DeadLetterError(f"a dead letter points to {uri}: give --dead-letter-overflow to read it")
        try:
            return self._overflow.get(uri)
        except Exception as exc:
            raise DeadLetterError(f"{uri}: {exc}") from exc


def sqs_client_for(queue_url: str) -> Any:
    """Returns the SQS client for a dead-letter queue: in AWS_REGION, else in the Region its URL names."""
    import boto3  # noqa: PLC0415 - only an SQS destination needs it

    named = re.match(r"https://sqs\.([a-z0-9-]+)\.", queue_url)
    return boto3.client("sqs", region_name=os.environ.get("AWS_REGION") or (named.group(1) if named else None))


def s3_client() -> Any:
    """An S3 client for the overflow bucket, in AWS_REGION, at AWS_ENDPOINT_URL_S3 when that is set."""
    import boto3  # noqa: PLC0415 - only an S3 overflow needs it
    from botocore.config import Config  # noqa: PLC0415

    # Path-style addressing: a local endpoint (an IP address) has no bucket subdomains.
    return boto3.client(
        "s3", region_name=os.environ.get("AWS_REGION") or None, config=Config(s3={"addressing_style": "path"})
    )


def open_dead_letters(
    spec: str,
    sqs_client: Callable[[str], Any] = sqs_client_for,
    overflow: str | None = None,
) -> DeadLetters:
    """Returns the destination `spec` names: an SQS queue URL (http or https), or else a file path.

    `sqs_client` makes the SQS client for a queue URL; `overflow` (`s3://bucket/prefix`) takes the letters an SQS queue
    can't.
    """
    if spec.startswith(("https://", "http://")):
        return SqsDeadLetters(spec, sqs_client(spec), S3Overflow(overflow, s3_client()) if overflow else None)
    return JsonlDeadLetters(Path(spec))
