"""Overlapping tiles for finding small faces in large frames.

The detector sees a whole 1920x1080 frame shrunk to 192 px wide: a 40 px face becomes 4 px, far
below what BlazeFace can find. Running the detector also on square tiles of the frame (each
shrunk much less) finds such faces; their detections are merged with the whole-frame ones by
weighted NMS.

Cost is one extra invoke per tile, so the grid is the smallest that covers the frame with tiles
of ``tile_size`` overlapping by at least ``min_overlap``; frames that the whole-frame pass
already sees at (nearly) tile resolution get no tiles at all.

Why the overlap: a face cut by a tile's inner edge is unreliable (its box is truncated or
guessed), so such detections are dropped (``Tile.crosses_inner_edge``) and the face is left to
the neighbouring tile, which holds it whole provided it is no wider than the overlap. Faces
wider than that are large enough for the whole-frame pass, as long as ``min_overlap`` is at
least the smallest face the whole-frame pass finds (about frame width / 10 for the full-range
model on a 16:9 frame; see ``TilingConfig``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = ["Tile", "TilingConfig", "axis_starts", "plan_tiles"]


@dataclass(frozen=True)
class TilingConfig:
    """When and how to tile a frame. Sizes are in frame pixels."""

    enabled: bool = True
    """Run tiles at all; False: whole-frame pass only."""

    tile_size: int = 448
    """Side of a square tile. The smallest face found is about ``tile_size / 10`` wide with
    the full-range model (the model reliably finds faces >= ~18 px of its 192 px input): 448
    finds 40 px faces with margin."""

    min_overlap: int = 192
    """Least overlap between neighbouring tiles. Faces up to this wide lie whole inside some
    tile; it should be >= the smallest face the whole-frame pass finds (~ longer frame side /
    10), else faces in between may be missed near tile seams."""

    min_zoom: float = 1.5
    """Tile only if the frame's longer side is at least this many tile sizes: below that the
    tiles would see faces hardly larger than the whole-frame pass does, for several times the
    cost."""

    edge_margin: float = 0.02
    """Detections reaching within this fraction of the tile side of an inner tile edge (one
    that is not the frame's edge) are dropped as possibly cut off."""

    def __post_init__(self) -> None:
        if self.tile_size < 16:
            raise ValueError(f"tile_size must be >= 16 px, got {self.tile_size}")
        if not 0 <= self.min_overlap < self.tile_size:
            raise ValueError(
                f"min_overlap must be in [0, tile_size), got {self.min_overlap} "
                f"for tile_size {self.tile_size}"
            )
        if self.min_zoom < 1.0:
            raise ValueError(f"min_zoom must be >= 1, got {self.min_zoom}")
        if not 0.0 <= self.edge_margin < 0.5:
            raise ValueError(f"edge_margin must be in [0, 0.5), got {self.edge_margin}")


@dataclass(frozen=True)
class Tile:
    """One tile: a frame region and which of its edges lie inside the frame."""

    x0: int
    """Left edge in frame pixels."""

    y0: int
    """Top edge in frame pixels."""

    x1: int
    """Right edge (exclusive) in frame pixels."""

    y1: int
    """Bottom edge (exclusive) in frame pixels."""

    inner_left: bool
    """The left edge is inside the frame (another tile continues past it)."""

    inner_top: bool
    """The top edge is inside the frame."""

    inner_right: bool
    """The right edge is inside the frame."""

    inner_bottom: bool
    """The bottom edge is inside the frame."""

    @property
    def region(self) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1)."""
        return (self.x0, self.y0, self.x1, self.y1)

    def crosses_inner_edge(self, boxes: NDArray[np.float32], margin_px: float) -> NDArray[np.bool_]:
        """For (N, 4) frame-pixel boxes: which reach within ``margin_px`` of an inner edge."""
        out = np.zeros(boxes.shape[0], dtype=bool)
        if self.inner_left:
            out |= boxes[:, 0] < self.x0 + margin_px
        if self.inner_top:
            out |= boxes[:, 1] < self.y0 + margin_px
        if self.inner_right:
            out |= boxes[:, 2] > self.x1 - margin_px
        if self.inner_bottom:
            out |= boxes[:, 3] > self.y1 - margin_px
        return out


def axis_starts(length: int, tile: int, min_overlap: int) -> list[int]:
    """Start offsets of the fewest tiles of ``tile`` px covering ``length`` px with at least
    ``min_overlap`` px overlap, spread evenly (first at 0, last ending at ``length``)."""
    if length <= tile:
        return [0]
    step = tile - min_overlap
    count = math.ceil((length - tile) / step) + 1
    span = length - tile
    return [round(i * span / (count - 1)) for i in range(count)]


def plan_tiles(width: int, height: int, config: TilingConfig) -> list[Tile]:
    """Tiles for a ``width`` x ``height`` frame; empty when tiling is off or not worth it."""
    if not config.enabled or max(width, height) < config.min_zoom * config.tile_size:
        return []
    t = config.tile_size
    xs = axis_starts(width, t, config.min_overlap)
    ys = axis_starts(height, t, config.min_overlap)
    tiles: list[Tile] = []
    for y in ys:
        for x in xs:
            x1, y1 = min(x + t, width), min(y + t, height)
            tiles.append(
                Tile(
                    x0=x,
                    y0=y,
                    x1=x1,
                    y1=y1,
                    inner_left=x > 0,
                    inner_top=y > 0,
                    inner_right=x1 < width,
                    inner_bottom=y1 < height,
                )
            )
    return tiles
