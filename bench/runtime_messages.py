"""Messages of the runtime benchmark (type codes 900-909, reserved for benchmarks)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from runtime.message import message


@message(900)
@dataclass(frozen=True, slots=True)
class Ping:
    """A small message: what most actor traffic looks like."""

    seq: int
    """Sequence number."""


@message(901)
@dataclass(frozen=True, slots=True)
class CountQuery:
    """Ask a counter how many pings it has seen."""


@message(902)
@dataclass(frozen=True, slots=True)
class Count:
    """The answer to ``CountQuery``."""

    value: int
    """Pings seen."""


@message(903)
@dataclass(frozen=True, slots=True)
class FrameMessage:
    """A camera frame as it would cross a process boundary."""

    camera: str
    """Camera id."""
    index: int
    """Frame index in the stream."""
    pts_s: float
    """Presentation time in seconds."""
    pixels: npt.NDArray[np.uint8]
    """H x W x 3 RGB."""
