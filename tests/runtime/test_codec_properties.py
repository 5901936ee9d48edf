"""Property tests of the codec: round trips, and hostile input raising only ``DecodeError``."""

from __future__ import annotations

import enum
import struct
import tracemalloc
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from numpy.typing import NDArray

from runtime import Codec, DecodeError, EncodeError, MessageRegistry, message
from runtime.codec import ALLOWED_DTYPES, NDARRAY_EXT
from tests.runtime.codec_support import same

REGISTRY = MessageRegistry()
CODEC = Codec(REGISTRY)
# Examples are tiny and decoding is synchronous; no per-example deadline on a shared machine.
FUZZ = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


class Mode(enum.Enum):
    IDLE = "idle"
    ACTIVE = "active"


class Rank(enum.IntEnum):
    ONE = 1
    TWO = 2


@message(100, registry=REGISTRY)
@dataclass(frozen=True, slots=True)
class Scalars:
    i: int
    f: float
    s: str
    b: bytes
    flag: bool
    mode: Mode
    rank: Rank


@message(101, registry=REGISTRY)
@dataclass(frozen=True, slots=True)
class Containers:
    maybe: int | None
    items: list[str]
    var: tuple[float, ...]
    fixed: tuple[int, bool, bytes]
    by_name: dict[str, list[int]]
    by_id: dict[int, str | None]


@message(102, registry=REGISTRY)
@dataclass(frozen=True, slots=True)
class Arrays:
    image: NDArray[np.uint8]
    anything: np.ndarray[Any, Any]
    optional: np.ndarray[Any, Any] | None


@message(103, registry=REGISTRY)
@dataclass(frozen=True, slots=True)
class Nested:
    scalars: Scalars
    children: list[Containers]
    arrays: Arrays | None
    tags: dict[str, Scalars]


MSGPACK_INTS = st.integers(min_value=-(2**63), max_value=2**64 - 1)
DTYPES = st.sampled_from(sorted(ALLOWED_DTYPES, key=str))
SHAPES = hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4)

scalars = st.builds(Scalars, i=MSGPACK_INTS, f=st.floats(), s=st.text(), b=st.binary(),
                    flag=st.booleans(), mode=st.sampled_from(Mode),
                    rank=st.sampled_from(Rank))
containers = st.builds(
    Containers,
    maybe=st.none() | MSGPACK_INTS,
    items=st.lists(st.text(max_size=8), max_size=5),
    var=st.lists(st.floats(), max_size=5).map(tuple),
    fixed=st.tuples(MSGPACK_INTS, st.booleans(), st.binary(max_size=8)),
    by_name=st.dictionaries(st.text(max_size=8), st.lists(MSGPACK_INTS, max_size=3), max_size=4),
    by_id=st.dictionaries(MSGPACK_INTS, st.none() | st.text(max_size=8), max_size=4),
)
arrays = st.builds(
    Arrays,
    image=hnp.arrays(np.uint8, SHAPES),
    anything=DTYPES.flatmap(lambda dtype: hnp.arrays(dtype, SHAPES)),
    optional=st.none() | DTYPES.flatmap(lambda dtype: hnp.arrays(dtype, SHAPES)),
)
nested = st.builds(
    Nested, scalars=scalars, children=st.lists(containers, max_size=3),
    arrays=st.none() | arrays, tags=st.dictionaries(st.text(max_size=5), scalars, max_size=3),
)
any_message = st.one_of(scalars, containers, arrays, nested)
REGISTERED = (Scalars, Containers, Arrays, Nested)


@FUZZ
@given(any_message)
def test_every_message_round_trips(original: Any) -> None:
    same(original, CODEC.decode(CODEC.encode(original)))


@FUZZ
@given(st.from_type(Scalars))
def test_messages_from_their_type_hints_round_trip(original: Scalars) -> None:
    # st.from_type picks ints outside msgpack's 64-bit range too: those must fail to encode.
    try:
        data = CODEC.encode(original)
    except EncodeError:
        assert not -(2**63) <= original.i < 2**64
        return
    same(original, CODEC.decode(data))


def _decodes_or_refuses(data: bytes) -> None:
    """The one allowed outcome besides a valid message: ``DecodeError``."""
    try:
        decoded = CODEC.decode(data)
    except DecodeError as exc:
        message = str(exc)
    else:
        assert isinstance(decoded, REGISTERED)
        return
    assert message  # says what was wrong


@FUZZ
@given(st.binary(max_size=512))
def test_arbitrary_bytes_raise_only_decode_error(data: bytes) -> None:
    _decodes_or_refuses(data)


MUTATION = st.tuples(st.sampled_from(["flip", "insert", "delete", "set"]),
                     st.integers(min_value=0), st.integers(min_value=0, max_value=255))


@FUZZ
@given(any_message, st.lists(MUTATION, min_size=1, max_size=4))
def test_mutated_encodings_raise_only_decode_error(
        original: Any, mutations: list[tuple[str, int, int]]) -> None:
    data = bytearray(CODEC.encode(original))
    for op, position, byte in mutations:
        if op == "insert":
            data.insert(position % (len(data) + 1), byte)
        elif data:
            at = position % len(data)
            if op == "flip":
                data[at] ^= 1 << (byte % 8)
            elif op == "set":
                data[at] = byte
            else:
                del data[at]
    _decodes_or_refuses(bytes(data))


@FUZZ
@given(st.binary(max_size=24), st.lists(st.integers(0, 2**64 - 1), max_size=9),
       st.binary(max_size=64))
def test_arbitrary_ndarray_headers_raise_only_decode_error(
        dtype: bytes, shape: list[int], payload: bytes) -> None:
    header = struct.pack("<BB", len(dtype), len(shape)) + dtype
    header += b"".join(struct.pack("<Q", n) for n in shape)
    ext = msgpack.ExtType(NDARRAY_EXT, header + payload)
    _decodes_or_refuses(msgpack.packb([102, 1, {"image": ext, "anything": ext, "optional": None}]))


def _field_prefix() -> bytes:
    # [102, 1, {"anything": <value follows>}]
    key: bytes = msgpack.packb("anything")
    return b"\x93\x66\x01\x81" + key


HUGE = [
    b"\xc6\xff\xff\xff\xff",  # bin 32 of 4 GiB
    b"\xdb\xff\xff\xff\xff",  # str 32 of 4 GiB
    b"\xdd\xff\xff\xff\xff",  # array 32 of 4 G items
    b"\xdf\xff\xff\xff\xff",  # map 32 of 4 G pairs
    b"\xc9\xff\xff\xff\xff\x01",  # ext 32 of 4 GiB
]


@pytest.mark.parametrize("claim", HUGE)
@pytest.mark.parametrize("where", ["top", "field"])
def test_huge_length_claims_are_refused_without_allocating(claim: bytes, where: str) -> None:
    data = (claim if where == "top" else _field_prefix() + claim) + b"\x00" * 64
    tracemalloc.start()
    try:
        with pytest.raises(DecodeError):
            CODEC.decode(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * 1024 * 1024


@pytest.mark.parametrize("container", [b"\x80", b"\x90"])  # empty map, empty list
def test_a_frame_of_empty_containers_is_refused_before_it_inflates(container: bytes) -> None:
    """One byte on the wire, ~60 in memory: 4 MiB of them made 291 MB before the budget."""
    count = 4 * 1024 * 1024
    data = _field_prefix() + b"\xdd" + struct.pack(">I", count) + container * count
    codec = Codec(CODEC.registry, max_message_bytes=8 * 1024 * 1024)
    tracemalloc.start()
    try:
        with pytest.raises(DecodeError, match="lists and maps"):
            codec.decode(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20 * len(data)  # 70 x without the budget


def test_messages_with_many_small_containers_are_within_the_budget() -> None:
    codec = Codec(CODEC.registry)
    for count in (10, 1000, 50_000):  # pairs of numbers > 127: 5 bytes each
        data = _field_prefix() + msgpack.packb([[200, 300] for _ in range(count)])
        with pytest.raises(DecodeError) as caught:
            codec.decode(data)
        assert "lists and maps" not in str(caught.value)  # refused by the schema, not the budget


def test_huge_ndarray_shape_is_refused_without_allocating() -> None:
    header = struct.pack("<BB", 3, 3) + b"<f8" + struct.pack("<QQQ", 2**20, 2**20, 2**20)
    data = msgpack.packb([102, 1, {"image": msgpack.ExtType(NDARRAY_EXT, header + b"\x00" * 8),
                                   "anything": None, "optional": None}])
    tracemalloc.start()
    try:
        with pytest.raises(DecodeError, match="needs"):
            CODEC.decode(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * 1024 * 1024
