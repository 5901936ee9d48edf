"""``wipe_buffer``: every kind of buffer it takes is zeroed in place (bytes of at least
``MIN_WIPE_BYTES`` included, smaller ones left alone), read-only views through what they view,
views of views, and anything else refused with ``TypeError``.

Every ``bytes`` here is made at run time (``os.urandom``, ``bytes(...)``): a constant would be
shared with the code object, and wiping it would change the test itself.
"""

from __future__ import annotations

import array
import gc
import mmap
import os

import numpy as np
import pytest

from secure.memory_wipe import MIN_WIPE_BYTES, wipe_buffer


def secret(size: int) -> bytes:
    """``size`` random bytes, none of them zero (so "all zeros" means wiped)."""
    return bytes(b | 1 for b in os.urandom(size))


# --- bytes --------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [MIN_WIPE_BYTES, MIN_WIPE_BYTES + 1, 4096, 1 << 20])
def test_bytes_of_at_least_the_minimum_are_zeroed_in_place(size: int) -> None:
    data = secret(size)
    identity = id(data)
    wipe_buffer(data)
    assert id(data) == identity
    assert len(data) == size
    assert data == bytes(size)
    assert data.count(0) == size


def test_only_the_bytes_contents_are_written_not_the_object_around_it() -> None:
    neighbours = [secret(MIN_WIPE_BYTES) for _ in range(50)]
    victim = neighbours[25]
    wipe_buffer(victim)
    assert victim == bytes(MIN_WIPE_BYTES)
    assert all(other.count(0) == 0 for i, other in enumerate(neighbours) if i != 25)
    # The object is still a sound bytes object: slicing, hashing and freeing it work.
    assert victim[:4] == b"\0\0\0\0"
    assert isinstance(hash(victim), int)
    del victim, neighbours
    gc.collect()


@pytest.mark.parametrize("size", [0, 1, 2, MIN_WIPE_BYTES - 1])
def test_small_bytes_are_left_untouched(size: int) -> None:
    data = secret(size)
    before = bytes(bytearray(data))
    wipe_buffer(data)
    assert data == before


def test_the_shared_empty_and_one_byte_objects_survive() -> None:
    wipe_buffer(b"")
    wipe_buffer(bytes([7]))
    assert bytes([7]) == b"\x07"
    assert len(b"") == 0


# --- bytearray and memoryview -------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 63, 64, 5000])
def test_a_bytearray_is_zeroed_whatever_its_size(size: int) -> None:
    data = bytearray(secret(size))
    wipe_buffer(data)
    assert data == bytearray(size)


def test_a_writable_memoryview_zeroes_only_what_it_shows() -> None:
    data = bytearray(secret(256))
    before = bytes(data)
    wipe_buffer(memoryview(data)[64:128])
    assert data[64:128] == bytearray(64)
    assert data[:64] == before[:64]
    assert data[128:] == before[128:]


def test_a_view_of_a_view_is_zeroed() -> None:
    data = bytearray(secret(256))
    inner = memoryview(data)[32:224]
    wipe_buffer(memoryview(inner)[16:48])
    assert data[48:80] == bytearray(32)
    assert data[47] != 0
    assert data[80] != 0


def test_a_writable_memoryview_of_another_format_is_zeroed() -> None:
    floats = array.array("d", [1.5, -2.0, 3.25, 7.0])
    wipe_buffer(memoryview(floats))
    assert list(floats) == [0.0, 0.0, 0.0, 0.0]
    matrix = np.ones((3, 4), np.float32)
    wipe_buffer(matrix.data)  # numpy's writable memoryview
    assert not matrix.any()


def test_a_read_only_view_over_bytes_zeroes_the_bytes_it_shows() -> None:
    data = secret(512)
    wipe_buffer(memoryview(data)[100:200])
    assert data[100:200] == bytes(100)
    full = secret(512)
    wipe_buffer(memoryview(memoryview(full)))  # a view of a view, read-only
    assert full == bytes(512)


def test_a_read_only_view_of_a_bytearray_is_zeroed() -> None:
    data = bytearray(secret(128))
    wipe_buffer(memoryview(data).toreadonly())
    assert data == bytearray(128)


def test_a_read_only_view_of_something_else_is_refused() -> None:
    with (mmap.mmap(-1, 4096, prot=mmap.PROT_READ) as mapped,
          pytest.raises(TypeError, match="read-only memoryview of mmap")):
        wipe_buffer(memoryview(mapped))


# --- numpy arrays -------------------------------------------------------------------------------


def test_a_writable_array_and_a_strided_view_of_it_are_zeroed() -> None:
    matrix = np.arange(1, 41, dtype=np.float32).reshape(4, 10)
    wipe_buffer(matrix[:, ::3])  # not contiguous
    assert not matrix[:, ::3].any()
    assert matrix[:, 1].all()
    wipe_buffer(matrix)
    assert not matrix.any()


def test_a_read_only_array_over_bytes_is_zeroed_through_them() -> None:
    data = secret(4 * 192 * 3)
    rows = np.frombuffer(data, np.float32).reshape(3, 192)
    assert not rows.flags.writeable
    wipe_buffer(rows[1])  # a view of a view of the bytes
    assert not rows[1].any()
    assert not np.frombuffer(data, np.uint8)[4 * 192:8 * 192].any()


def test_a_read_only_array_over_a_memoryview_slice_is_zeroed() -> None:
    # How the codec hands arrays over: a view on the payload after a header, in one bytes.
    message = bytes(16) + secret(4 * 256)
    rows = np.frombuffer(memoryview(message)[16:], np.float32)
    wipe_buffer(rows)
    assert message == bytes(len(message))


def test_a_read_only_view_of_a_writable_array_is_zeroed() -> None:
    base = np.ones((8, 8), np.float32)
    view = base[2:4]
    view.flags.writeable = False
    wipe_buffer(view)
    assert not base[2:4].any()


def test_a_read_only_array_over_something_unwipeable_is_refused() -> None:
    mapped = mmap.mmap(-1, 4096, prot=mmap.PROT_READ)
    rows = np.frombuffer(mapped, np.uint8)
    try:
        wipe_buffer(rows)
    except TypeError as exc:
        refused = str(exc)
    else:
        refused = ""
    del rows
    gc.collect()
    mapped.close()
    assert refused.startswith("cannot wipe a read-only")


# --- anything else ------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["text", 3, 2.5, None, [1, 2], (1, 2), {b"k": b"v"},
                                   array.array("b", [1, 2])])
def test_anything_else_is_refused_with_type_error(value: object) -> None:
    with pytest.raises(TypeError, match="cannot wipe"):
        wipe_buffer(value)  # type: ignore[arg-type]
