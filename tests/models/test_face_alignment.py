"""Similarity fitting (Umeyama) and the warp to the 112x112 ArcFace template."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.detection import FaceDetection
from models.face_alignment import (
    ALIGNED_SIZE,
    ARCFACE_TEMPLATE_112,
    TEMPLATE_4,
    align_face,
    estimate_similarity,
    warp_face,
)


def _similarity(scale: float, angle: float, tx: float, ty: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[scale * c, -scale * s, tx], [scale * s, scale * c, ty]])


def _apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    out: np.ndarray = pts @ m[:, :2].T + m[:, 2]
    return out


@settings(max_examples=100, deadline=None)
@given(
    scale=st.floats(0.05, 20),
    angle=st.floats(-math.pi, math.pi),
    tx=st.floats(-500, 500),
    ty=st.floats(-500, 500),
)
def test_umeyama_recovers_a_known_similarity(
    scale: float, angle: float, tx: float, ty: float
) -> None:
    truth = _similarity(scale, angle, tx, ty)
    src = np.array([[10.0, 20.0], [60.0, 18.0], [35.0, 45.0], [36.0, 70.0], [0.0, 0.0]])
    m = estimate_similarity(src, _apply(truth, src))
    np.testing.assert_allclose(m, truth, rtol=1e-6, atol=1e-6 * max(1.0, abs(tx), abs(ty)))


def test_umeyama_is_the_least_squares_fit_on_noisy_points() -> None:
    rng = np.random.default_rng(3)
    truth = _similarity(2.5, 0.3, 40, -10)
    src = rng.uniform(0, 100, (30, 2))
    dst = _apply(truth, src) + rng.normal(0, 0.5, (30, 2))
    m = estimate_similarity(src, dst)
    np.testing.assert_allclose(m[:, :2], truth[:, :2], atol=0.02)
    np.testing.assert_allclose(m[:, 2], truth[:, 2], atol=1.0)

    def error(a: float, b: float, tx: float, ty: float) -> float:
        sim = np.array([[a, -b, tx], [b, a, ty]])
        return float(((_apply(sim, src) - dst) ** 2).sum())

    best = (m[0, 0], m[1, 0], m[0, 2], m[1, 2])
    # Nudging any of the 4 similarity parameters does not reduce the squared error.
    for i in range(4):
        for delta in (1e-4, -1e-4):
            nudged = list(best)
            nudged[i] += delta
            assert error(*nudged) >= error(*best) - 1e-9


def test_umeyama_never_returns_a_reflection() -> None:
    src = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    mirrored = src * np.array([-1.0, 1.0])
    m = estimate_similarity(src, mirrored)
    assert np.linalg.det(m[:, :2]) > 0


def test_degenerate_input_is_refused() -> None:
    with pytest.raises(ValueError, match="same"):
        estimate_similarity(np.ones((4, 2)), TEMPLATE_4)
    with pytest.raises(ValueError, match="N >= 2"):
        estimate_similarity(np.ones((1, 2)), np.ones((1, 2)))


def test_template_mouth_centre_is_the_mean_of_the_corners() -> None:
    np.testing.assert_allclose(TEMPLATE_4[3] - 0.5, ARCFACE_TEMPLATE_112[3:].mean(axis=0))


def _detection_from_template(m_crop_to_frame: np.ndarray) -> FaceDetection:
    kp = np.zeros((6, 2), np.float32)
    kp[:4] = _apply(m_crop_to_frame, TEMPLATE_4)
    kp[4:] = kp[:2]  # ears unused by alignment
    return FaceDetection(0, 0, 1, 1, 0.9, kp)


@pytest.mark.parametrize("scale", [0.5, 1.0, 3.0, 7.5])
def test_warp_puts_the_keypoints_on_the_template(scale: float) -> None:
    # A frame with a small bright dot at each keypoint; after alignment, the dots sit on the
    # template points whatever the face's scale and rotation.
    to_frame = _similarity(scale, 0.4, 700, 50)
    det = _detection_from_template(to_frame)
    frame = np.zeros((1080, 1920, 3), np.uint8)
    radius = max(1, round(1.5 * scale))
    for x, y in det.keypoints[:4]:
        xi, yi = int(x), int(y)
        frame[yi - radius : yi + radius + 1, xi - radius : xi + radius + 1] = 255
    aligned = align_face(frame, det)
    assert aligned.shape == (ALIGNED_SIZE, ALIGNED_SIZE, 3)
    assert aligned.dtype == np.uint8
    grey = aligned[..., 0].astype(np.float64)
    for tx, ty in TEMPLATE_4:
        x0, y0 = round(tx) - 6, round(ty) - 6
        patch = grey[y0 : y0 + 12, x0 : x0 + 12]
        assert patch.sum() > 0
        yy, xx = np.mgrid[y0 : y0 + 12, x0 : x0 + 12]
        cx = (patch * (xx + 0.5)).sum() / patch.sum()
        cy = (patch * (yy + 0.5)).sum() / patch.sum()
        assert abs(cx - tx) < 1.0
        assert abs(cy - ty) < 1.0


def test_warp_of_a_face_outside_the_frame_is_black() -> None:
    frame = np.full((100, 100, 3), 200, np.uint8)
    m = np.array([[1.0, 0.0, -5000.0], [0.0, 1.0, 0.0]])  # frame -> crop, face far right
    out = warp_face(frame, m)
    assert out.shape == (112, 112, 3)
    assert (out == 0).all()
