"""Quality gates: sharpness, pose, eye distance, score; the first failure is reported."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from guards.config_checks import ConfigError
from models.detection import FaceDetection, FaceKeypoint
from models.face_quality import (
    QualityConfig,
    QualityGate,
    assess_quality,
    estimate_yaw,
    laplacian_variance,
)


def _keypoints(nose_dx: float = 0.0, scale: float = 1.0, roll: float = 0.0) -> np.ndarray:
    # A frontal face: eyes 60 px apart, ears 140 px apart, nose centred (+ nose_dx).
    kp = np.zeros((6, 2), np.float64)
    kp[FaceKeypoint.RIGHT_EYE] = (-30, 0)
    kp[FaceKeypoint.LEFT_EYE] = (30, 0)
    kp[FaceKeypoint.NOSE_TIP] = (nose_dx, 30)
    kp[FaceKeypoint.MOUTH_CENTER] = (nose_dx * 0.8, 60)
    kp[FaceKeypoint.RIGHT_EAR_TRAGION] = (-70, 20)
    kp[FaceKeypoint.LEFT_EAR_TRAGION] = (70, 20)
    c, s = math.cos(roll), math.sin(roll)
    rotated: np.ndarray = kp @ np.array([[c, s], [-s, c]]) * scale + (500, 300)
    return rotated.astype(np.float32)


def _detection(kp: np.ndarray, score: float = 0.9) -> FaceDetection:
    return FaceDetection(400, 200, 600, 400, score, kp)


def test_laplacian_variance_is_zero_on_flat_and_high_on_texture() -> None:
    flat = np.full((112, 112, 3), 128, np.uint8)
    assert laplacian_variance(flat) == 0.0
    checker = ((np.indices((112, 112)).sum(axis=0) % 2) * 255).astype(np.uint8)
    assert laplacian_variance(checker) > 1e5
    ramp = np.tile(np.arange(112, dtype=np.uint8), (112, 1))  # linear: Laplacian 0
    assert laplacian_variance(ramp) == pytest.approx(0.0)


def test_yaw_is_zero_for_a_frontal_face_whatever_its_roll_and_scale() -> None:
    for roll in (-0.5, 0.0, 0.7):
        for scale in (0.3, 1.0, 4.0):
            assert abs(estimate_yaw(_keypoints(0.0, scale, roll))) < 1e-3


def test_yaw_sign_and_growth() -> None:
    right = estimate_yaw(_keypoints(20.0))
    more = estimate_yaw(_keypoints(50.0))
    assert 0 < right < more < 90
    assert estimate_yaw(_keypoints(-20.0)) == pytest.approx(-right)


def test_a_good_face_passes_every_gate() -> None:
    rng = np.random.default_rng(0)
    sharp = rng.integers(0, 255, (112, 112, 3), dtype=np.uint8)
    verdict = assess_quality(_detection(_keypoints()), sharp)
    assert verdict.passed
    assert verdict.failed_gate is None
    assert verdict.eye_distance_px == pytest.approx(60.0)


@pytest.mark.parametrize(
    ("detection", "face", "gate"),
    [
        (_detection(_keypoints(), score=0.65), None, QualityGate.DETECTOR_SCORE),
        (_detection(_keypoints(scale=0.1)), None, QualityGate.EYE_DISTANCE),
        (_detection(_keypoints(nose_dx=120.0)), None, QualityGate.POSE),
        (_detection(_keypoints()), np.full((112, 112, 3), 90, np.uint8), QualityGate.BLUR),
    ],
)
def test_each_gate_reports_itself(
    detection: FaceDetection, face: np.ndarray | None, gate: QualityGate
) -> None:
    verdict = assess_quality(detection, face)
    assert not verdict.passed
    assert verdict.failed_gate is gate


def test_blur_gate_is_skipped_without_a_crop_and_thresholds_are_configurable() -> None:
    det = _detection(_keypoints(nose_dx=120.0))
    verdict = assess_quality(det, None)
    assert math.isnan(verdict.sharpness)
    assert assess_quality(det, None, QualityConfig(max_abs_yaw_deg=89.0)).passed


@pytest.mark.parametrize(("name", "value"), [
    ("min_detector_score", 1.5), ("min_detector_score", -0.1), ("min_detector_score", math.nan),
    ("min_eye_distance_px", -1.0), ("min_eye_distance_px", math.inf),
    ("max_abs_yaw_deg", 120.0), ("max_abs_yaw_deg", -5.0),
    ("min_sharpness", -1.0), ("min_sharpness", math.nan),
])
def test_a_bad_threshold_is_refused_naming_its_field(name: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=rf"QualityConfig\.{name}\b"):
        replace(QualityConfig(), **{name: value})
