"""Letterboxing a frame region into the square model input and mapping back."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from models.letterbox import FramePyramid, letterbox_region, pyramid_level_for


@settings(max_examples=50, deadline=None)
@given(
    w=st.integers(20, 400),
    h=st.integers(20, 400),
    size=st.sampled_from([128, 192]),
    data=st.data(),
)
def test_to_frame_and_to_input_are_inverse(w: int, h: int, size: int, data: st.DataObject) -> None:
    frame = np.zeros((h, w, 3), np.uint8)
    x0 = data.draw(st.integers(0, w - 10))
    y0 = data.draw(st.integers(0, h - 10))
    x1 = data.draw(st.integers(x0 + 10, w))
    y1 = data.draw(st.integers(y0 + 10, h))
    image, lb = letterbox_region(frame, (x0, y0, x1, y1), size)
    assert image.shape == (size, size, 3)
    assert image.dtype == np.uint8
    pts = np.array([[x0, y0], [x1, y1], [(x0 + x1) / 2, y0 + 3.25]], np.float32)
    np.testing.assert_allclose(lb.to_frame(lb.to_input(pts)), pts, atol=1e-3)
    mul, add = lb.frame_affine()  # the detector's fast path: one multiply-add per point
    normalised = lb.to_input(pts)
    np.testing.assert_allclose(normalised * mul + add, lb.to_frame(normalised), atol=1e-3)
    # The region's corners land on the corners of the resized area, which is centred. A region
    # shrunk 2x or more is resampled from a pyramid level, its edges snapped to whole level
    # pixels: the mapping is exact for what was sampled, which is the requested region up to
    # half a level pixel at each edge.
    new_w = round((x1 - x0) * size / max(x1 - x0, y1 - y0))
    new_h = round((y1 - y0) * size / max(x1 - x0, y1 - y0))
    assert max(new_w, new_h) == size
    assert abs(2 * lb.pad_x + new_w - size) <= 1
    assert abs(2 * lb.pad_y + new_h - size) <= 1
    factor = 2 ** pyramid_level_for(max((x1 - x0) / new_w, (y1 - y0) / new_h))
    resized_corners = np.array([[lb.pad_x, lb.pad_y], [lb.pad_x + new_w, lb.pad_y + new_h]],
                               np.float32) / np.float32(size)
    sampled = lb.to_frame(resized_corners).astype(np.float64)
    np.testing.assert_allclose(sampled, pts[:2].astype(np.float64), atol=factor / 2 + 1e-3)
    # ... and on whole level pixels: level pixel l spans frame [factor l, factor (l + 1)).
    np.testing.assert_allclose(sampled / factor, np.rint(sampled / factor), atol=1e-3)


def test_content_lands_where_the_mapping_says_and_padding_is_black() -> None:
    frame = np.full((1080, 1920, 3), 60, np.uint8)
    frame[500:540, 1000:1040] = 255  # a 40 px white square centred at (1020, 520)
    image, lb = letterbox_region(frame, (0, 0, 1920, 1080), 192)
    assert lb.pad_x == 0
    assert lb.pad_y == (192 - 108) // 2
    assert (image[: lb.pad_y] == 0).all()
    assert (image[lb.pad_y + 108 :] == 0).all()
    bright = image[..., 0] > 150
    ys, xs = np.nonzero(bright)
    centre_input = np.array([[(xs.mean() + 0.5) / 192, (ys.mean() + 0.5) / 192]], np.float32)
    np.testing.assert_allclose(lb.to_frame(centre_input)[0], [1020, 520], atol=5.0)


def test_a_tile_region_is_mapped_with_its_offset() -> None:
    frame = np.zeros((1080, 1920, 3), np.uint8)
    frame[300:310, 700:710] = 255  # centre (705, 305)
    image, lb = letterbox_region(frame, (600, 200, 1133, 733), 192)
    ys, xs = np.nonzero(image[..., 0] > 100)
    centre_input = np.array([[(xs.mean() + 0.5) / 192, (ys.mean() + 0.5) / 192]], np.float32)
    np.testing.assert_allclose(lb.to_frame(centre_input)[0], [705, 305], atol=2.0)


def test_each_pyramid_level_averages_two_by_two_blocks() -> None:
    rng = np.random.default_rng(3)
    frame = rng.integers(0, 256, (7, 10, 3), dtype=np.uint8)
    level = FramePyramid(frame).level(1)
    assert level.shape == (4, 5, 3)
    padded = np.concatenate([frame, frame[-1:]]).astype(np.float64)  # odd: last row repeated
    blocks = padded.reshape(4, 2, 5, 2, 3).mean(axis=(1, 3))
    np.testing.assert_allclose(level, blocks, atol=0.5)
    assert FramePyramid(frame).level(4).shape == (1, 1, 3)  # never below one pixel


@given(x0=st.integers(0, 60), y0=st.integers(0, 30), side=st.integers(768, 900))
@settings(max_examples=30, deadline=None)
def test_the_mapping_is_exact_for_regions_resampled_from_a_pyramid_level(
        x0: int, y0: int, side: int) -> None:
    # Ramps are kept by 2x2 averaging and by bilinear resizing, so each model-input pixel must
    # hold the ramps' values at the frame point its centre maps to. Regions of 768+ px are
    # resampled from level 2 (4 frame px per level px), where a slip of half a level pixel
    # would be 2 frame px. OpenCV rounds halves up at each level, which brightens everything a
    # little (b): three ramps (x, y, and falling in both) tell that apart from a slip.
    h, w = 930, 960
    x = (np.arange(w) + 0.5)[None, :]
    y = (np.arange(h) + 0.5)[:, None]
    ramps = [0.25 * x + 0 * y, 0 * x + 0.25 * y, 250.0 - 0.125 * (x + y)]
    # Dithered (random rounding), so rounding the ramps to uint8 adds noise but no bias.
    dither = np.random.default_rng(side).uniform(-0.5, 0.5, (h, w, 3))
    frame = np.rint(np.stack(ramps, axis=-1) + dither).astype(np.uint8)
    region = (x0, y0, min(w, x0 + side), min(h, y0 + side))
    image, lb = letterbox_region(frame, region, 192)
    u = np.arange(lb.pad_x + 2, 192 - lb.pad_x - 2)
    v = np.arange(lb.pad_y + 2, 192 - lb.pad_y - 2)
    centres = np.stack(np.meshgrid((u + 0.5) / 192, (v + 0.5) / 192), axis=-1).astype(np.float32)
    at = lb.to_frame(centres).astype(np.float64)
    expected = [0.25 * at[..., 0], 0.25 * at[..., 1], 250.0 - 0.125 * (at[..., 0] + at[..., 1])]
    got = image[v[:, None], u[None, :]].astype(np.float64)
    errors = [float((got[..., c] - expected[c]).mean()) for c in range(3)]
    # mean error = b + slope . slip, per ramp: solve for (b, slip_x, slip_y) in frame pixels.
    slopes = np.array([[1.0, 0.25, 0.0], [1.0, 0.0, 0.25], [1.0, -0.125, -0.125]])
    brightening, slip_x, slip_y = np.linalg.solve(slopes, errors)
    # Measured: 0.4 px (a tenth of a level pixel) of rounding; a half-level-pixel slip is 2 px.
    assert abs(slip_x) < 1.0
    assert abs(slip_y) < 1.0
    assert 0.0 <= brightening < 1.0
