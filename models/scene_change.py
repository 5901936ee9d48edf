"""Whether a region of the picture changed: a small grey thumbnail of each frame, compared
region by region with the thumbnail of the frame the region was last looked at in.

A face cannot enter a region of a fixed camera's picture without changing its pixels, so a
region of the full detector pass that has not changed since the detector last looked at it
need not be looked at again yet (``actors.unit.detection_schedule``). The thumbnail averages
``scale`` x ``scale`` blocks (``cv2.INTER_AREA``), which also averages away the encoder's noise on
a still background; a region counts as changed when at least ``pixels`` of its thumbnail pixels
moved by more than ``level`` grey levels. Measured on the 1080p street clip at scale 8: a 26 px
face is a 3 x 3 blob, and a person walking changes dozens of thumbnail pixels within a frame or
two; about half of the (frame, tile) pairs of its first 24 s had no pixel changed at all.

Pure functions on numpy arrays; the thumbnails stay in memory (privacy: at 1/8 scale a face is
a few grey pixels, and they are never logged or written).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

from guards.config_checks import require_at_least

__all__ = ["ChangeConfig", "region_changed", "thumbnail"]


@dataclass(frozen=True, slots=True)
class ChangeConfig:
    """How a frame is reduced and what counts as a change."""

    scale: int = 8
    """The thumbnail is the frame shrunk this many times on each side (1080p: 240 x 135)."""
    level: int = 10
    """A thumbnail pixel changed when its grey level moved by more than this (0-255)."""
    pixels: int = 4
    """A region changed when at least this many of its thumbnail pixels changed."""

    def __post_init__(self) -> None:
        require_at_least("ChangeConfig.scale", self.scale, 1)
        require_at_least("ChangeConfig.level", self.level, 0)
        require_at_least("ChangeConfig.pixels", self.pixels, 1)


def thumbnail(frame: NDArray[np.uint8], config: ChangeConfig) -> NDArray[np.uint8]:
    """The grey thumbnail of an H x W x 3 uint8 RGB frame: ``ceil(H / scale)`` x
    ``ceil(W / scale)``, each pixel the mean of its block."""
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8 or frame.size == 0:
        raise ValueError(f"frame must be a non-empty H x W x 3 uint8 array, got {frame.shape} "
                         f"{frame.dtype}")
    grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    h, w = grey.shape
    size = (-(-w // config.scale), -(-h // config.scale))
    return np.asarray(cv2.resize(grey, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)


def region_changed(current: NDArray[np.uint8], reference: NDArray[np.uint8],
                   region: tuple[int, int, int, int], config: ChangeConfig) -> bool:
    """Whether ``region`` (x0, y0, x1, y1 in frame pixels) differs between two thumbnails of
    frames of the same size; thumbnails of different shapes always differ."""
    if current.shape != reference.shape:
        return True
    s = config.scale
    x0, y0, x1, y1 = region
    window = (slice(y0 // s, -(-y1 // s)), slice(x0 // s, -(-x1 // s)))
    moved = cv2.absdiff(current[window], reference[window]) > config.level
    return int(np.count_nonzero(moved)) >= config.pixels
