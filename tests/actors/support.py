"""Helpers shared by the actor tests: bounded waiting and unit-vector geometry.

Every wait is bounded (``WAIT_S``) so a broken actor fails a test instead of hanging the suite;
none of them asserts how fast something happened.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

WAIT_S = 30.0
"""Upper bound of every wait for something that should happen (generous: busy CI cores)."""


async def eventually(predicate: Callable[[], bool], *, timeout_s: float = WAIT_S) -> None:
    """Wait until ``predicate()`` holds; raises ``TimeoutError`` after ``timeout_s``."""
    async with asyncio.timeout(timeout_s):
        while not predicate():  # noqa: ASYNC110 - polling actor state that has no event
            await asyncio.sleep(0.005)


def unit_rows(rng: np.random.Generator, n: int, d: int) -> NDArray[np.float32]:
    """``n`` random unit vectors of length ``d`` (uniform on the sphere), float32."""
    rows = rng.standard_normal((n, d))
    unit: NDArray[np.float32] = (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(
        np.float32)
    return unit


def toward(rng: np.random.Generator, target: NDArray[np.float32],
           cosine: float) -> NDArray[np.float32]:
    """A random unit vector whose cosine similarity to the unit vector ``target`` is ``cosine``.

    Built in float64 and rounded once to float32, so the similarity is ``cosine`` to ~1e-7.
    """
    t: NDArray[np.float64] = target.astype(np.float64)
    t /= np.linalg.norm(t)
    noise: NDArray[np.float64] = rng.standard_normal(size=t.shape)
    noise -= float(noise @ t) * t
    noise /= np.linalg.norm(noise)
    q = cosine * t + math.sqrt(max(0.0, 1.0 - cosine * cosine)) * noise
    result: NDArray[np.float32] = (q / np.linalg.norm(q)).astype(np.float32)
    return result
