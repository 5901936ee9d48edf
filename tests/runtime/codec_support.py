"""Comparing decoded messages with the originals (dataclass ``==`` cannot compare ndarrays)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np


def same(expected: Any, actual: Any, path: str = "message") -> None:
    """Assert ``actual`` equals ``expected`` in value and container type; NaN equals NaN."""
    if isinstance(expected, np.ndarray):
        assert isinstance(actual, np.ndarray), path
        assert actual.dtype == expected.dtype, (path, actual.dtype, expected.dtype)
        assert actual.shape == expected.shape, (path, actual.shape, expected.shape)
        assert np.array_equal(actual, expected, equal_nan=actual.dtype.kind == "f"), path
        return
    if isinstance(expected, float) and not isinstance(actual, bool):
        assert type(actual) is float, (path, actual)
        assert actual == expected or (math.isnan(actual) and math.isnan(expected)), path
        return
    assert type(actual) is type(expected), (path, type(actual), type(expected))
    if dataclasses.is_dataclass(expected):
        for field in dataclasses.fields(expected):
            same(getattr(expected, field.name), getattr(actual, field.name),
                 f"{path}.{field.name}")
    elif isinstance(expected, list | tuple):
        assert len(actual) == len(expected), path
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            same(e, a, f"{path}[{i}]")
    elif isinstance(expected, dict):
        assert actual.keys() == expected.keys(), path
        for key, value in expected.items():
            same(value, actual[key], f"{path}[{key!r}]")
    else:
        assert actual == expected, (path, actual, expected)
