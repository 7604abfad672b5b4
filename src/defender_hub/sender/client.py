"""A shard process's way to the worker's sender (and a sweep's of `run`): the `Sender` its ledgered sink sends
through, in place of a Security Hub sink of its own."""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

import msgspec

from defender_hub.errors import DeadLetterError, LedgerError, SinkError, SinkStopped
from defender_hub.lifecycle import finding_key
from defender_hub.sender.wire import (
    Accepted,
    Deliver,
    Done,
    FrameReader,
    Owed,
    StillOwed,
    ToSender,
    ToShard,
    Update,
    WireFinding,
    WireUpdate,
    decode_to_shard,
    frame,
)
from defender_hub.sink import Accepted as OnAccepted
from defender_hub.sink import DeadLetters, DeliveryReport, EncodedFinding, Lane
from defender_hub.sink.securityhub import screen
from defender_hub.sink.workflow import StillOwed as StillOwedCheck
from defender_hub.sink.workflow import WorkflowReport, WorkflowUpdate

__all__ = ["SenderClient"]

STOP_CHECK_SECONDS = 0.5
"""How often a shard waiting on the sender looks whether it was told to stop."""
SILENCE_LIMIT_SECONDS = 900.0
"""How long a shard waits for the sender to take any more of a delivery, or for its next word, before it takes the
sender for stuck and fails its delivery (so it exits without checkpoint, and its lease can go to a worker that
works): well past a lane's outage limit (300 s), after which the sender parks it, and a finding's ten tries."""
_ERRORS: dict[str, type[SinkError]] = {
    error.__name__: error for error in (SinkError, SinkStopped, DeadLetterError, LedgerError)
}


class SenderClient:
    """Hands findings and workflow updates to the worker's sender at `path` and waits for its answers; raises
    SinkError when the sender can't be reached or goes, so nothing past them is checkpointed. With `probe` (a sweep's
    client), its findings ask a lane the sender has parked again rather than be parked at once."""

    def __init__(
        self,
        path: Path,
        dead_letters: DeadLetters,
        stop: threading.Event,
        silence_seconds: float = SILENCE_LIMIT_SECONDS,
        *,
        probe: bool = False,
    ) -> None:
        self.path, self._stop, self._silence_seconds, self.probe = path, stop, silence_seconds, probe
        self.dead_letters = dead_letters
        """The shard's own dead letters, for what it refuses before sending (findings from the future, findings
        Security Hub would refuse); the sender keeps those of what it sends."""
        self.parked_findings: Counter[Lane] = Counter()
        """The findings the sender parked, or left owed, of this client's deliveries, by lane."""
        self._lock = threading.Lock()
        self._connection: socket.socket | None = None
        self._reader: FrameReader | None = None

    def deliver_encoded(
        self, encoded: list[EncodedFinding], on_accepted: OnAccepted | None = None, *, park: bool = True
    ) -> DeliveryReport:
        """Screens `encoded` (what Security Hub would refuse goes to the shard's dead letters) and hands the rest to
        the sender; `on_accepted` hears of each request's accepted findings; returns once the sender answered for
        every one. Raises SinkError."""
        valid, rejected = screen(encoded)
        if rejected:
            self.dead_letters.put(rejected)
        report = DeliveryReport(dead_lettered=len(encoded) - len(valid))
        if not valid:
            return report
        findings = []
        for item in valid:
            lane = Lane.of(item.doc)
            wired_lane = (lane.partition, lane.account, lane.region)
            findings.append(
                WireFinding(item.body, finding_key(item.doc), item.id, wired_lane, item.origins, item.version_ms)
            )
        with self._lock:
            answer = self._ask(Deliver(findings, park, self.probe), valid, on_accepted, None)
            for partition, account, region, count in answer.parked_lanes:
                self.parked_findings[Lane(partition, account, region)] += count
        report.add(DeliveryReport(**answer.counts))
        return report

    def update_workflows(
        self, updates: Iterable[WorkflowUpdate], still_owed: StillOwedCheck | None = None
    ) -> WorkflowReport:
        """Has the sender set the Workflow.Status of `updates`; `still_owed` is asked before each request. Raises
        SinkError."""
        updates = list(updates)  # read twice: an iterator would leave the second read empty
        wired = [
            WireUpdate(u.key, u.finding_id, u.product_arn, u.status, (u.lane.partition, u.lane.account, u.lane.region))
            for u in updates
        ]
        if not wired:
            return WorkflowReport()
        by_key = {update.key: update for update in updates}

        def owed(keys: list[str]) -> set[str]:
            return set(keys) if still_owed is None else still_owed([by_key[key] for key in keys])

        with self._lock:
            answer = self._ask(Update(wired), [], None, owed)
        return WorkflowReport(processed=answer.processed, **answer.counts)

    def connect(self) -> None:
        """Connects to the sender now, rather than at the first delivery; raises SinkError when none listens."""
        with self._lock:
            try:
                self._connected()
            except OSError as exc:
                raise SinkError(f"the worker's sender at {self.path} can't be reached: {exc}") from exc

    def close(self) -> None:
        """Closes the connection, if any."""
        if self._connection is not None:
            self._connection.close()
        self._connection = self._reader = None

    def _ask(
        self,
        message: ToSender,
        encoded: list[EncodedFinding],
        on_accepted: OnAccepted | None,
        still_owed: Callable[[list[str]], set[str]] | None,
    ) -> Done:
        """Sends `message` and reads the answers until its last; raises SinkError (the connection closed then, so an
        answer meant for this never reads as one for the next)."""
        try:
            connection, reader = self._connected()
            self._send(connection, message)
            while True:
                answer = self._read(reader)
                if isinstance(answer, Accepted):
                    if on_accepted is not None:
                        on_accepted([encoded[index] for index in answer.indexes])
                elif isinstance(answer, StillOwed):
                    owed = answer.keys if still_owed is None else sorted(still_owed(answer.keys))
                    self._send(connection, Owed(owed))
                elif isinstance(answer, Done):
                    return answer
                else:
                    raise _ERRORS.get(answer.error, SinkError)(answer.message)
        except (OSError, EOFError, msgspec.DecodeError) as exc:
            self.close()
            problem = f"{type(exc).__name__}: {exc}"
            raise SinkError(f"the worker's sender at {self.path} can't be reached: {problem}") from exc
        except BaseException:
            self.close()
            raise

    def _send(self, connection: socket.socket, message: ToSender) -> None:
        """Writes `message` whole, looking every STOP_CHECK_SECONDS whether a stop was asked; raises SinkStopped, or
        SinkError when the sender takes none of it for its silence limit. A frame left half written goes with the
        connection, which the caller closes: the sender drops a frame its connection ended in."""
        # A part's frame is megabytes, more than the socket holds: a sender that reads nothing (alive, yet stuck)
        # would hold this shard in the write for good, where the reads already give up after the same limit.
        unsent = memoryview(frame(message))
        since = time.monotonic()
        while unsent:
            try:
                unsent = unsent[connection.send(unsent) :]
                since = time.monotonic()
            except TimeoutError:
                if self._stop.is_set():
                    raise SinkStopped(
                        "stop requested while the sender was still taking a delivery of this shard"
                    ) from None
                if time.monotonic() - since > self._silence_seconds:
                    raise SinkError(
                        f"the worker's sender at {self.path} took nothing of a delivery for {self._silence_seconds:g} "
                        "s: taken for stuck"
                    ) from None

    def _read(self, reader: FrameReader) -> ToShard:
        """The sender's next answer, looking every STOP_CHECK_SECONDS whether a stop was asked; raises SinkStopped, or
        SinkError when the sender says nothing for its silence limit."""
        since = time.monotonic()
        while True:
            try:
                answer: ToShard = decode_to_shard(reader.read())
                return answer
            except TimeoutError:
                if self._stop.is_set():
                    raise SinkStopped("stop requested while the sender still had findings of this shard") from None
                if time.monotonic() - since > self._silence_seconds:
                    raise SinkError(
                        f"the worker's sender at {self.path} said nothing for {self._silence_seconds:g} s: taken "
                        "for stuck"
                    ) from None

    def _connected(self) -> tuple[socket.socket, FrameReader]:
        if self._connection is None or self._reader is None:
            connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                connection.connect(str(self.path))
            except OSError:
                connection.close()
                raise
            connection.settimeout(STOP_CHECK_SECONDS)
            self._connection, self._reader = connection, FrameReader(connection)
        return self._connection, self._reader
