"""Decoded video frames to the RGB arrays the detector takes, at the least cost.

Cameras and H.264/H.265 files give planar YUV 4:2:0 with limited ("TV") range. PyAV's generic
``to_ndarray(format="rgb24")`` runs it through swscale with the colour matrix the frame is
tagged with, which costs 0.4-0.8 ms per 640x360 frame here. OpenCV's I420 conversion does the
BT.601 arithmetic in about 0.1 ms, so it is used where BT.601 is the right matrix: frames tagged
BT.601 (BT.470BG, SMPTE 170M) or untagged, which swscale also reads as BT.601 (the two differ
only in chroma upsampling and rounding: mean 0.9 of 255). Everything else takes PyAV's path, so
colours are never misread: BT.709 frames (most HD cameras, and the shared clip: there BT.601
would shift skin tones by 2-4 levels and saturated colours by up to 10), full-range frames
(``yuvj420p`` from MJPEG cameras, or a full-range flag), packed formats such as V4L2's
``yuyv422``, odd sizes.
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
_BT601_SPACES = frozenset({2, 5, 6})
"""FFmpeg ``AVColorSpace`` values read with the BT.601 matrix: unspecified (swscale's default),
BT.470BG and SMPTE 170M."""


def frame_to_rgb(frame: Any) -> NDArray[np.uint8]:
    """``frame`` (an ``av.VideoFrame``) as a new H x W x 3 uint8 RGB array."""
    if (frame.format.name == _FAST_FORMAT and frame.width % 2 == 0 and frame.height % 2 == 0
            and frame.color_range != _JPEG_RANGE and frame.colorspace in _BT601_SPACES):
        # (H * 3/2, W): the Y plane, then U and V, as OpenCV's I420 layout expects.
        planes = frame.to_ndarray()
        return np.asarray(cv2.cvtColor(planes, cv2.COLOR_YUV2RGB_I420), dtype=np.uint8)
    return np.asarray(frame.to_ndarray(format="rgb24"), dtype=np.uint8)
