"""Letterboxing: fit a frame region into a square model input without distorting it.

The region is resized keeping its aspect ratio so its longer side fills the input, centred, and
the rest is padded black (as MediaPipe's ``ImageToTensorCalculator`` with
``keep_aspect_ratio: true`` and ``BORDER_ZERO`` does). ``Letterbox`` records the mapping so that
points the model reports in normalised input coordinates (0..1 across the input) can be mapped
back to frame pixels.

Coordinates are continuous: pixel column ``i`` spans ``[i, i + 1)``. With that convention a
resize by ``s`` maps ``x`` to ``x * s`` exactly, and the mapping below is exact, not off by half a
pixel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

__all__ = ["FramePyramid", "Letterbox", "letterbox_region", "pyramid_level_for"]

# OpenCV's own worker threads would compete with the pipeline's, which already keeps one
# resize/warp per core busy: each call here runs on the calling thread alone.
cv2.setNumThreads(1)


@dataclass(frozen=True)
class Letterbox:
    """Affine map between a frame region and the square model input it was fitted into."""

    input_size: int
    """Side of the square model input in pixels."""

    region_x0: float
    """Left edge of the region in frame pixels (fractional when resampled from a pyramid
    level, whose pixels are 2**k frame pixels wide)."""

    region_y0: float
    """Top edge of the region in frame pixels."""

    scale_x: float
    """Model-input pixels per frame pixel horizontally (resized width / region width)."""

    scale_y: float
    """Model-input pixels per frame pixel vertically; equals ``scale_x`` up to rounding of the
    resized size to whole pixels."""

    pad_x: int
    """Black columns left of the resized region, in model-input pixels."""

    pad_y: int
    """Black rows above the resized region, in model-input pixels."""

    def to_frame(self, xy: NDArray[np.float32]) -> NDArray[np.float32]:
        """Map normalised input coordinates (..., 2) [x, y] in 0..1 to frame pixels."""
        pts = np.asarray(xy, dtype=np.float64) * self.input_size
        x = (pts[..., 0] - self.pad_x) / self.scale_x + self.region_x0
        y = (pts[..., 1] - self.pad_y) / self.scale_y + self.region_y0
        return np.stack([x, y], axis=-1).astype(np.float32)

    def frame_affine(self) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """``(mul, add)``, each (2,) float32 [x, y]: ``xy * mul + add`` is ``to_frame(xy)`` in
        float32 arithmetic (to within 1e-3 px for frames up to 4096 px), broadcast over any
        (..., 2) array of points."""
        mul = np.array([self.input_size / self.scale_x, self.input_size / self.scale_y])
        add = np.array([self.region_x0 - self.pad_x / self.scale_x,
                        self.region_y0 - self.pad_y / self.scale_y])
        return mul.astype(np.float32), add.astype(np.float32)

    def to_input(self, xy: NDArray[np.float32]) -> NDArray[np.float32]:
        """Map frame pixels (..., 2) [x, y] to normalised input coordinates (inverse of
        ``to_frame``)."""
        pts = np.asarray(xy, dtype=np.float64)
        x = ((pts[..., 0] - self.region_x0) * self.scale_x + self.pad_x) / self.input_size
        y = ((pts[..., 1] - self.region_y0) * self.scale_y + self.pad_y) / self.input_size
        return np.stack([x, y], axis=-1).astype(np.float32)


class FramePyramid:
    """A frame and its successive halvings, built on demand and shared by all its regions.

    Each level averages 2x2 blocks of the one above (``cv2.resize`` with ``INTER_AREA`` at
    exactly half size, OpenCV's fast path: 55 us for 640x360 against 170 us for ``pyrDown``'s
    5x5 Gaussian; an odd last row or column is averaged with a copy of itself). So level ``k``
    pixel ``j`` spans frame pixels ``[2**k * j, 2**k * (j + 1))`` (continuous coordinates).
    Shrinking by more than 2x from the nearest level above instead of from the frame keeps a
    bilinear resize from skipping source pixels (aliasing), at a fraction of the cost of an
    area filter at an arbitrary scale.
    """

    def __init__(self, frame: NDArray[np.uint8]) -> None:
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"frame must be H x W x 3 uint8, got {frame.shape} {frame.dtype}")
        self._levels: list[NDArray[np.uint8]] = [frame]

    @property
    def frame(self) -> NDArray[np.uint8]:
        """Level 0: the frame itself."""
        return self._levels[0]

    def level(self, k: int) -> NDArray[np.uint8]:
        """The frame halved ``k`` times: ``ceil(H / 2**k)`` x ``ceil(W / 2**k)``."""
        while len(self._levels) <= k:
            above = self._levels[-1]
            odd_h, odd_w = above.shape[0] % 2, above.shape[1] % 2
            if odd_h or odd_w:  # repeat the last row / column: the halving stays exact 2x
                above = np.asarray(cv2.copyMakeBorder(above, 0, odd_h, 0, odd_w,
                                                      cv2.BORDER_REPLICATE), dtype=np.uint8)
            size = (above.shape[1] // 2, above.shape[0] // 2)
            self._levels.append(np.asarray(
                cv2.resize(above, size, interpolation=cv2.INTER_AREA), dtype=np.uint8))
        return self._levels[k]


def pyramid_level_for(shrink: float) -> int:
    """The level to resample from when shrinking by ``shrink`` (frame px per output px): the
    deepest whose remaining shrink is still at least 1 and below 2."""
    return max(0, math.floor(math.log2(shrink))) if shrink >= 2.0 else 0


def letterbox_region(
    frame: NDArray[np.uint8] | FramePyramid,
    region: tuple[int, int, int, int],
    input_size: int,
) -> tuple[NDArray[np.uint8], Letterbox]:
    """Fit ``frame[y0:y1, x0:x1]`` into an ``input_size`` square; return it and the mapping.

    ``frame`` is an H x W x 3 uint8 RGB array or a ``FramePyramid`` of one (pass the pyramid
    when fitting several regions of one frame: its levels are then built once). ``region`` is
    (x0, y0, x1, y1) in whole pixels inside the frame. The region is resampled bilinearly from
    the pyramid level that leaves less than a 2x shrink, so small faces keep their shape instead
    of aliasing away.
    """
    pyramid = frame if isinstance(frame, FramePyramid) else FramePyramid(frame)
    h_frame, w_frame = pyramid.frame.shape[:2]
    x0, y0, x1, y1 = region
    if not (0 <= x0 < x1 <= w_frame and 0 <= y0 < y1 <= h_frame):
        raise ValueError(f"region {region} is empty or outside the {w_frame}x{h_frame} frame")
    w, h = x1 - x0, y1 - y0
    scale = input_size / max(w, h)
    new_w = max(1, min(input_size, round(w * scale)))
    new_h = max(1, min(input_size, round(h * scale)))
    k = pyramid_level_for(max(w / new_w, h / new_h))
    level, factor = pyramid.level(k), 2**k
    # The region in the level's pixels, snapped to whole level pixels (a resize of a view is
    # 3x cheaper than a warp). Level pixel l spans frame [factor * l, factor * (l + 1)).
    # Halves round up at both ends (not to even), so a region keeps its extent when snapped.
    lx0 = min(level.shape[1] - 1, _nearest_edge(x0, factor))
    ly0 = min(level.shape[0] - 1, _nearest_edge(y0, factor))
    lx1 = min(level.shape[1], max(lx0 + 1, _nearest_edge(x1, factor)))
    ly1 = min(level.shape[0], max(ly0 + 1, _nearest_edge(y1, factor)))
    resized = cv2.resize(level[ly0:ly1, lx0:lx1], (new_w, new_h),
                         interpolation=cv2.INTER_LINEAR)
    pad_x = (input_size - new_w) // 2
    pad_y = (input_size - new_h) // 2
    out = np.zeros((input_size, input_size, 3), dtype=np.uint8)
    out[pad_y : pad_y + new_h, pad_x : pad_x + new_w] = resized
    mapping = Letterbox(
        input_size=input_size,
        # The mapping of what was actually resampled, exact: out = (frame - origin) * scale.
        region_x0=float(factor * lx0),
        region_y0=float(factor * ly0),
        scale_x=new_w / ((lx1 - lx0) * factor),
        scale_y=new_h / ((ly1 - ly0) * factor),
        pad_x=pad_x,
        pad_y=pad_y,
    )
    return out, mapping


def _nearest_edge(frame_edge: int, factor: int) -> int:
    """The level pixel edge nearest to a frame pixel edge, halves rounded up."""
    return (frame_edge + factor // 2) // factor
