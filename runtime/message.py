"""Message types: frozen, slotted dataclasses registered with a stable type code and version.

In-process delivery passes the object itself. The registry is what ``runtime.codec`` uses when a
message must cross a process or network boundary: it maps type codes to classes and compiles each
class's field annotations into a validator, so decoding is strict without reflection per message.

Type codes 1-99 are reserved for the runtime itself; applications use 100 and up.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from runtime.schema import (
    AnyMessageType,
    EnumType,
    FieldType,
    MappingType,
    MessageRef,
    NdarrayType,
    OptionalType,
    ScalarType,
    SequenceType,
    TupleType,
)

T = TypeVar("T")

RESERVED_CODES = range(1, 100)
"""Type codes the runtime uses for its own messages (transport envelopes)."""
MAX_CODE = 2**31 - 1


@dataclass(frozen=True, slots=True)
class MessageSpec:
    """What the registry knows about one message class."""

    cls: type[Any]
    """The dataclass."""
    code: int
    """Stable type code on the wire."""
    version: int
    """Schema version; a peer sending another version is refused."""
    fields: tuple[tuple[str, FieldType], ...]
    """Field names and validators, in declaration order."""


class MessageRegistry:
    """Type code <-> class, for encoding and strict decoding."""

    def __init__(self) -> None:
        self._by_code: dict[int, MessageSpec] = {}
        self._by_class: dict[type[Any], MessageSpec] = {}

    def register(self, cls: type[T], code: int, version: int, *, reserved: bool = False) -> None:
        """Register ``cls``; it must be a frozen dataclass with ``slots=True``."""
        _check_message_class(cls)
        if not 1 <= code <= MAX_CODE:
            raise ValueError(f"type code of {cls.__name__} must be in 1..{MAX_CODE}, got {code}")
        if (code in RESERVED_CODES) != reserved:
            raise ValueError(f"type code {code} of {cls.__name__}: codes 1-99 are reserved for "
                             "the runtime; application messages use 100 and up")
        if not 1 <= version <= 0xFFFF:
            raise ValueError(f"version of {cls.__name__} must be in 1..65535, got {version}")
        existing = self._by_code.get(code)
        if existing is not None and existing.cls is not cls:
            raise ValueError(f"type code {code} is taken by {existing.cls.__qualname__}; "
                             f"cannot register {cls.__qualname__}")
        hints = typing.get_type_hints(cls)
        dataclass_cls: Any = cls  # checked by _check_message_class above
        fields = tuple((f.name, self._field_type(hints[f.name], cls))
                       for f in dataclasses.fields(dataclass_cls))
        spec = MessageSpec(cls, code, version, fields)
        self._by_code[code] = spec
        self._by_class[cls] = spec

    def spec_for_code(self, code: int) -> MessageSpec | None:
        """The spec registered under ``code``, or None."""
        return self._by_code.get(code)

    def spec_for_class(self, cls: type[Any]) -> MessageSpec | None:
        """The spec of ``cls``, or None if it is not registered."""
        return self._by_class.get(cls)

    def _field_type(self, annotation: Any, owner: type[Any]) -> FieldType:  # noqa: PLR0911
        origin = typing.get_origin(annotation)
        args = typing.get_args(annotation)
        if annotation is Any:
            return AnyMessageType(self)
        if annotation in (int, float, str, bytes, bool, type(None)):
            return ScalarType(annotation)
        if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
            return EnumType(annotation)
        if annotation is np.ndarray or origin is np.ndarray:
            return NdarrayType(_ndarray_dtype(args))
        if origin in (types.UnionType, typing.Union) and len(args) == 2 and type(None) in args:
            inner = args[0] if args[1] is type(None) else args[1]
            return OptionalType(self._field_type(inner, owner))
        if origin is list:
            return SequenceType(self._field_type(args[0], owner), as_tuple=False)
        if origin is tuple:
            if len(args) == 2 and args[1] is Ellipsis:
                return SequenceType(self._field_type(args[0], owner), as_tuple=True)
            return TupleType(tuple(self._field_type(a, owner) for a in args))
        if origin is dict and args[0] in (str, int):
            return MappingType(args[0], self._field_type(args[1], owner))
        if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
            return MessageRef(self, annotation)
        raise TypeError(f"{owner.__qualname__}: field type {annotation!r} cannot cross a "
                        "boundary (use int, float, str, bytes, bool, None, enums, ndarray, "
                        "list, tuple, dict[str|int, ...], optional or registered messages)")


def _ndarray_dtype(args: tuple[Any, ...]) -> np.dtype[Any] | None:
    # NDArray[np.uint8] is np.ndarray[Any, np.dtype[np.uint8]]: pin the dtype when given.
    if len(args) == 2:
        dtype_args = typing.get_args(args[1])
        if dtype_args and isinstance(dtype_args[0], type) and issubclass(dtype_args[0], np.generic):
            return np.dtype(dtype_args[0])
    return None


def _check_message_class(cls: type[Any]) -> None:
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls.__qualname__} must be a dataclass to be a message")
    params = vars(cls)["__dataclass_params__"]
    if not params.frozen:
        raise TypeError(f"{cls.__qualname__} must be frozen (@dataclass(frozen=True, slots=True))")
    if "__slots__" not in cls.__dict__:
        raise TypeError(f"{cls.__qualname__} must use slots (@dataclass(frozen=True, slots=True))")


default_registry = MessageRegistry()
"""The registry ``@message`` uses unless told otherwise."""


def message(code: int, version: int = 1, *,
            registry: MessageRegistry | None = None) -> Callable[[type[T]], type[T]]:
    """Class decorator: register a frozen, slotted dataclass as a message type."""

    def register(cls: type[T]) -> type[T]:
        (registry or default_registry).register(cls, code, version)
        return cls

    return register
