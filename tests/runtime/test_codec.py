"""The message registry and the strict msgpack codec."""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np
import pytest
from numpy.typing import NDArray

from runtime import Codec, DecodeError, EncodeError, MessageRegistry, message
from runtime.codec import NDARRAY_EXT
from tests.runtime.codec_support import same

REGISTRY = MessageRegistry()


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


@message(100, registry=REGISTRY)
@dataclass(frozen=True, slots=True)
class Point:
    x: int
    y: int


@message(101, registry=REGISTRY)
@dataclass(frozen=True, slots=True)
class Everything:
    i: int
    f: float
    s: str
    b: bytes
    flag: bool
    nothing: None
    maybe: int | None
    maybe_not: str | None
    items: list[int]
    var_tuple: tuple[str, ...]
    fixed: tuple[int, str, float]
    mapping: dict[str, float]
    by_id: dict[int, str]
    color: Color
    level: Level
    array: np.ndarray[Any, Any]
    image: NDArray[np.uint8]
    point: Point
    points: list[Point]
    maybe_point: Point | None
    nested: dict[str, list[tuple[int, ...]]]


@message(102, version=3, registry=REGISTRY)
@dataclass(frozen=True, slots=True)
class Versioned:
    value: int


@message(103, registry=REGISTRY)
@dataclass(frozen=True, slots=True)
class Positive:
    value: int

    def __post_init__(self) -> None:
        if self.value <= 0:
            raise ValueError(f"value must be positive, got {self.value}")


@message(104, registry=REGISTRY)
@dataclass(frozen=True, slots=True)
class Blob:
    data: bytes


@message(105, registry=REGISTRY)
@dataclass(frozen=True, slots=True)
class Image:
    pixels: NDArray[np.uint8]


@message(106, registry=REGISTRY)
@dataclass(frozen=True, slots=True)
class AnyArray:
    array: np.ndarray[Any, Any]


@message(107, registry=REGISTRY)
@dataclass(frozen=True, slots=True)
class Empty:
    pass


@message(108, registry=REGISTRY)
@dataclass(frozen=True, slots=True)
class Wrapper:
    payload: Any
    reply: Any | None


CODEC = Codec(REGISTRY)


def _everything(**overrides: Any) -> Everything:
    values: dict[str, Any] = {
        "i": -(2**63), "f": 2.5, "s": "grüße 👋", "b": b"\x00\xff", "flag": True,
        "nothing": None, "maybe": 7, "maybe_not": None, "items": [1, 2, 3],
        "var_tuple": ("a", "b"), "fixed": (1, "one", 1.0), "mapping": {"pi": 3.14},
        "by_id": {1: "one", 2**64 - 1: "max"}, "color": Color.GREEN, "level": Level.HIGH,
        "array": np.arange(12, dtype=np.float32).reshape(3, 4),
        "image": np.full((2, 3, 3), 200, dtype=np.uint8), "point": Point(1, 2),
        "points": [Point(3, 4), Point(5, 6)], "maybe_point": Point(7, 8),
        "nested": {"k": [(1, 2), ()]},
    }
    values.update(overrides)
    return Everything(**values)


def _raw(code: Any, version: Any, fields: Any) -> bytes:
    data: bytes = msgpack.packb([code, version, fields], use_bin_type=True)
    return data


def _ext(dtype: bytes, shape: tuple[int, ...], payload: bytes) -> msgpack.ExtType:
    header = struct.pack("<BB", len(dtype), len(shape)) + dtype
    header += b"".join(struct.pack("<Q", n) for n in shape)
    return msgpack.ExtType(NDARRAY_EXT, header + payload)


# --- round trips ------------------------------------------------------------------------------

def test_round_trip_of_every_field_type() -> None:
    original = _everything()
    decoded = CODEC.decode(CODEC.encode(original))
    same(original, decoded)
    assert isinstance(decoded.var_tuple, tuple)
    assert isinstance(decoded.fixed, tuple)
    assert isinstance(decoded.items, list)
    assert isinstance(decoded.nested["k"][0], tuple)
    assert decoded.color is Color.GREEN
    assert decoded.level is Level.HIGH


def test_round_trip_with_empty_and_absent_values() -> None:
    original = _everything(maybe=None, maybe_not="here", items=[], var_tuple=(), mapping={},
                           by_id={}, maybe_point=None, points=[], s="", b=b"", flag=False,
                           array=np.zeros((0, 3), dtype=np.int64))
    same(original, CODEC.decode(CODEC.encode(original)))
    same(Empty(), CODEC.decode(CODEC.encode(Empty())))


def test_int_on_the_wire_is_accepted_as_float() -> None:
    decoded = CODEC.decode(CODEC.encode(_everything(f=3)))
    assert decoded.f == 3.0
    assert type(decoded.f) is float


def test_decode_accepts_bytes_bytearray_and_memoryview() -> None:
    data = CODEC.encode(Point(1, 2))
    for buffer in (data, bytearray(data), memoryview(data)):
        assert CODEC.decode(buffer) == Point(1, 2)


@pytest.mark.parametrize("dtype", ["bool", "u1", "i1", "<u2", "<i2", "<u4", "<i4", "<u8", "<i8",
                                   "<f2", "<f4", "<f8", ">i4", ">f8"])
def test_ndarray_round_trip_as_read_only_view(dtype: str) -> None:
    array = (np.arange(24) % 2 == 0 if dtype == "bool" else np.arange(24)).astype(dtype)
    array = array.reshape(2, 3, 4)
    decoded = CODEC.decode(CODEC.encode(AnyArray(array))).array
    assert decoded.dtype == array.dtype.newbyteorder("<")  # big-endian travels little-endian
    assert decoded.dtype.byteorder in ("<", "=", "|")
    assert decoded.shape == (2, 3, 4)
    assert np.array_equal(decoded, array)
    assert decoded.base is not None  # a view on the received buffer, not a fresh copy
    assert not decoded.flags.writeable


@pytest.mark.parametrize("array", [
    np.arange(20, dtype=np.int16).reshape(4, 5).T,  # Fortran order
    np.arange(20, dtype=np.float64)[::3],  # strided
    np.array(5, dtype=np.int32),  # 0-d
    np.zeros((3, 0, 2), dtype=np.uint8),  # empty
    np.ones((1,) * 8, dtype=np.int8),  # the most dimensions allowed
])
def test_ndarray_layouts_round_trip(array: np.ndarray[Any, Any]) -> None:
    same(AnyArray(array), CODEC.decode(CODEC.encode(AnyArray(array))))


def test_ndarray_dtype_is_pinned_by_the_annotation() -> None:
    image = np.arange(6, dtype=np.uint8).reshape(2, 3)
    same(Image(image), CODEC.decode(CODEC.encode(Image(image))))
    wrong = CODEC.encode(Image(image.astype(np.float32)))  # encodes; the receiver refuses it
    with pytest.raises(DecodeError, match=r"message\.pixels: expected dtype uint8, got float32"):
        CODEC.decode(wrong)


# --- encoding errors --------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Unregistered:
    value: int


def test_encode_refuses_what_cannot_cross() -> None:
    with pytest.raises(EncodeError, match="Unregistered is not a registered message"):
        CODEC.encode(Unregistered(1))
    with pytest.raises(EncodeError, match="cannot encode Point"):
        CODEC.encode(Point(Unregistered(1), 2))  # type: ignore[arg-type]
    with pytest.raises(EncodeError, match="dtype object cannot cross"):
        CODEC.encode(AnyArray(np.array([object()])))
    with pytest.raises(EncodeError, match="dtype complex128 cannot cross"):
        CODEC.encode(AnyArray(np.zeros(2, dtype=np.complex128)))
    with pytest.raises(EncodeError, match="9 dimensions"):
        CODEC.encode(AnyArray(np.zeros((1,) * 9, dtype=np.uint8)))
    with pytest.raises(EncodeError, match="cannot encode Point"):
        CODEC.encode(Point(2**64, 0))
    # The packer is still usable after a failure.
    assert CODEC.decode(CODEC.encode(Point(1, 2))) == Point(1, 2)


def test_any_fields_carry_registered_messages_only() -> None:
    for original in (Wrapper(Point(1, 2), None), Wrapper(Empty(), Wrapper(Point(3, 4), Empty()))):
        assert CODEC.decode(CODEC.encode(original)) == original
    for payload in (5, "text", [Point(1, 2)], None):
        with pytest.raises(EncodeError, match=r"Wrapper\.payload must be a registered message"):
            CODEC.encode(Wrapper(payload, None))
    with pytest.raises(EncodeError, match=r"Wrapper\.reply must be a registered message, got int"):
        CODEC.encode(Wrapper(Point(1, 2), 5))
    with pytest.raises(DecodeError, match=r"message\.payload: expected a message"):
        CODEC.decode(_raw(108, 1, {"payload": 5, "reply": None}))


def test_encode_refuses_a_message_over_the_limit() -> None:
    small = Codec(REGISTRY, max_message_bytes=64)
    assert small.decode(small.encode(Blob(b"x" * 32))) == Blob(b"x" * 32)
    with pytest.raises(EncodeError, match="over the limit of 64"):
        small.encode(Blob(b"x" * 64))


# --- the registry -----------------------------------------------------------------------------

def test_registry_refuses_non_frozen_or_non_slotted_dataclasses() -> None:
    registry = MessageRegistry()

    @dataclass(slots=True)
    class Mutable:
        x: int

    @dataclass(frozen=True)
    class NoSlots:
        x: int

    class Plain:
        x: int

    with pytest.raises(TypeError, match="must be frozen"):
        registry.register(Mutable, 200, 1)
    with pytest.raises(TypeError, match="must use slots"):
        registry.register(NoSlots, 201, 1)
    with pytest.raises(TypeError, match="must be a dataclass"):
        registry.register(Plain, 202, 1)
    assert registry.spec_for_code(200) is None


def test_registry_refuses_duplicate_and_reserved_codes() -> None:
    registry = MessageRegistry()
    registry.register(Point, 300, 1)
    registry.register(Point, 300, 1)  # registering the same class again is harmless
    with pytest.raises(ValueError, match="type code 300 is taken by Point"):
        registry.register(Blob, 300, 1)
    for code in (1, 50, 99):
        with pytest.raises(ValueError, match="codes 1-99 are reserved"):
            registry.register(Blob, code, 1)
    with pytest.raises(ValueError, match="codes 1-99 are reserved"):
        registry.register(Blob, 300_000, 1, reserved=True)
    for code in (0, -1, 2**31):
        with pytest.raises(ValueError, match="type code of Blob must be in"):
            registry.register(Blob, code, 1)
    for version in (0, 0x10000):
        with pytest.raises(ValueError, match="version of Blob must be in"):
            registry.register(Blob, 301, version)
    spec = registry.spec_for_code(300)
    assert spec is not None
    assert (spec.cls, spec.code, spec.version) == (Point, 300, 1)
    assert registry.spec_for_class(Point) is spec
    assert registry.spec_for_class(Blob) is None


def test_message_decorator_uses_the_given_registry() -> None:
    registry = MessageRegistry()

    @message(400, version=2, registry=registry)
    @dataclass(frozen=True, slots=True)
    class Local:
        name: str

    spec = registry.spec_for_class(Local)
    assert spec is not None
    assert (spec.code, spec.version) == (400, 2)
    assert REGISTRY.spec_for_code(400) is None


@dataclass(frozen=True, slots=True)
class WithSet:
    values: set[int]


def test_registry_refuses_unsupported_field_types() -> None:
    with pytest.raises(TypeError, match="cannot cross a boundary"):
        MessageRegistry().register(WithSet, 500, 1)


# --- strict decoding --------------------------------------------------------------------------

@pytest.mark.parametrize(("data", "error"), [
    (_raw(999, 1, {}), "unknown message type code 999"),
    (_raw(102, 2, {"value": 1}),
     r"Versioned \(code 102\) version 2 is not supported; this node speaks version 3"),
    (_raw(100, 1, {"x": 1}), "Point is missing field 'y'"),
    (_raw(100, 1, {"x": 1, "y": 2, "z": 3}), r"Point has no field\(s\) \['z'\]"),
    (_raw(100, 1, {"x": "1", "y": 2}), "message.x: expected int, got str"),
    (_raw(100, 1, {"x": True, "y": 2}), "message.x: expected int, got bool"),
    (_raw(100, 1, {"x": 1.5, "y": 2}), "message.x: expected int, got float"),
    (_raw(100, 1, [1, 2]), "fields of Point must be a map, got list"),
    (_raw(100, 1, {1: 1, "x": 1, "y": 2}), r"Point has no field\(s\) \['1'\]"),
    (_raw(100, "1", {}), "message code and version must be integers"),
    (_raw(103, 1, {"value": -1}), "Positive rejected its fields: value must be positive"),
    (msgpack.packb([100, 1]), r"expected a message \[code, version, fields\], got list"),
    (msgpack.packb(5), r"expected a message \[code, version, fields\], got int"),
    (msgpack.packb([104, 1, {"data": "text"}]), "message.data: expected bytes, got str"),
])
def test_strict_decoding_says_what_is_wrong(data: bytes, error: str) -> None:
    with pytest.raises(DecodeError, match=error):
        CODEC.decode(data)


def _everything_raw(**overrides: Any) -> bytes:
    fields = msgpack.unpackb(CODEC.encode(_everything()), strict_map_key=False,
                             ext_hook=msgpack.ExtType)[2]
    fields.update(overrides)
    return _raw(101, 1, fields)


@pytest.mark.parametrize(("overrides", "error"), [
    ({"point": [100, 1, {"x": 1, "y": "2"}]}, "message.point.y: expected int, got str"),
    ({"points": [[100, 1, {"x": 1, "y": 2}], [107, 1, {}]]},
     r"message.points\[1\]: expected Point, got Empty"),
    ({"items": [1, "2"]}, r"message.items\[1\]: expected int, got str"),
    ({"items": {"a": 1}}, "message.items: expected an array, got dict"),
    ({"fixed": [1, "one"]}, "message.fixed: expected an array of 3 items"),
    ({"mapping": {"pi": "3"}}, r"message.mapping\['pi'\]: expected float, got str"),
    ({"mapping": [1]}, "message.mapping: expected a map, got list"),
    ({"by_id": {"1": "one"}}, "message.by_id: key '1' is not int"),
    ({"color": "blue"}, "message.color: 'blue' is not a Color"),
    ({"color": [1]}, r"message.color: \[1\] is not a Color"),
    ({"level": 3}, "message.level: 3 is not a Level"),
    ({"nothing": 0}, "message.nothing: expected NoneType, got int"),
    ({"array": [1, 2]}, "message.array: expected an ndarray, got list"),
    ({"maybe": "x"}, "message.maybe: expected int, got str"),
    ({"nested": {"k": [[1, "2"]]}}, r"message.nested\['k'\]\[0\]\[1\]: expected int, got str"),
])
def test_mistyped_fields_are_refused_with_their_path(overrides: dict[str, Any],
                                                     error: str) -> None:
    with pytest.raises(DecodeError, match=error):
        CODEC.decode(_everything_raw(**overrides))


def test_oversize_input_is_refused_before_parsing() -> None:
    small = Codec(REGISTRY, max_message_bytes=64)
    with pytest.raises(DecodeError, match="message of 65 bytes is over the limit of 64"):
        small.decode(b"\x00" * 65)


@pytest.mark.parametrize(("data", "error"), [
    (b"", "empty message"),
    (b"\xc1", "malformed message"),  # a byte msgpack never uses
    (_raw(100, 1, {"x": 1, "y": 2})[:-1], "malformed message"),  # truncated
    (_raw(100, 1, {"x": 1, "y": 2}) + b"\x00", "malformed message"),  # trailing data
    (_raw(104, 1, {"data": b"ok"}).replace(b"\xc4\x02ok", b"\xa2\xff\xfe"),  # invalid UTF-8
     "malformed message"),
    (msgpack.packb([100, 1, {"x": msgpack.ExtType(5, b"")}]),
     "unknown msgpack extension type 5"),
    (b"\x93\x64\x01\x81\xa1x\xd6\xff\x00\x00\x00\x00", "expected int, got Timestamp"),
    (b"\x91" * 100_000, "malformed message"),  # nesting deeper than msgpack allows
    (b"\x93\x64\x01\x81\x91\x01\x01", "malformed message: TypeError"),  # unhashable map key
])
def test_malformed_bytes_raise_decode_error(data: bytes, error: str) -> None:
    with pytest.raises(DecodeError, match=error):
        CODEC.decode(data)


@pytest.mark.parametrize(("ext", "error"), [
    (msgpack.ExtType(NDARRAY_EXT, b"\x01"), "ndarray header is truncated"),
    (msgpack.ExtType(NDARRAY_EXT, b"\x03\x01|u1\x04"), "ndarray header is truncated"),
    (_ext(b"|u1", (1,) * 9, b"\x00"), "ndarray with 9 dimensions"),
    (_ext(b"|u1", (2, 2), b"\x00" * 3), r"shape \(2, 2\) and dtype uint8 needs 4 bytes, got 3"),
    (_ext(b"<f4", (2,), b"\x00" * 9), "needs 8 bytes, got 9"),
    (_ext(b"|O", (1,), b"\x00" * 8), "dtype"),
    (_ext(b">f4", (1,), b"\x00" * 4), "dtype"),
    (_ext(b"<c16", (1,), b"\x00" * 16), "dtype"),
    (_ext(b"<U1", (1,), b"\x00" * 4), "dtype"),
    (_ext(b"<f4,<f4", (1,), b"\x00" * 8), "dtype"),
    (_ext(b"\xff\xfe", (1,), b"\x00"), "dtype"),
    (_ext(b"nonsense", (1,), b"\x00"), "dtype"),
    (_ext(b"(1,2", (1,), b"\x00"), "dtype"),  # numpy raises SyntaxError parsing this one
    (_ext(b"|u1", (2**32, 2**32), b""), "needs 18446744073709551616 bytes, got 0"),
])
def test_bad_ndarrays_raise_decode_error(ext: msgpack.ExtType, error: str) -> None:
    with pytest.raises(DecodeError, match=error):
        CODEC.decode(_raw(106, 1, {"array": ext}))
