"""Overlapping tiles for finding small faces in large frames, on as few tiles as it takes.

The detector sees a whole 1920x1080 frame shrunk to 192 px wide: a 40 px face becomes 4 px, far
below what BlazeFace finds (about 12 px of its 192 px input). Running the detector also on
square tiles of the frame, each shrunk less, finds such faces; their detections are merged with
the whole-frame ones by weighted NMS. Each tile costs one more invoke, so:

- no tiles when the whole-frame pass already finds faces of ``min_face_px``;
- the finest tile size is the largest that still finds ``min_face_px`` faces;
- a face is only reliable in a tile that holds it whole (detections reaching an inner tile edge
  are dropped, ``Tile.crosses_inner_edge``), so neighbouring tiles overlap by at least the
  largest face that the next coarser pass (the whole frame, or a level of bigger tiles) cannot
  find. On very large frames that overlap gets big, and a pyramid (tiles of 2x, 4x... the finest
  size in between) is cheaper: ``plan_tiles`` tries each combination of levels and keeps the one
  with the fewest tiles;
- a pass with finer tiles under it keeps only faces big enough for it to see well
  (``TilingConfig.coarse_min_face``): the smaller ones are the finer tiles' job.

With the defaults (40 px faces): 1920x1080 gets one level of 15 tiles of 533 px (5 x 3);
1280x720: 6; 640x480: 2; frames up to 533 px: none; 3840x2160: 60 on two levels.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from guards.config_checks import (
    ConfigError,
    require_between,
    require_non_negative,
    require_positive,
)

__all__ = ["Tile", "TilingConfig", "axis_starts", "plan_tiles", "tiles_hold_every_face"]


@dataclass(frozen=True)
class TilingConfig:
    """When and how to tile a frame."""

    enabled: bool = True
    """Run tiles at all; False: the whole-frame pass only."""

    min_face_px: float = 40.0
    """Smallest face (detector box width, in frame pixels) the tiles should make findable. Sets
    the finest tile size: ``min_face_px / model_min_face`` (533 px by default)."""

    model_min_face: float = 0.075
    """Smallest face the model finds reliably, as box width over its input side. Full-range
    BlazeFace, measured on faces pasted onto noise: all found from 12 px of 192 (0.0625), few
    below 10 px; 0.075 (14.4 px) leaves a margin."""

    level_ratio: float = 2.0
    """Ratio between the tile sizes of successive pyramid levels (> 1)."""

    edge_margin: float = 0.02
    """Detections reaching within this fraction of the tile side of an inner tile edge (one
    that is not the frame's edge) are dropped as possibly cut off."""

    coarse_min_face: float = 0.06
    """A pass that has finer tiles under it (the whole frame, or a coarser pyramid level) keeps
    only detections at least this wide relative to its own region's longer side: smaller faces
    are left to the finer tiles, which see them sharper. On a face a few pixels wide the coarse
    pass sometimes fires with a box twice the face's size, which weighted NMS would average
    into the good box. 0.06 (11.5 px of 192) is a little below ``model_min_face``, so faces
    near the limit are seen by both passes."""

    def __post_init__(self) -> None:
        require_positive("TilingConfig.min_face_px", self.min_face_px)
        require_between("TilingConfig.model_min_face", self.model_min_face, 0.0, 0.5,
                        inclusive=False)
        if not (math.isfinite(self.level_ratio) and self.level_ratio > 1.0):
            raise ConfigError(f"TilingConfig.level_ratio must be > 1, got {self.level_ratio!r}")
        require_non_negative("TilingConfig.edge_margin", self.edge_margin)
        if self.edge_margin >= 0.25:
            raise ConfigError(f"TilingConfig.edge_margin must be < 0.25, got {self.edge_margin!r}")
        require_between("TilingConfig.coarse_min_face (at most model_min_face)",
                        self.coarse_min_face, 0.0, self.model_min_face)

    @property
    def finest_tile(self) -> int:
        """Side in frame pixels of the smallest tiles."""
        return max(16, math.floor(self.min_face_px / self.model_min_face))


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
    """The left edge is inside the frame (a neighbouring tile continues past it)."""

    inner_top: bool
    """The top edge is inside the frame."""

    inner_right: bool
    """The right edge is inside the frame."""

    inner_bottom: bool
    """The bottom edge is inside the frame."""

    level_size: int
    """Tile size of the pyramid level this tile belongs to (its side unless clipped by the
    frame)."""

    finer_level_below: bool
    """A level of smaller tiles also covers this tile's area (see
    ``TilingConfig.coarse_min_face``)."""

    @property
    def region(self) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1)."""
        return (self.x0, self.y0, self.x1, self.y1)

    @property
    def side(self) -> int:
        """The tile's longer side in frame pixels."""
        return max(self.x1 - self.x0, self.y1 - self.y0)

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


def axis_starts(length: int, tile: int, min_overlap: float) -> list[int]:
    """Start offsets of the fewest ``tile``-px tiles covering ``length`` px with neighbours
    overlapping by at least ``min_overlap`` px, spread evenly (first at 0, last ending at
    ``length``). Requires ``min_overlap < tile``."""
    if length <= tile:
        return [0]
    step = tile - min_overlap
    count = math.ceil((length - tile) / step) + 1
    span = length - tile
    return [round(i * span / (count - 1)) for i in range(count)]


def _level_overlap(tile: int, coarser_side: float, config: TilingConfig) -> float:
    # Faces up to the smallest one the coarser pass finds must fit whole in some tile, clear of
    # the edge margin on both sides.
    return config.model_min_face * coarser_side + 2.0 * config.edge_margin * tile


def _plan_cost(sizes: tuple[int, ...], width: int, height: int, config: TilingConfig) -> int:
    """Tiles needed by levels ``sizes`` (ascending); a huge number if a level can't work."""
    total = 0
    for i, t in enumerate(sizes):
        coarser = sizes[i + 1] if i + 1 < len(sizes) else max(width, height)
        overlap = _level_overlap(t, coarser, config)
        if overlap >= t:
            return 1 << 30
        total += len(axis_starts(width, t, overlap)) * len(axis_starts(height, t, overlap))
    return total


@functools.lru_cache(maxsize=64)
def _plan_levels(width: int, height: int, config: TilingConfig) -> tuple[int, ...]:
    longer = max(width, height)
    finest = config.finest_tile
    if not config.enabled or longer * config.model_min_face <= config.min_face_px:
        return ()
    coarser: list[int] = []
    size = finest * config.level_ratio
    while size < longer:
        coarser.append(round(size))
        size *= config.level_ratio
    best: tuple[int, ...] = ()
    best_cost = 1 << 31
    # Every subset of the coarser levels, finest always included; fewer levels win ties.
    for n in range(len(coarser) + 1):
        for subset in itertools.combinations(coarser, n):
            sizes = (finest, *subset)
            cost = _plan_cost(sizes, width, height, config)
            if cost < best_cost:
                best, best_cost = sizes, cost
    return best


def plan_tiles(width: int, height: int, config: TilingConfig) -> list[Tile]:
    """Tiles for a ``width`` x ``height`` frame, finest level first; empty when tiling is off or
    the whole-frame pass already finds ``config.min_face_px`` faces."""
    levels = _plan_levels(width, height, config)
    tiles: list[Tile] = []
    for i, t in enumerate(levels):
        coarser = levels[i + 1] if i + 1 < len(levels) else max(width, height)
        overlap = _level_overlap(t, coarser, config)
        for y in axis_starts(height, t, overlap):
            for x in axis_starts(width, t, overlap):
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
                        level_size=t,
                        finer_level_below=i > 0,
                    )
                )
    return tiles


def tiles_hold_every_face(tiles: list[Tile], width: int, height: int,
                          config: TilingConfig) -> bool:
    """True when every face the frame can hold lies whole in some tile, clear of the edge
    margins: the whole-frame pass then finds nothing the tiles miss and is skipped.

    A face is at most the frame's shorter side; with one level of tiles whose neighbours overlap
    by that much plus both margins, each such face fits in some column and some row of tiles.
    On a 640x360 frame (two 533 px tiles overlapping by 426 px) this saves a third of the
    detector's invokes.
    """
    if not tiles or any(t.finer_level_below for t in tiles):
        return False
    need = min(width, height) + 2.0 * config.edge_margin * tiles[0].level_size

    def overlaps_enough(spans: list[tuple[int, int]]) -> bool:
        return all(a[1] - b[0] >= need for a, b in itertools.pairwise(spans))

    return (overlaps_enough(sorted({(t.x0, t.x1) for t in tiles}))
            and overlaps_enough(sorted({(t.y0, t.y1) for t in tiles})))
