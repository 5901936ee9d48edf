"""``read_lines``: the lines of an open file, streamed, each bounded in bytes.

An audit log can grow to gigabytes, and a damaged or forged one can hold a "line" of any
length, so a log is never read whole: ``read_lines`` reads fixed chunks and holds at most one
chunk plus one line at a time. A line longer than the limit ends the reading with an
``over_limit`` line instead of growing the buffer. The last line of the file is reported with
``complete=False`` when it has no ``\\n`` (a torn write).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

READ_CHUNK_BYTES = 64 * 1024
"""Bytes asked of each ``os.read``."""


@dataclass(frozen=True, slots=True)
class FileLine:
    """One line of a file, without its ``\\n``."""

    number: int
    """1 for the first line."""
    offset: int
    """Byte offset of its first byte in the file."""
    data: bytes
    """Its bytes, without the ``\\n``; empty when ``over_limit``."""
    complete: bool
    """It ended in ``\\n``; False for a last line cut short, and for an ``over_limit`` one."""
    over_limit: bool = False
    """No ``\\n`` came within the limit: the line is longer than allowed and was not read
    further; always the last line ``read_lines`` yields."""


def read_lines(fd: int, *, max_line_bytes: int) -> Iterator[FileLine]:
    """The lines of ``fd`` from its current offset (which must be 0 for ``offset`` to be the
    file's). A line may have at most ``max_line_bytes`` bytes, its ``\\n`` included. Memory:
    at most ``max_line_bytes + READ_CHUNK_BYTES`` bytes. ``OSError`` from reading propagates."""
    buffer = bytearray()
    buffer_offset = 0  # file offset of buffer[0]
    number = 0
    while True:
        start = 0
        while True:
            newline = buffer.find(b"\n", start, start + max_line_bytes)
            if newline < 0:
                break
            number += 1
            yield FileLine(number, buffer_offset + start, bytes(buffer[start:newline]),
                           complete=True)
            start = newline + 1
        del buffer[:start]  # once per chunk: lines are sliced out by index, not deleted
        buffer_offset += start
        if len(buffer) >= max_line_bytes:
            yield FileLine(number + 1, buffer_offset, b"", complete=False, over_limit=True)
            return
        chunk = os.read(fd, READ_CHUNK_BYTES)
        if not chunk:
            if buffer:
                yield FileLine(number + 1, buffer_offset, bytes(buffer), complete=False)
            return
        buffer += chunk
