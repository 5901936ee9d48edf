"""Quality gates a face must pass before it is embedded and matched.

Embeddings of tiny, blurred or strongly turned faces are unreliable: they match the wrong
person more often. Rather than trust them, such faces are skipped (a tracked face usually
offers a better frame soon). Gates, in the order checked (the first failure is reported):

1. detector score >= ``min_detector_score``;
2. eye distance (frame pixels) >= ``min_eye_distance_px``: the face's resolution;
3. |yaw| <= ``max_abs_yaw_deg``: yaw estimated from the keypoints (see ``estimate_yaw``);
4. sharpness >= ``min_sharpness``: variance of the Laplacian of the aligned face's grey image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import Final

import cv2
import numpy as np
from numpy.typing import NDArray

from guards.config_checks import require_between, require_non_negative
from models.detection import FaceDetection, FaceKeypoint

__all__ = [
    "QualityConfig",
    "QualityGate",
    "QualityVerdict",
    "assess_quality",
    "estimate_yaw",
    "laplacian_variance",
]

_NOSE_DEPTH_RATIO: Final = 1.2
"""Anthropometric constant: how far the nose tip lies in front of the line through the two ear
tragions, over half the tragion-to-tragion width (both ~ 7-9 cm for adults)."""


@dataclass(frozen=True)
class QualityConfig:
    """Thresholds of the quality gates. Defaults pass every face in the shared test photos."""

    min_detector_score: float = 0.7
    """Least detector score (0..1). Detections are already >= 0.6 (MediaPipe's cut); 0.7 skips
    the doubtful ones for recognition while they can still be tracked."""

    min_eye_distance_px: float = 10.0
    """Least distance between the eye keypoints in frame pixels (a face about 30 px wide). The
    template puts the eyes 35 px apart in the 112 px crop. Below 10 px the risk is measured
    (``python -m bench.small_faces``, docs/RECOGNITION.md): the second model's same-person and
    different-person distances overlap, so the two-model rule would rest on the first model
    alone, whose genuine scores fall (24 px faces: 7 of 13 above 0.60). Between 10 and 12 px
    (the gate before) no impostor score rose towards either threshold."""

    max_abs_yaw_deg: float = 45.0
    """Largest head turn left/right in degrees. MobileFaceNet is trained mostly on faces
    within about +-45 degrees; beyond that matches degrade quickly."""

    min_sharpness: float = 40.0
    """Least variance of the Laplacian of the aligned face (grey, 0..255, centre 80x80 px).
    The shared test photos score 190-1800; a 720p face blurred with a Gaussian of radius 2 px
    scores ~70, radius 4 px ~11, a face 9 px between the eyes ~22."""

    def __post_init__(self) -> None:
        require_between("QualityConfig.min_detector_score", self.min_detector_score, 0.0, 1.0)
        require_non_negative("QualityConfig.min_eye_distance_px", self.min_eye_distance_px)
        require_between("QualityConfig.max_abs_yaw_deg", self.max_abs_yaw_deg, 0.0, 90.0)
        require_non_negative("QualityConfig.min_sharpness", self.min_sharpness)


class QualityGate(Enum):
    """Which gate a face failed."""

    DETECTOR_SCORE = "detector_score"
    EYE_DISTANCE = "eye_distance"
    POSE = "pose"
    BLUR = "blur"


@dataclass(frozen=True)
class QualityVerdict:
    """The outcome of the quality gates for one face, with the measured values."""

    failed_gate: QualityGate | None
    """The first gate the face failed; None if it passed all."""

    detector_score: float
    """The detection's score."""

    eye_distance_px: float
    """Distance between the eye keypoints in frame pixels."""

    yaw_deg: float
    """Estimated yaw in degrees (positive: nose towards the image's right)."""

    sharpness: float
    """Variance of the Laplacian of the aligned face's grey image (nan if not computed)."""

    @property
    def passed(self) -> bool:
        """True if the face passed every gate."""
        return self.failed_gate is None


def estimate_yaw(keypoints: NDArray[np.float32]) -> float:
    """Rough head yaw in degrees from the 6 BlazeFace keypoints (6, 2).

    Along the eye axis (so that head roll does not matter), the nose tip's offset from the
    midpoint of the ear tragions is compared with half the tragion distance: for a head turned
    by ``yaw`` that ratio is about ``k * tan(yaw)``, ``k`` being the nose's depth over the
    head's half width. Positive when the nose points to the image's right. Returns +-90 when
    the ears coincide along the eye axis (profile or garbage keypoints).
    """
    kp = np.asarray(keypoints, dtype=np.float64)
    axis = kp[FaceKeypoint.LEFT_EYE] - kp[FaceKeypoint.RIGHT_EYE]
    norm = math.hypot(axis[0], axis[1])
    if norm < 1e-6:
        return 90.0
    axis /= norm
    right_ear = float(kp[FaceKeypoint.RIGHT_EAR_TRAGION] @ axis)
    left_ear = float(kp[FaceKeypoint.LEFT_EAR_TRAGION] @ axis)
    nose = float(kp[FaceKeypoint.NOSE_TIP] @ axis)
    half_width = (left_ear - right_ear) / 2.0
    offset = nose - (left_ear + right_ear) / 2.0
    if half_width <= 1e-6:
        return math.copysign(90.0, offset) if offset else 90.0
    return math.degrees(math.atan(offset / half_width / _NOSE_DEPTH_RATIO))


_LUMA = np.array([[0.299, 0.587, 0.114]], dtype=np.float32)


def laplacian_variance(face: NDArray[np.uint8], border: int = 16) -> float:
    """Variance of the 4-neighbour Laplacian of ``face``'s grey image, ``border`` px trimmed.

    ``face`` is H x W x 3 (RGB) or H x W uint8. Trimming keeps the measure on the face rather
    than the background or black fill at the crop's edges. Vectorised (array slicing).
    """
    img: NDArray[np.float32] = np.asarray(face, dtype=np.float32)
    if img.ndim == 3:
        # ITU-R BT.601 luma, in float so rounding does not add noise to the measure.
        img = np.asarray(cv2.transform(img, _LUMA), dtype=np.float32)
    if border:
        img = img[border:-border, border:-border]
    if img.shape[0] < 3 or img.shape[1] < 3:
        raise ValueError(f"image too small for a Laplacian after trimming: {img.shape}")
    # ksize=1 is the 4-neighbour kernel; only the interior is kept (no border extrapolation).
    lap = cv2.Laplacian(np.ascontiguousarray(img, dtype=np.float32), cv2.CV_32F, ksize=1)
    _, std = cv2.meanStdDev(lap[1:-1, 1:-1])
    return float(std[0, 0]) ** 2


def assess_quality(
    detection: FaceDetection,
    aligned_face: NDArray[np.uint8] | None,
    config: QualityConfig | None = None,
) -> QualityVerdict:
    """Run the gates on a detection and its aligned crop (None: skip the blur gate).

    Cheap gates run first; the blur gate needs the aligned face, so a caller may pass None,
    and align only faces that passed the others, then call again with the crop.
    """
    cfg = config if config is not None else QualityConfig()
    eye_distance = detection.eye_distance
    yaw = estimate_yaw(detection.keypoints)
    sharpness = laplacian_variance(aligned_face) if aligned_face is not None else math.nan
    failed: QualityGate | None = None
    if detection.score < cfg.min_detector_score:
        failed = QualityGate.DETECTOR_SCORE
    elif eye_distance < cfg.min_eye_distance_px:
        failed = QualityGate.EYE_DISTANCE
    elif abs(yaw) > cfg.max_abs_yaw_deg:
        failed = QualityGate.POSE
    elif aligned_face is not None and sharpness < cfg.min_sharpness:
        failed = QualityGate.BLUR
    return QualityVerdict(failed, detection.score, eye_distance, yaw, sharpness)
