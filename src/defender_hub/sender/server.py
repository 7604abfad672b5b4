"""The worker's sender: one Security Hub sink for every shard process of the worker (and `run`'s sweeps), filling
each lane's requests with what all of them hand it.

Each shard process connects to its Unix socket and hands it planned findings (`wire.Deliver`). The findings wait in
their lane's queue until a request of them is full (100 findings or 6 MB), or until a partial request is due: at
once while its lane is idle, else once it has filled for `wait_seconds` (`SenderServer._due`). A request's findings go
through one `SecurityHubSink`, which books the lane's quota, retries, parks and dead-letters as it does for a shard on
its own; each shard hears of its accepted findings request by request, and of the end of its delivery once every one of
them was accepted, dead-lettered or parked. Workflow updates go through the same sink, in their own quota.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import logging
import os
import queue
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import astuple, dataclass, field, replace
from pathlib import Path

import msgspec

from defender_hub.errors import SinkError
from defender_hub.sender.queues import Handed, LaneQueue
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
from defender_hub.sink import DeliveryReport, EncodedFinding, Lane, SecurityHubSink
from defender_hub.sink.batching import SEPARATOR
from defender_hub.sink.workflow import WorkflowUpdate

__all__ = ["MAX_IN_FLIGHT", "SenderServer"]

log = logging.getLogger("defender_hub.sender")

MAX_IN_FLIGHT = 4
"""Requests of one lane under way at once: the lane's quota spaces them, and a request's answer takes longer than
the tenth of a second between two of its slots."""


def _failed(error: Exception) -> Failed:
    """The answer that ends a shard's call in `error`: a SinkError by its own name, anything else as a SinkError."""
    name = type(error).__name__ if isinstance(error, SinkError) else SinkError.__name__
    return Failed(name, f"the worker's sender: {error}")


class _Connection:
    """One shard process's connection (or a sweep's): what it asked last, and the answers written back to it."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.waiting = False
        """Whether the shard waits on the sender now: it can hand nothing more until it is answered."""
        self.ticket: Ticket | None = None
        self.owed: queue.Queue[list[str] | None] = queue.Queue()
        self._lock = threading.Lock()

    def send(self, message: ToShard) -> None:
        """Writes `message`; a shard gone is no concern of the sender's (its delivery is over)."""
        with self._lock, contextlib.suppress(OSError):
            self.sock.sendall(frame(message))


@dataclass(eq=False)
class Ticket:
    """A shard's delivery under way: how many of its findings are still to be settled, and what became of the rest."""

    connection: _Connection
    left: int
    probe: bool = False
    """Whether its findings ask a parked lane again: a sweep's."""
    report: DeliveryReport = field(default_factory=DeliveryReport)
    parked_lanes: Counter[Lane] = field(default_factory=Counter)
    """How many of its findings each lane parked, or left owed."""
    over: bool = False
    answering: threading.Lock = field(default_factory=threading.Lock)
    """Held while what became of some of its findings is counted and told, so that its `Done` is written after
    every `Accepted` of it, whichever request's thread counts last."""


class SenderServer:
    """Serves the worker's shard processes on the Unix socket at `path`, sending through `hub`, which stops with
    `stop`."""

    def __init__(self, hub: SecurityHubSink, path: Path, wait_seconds: float, stop: threading.Event) -> None:
        self._hub, self.path, self._wait, self._stop = hub, path, wait_seconds, stop
        self._condition = threading.Condition()
        self._queues: dict[tuple[Lane, bool], LaneQueue] = {}
        self._connections: set[_Connection] = set()
        self._closed = False
        # Each lane sends through threads of its own, so that a lane failing every request (an outage, until it is
        # parked) holds no other lane's requests.
        self._pools: dict[tuple[Lane, bool], ThreadPoolExecutor] = {}
        self._sent_lanes: set[tuple[Lane, bool]] = set()
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
        for pool in list(self._pools.values()):
            pool.shutdown(wait=True, cancel_futures=True)

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
                    with self._condition:  # a shard that waits may be what lets a partial request go
                        connection.waiting = True
                        self._condition.notify_all()
                    # A thread of its own: a shard has one call under way at a time, and its updates may wait on
                    # a lane's outage for minutes.
                    threading.Thread(
                        target=self._update, args=(connection, message), name="sender-update", daemon=True
                    ).start()
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
            self._drop(lambda handed: handed.ticket.connection is connection)
            self._condition.notify_all()
        connection.sock.close()

    def _drop(self, dropped: Callable[[Handed], bool]) -> None:
        """Takes out of the lanes' queues what `dropped` says is not to be sent (called holding the condition)."""
        for lane_queue in self._queues.values():
            kept = deque(handed for handed in lane_queue.pending if not dropped(handed))
            lane_queue.pending = kept
            lane_queue.size = sum(len(handed.item.body) + SEPARATOR for handed in kept)

    def _handed(self, connection: _Connection, message: Deliver) -> None:
        """Queues a shard's findings in their lanes."""
        ticket = Ticket(connection, len(message.findings), message.probe)
        if not message.findings:
            connection.send(Done({}))
            return
        now = time.monotonic()
        by_lane: dict[tuple[str, str, str], list[Handed]] = {}  # a delivery's findings are of a few lanes
        for index, wired in enumerate(message.findings):
            # The body alone: the shard screened the finding, and told what the sender needs to know of it.
            item = EncodedFinding(None, wired.body, wired.origins, wired.version_ms, finding_id=wired.finding_id)
            by_lane.setdefault(wired.lane, []).append(Handed(item, wired.key, ticket, index, now))
        with self._condition:
            connection.ticket, connection.waiting = ticket, True
            for wired_lane, handed in by_lane.items():
                key = (Lane(*wired_lane), message.park)
                lane_queue = self._queues.get(key)
                if lane_queue is None:
                    lane_queue = self._queues[key] = LaneQueue()
                lane_queue.pending.extend(handed)
                lane_queue.size += sum(len(one.item.body) for one in handed) + SEPARATOR * len(handed)
            self._condition.notify_all()

    def _dispatch(self) -> None:
        """Sends each lane's requests as they are due (`_due`)."""
        with self._condition:
            while not self._closed:
                now = time.monotonic()
                every_shard_waits = bool(self._connections) and all(c.waiting for c in self._connections)
                next_due: float | None = None
                for key, lane_queue in list(self._queues.items()):
                    while lane_queue.pending and lane_queue.in_flight < MAX_IN_FLIGHT:
                        due = self._due(key[0], lane_queue, now, every_shard_waits)
                        if due is not None:
                            next_due = due if next_due is None else min(next_due, due)
                            break
                        lane_queue.in_flight += 1
                        lane_queue.taken_at = now
                        pool = self._pools.get(key)
                        if pool is None:
                            pool = self._pools[key] = ThreadPoolExecutor(MAX_IN_FLIGHT, f"sender-{key[0]}")
                        pool.submit(self._send, key, lane_queue, lane_queue.take())
                    if not lane_queue.pending and not lane_queue.in_flight:
                        del self._queues[key]
                self._condition.wait(None if next_due is None else max(0.0, next_due - now))

    def _due(self, lane: Lane, lane_queue: LaneQueue, now: float, every_shard_waits: bool) -> float | None:
        """None when the lane's next request goes now, else the moment it will (called holding the condition).

        A full request goes at once. A partial one goes at once too when nothing of its lane is under way and the lane
        has quota to spare (a wait would save no slot worth saving: under light load that is latency for nothing), or
        when every shard waits on the sender and none can add to it: nothing of its lane is under way, or every
        shard waits on findings of this very request. Otherwise
        it fills for at most `wait_seconds` from when it could first have gone: from the later of its oldest finding's
        coming and the lane's last request. Under a backlog the findings waited for the quota, not to fill; counting
        from their coming would send the last of each part alone, while an answer under way frees a shard to hand its
        next part.
        """
        if lane_queue.full():
            return None
        if not lane_queue.in_flight and (every_shard_waits or not self._hub.busy([lane])):
            return None
        if every_shard_waits and {c.ticket for c in self._connections} <= {h.ticket for h in lane_queue.pending}:
            return None  # every shard waits on this very request (under 100 findings): no answer under way frees one
        due = max(lane_queue.pending[0].at, lane_queue.taken_at) + self._wait
        return None if now >= due else due

    def _send(self, key: tuple[Lane, bool], lane_queue: LaneQueue, batch: list[Handed]) -> None:
        """Sends one request's findings through the sink, and tells each shard what became of its own."""
        by_item = {id(handed.item): handed for handed in batch}
        accepted: set[int] = set()
        dead: set[int] = set()  # what Security Hub refused, each dead-lettered: the rest not accepted was parked
        answered: list[int] = []  # the requests that were accepted, each counted to a delivery as it was

        def heard(items: list[EncodedFinding]) -> None:
            # Told and counted at once: a shard whose findings were all accepted goes on, while another's finding
            # of the same request is still retried.
            by_ticket: dict[Ticket, list[int]] = {}
            for item in items:
                handed = by_item[id(item)]
                accepted.add(id(item))
                by_ticket.setdefault(handed.ticket, []).append(handed.index)
            answered.append(1)
            for number, (ticket, indexes) in enumerate(by_ticket.items()):
                self._settled(ticket, accepted=indexes, requests=int(number == 0))

        error: Exception | None = None
        first_of_lane = key not in self._sent_lanes
        try:
            probe = any(handed.ticket.probe for handed in batch)  # a request goes to its lane whole
            report = self._hub.deliver_encoded(
                [handed.item for handed in batch],
                heard,
                park=key[1],
                screened_of=key[0],
                probe=probe,
                on_dead_lettered=lambda items: dead.update(id(item) for item in items),
            )
            self._settle(batch, key[0], accepted, dead, replace(report, requests=report.requests - len(answered)))
            if first_of_lane:
                # The lane's client, its credentials and botocore's model, made for its first request, are the
                # sender's for good: out of the collector's sight, as what the sender made as it started.
                self._sent_lanes.add(key)
                gc.freeze()
        except Exception as exc:  # SinkError above all; anything else ends the shards' deliveries all the same
            error = exc
        finally:
            with self._condition:
                lane_queue.in_flight -= 1
                self._condition.notify_all()
        if error is not None:
            log.error("a request of lane %s failed: %s: %s", key[0], type(error).__name__, error)
            for ticket in {handed.ticket for handed in batch}:
                self._fail(ticket, error)

    def _settle(
        self, batch: list[Handed], lane: Lane, accepted: set[int], dead: set[int], report: DeliveryReport
    ) -> None:
        """Counts what became of each finding of a request of `lane` sent that was not accepted (those were counted
        as they were), into its shard's delivery. The request's own counts that were not counted as it was accepted
        (requests that failed, throttling, retries) go to the delivery of its first finding, if that is not over."""
        with self._condition:
            first = batch[0].ticket.report
            first.requests += report.requests
            first.throttled += report.throttled
            first.retried += report.retried
        left: dict[Ticket, list[int]] = {}
        for handed in batch:
            if id(handed.item) not in accepted:
                counts = left.setdefault(handed.ticket, [0, 0])
                counts[0 if id(handed.item) in dead else 1] += 1
        for ticket, (dead_lettered, parked) in left.items():  # parked, or without parking left owed
            self._settled(ticket, dead_lettered=dead_lettered, parked=parked, lane=lane)

    def _settled(
        self,
        ticket: Ticket,
        *,
        accepted: Sequence[int] = (),
        dead_lettered: int = 0,
        parked: int = 0,
        lane: Lane | None = None,
        requests: int = 0,
    ) -> None:
        """Counts what became of some of a delivery's findings (`parked` ones of `lane`); tells the shard of those
        accepted, and answers its delivery once every one of its findings is counted."""
        with ticket.answering:
            with self._condition:  # the counts of a delivery whose findings went in several requests at once
                live = not ticket.over
                ticket.report.accepted += len(accepted)
                ticket.report.dead_lettered += dead_lettered
                ticket.report.parked += parked
                if parked and lane is not None:
                    ticket.parked_lanes[lane] += parked
                ticket.report.requests += requests
                ticket.left -= len(accepted) + dead_lettered + parked
                done = live and ticket.left == 0
                if done:
                    ticket.over = True
                    ticket.connection.waiting = False
                    self._condition.notify_all()
            if live and accepted:
                ticket.connection.send(Accepted(list(accepted)))
            if done:
                parked_lanes = [(*astuple(lane), count) for lane, count in ticket.parked_lanes.items()]
                ticket.connection.send(Done(dataclasses.asdict(ticket.report), parked_lanes=parked_lanes))

    def _fail(self, ticket: Ticket, error: Exception) -> None:
        """Ends a shard's delivery in `error`: nothing it handed may be checkpointed."""
        with ticket.answering:
            with self._condition:
                if ticket.over:
                    return
                ticket.over = True
                ticket.connection.waiting = False
                self._drop(lambda handed: handed.ticket is ticket)  # nobody will record what it handed
                self._condition.notify_all()
            ticket.connection.send(_failed(error))

    def _update(self, connection: _Connection, message: Update) -> None:
        """Sets workflow statuses for a shard, asking it before each request which are still owed."""

        def still_owed(batch: list[WorkflowUpdate]) -> set[str]:
            connection.send(StillOwed([update.key for update in batch]))
            keys = connection.owed.get()
            if keys is None:
                raise SinkError("the shard went while its workflow updates were under way")
            return set(keys)

        try:
            updates = [
                WorkflowUpdate(wired.key, wired.finding_id, wired.product_arn, wired.status, Lane(*wired.lane))
                for wired in message.updates
            ]
            report = self._hub.update_workflows(updates, still_owed)
        except Exception as exc:
            answer: ToShard = _failed(exc)
        else:
            counts = {"left_owed": report.left_owed, "superseded": report.superseded, "requests": report.requests}
            answer = Done(counts, report.processed)
        with self._condition:
            connection.waiting = False
        connection.send(answer)
