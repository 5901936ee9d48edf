"""Field validators compiled from message annotations; used by the codec when decoding.

Each ``FieldType.decode`` takes a value as msgpack produced it and returns the Python value the
dataclass expects, or raises ``SchemaError`` with the path of the offending value.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

import numpy as np

from runtime.errors import RuntimeFault

if TYPE_CHECKING:
    from runtime.message import MessageRegistry


class SchemaError(RuntimeFault, ValueError):
    """A decoded value does not match its field's declared type."""


def _type_name(value: Any) -> str:
    return type(value).__name__


class FieldType(ABC):
    """Validates and converts one wire value."""

    @abstractmethod
    def decode(self, value: Any, path: str) -> Any:
        """Return the Python value for ``value`` or raise ``SchemaError`` naming ``path``."""


class ScalarType(FieldType):
    """int, float, str, bytes, bool or None. bool is not accepted as int; int is as float."""

    def __init__(self, kind: type) -> None:
        self.kind = kind

    def decode(self, value: Any, path: str) -> Any:
        kind = self.kind
        if kind is float and type(value) is int:
            return float(value)
        if type(value) is not kind:
            raise SchemaError(f"{path}: expected {kind.__name__}, got {_type_name(value)}")
        return value


class EnumType(FieldType):
    """An ``enum.Enum`` sent as its value."""

    def __init__(self, enum_cls: type[enum.Enum]) -> None:
        self.enum_cls = enum_cls

    def decode(self, value: Any, path: str) -> Any:
        try:
            return self.enum_cls(value)
        except ValueError:
            raise SchemaError(f"{path}: {value!r} is not a {self.enum_cls.__name__}") from None


class OptionalType(FieldType):
    """``X | None``."""

    def __init__(self, inner: FieldType) -> None:
        self.inner = inner

    def decode(self, value: Any, path: str) -> Any:
        return None if value is None else self.inner.decode(value, path)


class SequenceType(FieldType):
    """``list[X]`` or ``tuple[X, ...]``."""

    def __init__(self, item: FieldType, *, as_tuple: bool) -> None:
        self.item = item
        self.as_tuple = as_tuple

    def decode(self, value: Any, path: str) -> Any:
        if type(value) is not list:
            raise SchemaError(f"{path}: expected an array, got {_type_name(value)}")
        items = [self.item.decode(v, f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if self.as_tuple else items


class TupleType(FieldType):
    """``tuple[X, Y, ...]`` of fixed length."""

    def __init__(self, items: tuple[FieldType, ...]) -> None:
        self.items = items

    def decode(self, value: Any, path: str) -> Any:
        if type(value) is not list or len(value) != len(self.items):
            raise SchemaError(f"{path}: expected an array of {len(self.items)} items, "
                              f"got {_type_name(value)}")
        return tuple(t.decode(v, f"{path}[{i}]") for i, (t, v) in
                     enumerate(zip(self.items, value, strict=True)))


class MappingType(FieldType):
    """``dict[str, X]`` or ``dict[int, X]``."""

    def __init__(self, key: type, item: FieldType) -> None:
        self.key = key
        self.item = item

    def decode(self, value: Any, path: str) -> Any:
        if type(value) is not dict:
            raise SchemaError(f"{path}: expected a map, got {_type_name(value)}")
        out = {}
        for k, v in value.items():
            if type(k) is not self.key:
                raise SchemaError(f"{path}: key {k!r} is not {self.key.__name__}")
            out[k] = self.item.decode(v, f"{path}[{k!r}]")
        return out


class NdarrayType(FieldType):
    """A numpy array (decoded by the codec's ext hook); optionally of one dtype."""

    def __init__(self, dtype: np.dtype[Any] | None) -> None:
        self.dtype = dtype

    def decode(self, value: Any, path: str) -> Any:
        if not isinstance(value, np.ndarray):
            raise SchemaError(f"{path}: expected an ndarray, got {_type_name(value)}")
        if self.dtype is not None and value.dtype != self.dtype:
            raise SchemaError(f"{path}: expected dtype {self.dtype}, got {value.dtype}")
        return value


class MessageRef(FieldType):
    """A nested registered message, sent as ``[code, version, {fields}]``."""

    def __init__(self, registry: MessageRegistry, cls: type[Any]) -> None:
        self.registry = registry
        self.cls = cls

    def decode(self, value: Any, path: str) -> Any:
        decoded = decode_message(self.registry, value, path)
        if type(decoded) is not self.cls:
            raise SchemaError(f"{path}: expected {self.cls.__name__}, "
                              f"got {type(decoded).__name__}")
        return decoded


class AnyMessageType(FieldType):
    """A field annotated ``Any``: any registered message (used by transport envelopes)."""

    def __init__(self, registry: MessageRegistry) -> None:
        self.registry = registry

    def decode(self, value: Any, path: str) -> Any:
        return decode_message(self.registry, value, path)


def decode_message(registry: MessageRegistry, value: Any, path: str) -> Any:
    """Build a message object from ``[code, version, {field: value}]``, strictly."""
    if type(value) is not list or len(value) != 3:
        raise SchemaError(f"{path}: expected a message [code, version, fields], "
                          f"got {_type_name(value)}")
    code, version, fields = value
    if type(code) is not int or type(version) is not int:
        raise SchemaError(f"{path}: message code and version must be integers")
    spec = registry.spec_for_code(code)
    if spec is None:
        raise SchemaError(f"{path}: unknown message type code {code}")
    name = spec.cls.__name__
    if version != spec.version:
        raise SchemaError(f"{path}: {name} (code {code}) version {version} is not supported; "
                          f"this node speaks version {spec.version}")
    if type(fields) is not dict:
        raise SchemaError(f"{path}: fields of {name} must be a map, got {_type_name(fields)}")
    expected = {field_name for field_name, _ in spec.fields}
    unknown = set(fields) - expected
    if unknown:
        raise SchemaError(f"{path}: {name} has no field(s) {sorted(map(str, unknown))}")
    kwargs = {}
    for field_name, field_type in spec.fields:
        if field_name not in fields:
            raise SchemaError(f"{path}: {name} is missing field {field_name!r}")
        kwargs[field_name] = field_type.decode(fields[field_name], f"{path}.{field_name}")
    try:
        return spec.cls(**kwargs)
    except (TypeError, ValueError) as exc:  # the class's own __post_init__ validation
        raise SchemaError(f"{path}: {name} rejected its fields: {exc}") from None
