"""Crops around known faces: size, centring, clamping at the frame's edges, merging, config."""

from __future__ import annotations

from typing import Any

import pytest

from guards.config_checks import ConfigError
from models.track_crops import CropConfig, crop_around, merge_crops, plan_crops

W, H = 1920, 1080
DEFAULT = CropConfig()


def centre(region: tuple[int, int, int, int]) -> tuple[float, float]:
    return (region[0] + region[2]) / 2, (region[1] + region[3]) / 2


def test_a_small_face_gets_a_crop_of_the_model_input_side_centred_on_it() -> None:
    region = crop_around((1000.0, 500.0, 1026.0, 530.0), W, H, DEFAULT)
    assert region[2] - region[0] == region[3] - region[1] == 192
    assert centre(region) == pytest.approx((1013.0, 515.0), abs=0.5)


def test_a_large_face_gets_four_times_its_width() -> None:
    region = crop_around((800.0, 300.0, 900.0, 420.0), W, H, DEFAULT)
    assert region[2] - region[0] == region[3] - region[1] == 400
    assert centre(region) == pytest.approx((850.0, 360.0), abs=0.5)


@pytest.mark.parametrize(("box", "expected"), [
    ((0.0, 0.0, 30.0, 30.0), (0, 0, 192, 192)),  # top left corner
    ((1900.0, 1060.0, 1920.0, 1080.0), (1728, 888, 1920, 1080)),  # bottom right corner
    ((1890.0, 500.0, 1920.0, 530.0), (1728, 419, 1920, 611)),  # right edge only
])
def test_crops_are_moved_inside_the_frame_without_shrinking(
        box: tuple[float, float, float, float], expected: tuple[int, int, int, int]) -> None:
    assert crop_around(box, W, H, DEFAULT) == expected


def test_a_crop_longer_than_the_frame_is_clipped_to_it_on_that_axis_only() -> None:
    region = crop_around((900.0, 100.0, 1200.0, 400.0), W, H, DEFAULT)  # 1200 px > 1080
    assert region == (450, 0, 1650, 1080)
    assert crop_around((10.0, 10.0, 40.0, 40.0), 160, 120, DEFAULT) == (0, 0, 160, 120)


def test_edges_on_the_frame_border_are_not_inner_edges() -> None:
    (tile,) = plan_crops([(1900.0, 500.0, 1920.0, 520.0)], W, H, DEFAULT)
    assert (tile.inner_left, tile.inner_top, tile.inner_right, tile.inner_bottom) == (
        True, True, False, True)
    assert tile.level_size == 192
    assert not tile.finer_level_below


def test_crops_overlapping_a_lot_are_merged_and_distant_ones_are_not() -> None:
    near = [(1000.0, 500.0, 1026.0, 526.0), (1030.0, 510.0, 1056.0, 536.0)]  # 30 px apart
    far = (300.0, 300.0, 326.0, 326.0)
    tiles = plan_crops([*near, far], W, H, DEFAULT)
    assert len(tiles) == 2
    joint = max(tiles, key=lambda t: t.x0)
    assert joint.side <= 1.25 * 192
    for box in near:  # the merged crop holds both faces, each with room around it
        assert joint.x0 < box[0] - 48
        assert box[2] + 48 < joint.x1
        assert joint.y0 < box[1] - 48
        assert box[3] + 48 < joint.y1


def test_merged_crops_hold_every_crop_they_replace_and_never_grow_by_chains() -> None:
    regions = [crop_around((x, 500.0, x + 30.0, 530.0), W, H, DEFAULT)
               for x in (900.0, 940.0, 980.0, 1020.0)]  # 40 px apart: a chain of overlaps
    merged = merge_crops(regions, W, H, DEFAULT)
    assert len(merged) == 2  # one merge of all four would be 312 px: a 26 px face at 16 px
    assert all(max(m[2] - m[0], m[3] - m[1]) <= 1.25 * 192 for m in merged)
    for r in regions:
        assert any(m[0] <= r[0] and m[1] <= r[1] and r[2] <= m[2] and r[3] <= m[3]
                   for m in merged)


def test_merging_repeats_until_no_pair_qualifies() -> None:
    regions = [crop_around((x, 500.0, x + 30.0, 530.0), W, H, DEFAULT)
               for x in (900.0, 920.0, 940.0)]
    assert merge_crops(regions, W, H, DEFAULT) == [(819, 399, 1051, 631)]


def test_a_small_faces_crop_is_not_swallowed_by_a_large_faces() -> None:
    # Measured on the street clip (frame 65): a 43 px face 100 px above a 152 px one. In the
    # latter's 608 px crop it is 14 px of the model's input and scored 0.49 (refused); in its
    # own 192 px crop 0.96.
    faces = [(1185.0, 114.0, 1228.0, 157.0), (947.0, 267.0, 1099.0, 418.0)]
    assert sorted(t.side for t in plan_crops(faces, W, H, DEFAULT)) == [192, 608]


def test_no_merging_with_a_growth_of_one() -> None:
    regions = [crop_around((x, 500.0, x + 30.0, 530.0), W, H, DEFAULT) for x in (900.0, 940.0)]
    assert len(merge_crops(regions, W, H, CropConfig(merge_growth=1.0))) == 2


@pytest.mark.parametrize(("field", "value"), [
    ("min_side_px", 8), ("min_side_px", 100.5), ("box_scale", 0.0), ("box_scale", float("nan")),
    ("merge_growth", 0.9), ("merge_growth", float("inf")),
])
def test_bad_crop_settings_are_refused_by_name(field: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=rf"CropConfig\.{field}\b"):
        CropConfig(**{field: value})
