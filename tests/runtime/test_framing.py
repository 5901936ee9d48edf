"""``StreamFrameChannel.close``: graceful while the peer takes the data, bounded when it does
not. A peer that stopped reading never takes the unsent data, so the close waits at most
``CLOSE_WAIT_S`` and then aborts, and a ``write_frame`` waiting in ``drain()`` ends with it.

Every wait is bounded by ``WAIT_S``; nothing asserts how fast a close was.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import pytest_asyncio

from runtime import framing
from runtime.framing import StreamFrameChannel
from tests.runtime.helpers import WAIT_S

BIG_FRAME = b"x" * 2_000_000
"""Far more than the socket buffers and the peer's reader hold: a send of it waits in drain()
until the peer reads."""


@dataclass
class Pair:
    """Two ends of a Unix socket pair: ``channel`` under test, ``peer`` reading or not."""

    channel: StreamFrameChannel
    peer: StreamFrameChannel


@pytest_asyncio.fixture
async def pair() -> AsyncIterator[Pair]:
    """A connected pair; both ends closed after the test, whatever it left behind."""
    near, far = socket.socketpair()
    reader, writer = await asyncio.open_unix_connection(sock=near)
    peer_reader, peer_writer = await asyncio.open_unix_connection(sock=far)
    channel = StreamFrameChannel(reader, writer, max_frame_bytes=4 * len(BIG_FRAME))
    peer = StreamFrameChannel(peer_reader, peer_writer, max_frame_bytes=4 * len(BIG_FRAME))
    try:
        yield Pair(channel, peer)
    finally:
        for end in (writer, peer_writer):
            # Unsent data left: abort. None: close (abort would raise on a transport that
            # closed itself after flushing, on CPython 3.11).
            if end.transport.get_write_buffer_size():
                end.transport.abort()
            else:
                end.close()
        await asyncio.sleep(0)  # let connection_lost run on this loop


async def stuck_send(channel: StreamFrameChannel) -> asyncio.Task[None]:
    """A ``write_frame`` of ``BIG_FRAME`` that is waiting in ``drain()``."""
    task = asyncio.create_task(channel.write_frame(BIG_FRAME))
    await asyncio.sleep(0.05)  # not a timing assertion: a chance for the socket to fill
    assert not task.done(), "the peer took the whole frame: the test sends too little"
    return task


async def ended(task: asyncio.Task[None]) -> None:
    """``task`` ends within ``WAIT_S``: returned, or refused because the channel is gone."""
    try:
        with contextlib.suppress(ConnectionError):
            await asyncio.wait_for(task, WAIT_S)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_peer_that_reads_gets_every_frame_before_the_close(pair: Pair) -> None:
    frames = [bytes([n]) * 100_000 for n in range(8)]  # more than the kernel buffers at once
    sends = asyncio.create_task(_send_all(pair.channel, frames))
    closed = asyncio.create_task(_close_after(pair.channel, sends))
    received = [await asyncio.wait_for(pair.peer.read_frame(), WAIT_S) for _ in frames]
    assert received == frames
    with pytest.raises(EOFError):
        await asyncio.wait_for(pair.peer.read_frame(), WAIT_S)
    await asyncio.wait_for(closed, WAIT_S)


async def _send_all(channel: StreamFrameChannel, frames: list[bytes]) -> None:
    for frame in frames:
        await channel.write_frame(frame)


async def _close_after(channel: StreamFrameChannel, sends: asyncio.Task[None]) -> None:
    await sends
    await channel.close()


async def test_a_close_on_a_peer_that_takes_no_data_ends_and_ends_the_stuck_send(
        pair: Pair, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(framing, "CLOSE_WAIT_S", 0.05)  # the bound, small to keep this quick
    stuck = await stuck_send(pair.channel)
    await asyncio.wait_for(pair.channel.close(), WAIT_S)
    await ended(stuck)
    with pytest.raises(ConnectionError):
        await pair.channel.write_frame(b"after")


async def test_a_close_cancelled_while_it_waits_still_ends_the_stuck_send(
        pair: Pair, monkeypatch: pytest.MonkeyPatch) -> None:
    """A caller's own bound on closing (the link's ``close_timeout_s``) cancels the close
    inside its wait: the transport is aborted all the same."""
    monkeypatch.setattr(framing, "CLOSE_WAIT_S", 3600.0)  # only the cancel can end the wait
    stuck = await stuck_send(pair.channel)
    closing = asyncio.create_task(pair.channel.close())
    await asyncio.sleep(0.05)  # into wait_closed
    assert not closing.done()
    closing.cancel()
    await asyncio.gather(closing, return_exceptions=True)
    await ended(stuck)
