"""What a shard process and the worker's sender say to each other over the sender's Unix socket: msgpack messages,
each framed by its length.

A shard asks one thing at a time (`Deliver` or `Update`) and reads answers until the one that ends it (`Done` or
`Failed`); on the way it hears of each request's accepted findings (`Accepted`) and, for workflow updates, is asked
which are still owed (`StillOwed`, answered by `Owed`).
"""

from __future__ import annotations

import socket
import struct

import msgspec

from defender_hub.sink.batching import RecordOrigin

__all__ = [
    "MAX_FRAME_BYTES",
    "Accepted",
    "Deliver",
    "Done",
    "Failed",
    "FrameReader",
    "Owed",
    "StillOwed",
    "ToSender",
    "ToShard",
    "Update",
    "WireFinding",
    "WireUpdate",
    "decode_to_sender",
    "decode_to_shard",
    "frame",
]

_LENGTH = struct.Struct(">I")
MAX_FRAME_BYTES = 1 << 30
"""The longest frame read: a shard's part of 5,000 records makes some 10 MB of findings, and a length past this is a
broken peer, not a delivery to hold in memory."""


class WireFinding(msgspec.Struct, array_like=True, gc=False):  # of bytes, text and origins: in no cycle
    """A finding as a shard encoded and screened it: its body (the request's JSON of it), what the sender needs to
    know of it without decoding the body (its ledger key, Id and lane's partition, account and Region), its origins
    and its version."""

    body: bytes
    key: str
    finding_id: str
    lane: tuple[str, str, str]
    origins: list[RecordOrigin | None]
    version_ms: int | None = None


class WireUpdate(msgspec.Struct, array_like=True, gc=False):  # of text: in no cycle
    """A workflow update: the shard's key for it, the finding, the status, and its lane's partition, account and
    Region."""

    key: str
    finding_id: str
    product_arn: str
    status: str
    lane: tuple[str, str, str]


class Deliver(msgspec.Struct, tag="deliver", array_like=True):
    """Findings to send; without `park`, a refused lane's are left owed rather than parked. With `probe`, a parked
    lane is asked again for them (`SecurityHubSink.deliver_encoded`)."""

    findings: list[WireFinding]
    park: bool = True
    probe: bool = False


class Update(msgspec.Struct, tag="update", array_like=True):
    """Workflow updates to set."""

    updates: list[WireUpdate]


class Owed(msgspec.Struct, tag="owed", array_like=True):
    """The shard's answer to `StillOwed`: the keys still owed."""

    keys: list[str]


class Accepted(msgspec.Struct, tag="accepted", array_like=True):
    """Security Hub accepted these findings of the delivery, by their place in it."""

    indexes: list[int]


class StillOwed(msgspec.Struct, tag="still_owed", array_like=True):
    """Which of these updates' keys are still owed? Asked right before each request."""

    keys: list[str]


class Done(msgspec.Struct, tag="done", array_like=True):
    """The delivery or the update is over: its counts (`DeliveryReport`'s, `WorkflowReport`'s); for an update, the
    keys Security Hub processed; for a delivery, how many of its findings each lane (partition, account, Region)
    parked or left owed."""

    counts: dict[str, int]
    processed: list[str] = []
    parked_lanes: list[tuple[str, str, str, int]] = []


class Failed(msgspec.Struct, tag="failed", array_like=True):
    """The delivery or the update can't be done: the error's class name and what it said."""

    error: str
    message: str


ToSender = Deliver | Update | Owed
ToShard = Accepted | StillOwed | Done | Failed

_encoder = msgspec.msgpack.Encoder()
decode_to_sender = msgspec.msgpack.Decoder(ToSender).decode
decode_to_shard = msgspec.msgpack.Decoder(ToShard).decode


def frame(message: ToSender | ToShard) -> bytearray:
    """`message` encoded, after its length."""
    # Encoded in place after room for its length, rather than joined to it: a part's frame is megabytes.
    framed = bytearray(_LENGTH.size)
    _encoder.encode_into(message, framed, _LENGTH.size)
    _LENGTH.pack_into(framed, 0, len(framed) - _LENGTH.size)
    return framed


class FrameReader:
    """Reads whole frames from a socket, keeping what a timeout interrupted for the next read."""

    def __init__(self, connection: socket.socket) -> None:
        self._connection = connection
        self._length = bytearray()
        self._body: bytearray | None = None
        self._got = 0

    def read(self) -> bytearray:
        """The next frame's body; raises EOFError when the other end closed, TimeoutError (socket.timeout) when the
        socket's timeout passed first, with what came so far kept."""
        while self._body is None:
            chunk = self._connection.recv(_LENGTH.size - len(self._length))
            if not chunk:
                raise EOFError("the other end closed the connection")
            self._length += chunk
            if len(self._length) == _LENGTH.size:
                (length,) = _LENGTH.unpack(self._length)
                if length > MAX_FRAME_BYTES:
                    raise EOFError(f"a frame of {length} bytes, over {MAX_FRAME_BYTES}: the connection is broken")
                # Received where it will stay: a part's frame is megabytes, and each copy of it cost the sender as
                # much as its request's signing.
                self._body, self._got = bytearray(length), 0
        body = memoryview(self._body)
        while self._got < len(body):
            got = self._connection.recv_into(body[self._got :])
            if not got:
                raise EOFError("the other end closed the connection")
            self._got += got
        whole, self._body = self._body, None
        self._length.clear()
        return whole
