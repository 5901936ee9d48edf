"""Letterboxing a frame region into the square model input and mapping back."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from models.letterbox import letterbox_region


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
    # half a level pixel, i.e. at most half a model-input pixel.
    new_w = round((x1 - x0) * size / max(x1 - x0, y1 - y0))
    new_h = round((y1 - y0) * size / max(x1 - x0, y1 - y0))
    assert max(new_w, new_h) == size
    assert abs(2 * lb.pad_x + new_w - size) <= 1
    assert abs(2 * lb.pad_y + new_h - size) <= 1
    corners = lb.to_input(pts[:2]) * size
    np.testing.assert_allclose(corners[0], [lb.pad_x, lb.pad_y], atol=0.5)
    np.testing.assert_allclose(corners[1], [lb.pad_x + new_w, lb.pad_y + new_h], atol=0.5)


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
