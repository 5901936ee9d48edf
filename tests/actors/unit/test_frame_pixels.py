"""``frame_to_rgb``: the OpenCV fast path agrees with PyAV's own conversion, and every frame
the fast path cannot read correctly takes PyAV's path."""

from __future__ import annotations

import av
import cv2
import numpy as np
import pytest
from numpy.typing import NDArray

from actors.unit.frame_pixels import frame_to_rgb


def _scene(height: int, width: int) -> NDArray[np.uint8]:
    """Smooth colour gradients plus a few sharp blocks (chroma edges)."""
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([x * 255 // max(1, width - 1), y * 255 // max(1, height - 1),
                    (x + y) * 255 // max(1, width + height - 2)], axis=-1).astype(np.uint8)
    rgb[height // 4: height // 2, width // 4: width // 2] = (200, 30, 40)
    return rgb


def _frame(rgb: NDArray[np.uint8], pixel_format: str) -> av.VideoFrame:
    return av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format=pixel_format)


def test_yuv420p_matches_pyav_conversion() -> None:
    frame = _frame(_scene(360, 640), "yuv420p")
    expected = frame.to_ndarray(format="rgb24").astype(np.int16)
    got = frame_to_rgb(frame)
    assert got.shape == (360, 640, 3)
    assert got.dtype == np.uint8
    diff = np.abs(got.astype(np.int16) - expected)
    # Same BT.601 limited-range matrix; only chroma upsampling and rounding differ.
    assert diff.mean() < 1.5
    assert np.percentile(diff, 99) <= 8


def test_result_is_a_fresh_writable_array() -> None:
    frame = _frame(_scene(64, 96), "yuv420p")
    first = frame_to_rgb(frame)
    first[:] = 0
    assert frame_to_rgb(frame).any()


@pytest.mark.parametrize(("pixel_format", "height", "width"), [
    ("yuvj420p", 64, 96),   # full range: the I420 matrix would misread it
    ("yuyv422", 64, 96),    # packed 4:2:2, as V4L2 cameras give
    ("rgb24", 64, 96),
    ("yuv420p", 63, 95),    # odd sizes: chroma planes do not tile the luma 2x2
])
def test_other_frames_take_pyavs_conversion(pixel_format: str, height: int, width: int) -> None:
    frame = _frame(_scene(height, width), pixel_format)
    np.testing.assert_array_equal(frame_to_rgb(frame), frame.to_ndarray(format="rgb24"))


def test_full_range_frames_keep_their_colours() -> None:
    rgb = _scene(64, 96)
    frame = _frame(rgb, "yuvj420p")
    assert np.abs(frame_to_rgb(frame).astype(np.int16) - rgb).mean() < 3


def test_yuv420p_flagged_full_range_takes_pyavs_conversion() -> None:
    frame = _frame(_scene(64, 96), "yuv420p")
    frame.color_range = 2  # AVCOL_RANGE_JPEG, as an H.264 stream may signal
    np.testing.assert_array_equal(frame_to_rgb(frame), frame.to_ndarray(format="rgb24"))


@pytest.mark.parametrize("colorspace", [2, 5, 6])  # unspecified, BT.470BG, SMPTE 170M
def test_frames_read_as_bt601_take_the_fast_path(colorspace: int) -> None:
    frame = _frame(_scene(64, 96), "yuv420p")
    frame.colorspace = colorspace
    fast = cv2.cvtColor(frame.to_ndarray(), cv2.COLOR_YUV2RGB_I420)
    np.testing.assert_array_equal(frame_to_rgb(frame), fast)


def test_bt709_frames_keep_their_matrix() -> None:
    frame = _frame(_scene(64, 96), "yuv420p")
    frame.colorspace = 1  # BT.709, as HD cameras and the shared clip are tagged
    converted = frame_to_rgb(frame)
    np.testing.assert_array_equal(converted, frame.to_ndarray(format="rgb24"))
    bt601 = cv2.cvtColor(frame.to_ndarray(), cv2.COLOR_YUV2RGB_I420)
    assert np.abs(converted.astype(np.int16) - bt601).max() >= 5  # the matrices do differ here
