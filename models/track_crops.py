"""Square crops around known faces: where the detector looks between full passes.

A face the detector found in a recent frame is looked for again on a square crop centred on it
(side ``max(min_side_px, box_scale x box width)``), letterboxed into the model's input like a
tile. Measured on the 1080p street clip (docs/STREET.md): one invoke on such a crop costs what
one tile costs, and its keypoints, hence the alignment and the similarity scores, are much better
for faces up to 50 px than those of a 533 px tile (kit_harington 50 px: median 0.46 -> 0.73).

Geometry only (frame pixels, continuous coordinates, whole-pixel crop edges); pure functions.
A crop is returned as a ``Tile`` so the detector's tile rules apply to it unchanged: detections
reaching an edge of the crop that lies inside the frame are dropped (a face cut off there is
the business of its own crop or of the next full pass).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from guards.config_checks import ConfigError, require_at_least, require_positive
from models.tiling import Tile

__all__ = ["Box", "CropConfig", "crop_around", "merge_crops", "plan_crops"]

Box = tuple[float, float, float, float]
"""x0, y0, x1, y1 in frame pixels."""

Region = tuple[int, int, int, int]
"""x0, y0, x1 (exclusive), y1 (exclusive) in whole frame pixels."""


@dataclass(frozen=True, slots=True)
class CropConfig:
    """How large the crop around a known face is, and when two crops become one."""

    min_side_px: int = 192
    """Smallest crop side (frame pixels): the model's input side, so a small face is never
    shrunk (a 26 px face stays 26 px of the 192 px input, where it is found reliably)."""

    box_scale: float = 4.0
    """Crop side as a multiple of the face's box width, for faces large enough that
    ``box_scale x width`` exceeds ``min_side_px``: the face is 1/4 of the input, and may move
    1.5 box widths from the predicted centre and still lie whole inside the crop."""

    merge_growth: float = 1.25
    """Two crops become one square holding both when its side is at most this multiple of the
    smaller one's (one invoke instead of two, no face shrunk by more than this factor: a small
    face's crop is never swallowed by a large face's). >= 1."""

    def __post_init__(self) -> None:
        require_at_least("CropConfig.min_side_px", self.min_side_px, 16)
        require_positive("CropConfig.box_scale", self.box_scale)
        if not (math.isfinite(self.merge_growth) and self.merge_growth >= 1.0):
            raise ConfigError(f"CropConfig.merge_growth must be >= 1, got {self.merge_growth!r}")


def crop_around(box: Box, width: int, height: int, config: CropConfig) -> Region:
    """The square crop centred on ``box``, moved (not shrunk) to lie inside the
    ``width`` x ``height`` frame; clipped only along an axis the square is longer than.

    Invariant: the result lies inside the frame and is never empty.
    """
    side = max(config.min_side_px, math.ceil(config.box_scale * (box[2] - box[0])))
    cx, cy = (box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0
    x0, x1 = _span(cx, side, width)
    y0, y1 = _span(cy, side, height)
    return (x0, y0, x1, y1)


def _span(centre: float, side: int, length: int) -> tuple[int, int]:
    """``side`` px centred on ``centre``, shifted into ``[0, length)``; all of it if too long."""
    if side >= length:
        return 0, length
    start = min(max(0, round(centre - side / 2.0)), length - side)
    return start, start + side


def merge_crops(regions: Sequence[Region], width: int, height: int,
                config: CropConfig) -> list[Region]:
    """Replace pairs of crops by one square holding both while its side is at most
    ``merge_growth`` x the smallest side of the crops it replaces (the original ones: neither a
    large neighbour nor a chain of merges shrinks a face more than that), largest first, until
    no pair qualifies.
    Invariant: every input region lies inside some output region."""
    # (region, side of the smallest original crop inside it)
    crops = sorted(((r, _side(r)) for r in regions), key=lambda c: -_side(c[0]))
    while (pair := _mergeable(crops, width, height, config)) is not None:
        i, j, joint = pair
        base = min(crops[i][1], crops[j][1])
        crops = [c for k, c in enumerate(crops) if k not in (i, j)] + [(joint, base)]
        crops.sort(key=lambda c: -_side(c[0]))
    return [region for region, _ in crops]


def _mergeable(crops: Sequence[tuple[Region, int]], width: int, height: int,
               config: CropConfig) -> tuple[int, int, Region] | None:
    """The first pair (by index) whose joint square is small enough, and that square."""
    for i in range(len(crops)):
        for j in range(i + 1, len(crops)):
            joint = _joint(crops[i][0], crops[j][0], width, height)
            if _side(joint) <= config.merge_growth * min(crops[i][1], crops[j][1]):
                return i, j, joint
    return None


def _side(region: Region) -> int:
    return max(region[2] - region[0], region[3] - region[1])


def _joint(a: Region, b: Region, width: int, height: int) -> Region:
    """The smallest square (clamped like ``crop_around``) that holds both regions."""
    x0, y0 = min(a[0], b[0]), min(a[1], b[1])
    x1, y1 = max(a[2], b[2]), max(a[3], b[3])
    side = max(x1 - x0, y1 - y0)
    sx0, sx1 = _span((x0 + x1) / 2.0, side, width)
    sy0, sy1 = _span((y0 + y1) / 2.0, side, height)
    return (sx0, sy0, sx1, sy1)


def plan_crops(boxes: Sequence[Box], width: int, height: int, config: CropConfig) -> list[Tile]:
    """The crops (as tiles, largest first) that look again for the faces at ``boxes`` in a
    ``width`` x ``height`` frame; an edge is inner when it lies inside the frame."""
    regions = merge_crops([crop_around(b, width, height, config) for b in boxes],
                          width, height, config)
    return [
        Tile(x0=x0, y0=y0, x1=x1, y1=y1, inner_left=x0 > 0, inner_top=y0 > 0,
             inner_right=x1 < width, inner_bottom=y1 < height,
             level_size=max(x1 - x0, y1 - y0), finer_level_below=False)
        for x0, y0, x1, y1 in regions
    ]
