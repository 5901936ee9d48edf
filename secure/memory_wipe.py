"""``wipe_buffer``: overwrite secret bytes in this process's memory with zeros before dropping them.

Python frees memory without clearing it, so an opened watchlist's bytes would linger in the
heap until reused. Whoever drops such bytes calls ``wipe_buffer`` on every copy it made:

- ``bytearray``, writable ``memoryview`` and writable numpy arrays are zeroed in place;
- a read-only numpy array is zeroed through the buffer it views (the codec's arrays are views
  on the ``bytes`` msgpack made for them);
- ``bytes`` are immutable to Python but are a block of memory like any other: their contents
  are zeroed in place with ``ctypes.memset`` at the object's data offset (CPython's
  ``PyBytesObject`` layout: ``ob_sval`` starts at ``bytes.__basicsize__ - 1``). Only buffers of
  at least ``MIN_WIPE_BYTES`` are touched: CPython shares the empty and one-byte objects, and
  only large, freshly made buffers (decrypted plaintexts) are ever passed here.

What this cannot reach: copies made inside native libraries (OpenSSL's or Rust's temporary
buffers inside ``cryptography``) and pages the kernel swapped out (units run without swap:
docs/PRIVACY.md). It narrows the window; it does not make Python a secure allocator.
"""

from __future__ import annotations

import ctypes
import sys
from typing import Final

import numpy as np

if sys.implementation.name != "cpython":  # pragma: no cover - the layout below is CPython's
    raise ImportError("secure.memory_wipe relies on CPython's bytes layout")

MIN_WIPE_BYTES: Final = 64
"""Smaller ``bytes`` objects are never written (they may be shared constants)."""
_BYTES_DATA_OFFSET: Final = bytes.__basicsize__ - 1


def wipe_buffer(buffer: bytes | bytearray | memoryview | np.ndarray) -> None:
    """Overwrite ``buffer``'s contents with zeros (module docstring); anything else is a
    ``TypeError``."""
    if isinstance(buffer, np.ndarray):
        _wipe_array(buffer)
    elif isinstance(buffer, bytearray):
        if buffer:
            ctypes.memset((ctypes.c_char * len(buffer)).from_buffer(buffer), 0, len(buffer))
    elif isinstance(buffer, memoryview):
        if buffer.readonly:
            if isinstance(buffer.obj, bytes | bytearray | np.ndarray):
                wipe_buffer(buffer.obj)
                return
            raise TypeError("cannot wipe a read-only memoryview of "
                            f"{type(buffer.obj).__name__}")
        flat = buffer.cast("B")
        if flat.nbytes:
            ctypes.memset((ctypes.c_char * flat.nbytes).from_buffer(flat), 0, flat.nbytes)
    elif isinstance(buffer, bytes):
        if len(buffer) >= MIN_WIPE_BYTES:
            ctypes.memset(id(buffer) + _BYTES_DATA_OFFSET, 0, len(buffer))
    else:
        raise TypeError(f"cannot wipe a {type(buffer).__name__}")


def _wipe_array(array: np.ndarray) -> None:
    if array.flags.writeable:
        array[...] = 0
        return
    base: object = array.base  # numpy types it as an array, but a view's base is any buffer
    while isinstance(base, np.ndarray) and not base.flags.writeable:
        base = base.base
    if isinstance(base, np.ndarray):
        base[...] = 0
    elif isinstance(base, bytes | bytearray | memoryview):
        wipe_buffer(base)
    else:
        raise TypeError(f"cannot wipe a read-only array over a {type(base).__name__}")
