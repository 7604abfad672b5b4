"""The wire between shard processes and the worker's sender: frames read whole, however the socket cuts them."""

from __future__ import annotations

import socket
import struct

import pytest

from defender_hub.sender.wire import MAX_FRAME_BYTES, Done, FrameReader, decode_to_shard, frame


def test_frames_cut_anywhere_and_interrupted_by_timeouts_are_read_whole_and_in_order() -> None:
    messages = [Done({"accepted": n}) for n in range(3)] + [Done({"accepted": 7, "requests": 10**9})]
    wire = b"".join(frame(message) for message in messages)
    near, far = socket.socketpair()
    near.settimeout(0.05)
    reader = FrameReader(near)
    read: list[object] = []
    with near, far:
        for cut in (1, 2, 3, 5, 8, 13, len(wire)):  # the header alone, a header cut in two, bodies cut anywhere
            piece, wire = wire[:cut], wire[cut:]
            far.sendall(piece)
            while True:
                try:
                    read.append(decode_to_shard(reader.read()))
                except TimeoutError:  # what came so far is kept for the next read
                    break
            if not wire:
                break

    assert read == messages


def test_a_frame_over_the_limit_or_a_close_in_the_middle_is_a_broken_connection() -> None:
    near, far = socket.socketpair()
    with near, far:
        far.sendall(struct.pack(">I", MAX_FRAME_BYTES + 1))
        with pytest.raises(EOFError, match="over"):
            FrameReader(near).read()
    for cut in (2, len(frame(Done({"accepted": 1}))) - 1):  # in the middle of the length, or of the body
        near, far = socket.socketpair()
        with near:
            far.sendall(frame(Done({"accepted": 1}))[:cut])
            far.close()
            with pytest.raises(EOFError, match="closed"):
                FrameReader(near).read()
