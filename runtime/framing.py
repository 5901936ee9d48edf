"""Length-prefixed frames over a byte stream, behind a small ``FrameChannel`` protocol.

A frame is a 4-byte big-endian length followed by that many bytes (one codec message). The
``Link`` only needs ``FrameChannel``, so a message-oriented transport (a WebRTC data channel)
can implement it without the length prefix.

Reading is bounded: the length is checked against ``max_frame_bytes`` before a byte of the body
is read, the body must arrive within ``partial_frame_timeout_s``, and the stream reader's own
limit pauses the socket once that much is buffered unread. One frame being read therefore holds
at most ``max_frame_bytes`` plus twice the reader's limit, and not for longer than the timeout.

Closing is bounded too: ``StreamFrameChannel.close`` waits at most ``CLOSE_WAIT_S`` for the
stream to close (its unsent data taken by the peer), then aborts the transport, also when the
wait is cancelled. Unsent data is then dropped and a ``write_frame`` waiting in ``drain()`` for a
peer that takes no data returns, so no send outlives its channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from typing import Protocol

from runtime.errors import RuntimeFault

_LENGTH = struct.Struct(">I")
WRITE_HIGH_WATER_BYTES = 256 * 1024
"""Above this much unsent data, ``write_frame`` waits for the socket to drain (backpressure)."""
CLOSE_WAIT_S = 3.0
"""``StreamFrameChannel.close`` waits at most this long (s) for the peer to take the unsent data
before it aborts the transport: a peer that stopped reading would never take it."""


class FrameTooLarge(RuntimeFault, ConnectionError):
    """The peer announced a frame over the limit; the stream cannot be trusted any more."""


class PartialFrameTimeout(RuntimeFault, ConnectionError):
    """A frame's length arrived but its body did not follow in time; the link is closed."""


class FrameChannel(Protocol):
    """A bidirectional channel of whole frames."""

    max_frame_bytes: int
    """Largest frame ``read_frame`` accepts; lowered during the handshake."""

    async def read_frame(self) -> bytes:
        """The next frame; raises ``EOFError``/``ConnectionError`` when the peer is gone."""
        ...

    async def write_frame(self, frame: bytes) -> None:
        """Send one frame; may wait for buffer room."""
        ...

    async def close(self) -> None:
        """Close the channel and wait until it is closed."""
        ...

    @property
    def description(self) -> str:
        """Who is on the other side, for logs."""
        ...


class StreamFrameChannel:
    """``FrameChannel`` over asyncio streams (Unix socket or TCP)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 max_frame_bytes: int, partial_frame_timeout_s: float = 30.0) -> None:
        self._reader = reader
        self._writer = writer
        self.max_frame_bytes = max_frame_bytes
        self.partial_frame_timeout_s = partial_frame_timeout_s
        """Seconds a frame's body may take to arrive once its length has."""
        peer = writer.get_extra_info("peername")
        self.description = f"{peer}" if peer else "unix socket peer"

    async def read_frame(self) -> bytes:
        reader = self._reader
        try:
            header = await reader.readexactly(_LENGTH.size)  # an idle link may wait forever
            (size,) = _LENGTH.unpack(header)
            if size > self.max_frame_bytes:
                raise FrameTooLarge(f"peer announced a frame of {size} bytes, over the limit "
                                    f"of {self.max_frame_bytes}")
            # Arming a timeout costs ~6 us, as much as decoding the frame: skipped when the
            # whole body is buffered already (the common case under load). ``_buffer`` is
            # asyncio's StreamReader's, private but unchanged since 3.4; without it, always arm.
            buffered = getattr(reader, "_buffer", None)
            if buffered is not None and len(buffered) >= size:
                return await reader.readexactly(size)
            try:
                async with asyncio.timeout(self.partial_frame_timeout_s):
                    return await reader.readexactly(size)
            except TimeoutError:
                raise PartialFrameTimeout(
                    f"the peer sent {size} bytes' length but not the frame within "
                    f"{self.partial_frame_timeout_s:g} s") from None
        except asyncio.IncompleteReadError as exc:
            raise EOFError("connection closed by peer") from exc

    async def write_frame(self, frame: bytes) -> None:
        if len(frame) > self.max_frame_bytes:
            raise FrameTooLarge(f"frame of {len(frame)} bytes is over the limit of "
                                f"{self.max_frame_bytes}")
        writer = self._writer
        if writer.is_closing():
            raise ConnectionResetError("connection is closed")
        writer.write(_LENGTH.pack(len(frame)))
        writer.write(frame)
        if writer.transport.get_write_buffer_size() > WRITE_HIGH_WATER_BYTES:
            await writer.drain()

    async def close(self) -> None:
        """Close gracefully within ``CLOSE_WAIT_S``, then abort whatever is left."""
        writer = self._writer
        writer.close()
        try:
            # Already gone, or a peer that takes no data: fine when closing.
            with contextlib.suppress(ConnectionError, OSError, TimeoutError):
                async with asyncio.timeout(CLOSE_WAIT_S):
                    await writer.wait_closed()
        finally:
            # Also when cancelled (a caller's own bound on closing). Unsent data left means the
            # transport is still open: abort drops it and connection_lost wakes any write_frame
            # waiting in drain(). None left means it closed itself (or is closing, its
            # connection_lost scheduled) and there is nothing to abort; CPython 3.11's abort()
            # even raises on a transport that closed itself after flushing.
            transport = writer.transport
            if transport.get_write_buffer_size():
                transport.abort()
