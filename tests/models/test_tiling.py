"""Tile plans: none for small frames, few for large ones, and every small face whole in one."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guards.config_checks import ConfigError
from models.tiling import Tile, TilingConfig, axis_starts, plan_tiles, tiles_hold_every_face

DEFAULT = TilingConfig()


def test_small_frames_get_no_tiles_and_tiling_can_be_off() -> None:
    assert plan_tiles(533, 400, DEFAULT) == []
    assert plan_tiles(320, 240, DEFAULT) == []
    assert plan_tiles(1920, 1080, TilingConfig(enabled=False)) == []


def test_tile_counts_for_common_frame_sizes() -> None:
    assert DEFAULT.finest_tile == 533
    assert len(plan_tiles(1920, 1080, DEFAULT)) == 15  # 5 x 3
    assert len(plan_tiles(1280, 720, DEFAULT)) == 6
    assert len(plan_tiles(640, 480, DEFAULT)) == 2
    # Asking for bigger faces only costs fewer tiles.
    assert len(plan_tiles(1920, 1080, TilingConfig(min_face_px=80))) < 15
    assert plan_tiles(1920, 1080, TilingConfig(min_face_px=150)) == []


def test_very_large_frames_get_a_pyramid_of_tile_sizes() -> None:
    tiles = plan_tiles(3840, 2160, DEFAULT)
    assert len(tiles) == 60
    assert {t.level_size for t in tiles} == {533, 1066}
    assert all(t.finer_level_below == (t.level_size == 1066) for t in tiles)


def test_axis_starts_cover_with_the_requested_overlap() -> None:
    starts = axis_starts(1920, 533, 165.0)
    assert starts[0] == 0
    assert starts[-1] + 533 == 1920
    assert all(533 - (b - a) >= 165 for a, b in itertools.pairwise(starts))
    assert axis_starts(400, 533, 100.0) == [0]


def _holds(tile: Tile, box: tuple[float, float, float, float], margin: float) -> bool:
    b = np.array([box], np.float32)
    inside = tile.x0 <= box[0] and tile.y0 <= box[1] and box[2] <= tile.x1 and box[3] <= tile.y1
    return inside and not tile.crosses_inner_edge(b, margin)[0]


@settings(max_examples=200, deadline=None)
@given(
    size=st.sampled_from([(1920, 1080), (1280, 720), (3840, 2160), (2000, 1428)]),
    fx=st.floats(0, 1),
    fy=st.floats(0, 1),
    face=st.floats(40, 140),
)
def test_every_face_too_small_for_the_whole_frame_lies_whole_in_a_tile(
    size: tuple[int, int], fx: float, fy: float, face: float
) -> None:
    w, h = size
    # Faces the whole-frame pass may miss (< model_min_face of the longer side) and that the
    # finest tiles can find (>= min_face_px): some tile must hold them clear of inner edges.
    face = min(face, DEFAULT.model_min_face * max(w, h))
    x0, y0 = fx * (w - face), fy * (h - face)
    box = (x0, y0, x0 + face, y0 + face)
    tiles = plan_tiles(w, h, DEFAULT)
    assert any(_holds(t, box, DEFAULT.edge_margin * t.side) for t in tiles)


def test_inner_edges_are_marked_and_frame_edges_are_not() -> None:
    tiles = plan_tiles(1920, 1080, DEFAULT)
    first, last = tiles[0], tiles[-1]
    assert (first.x0, first.y0) == (0, 0)
    assert not first.inner_left
    assert not first.inner_top
    assert first.inner_right
    assert first.inner_bottom
    assert (last.x1, last.y1) == (1920, 1080)
    assert not last.inner_right
    assert not last.inner_bottom
    boxes = np.array([[5, 5, 50, 50], [500, 10, 530, 40]], np.float32)
    np.testing.assert_array_equal(first.crosses_inner_edge(boxes, 10.0), [False, True])


@pytest.mark.parametrize(("name", "value"), [
    ("min_face_px", 0.0), ("min_face_px", math.nan),
    ("model_min_face", 0.0), ("model_min_face", 0.5),
    ("level_ratio", 1.0), ("level_ratio", math.inf),
    ("edge_margin", -0.01), ("edge_margin", 0.25),
    ("coarse_min_face", -0.01), ("coarse_min_face", 0.08),  # above model_min_face (0.075)
])
def test_a_bad_setting_is_refused_naming_its_field(name: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=rf"TilingConfig\.{name}\b"):
        replace(TilingConfig(), **{name: value})


def test_the_whole_frame_pass_is_skipped_only_when_tiles_hold_every_face() -> None:
    config = TilingConfig()
    # 640x360: two 533 px tiles overlapping by 426 px hold any face up to 360 px.
    small = plan_tiles(640, 360, config)
    assert len(small) == 2
    assert tiles_hold_every_face(small, 640, 360, config)
    # 1920x1080: 533 px tiles cannot hold a 1000 px face: the whole-frame pass stays.
    large = plan_tiles(1920, 1080, config)
    assert not tiles_hold_every_face(large, 1920, 1080, config)
    # No tiles: nothing to skip.
    assert not tiles_hold_every_face([], 320, 240, config)
