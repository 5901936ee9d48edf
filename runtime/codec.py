"""``Codec``: messages to bytes and back, for every process or network boundary.

Wire format: msgpack of ``[type code, schema version, {field name: value}]``; nested messages the
same way; numpy arrays as msgpack ext type 1 holding ``dtype, shape, raw bytes``. Decoding an
array copies its bytes once: msgpack hands the ext payload over as a new ``bytes`` object, and
the array is a read-only view on that copy (not on the received frame). Decoding is strict:
input larger than ``max_message_bytes``, more lists and maps than one per ``CONTAINER_BYTES``
of input, malformed msgpack, unknown codes, wrong versions, missing, unknown or mistyped fields
all raise ``DecodeError`` - and nothing else. Never pickle, never eval.
"""

from __future__ import annotations

import enum
import struct
from typing import Any

import msgpack
import numpy as np

from runtime.errors import RuntimeFault
from runtime.message import MessageRegistry, default_registry
from runtime.schema import AnyMessageType, OptionalType, SchemaError, decode_message

DEFAULT_MAX_MESSAGE_BYTES = 32 * 1024 * 1024
"""32 MiB: a 4K RGB frame with room to spare, far below a unit's memory."""

CONTAINER_BYTES = 4
"""Input bytes per list or map a message may hold (beyond ``MIN_CONTAINERS``): a pair of numbers
over 127 is 5 bytes, an empty list 1."""
MIN_CONTAINERS = 1024
"""Lists and maps any message may hold, however small."""
NDARRAY_EXT = 1
# dtypes that may cross a boundary: plain little-endian numbers and bool, never objects.
ALLOWED_DTYPES = frozenset(
    np.dtype(t).newbyteorder("<") if np.dtype(t).itemsize > 1 else np.dtype(t)
    for t in ("bool", "u1", "i1", "u2", "i2", "u4", "i4", "u8", "i8", "f2", "f4", "f8")
)
# The wire carries a dtype as its canonical ``dtype.str`` (what ``_encode_ndarray`` writes);
# decoding looks it up here instead of letting numpy parse peer-supplied text, whose parser
# accepts far more than these dtypes and raises more than ValueError/TypeError (SyntaxError).
_DTYPES_BY_STR = {dtype.str: dtype for dtype in ALLOWED_DTYPES}
MAX_NDIM = 8
_HEADER = struct.Struct("<BB")  # dtype string length, ndim
_DIM = struct.Struct("<Q")


class DecodeError(RuntimeFault, ValueError):
    """Bytes that are not a valid message; the text says what was wrong."""


class EncodeError(RuntimeFault, ValueError):
    """A value that cannot be encoded (unregistered type, forbidden dtype, too large)."""


class Codec:
    """Encodes and decodes registered messages with a size limit."""

    def __init__(self, registry: MessageRegistry | None = None,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        self.registry = registry or default_registry
        self.max_message_bytes = max_message_bytes
        self._packer = msgpack.Packer(default=self._encode_value, use_bin_type=True,
                                      datetime=False)

    def encode(self, message: Any) -> bytes:
        """Encode one registered message; raises ``EncodeError``."""
        if self.registry.spec_for_class(type(message)) is None:
            raise EncodeError(f"{type(message).__qualname__} is not a registered message")
        try:
            data: bytes = self._packer.pack(message)
        except (TypeError, ValueError, OverflowError) as exc:
            self._packer.reset()
            raise EncodeError(f"cannot encode {type(message).__name__}: {exc}") from exc
        if len(data) > self.max_message_bytes:
            raise EncodeError(f"{type(message).__name__} encodes to {len(data)} bytes, over the "
                              f"limit of {self.max_message_bytes}")
        return data

    def decode(self, data: bytes | bytearray | memoryview) -> Any:
        """Decode one message; raises ``DecodeError`` and nothing else."""
        size = len(data)
        if size > self.max_message_bytes:
            raise DecodeError(f"message of {size} bytes is over the limit of "
                              f"{self.max_message_bytes}")
        if size == 0:
            raise DecodeError("empty message")
        # An empty list or map is one byte on the wire and ~60 in memory: a 4 MiB frame of them
        # made 291 MB of objects before the schema could refuse it. At most one container per
        # CONTAINER_BYTES of input keeps that under 70 MB (~16 x the input).
        budget = max(MIN_CONTAINERS, size // CONTAINER_BYTES)

        def count_container(container: Any) -> Any:
            nonlocal budget
            budget -= 1
            if budget < 0:
                raise DecodeError(f"message of {size} bytes holds more than "
                                  f"{max(MIN_CONTAINERS, size // CONTAINER_BYTES)} lists and maps")
            return container

        try:
            # Every length inside is bounded by ``size`` (msgpack's limits default to the input
            # length), so no field can make the decoder allocate more than the input allows.
            # Non-str map keys are let through because ``dict[int, X]`` fields are supported:
            # the schema checks every key's type, and an unhashable key raises TypeError here.
            value = msgpack.unpackb(data, raw=False, strict_map_key=False, use_list=True,
                                    ext_hook=_decode_ext, timestamp=0,
                                    list_hook=count_container, object_hook=count_container)
        except DecodeError:
            raise
        except (ValueError, TypeError, msgpack.UnpackException, OverflowError,
                RecursionError) as exc:
            raise DecodeError(f"malformed message: {type(exc).__name__}: {exc}") from None
        try:
            return decode_message(self.registry, value, "message")
        except SchemaError as exc:
            raise DecodeError(str(exc)) from None
        except RecursionError:
            raise DecodeError("message nests too deeply") from None

    def _encode_value(self, value: Any) -> Any:
        if isinstance(value, np.ndarray):
            return _encode_ndarray(value)
        if isinstance(value, enum.Enum):
            return value.value
        if isinstance(value, np.generic):
            return value.item()
        spec = self.registry.spec_for_class(type(value))
        if spec is None:
            raise TypeError(f"{type(value).__qualname__} is not a registered message or a "
                            "supported value")
        fields = {name: getattr(value, name) for name, _ in spec.fields}
        for name, field_type in spec.fields:
            # An ``Any`` field decodes only as a registered message, but msgpack would encode a
            # plain int or str there without complaint; refuse it here so the sender hears of it
            # (a remote ask answered with such a value would otherwise end in AskTimeout).
            field = fields[name]
            kind = (field_type.inner if isinstance(field_type, OptionalType) and field is not None
                    else field_type)
            if (isinstance(kind, AnyMessageType)
                    and self.registry.spec_for_class(type(field)) is None):
                raise TypeError(f"{type(value).__name__}.{name} must be a registered message, "
                                f"got {type(field).__name__}")
        return [spec.code, spec.version, fields]


def _encode_ndarray(array: np.ndarray[Any, Any]) -> msgpack.ExtType:
    dtype = array.dtype.newbyteorder("<") if array.dtype.itemsize > 1 else array.dtype
    if dtype not in ALLOWED_DTYPES:
        raise TypeError(f"ndarray dtype {array.dtype} cannot cross a boundary")
    if array.ndim > MAX_NDIM:
        raise TypeError(f"ndarray has {array.ndim} dimensions; at most {MAX_NDIM} cross")
    dtype_str = dtype.str.encode()
    header = _HEADER.pack(len(dtype_str), array.ndim) + dtype_str
    header += b"".join(_DIM.pack(n) for n in array.shape)
    data = np.ascontiguousarray(array, dtype=dtype).tobytes()
    return msgpack.ExtType(NDARRAY_EXT, header + data)


def _decode_ext(code: int, data: bytes) -> np.ndarray[Any, Any]:
    if code != NDARRAY_EXT:
        raise DecodeError(f"unknown msgpack extension type {code}")
    view = memoryview(data)
    if len(view) < _HEADER.size:
        raise DecodeError("ndarray header is truncated")
    dtype_len, ndim = _HEADER.unpack_from(view)
    if ndim > MAX_NDIM:
        raise DecodeError(f"ndarray with {ndim} dimensions (at most {MAX_NDIM})")
    offset = _HEADER.size
    dims_end = offset + dtype_len + ndim * _DIM.size
    if len(view) < dims_end:
        raise DecodeError("ndarray header is truncated")
    try:
        dtype_str = bytes(view[offset:offset + dtype_len]).decode("ascii")
    except UnicodeDecodeError:
        raise DecodeError("ndarray has an unreadable dtype") from None
    dtype = _DTYPES_BY_STR.get(dtype_str)
    if dtype is None:
        raise DecodeError(f"ndarray dtype {dtype_str!r} is not allowed")
    offset += dtype_len
    shape = tuple(_DIM.unpack_from(view, offset + i * _DIM.size)[0] for i in range(ndim))
    count = 1
    for n in shape:
        count *= n
    payload = view[dims_end:]
    if count * dtype.itemsize != len(payload):
        raise DecodeError(f"ndarray of shape {shape} and dtype {dtype} needs "
                          f"{count * dtype.itemsize} bytes, got {len(payload)}")
    # A view on the ext payload (which msgpack already copied out of the frame): no second
    # copy; read-only because the buffer is immutable bytes.
    return np.frombuffer(payload, dtype=dtype, count=count).reshape(shape)
