"""The worker's sender: one Security Hub sink for every shard process of the worker, filling each lane's requests
with what all of them hand it.

Each shard process connects to its Unix socket and hands it planned findings (`wire.Deliver`). The findings wait in
their lane's queue until a request of them is full (100 findings or 6 MB), the oldest has waited `wait_seconds`, or
every shard connected is waiting on the sender (none can add to the request then). A request's findings go through
one `SecurityHubSink`, which books the lane's quota, retries, parks and dead-letters as it does for a shard on its
own; each shard hears of its accepted findings request by request, and of the end of its delivery once every one of
them was accepted, dead-lettered or parked. Workflow updates go through the same sink, in their own quota.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import queue
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from defender_hub.codecs.asff_rules import MAX_FINDINGS_PER_REQUEST, MAX_REQUEST_BYTES
from defender_hub.errors import SinkError
from defender_hub.lifecycle import finding_key
from defender_hub.sender.wire import (
    Accepted,
    Deliver,
    Done,
    Failed,
    FrameReader,
    Owed,
    StillOwed,
    ToShard,
    Update,
    decode_to_sender,
    frame,
)
from defender_hub.sink import DeadLetter, DeadLetters, DeliveryReport, EncodedFinding, Lane, SecurityHubSink
from defender_hub.sink.workflow import WorkflowUpdate

__all__ = ["MAX_IN_FLIGHT", "SenderServer"]

log = logging.getLogger("defender_hub.sender")

MAX_IN_FLIGHT = 4
"""Requests of one lane under way at once: the lane's quota spaces them, and a request's answer takes longer than
the tenth of a second between two of its slots."""
_REQUEST_OVERHEAD = len(b'{"Findings": []}')
_SEPARATOR = len(b", ")
_as_json = msgspec.json.Decoder(dict[str, Any]).decode


class _Connection:
    """One shard process's connection: what it asked last, and the answers written back to it."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.waiting = False
        """Whether the shard waits on the sender now: it can hand nothing more until it is answered."""
        self.ticket: _Ticket | None = None
        self.owed: queue.Queue[list[str] | None] = queue.Queue()
        self._lock = threading.Lock()

    def send(self, message: ToShard) -> None:
        """Writes `message`; a shard gone is no concern of the sender's (its delivery is over)."""
        with self._lock, contextlib.suppress(OSError):
            self.sock.sendall(frame(message))


@dataclass(eq=False)
class _Ticket:
    """A shard's delivery under way: how many of its findings are still to be settled, and what became of the rest."""

    connection: _Connection
    left: int
    report: DeliveryReport = field(default_factory=DeliveryReport)
    over: bool = False


@dataclass(slots=True)
class _Handed:
    """A finding a shard handed over: its place in the shard's delivery, and when it came."""

    item: EncodedFinding
    ticket: _Ticket
    index: int
    at: float


class _LaneQueue:
    """What waits to be sent in one lane (with or without parking), oldest first."""

    def __init__(self) -> None:
        self.pending: deque[_Handed] = deque()
        self.size = 0
        self.in_flight = 0

    def full(self) -> bool:
        """Whether a whole request is waiting."""
        return len(self.pending) >= MAX_FINDINGS_PER_REQUEST or self.size + _REQUEST_OVERHEAD >= MAX_REQUEST_BYTES

    def take(self) -> list[_Handed]:
        """Takes one request's findings from the front: as many as fit, no finding twice (two shards may hand two
        versions of one; the later waits for the next request)."""
        batch: list[_Handed] = []
        kept: list[_Handed] = []
        keys: set[str] = set()
        size = _REQUEST_OVERHEAD
        while self.pending:
            handed = self.pending[0]
            item_size = len(handed.item.body) + _SEPARATOR
            if batch and (len(batch) == MAX_FINDINGS_PER_REQUEST or size + item_size > MAX_REQUEST_BYTES):
                break
            self.pending.popleft()
            key = finding_key(handed.item.doc)
            if key in keys:
                kept.append(handed)
                continue
            keys.add(key)
            batch.append(handed)
            size += item_size
            self.size -= len(handed.item.body) + _SEPARATOR
        self.pending.extendleft(reversed(kept))
        return batch


class _LetterWatch:
    """The sink's dead letters, noting which findings each thread's delivery dead-lettered (not parked): what a
    request's findings became is told apart by that."""

    def __init__(self, kept: DeadLetters) -> None:
        self._kept = kept
        self._local = threading.local()

    def __getattr__(self, name: str) -> Any:  # drain and unreadable: the kept letters' own
        return getattr(self._kept, name)

    def put(self, letters: Sequence[DeadLetter]) -> None:
        """Keeps `letters`, noting the dead-lettered findings' keys for this thread's delivery."""
        self._kept.put(letters)
        noted: set[str] | None = getattr(self._local, "keys", None)
        if noted is not None:
            noted.update(finding_key(letter.finding) for letter in letters if letter.finding and letter.lane is None)

    @contextlib.contextmanager
    def watching(self) -> Iterator[set[str]]:
        """Notes, while entered, the keys of the findings this thread dead-letters."""
        keys: set[str] = set()
        self._local.keys = keys
        try:
            yield keys
        finally:
            self._local.keys = None


class SenderServer:
    """Serves the worker's shard processes on the Unix socket at `path`, sending through `hub`, which stops with
    `stop`."""

    def __init__(self, hub: SecurityHubSink, path: Path, wait_seconds: float, stop: threading.Event) -> None:
        self._hub, self.path, self._wait, self._stop = hub, path, wait_seconds, stop
        self._letters = _LetterWatch(hub.dead_letters)
        hub.dead_letters = self._letters
        self._condition = threading.Condition()
        self._queues: dict[tuple[Lane, bool], _LaneQueue] = {}
        self._connections: set[_Connection] = set()
        self._closed = False
        self._pool = ThreadPoolExecutor(64, thread_name_prefix="sender-request")
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # a socket a sender before this one left
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(path))
        os.chmod(path, 0o600)  # the worker's own processes only
        self._listener.listen(64)
        self._threads = [
            threading.Thread(target=self._accept, name="sender-accept", daemon=True),
            threading.Thread(target=self._dispatch, name="sender-dispatch", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def close(self) -> None:
        """Stops taking findings and sending; what was under way ends in SinkStopped, answered to its shard."""
        with self._condition:
            self._closed = True
            self._condition.notify_all()
        self._stop.set()
        self._listener.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        for connection in list(self._connections):
            with contextlib.suppress(OSError):
                connection.sock.shutdown(socket.SHUT_RDWR)
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:  # closed
                return
            connection = _Connection(sock)
            with self._condition:
                self._connections.add(connection)
            threading.Thread(target=self._serve, args=(connection,), name="sender-shard", daemon=True).start()

    def _serve(self, connection: _Connection) -> None:
        """Reads what the shard asks, until it goes."""
        reader = FrameReader(connection.sock)
        try:
            while True:
                message = decode_to_sender(reader.read())
                if isinstance(message, Deliver):
                    self._handed(connection, message)
                elif isinstance(message, Update):
                    connection.waiting = True
                    self._pool.submit(self._update, connection, message)
                elif isinstance(message, Owed):
                    connection.owed.put(message.keys)
        except (EOFError, OSError, msgspec.DecodeError):
            pass
        finally:
            self._gone(connection)

    def _gone(self, connection: _Connection) -> None:
        """Forgets a shard that went: what it handed and is not yet under way is not sent."""
        connection.owed.put(None)
        with self._condition:
            self._connections.discard(connection)
            if connection.ticket is not None:
                connection.ticket.over = True
            for lane_queue in self._queues.values():
                kept = deque(handed for handed in lane_queue.pending if handed.ticket.connection is not connection)
                lane_queue.pending = kept
                lane_queue.size = sum(len(handed.item.body) + _SEPARATOR for handed in kept)
            self._condition.notify_all()
        connection.sock.close()

    def _handed(self, connection: _Connection, message: Deliver) -> None:
        """Queues a shard's findings in their lanes."""
        ticket = _Ticket(connection, len(message.findings))
        if not message.findings:
            connection.send(Done({}))
            return
        now = time.monotonic()
        handed = []
        for index, wired in enumerate(message.findings):
            item = EncodedFinding(_as_json(wired.body), wired.body, wired.origins, wired.version_ms)
            handed.append(_Handed(item, ticket, index, now))
        with self._condition:
            connection.ticket, connection.waiting = ticket, True
            for one in handed:
                lane_queue = self._queues.setdefault((Lane.of(one.item.doc), message.park), _LaneQueue())
                lane_queue.pending.append(one)
                lane_queue.size += len(one.item.body) + _SEPARATOR
            self._condition.notify_all()

    def _dispatch(self) -> None:
        """Sends each lane's requests as they are due: full, old enough, or all that can come."""
        with self._condition:
            while not self._closed:
                now = time.monotonic()
                every_shard_waits = bool(self._connections) and all(c.waiting for c in self._connections)
                next_due: float | None = None
                for key, lane_queue in list(self._queues.items()):
                    while lane_queue.pending and lane_queue.in_flight < MAX_IN_FLIGHT:
                        due = lane_queue.pending[0].at + self._wait
                        if not (lane_queue.full() or now >= due or every_shard_waits):
                            next_due = due if next_due is None else min(next_due, due)
                            break
                        lane_queue.in_flight += 1
                        self._pool.submit(self._send, key, lane_queue, lane_queue.take())
                    if not lane_queue.pending and not lane_queue.in_flight:
                        del self._queues[key]
                self._condition.wait(None if next_due is None else max(0.0, next_due - now))

    def _send(self, key: tuple[Lane, bool], lane_queue: _LaneQueue, batch: list[_Handed]) -> None:
        """Sends one request's findings through the sink, and tells each shard what became of its own."""
        by_doc = {id(handed.item.doc): handed for handed in batch}
        accepted: set[int] = set()

        def heard(docs: list[dict[str, Any]]) -> None:
            by_ticket: dict[_Ticket, list[int]] = {}
            for doc in docs:
                handed = by_doc[id(doc)]
                accepted.add(id(doc))
                by_ticket.setdefault(handed.ticket, []).append(handed.index)
            for ticket, indexes in by_ticket.items():
                if not ticket.over:
                    ticket.connection.send(Accepted(indexes))

        error: Exception | None = None
        report = DeliveryReport()
        with self._letters.watching() as dead:
            try:
                report = self._hub.deliver_encoded([handed.item for handed in batch], heard, park=key[1])
            except Exception as exc:  # SinkError above all; anything else ends the shards' deliveries all the same
                error = exc
        with self._condition:
            lane_queue.in_flight -= 1
            self._condition.notify_all()
        if error is not None:
            log.error("a request of lane %s failed: %s: %s", key[0], type(error).__name__, error)
            for ticket in {handed.ticket for handed in batch}:
                self._fail(ticket, error)
            return
        self._settle(batch, accepted, dead, report)

    def _settle(self, batch: list[_Handed], accepted: set[int], dead: set[str], report: DeliveryReport) -> None:
        """Counts what became of each finding of a request sent, into its shard's delivery; answers each delivery
        that is over. The request's own counts (requests, throttling, retries) go to the delivery of its first
        finding, so that the shards' counts add up to the sender's."""
        answers: list[tuple[_Connection, Done]] = []
        with self._condition:  # the counts of a delivery whose findings went in several requests at once
            settled: dict[_Ticket, int] = {}
            first = batch[0].ticket.report
            first.requests += report.requests
            first.throttled += report.throttled
            first.retried += report.retried
            for handed in batch:
                counts = handed.ticket.report
                if id(handed.item.doc) in accepted:
                    counts.accepted += 1
                elif finding_key(handed.item.doc) in dead:
                    counts.dead_lettered += 1
                else:  # parked, or without parking left owed
                    counts.parked += 1
                settled[handed.ticket] = settled.get(handed.ticket, 0) + 1
            for ticket, count in settled.items():
                ticket.left -= count
                if ticket.left == 0 and not ticket.over:
                    ticket.over = True
                    ticket.connection.waiting = False
                    answers.append((ticket.connection, Done(dataclasses.asdict(ticket.report))))
        for connection, answer in answers:
            connection.send(answer)

    def _fail(self, ticket: _Ticket, error: Exception) -> None:
        """Ends a shard's delivery in `error`: nothing it handed may be checkpointed."""
        with self._condition:
            if ticket.over:
                return
            ticket.over = True
            ticket.connection.waiting = False
        name = type(error).__name__ if isinstance(error, SinkError) else SinkError.__name__
        ticket.connection.send(Failed(name, f"the worker's sender: {error}"))

    def _update(self, connection: _Connection, message: Update) -> None:
        """Sets workflow statuses for a shard, asking it before each request which are still owed."""
        updates = [
            WorkflowUpdate(wired.key, wired.finding_id, wired.product_arn, wired.status, Lane(*wired.lane))
            for wired in message.updates
        ]

        def still_owed(batch: list[WorkflowUpdate]) -> set[str]:
            connection.send(StillOwed([update.key for update in batch]))
            keys = connection.owed.get()
            if keys is None:
                raise SinkError("the shard went while its workflow updates were under way")
            return set(keys)

        try:
            report = self._hub.update_workflows(updates, still_owed)
        except Exception as exc:
            name = type(exc).__name__ if isinstance(exc, SinkError) else SinkError.__name__
            answer: ToShard = Failed(name, f"the worker's sender: {exc}")
        else:
            counts = {"left_owed": report.left_owed, "superseded": report.superseded, "requests": report.requests}
            answer = Done(counts, report.processed)
        connection.waiting = False
        connection.send(answer)
