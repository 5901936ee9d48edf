"""Face alignment: a similarity transform from four BlazeFace keypoints to the ArcFace template,
and the warp of the face to a 112x112 crop for the embedder.

The standard 5-point ArcFace template (112x112) has both eyes, the nose tip and the two mouth
corners. BlazeFace gives one mouth *centre*, so the template's mouth corners are replaced by
their midpoint and the fit uses 4 point pairs: right eye, left eye, nose tip, mouth centre.
(The template's first eye, at x = 38.3, is the one on the image's left: the subject's right eye,
BlazeFace keypoint 0.)

The transform is the least-squares similarity (rotation, uniform scale, translation; no
reflection) of Umeyama (1991), closed form via an SVD of the 2x2 cross-covariance.

Pixel convention: the template is given in OpenCV's convention (pixel ``i`` centred at ``i``);
keypoints and Pillow use continuous coordinates (pixel ``i`` spans ``[i, i + 1)``, centred at
``i + 0.5``). The template is shifted by +0.5 px once, here, so both sides agree.
"""

from __future__ import annotations

import math
from typing import Final

import cv2
import numpy as np
from numpy.typing import NDArray

from models.detection import FaceDetection, FaceKeypoint
from models.letterbox import FramePyramid, pyramid_level_for

__all__ = [
    "ALIGNED_SIZE",
    "ARCFACE_TEMPLATE_112",
    "TEMPLATE_4",
    "align_face",
    "alignment_points",
    "estimate_similarity",
    "warp_face",
]

ALIGNED_SIZE: Final = 112
"""Side of the aligned face crop in pixels."""

ARCFACE_TEMPLATE_112: Final[NDArray[np.float64]] = np.array(
    [
        [38.2946, 51.6963],  # right eye (image left)
        [73.5318, 51.5014],  # left eye (image right)
        [56.0252, 71.7366],  # nose tip
        [41.5493, 92.3655],  # right mouth corner
        [70.7299, 92.2041],  # left mouth corner
    ],
    dtype=np.float64,
)
"""The 5-point ArcFace template for 112x112 crops (OpenCV pixel-centre convention)."""

TEMPLATE_4: Final[NDArray[np.float64]] = (
    np.vstack([ARCFACE_TEMPLATE_112[:3], ARCFACE_TEMPLATE_112[3:].mean(axis=0)]) + 0.5
)
"""Targets of right eye, left eye, nose tip, mouth centre in continuous 112x112 coordinates."""

_KEYPOINTS_USED: Final = (
    FaceKeypoint.RIGHT_EYE,
    FaceKeypoint.LEFT_EYE,
    FaceKeypoint.NOSE_TIP,
    FaceKeypoint.MOUTH_CENTER,
)


def alignment_points(detection: FaceDetection) -> NDArray[np.float64]:
    """The detection's 4 keypoints that are fitted to ``TEMPLATE_4``, as (4, 2) float64."""
    return detection.keypoints[list(_KEYPOINTS_USED)].astype(np.float64)


def estimate_similarity(
    src: NDArray[np.floating], dst: NDArray[np.floating]
) -> NDArray[np.float64]:
    """Least-squares similarity transform mapping ``src`` (N, 2) onto ``dst`` (N, 2), N >= 2.

    Returns the 2x3 matrix ``M`` with ``dst ~= M[:, :2] @ src + M[:, 2]``. Reflections are
    excluded (a mirrored face is not the same face). Raises ``ValueError`` for degenerate input
    (all source points equal).
    """
    s = np.asarray(src, dtype=np.float64)
    d = np.asarray(dst, dtype=np.float64)
    if s.shape != d.shape or s.ndim != 2 or s.shape[1] != 2 or s.shape[0] < 2:
        raise ValueError(f"need two (N, 2) point sets with N >= 2, got {s.shape} and {d.shape}")
    mu_s, mu_d = s.mean(axis=0), d.mean(axis=0)
    sc, dc = s - mu_s, d - mu_d
    var_s = float((sc**2).sum()) / s.shape[0]
    if var_s <= 1e-12:
        raise ValueError("source points are all the same: no transform")
    cov = dc.T @ sc / s.shape[0]
    u, sigma, vt = np.linalg.svd(cov)
    # Force a proper rotation (det +1): flip the weakest axis if the best fit is a reflection.
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[1] = -1.0
    rotation = u @ np.diag(sign) @ vt
    scale = float((sigma * sign).sum()) / var_s
    matrix = np.empty((2, 3), dtype=np.float64)
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = mu_d - scale * rotation @ mu_s
    return matrix


def _invert(matrix: NDArray[np.float64]) -> NDArray[np.float64]:
    a = matrix[:, :2]
    a_inv = np.linalg.inv(a)
    out = np.empty((2, 3), dtype=np.float64)
    out[:, :2] = a_inv
    out[:, 2] = -a_inv @ matrix[:, 2]
    return out


def warp_face(
    frame: NDArray[np.uint8], matrix: NDArray[np.float64], size: int = ALIGNED_SIZE
) -> NDArray[np.uint8]:
    """Warp ``frame`` (H x W x 3 uint8) by the frame->crop similarity ``matrix`` (continuous
    coordinates) into a ``size`` x ``size`` x 3 uint8 crop; outside the frame is black.

    Only the frame region the crop maps from is resampled. When the face is 2x or more larger in
    the frame than in the crop, that region is first halved (``FramePyramid``) until less than a
    2x shrink is left, so the bilinear warp (4 source pixels per output pixel) does not alias
    on big faces.
    """
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"frame must be H x W x 3 uint8, got {frame.shape} {frame.dtype}")
    inverse = _invert(matrix)  # crop -> frame
    corners = np.array([[0, 0], [size, 0], [0, size], [size, size]], dtype=np.float64)
    src = corners @ inverse[:, :2].T + inverse[:, 2]
    h, w = frame.shape[:2]
    # Frame pixels per crop pixel (the similarity's inverse scale) sets the pyramid level.
    frame_per_crop = math.sqrt(abs(np.linalg.det(inverse[:, :2])))
    k = pyramid_level_for(frame_per_crop)
    factor = float(2**k)
    # The source region, with a margin of two level pixels for the bilinear taps at its edges
    # and the odd row or column a pyramid level may leave out.
    margin = 2 * 2**k + 2
    x0 = max(0, math.floor(src[:, 0].min()) - margin)
    y0 = max(0, math.floor(src[:, 1].min()) - margin)
    x1 = min(w, math.ceil(src[:, 0].max()) + margin)
    y1 = min(h, math.ceil(src[:, 1].max()) + margin)
    if x1 <= x0 or y1 <= y0:  # the face maps entirely outside the frame
        return np.zeros((size, size, 3), dtype=np.uint8)
    pyramid = FramePyramid(frame[y0:y1, x0:x1])
    # warpAffine works in pixel-centre indices. Level pixel l is centred on the continuous
    # frame point (x0, y0) + factor * (l + 0.5), and crop pixel o on o + 0.5, so the continuous
    # map crop = A frame + b becomes o = A factor l + A ((x0, y0) + factor / 2) + b - 0.5.
    a = np.asarray(matrix[:, :2], dtype=np.float64)
    b = np.asarray(matrix[:, 2], dtype=np.float64)
    offset = a @ (np.array([x0, y0], dtype=np.float64) + factor / 2) + b - 0.5
    level_matrix = np.hstack([a * factor, offset[:, None]])
    warped = cv2.warpAffine(pyramid.level(k), level_matrix, (size, size),
                            flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                            borderValue=(0, 0, 0))
    return np.asarray(warped, dtype=np.uint8)


def align_face(
    frame: NDArray[np.uint8], detection: FaceDetection, size: int = ALIGNED_SIZE
) -> NDArray[np.uint8]:
    """The face of ``detection`` warped to the (scaled) ArcFace template: size x size x 3."""
    target = TEMPLATE_4 * (size / ALIGNED_SIZE)
    matrix = estimate_similarity(alignment_points(detection), target)
    return warp_face(frame, matrix, size)
