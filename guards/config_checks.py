"""Checks config dataclasses run in ``__post_init__``: a bad value fails where it is made, with
the field's name, instead of deep inside an actor minutes later.

Each raises ``ConfigError`` (a ``UserInputError``: configuration is what a person wrote) and
returns nothing; ``name`` is the field as the reader knows it ("TrackerConfig.max_age").
"""

from __future__ import annotations

import math

from guards.user_input import UserInputError


class ConfigError(UserInputError):
    """A configuration value is out of range; the text names the field and the value."""


def require_positive(name: str, value: float) -> None:
    """``value`` is a finite number > 0."""
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{name} must be > 0, got {value!r}")


def require_non_negative(name: str, value: float) -> None:
    """``value`` is a finite number >= 0."""
    if not (math.isfinite(value) and value >= 0):
        raise ConfigError(f"{name} must be >= 0, got {value!r}")


def require_at_least(name: str, value: int, minimum: int) -> None:
    """``value`` is an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")


def require_between(name: str, value: float, low: float, high: float, *,
                    inclusive: bool = True) -> None:
    """``low <= value <= high`` (``low < value < high`` when not ``inclusive``)."""
    inside = (low <= value <= high) if inclusive else (low < value < high)
    if not (math.isfinite(value) and inside):
        bounds = f"[{low}, {high}]" if inclusive else f"({low}, {high})"
        raise ConfigError(f"{name} must lie in {bounds}, got {value!r}")


def require_text(name: str, value: str) -> None:
    """``value`` is a non-empty string without control characters (it will be logged)."""
    if not value:
        raise ConfigError(f"{name} is empty")
    if any(not char.isprintable() for char in value):
        raise ConfigError(f"{name} holds control characters: {value!r}")
