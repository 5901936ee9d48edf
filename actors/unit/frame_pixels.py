"""Decoded video frames to the RGB arrays the detector takes, at the least cost.

Cameras and H.264/H.265 files give planar YUV 4:2:0 with limited ("TV") range. PyAV's generic
``to_ndarray(format="rgb24")`` runs it through swscale, which costs 0.5-0.8 ms per 640x360
frame here; OpenCV's I420 conversion does the same BT.601 arithmetic in about 0.1 ms (both
upsample chroma, so results differ by rounding: mean 0.9 of 255 on the shared clip). Any other
pixel format (full-range ``yuvj420p`` from MJPEG cameras, ``yuyv422`` from V4L2, odd sizes...)
takes the generic path, so colours are never misread.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

__all__ = ["frame_to_rgb"]

# The camera's decoder thread shares the cores with the detector and embedder workers: one
# conversion runs on the calling thread alone (as ``models.letterbox`` sets for its resizes).
cv2.setNumThreads(1)

_FAST_FORMAT = "yuv420p"
_JPEG_RANGE = 2
"""FFmpeg's ``AVCOL_RANGE_JPEG``: full-range samples, which the I420 conversion would misread."""


def frame_to_rgb(frame: Any) -> NDArray[np.uint8]:
    """``frame`` (an ``av.VideoFrame``) as a new H x W x 3 uint8 RGB array."""
    if (frame.format.name == _FAST_FORMAT and frame.width % 2 == 0 and frame.height % 2 == 0
            and frame.color_range != _JPEG_RANGE):
        # (H * 3/2, W): the Y plane, then U and V, as OpenCV's I420 layout expects.
        planes = frame.to_ndarray()
        return np.asarray(cv2.cvtColor(planes, cv2.COLOR_YUV2RGB_I420), dtype=np.uint8)
    return np.asarray(frame.to_ndarray(format="rgb24"), dtype=np.uint8)
