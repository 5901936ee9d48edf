"""Length-prefixed frames over a byte stream, behind a small ``FrameChannel`` protocol.

A frame is a 4-byte big-endian length followed by that many bytes (one codec message). The
``Link`` only needs ``FrameChannel``, so a message-oriented transport (a WebRTC data channel)
can implement it without the length prefix.
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


class FrameTooLarge(RuntimeFault, ConnectionError):
    """The peer announced a frame over the limit; the stream cannot be trusted any more."""


class FrameChannel(Protocol):
    """A bidirectional channel of whole frames."""

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
                 max_frame_bytes: int) -> None:
        self._reader = reader
        self._writer = writer
        self.max_frame_bytes = max_frame_bytes
        peer = writer.get_extra_info("peername")
        self.description = f"{peer}" if peer else "unix socket peer"

    async def read_frame(self) -> bytes:
        try:
            header = await self._reader.readexactly(_LENGTH.size)
            (size,) = _LENGTH.unpack(header)
            if size > self.max_frame_bytes:
                raise FrameTooLarge(f"peer announced a frame of {size} bytes, over the limit "
                                    f"of {self.max_frame_bytes}")
            return await self._reader.readexactly(size)
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
        self._writer.close()
        with contextlib.suppress(ConnectionError, OSError):  # already gone: fine when closing
            await self._writer.wait_closed()
