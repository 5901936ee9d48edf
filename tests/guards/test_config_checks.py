"""The checks config dataclasses run: each names the field and the bad value."""

from __future__ import annotations

import pytest

from guards.config_checks import (
    ConfigError,
    require_at_least,
    require_between,
    require_non_negative,
    require_positive,
    require_text,
)
from guards.user_input import UserInputError


@pytest.mark.parametrize("value", [0.0, -1.0, float("nan"), float("inf")])
def test_require_positive(value: float) -> None:
    with pytest.raises(ConfigError, match=r"X\.y must be > 0"):
        require_positive("X.y", value)
    require_positive("X.y", 0.001)


@pytest.mark.parametrize("value", [-0.1, float("nan"), float("inf")])
def test_require_non_negative(value: float) -> None:
    with pytest.raises(ConfigError, match=r"X\.y must be >= 0"):
        require_non_negative("X.y", value)
    require_non_negative("X.y", 0.0)


@pytest.mark.parametrize("value", [0, -3, 1.5, True, "2"])
def test_require_at_least(value: object) -> None:
    with pytest.raises(ConfigError, match=r"X\.n must be an integer >= 1"):
        require_at_least("X.n", value, 1)  # type: ignore[arg-type]
    require_at_least("X.n", 1, 1)


def test_require_between() -> None:
    require_between("X.t", 1.0, 0.0, 1.0)
    with pytest.raises(ConfigError, match=r"X.t must lie in \(0.0, 1.0\)"):
        require_between("X.t", 1.0, 0.0, 1.0, inclusive=False)
    with pytest.raises(ConfigError, match=r"X.t must lie in \[0.0, 1.0\]"):
        require_between("X.t", float("nan"), 0.0, 1.0)


def test_require_text() -> None:
    require_text("X.name", "cam 0")
    with pytest.raises(ConfigError, match=r"X\.name is empty"):
        require_text("X.name", "")
    with pytest.raises(ConfigError, match=r"X\.name holds control characters"):
        require_text("X.name", "a\x1b[0m")


def test_config_errors_are_user_input_errors() -> None:
    assert issubclass(ConfigError, UserInputError)
    assert issubclass(UserInputError, ValueError)
