"""``RgbConverter``: the same conversion as PyAV's ``to_ndarray(format="rgb24")`` for every
kind of frame a camera gives, with one reused swscale context."""

from __future__ import annotations

import av
import numpy as np
import pytest
from numpy.typing import NDArray

from actors.unit.frame_pixels import RgbConverter


def _scene(height: int, width: int) -> NDArray[np.uint8]:
    """Smooth colour gradients plus a saturated block (chroma edges)."""
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([x * 255 // max(1, width - 1), y * 255 // max(1, height - 1),
                    (x + y) * 255 // max(1, width + height - 2)], axis=-1).astype(np.uint8)
    rgb[height // 4: height // 2, width // 4: width // 2] = (200, 30, 40)
    return rgb


def _frame(rgb: NDArray[np.uint8], pixel_format: str) -> av.VideoFrame:
    return av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format=pixel_format)


@pytest.mark.parametrize(("pixel_format", "height", "width", "colorspace", "color_range"), [
    ("yuv420p", 360, 640, 1, 1),  # BT.709, limited range: HD cameras, the shared clip
    ("yuv420p", 360, 640, 5, 1),  # BT.601
    ("yuv420p", 360, 640, 2, 1),  # untagged
    ("yuv420p", 64, 96, 1, 2),    # flagged full range
    ("yuvj420p", 64, 96, 2, 2),   # MJPEG cameras
    ("yuyv422", 64, 96, 2, 1),    # packed 4:2:2, as V4L2 cameras give
    ("rgb24", 64, 96, 2, 0),
    ("yuv420p", 63, 95, 1, 1),    # odd sizes
])
def test_the_same_conversion_as_pyav(pixel_format: str, height: int, width: int,
                                     colorspace: int, color_range: int) -> None:
    frame = _frame(_scene(height, width), pixel_format)
    frame.colorspace = colorspace
    frame.color_range = color_range
    got = RgbConverter().to_rgb(frame)
    assert got.shape == (height, width, 3)
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, frame.to_ndarray(format="rgb24"))


def test_one_converter_follows_changes_of_size_and_tags() -> None:
    converter = RgbConverter()
    frames = [_frame(_scene(64, 96), "yuv420p"), _frame(_scene(360, 640), "yuv420p"),
              _frame(_scene(64, 96), "yuv420p")]
    frames[1].colorspace = 1
    frames[2].colorspace = 5
    for frame in frames * 2:
        np.testing.assert_array_equal(converter.to_rgb(frame), frame.to_ndarray(format="rgb24"))


def test_each_result_is_an_array_of_its_own() -> None:
    converter = RgbConverter()
    for pixel_format in ("yuv420p", "rgb24"):
        frame = _frame(_scene(64, 96), pixel_format)
        first = converter.to_rgb(frame)
        first[:] = 0
        assert converter.to_rgb(frame).any(), pixel_format
