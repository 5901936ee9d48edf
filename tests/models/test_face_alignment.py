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


def _ramp_frame(axis: int) -> np.ndarray:
    """930 x 960 frame: channel 0 rises 0.25 per pixel along ``axis`` (1: x, 0: y), channel 1
    falls as fast, channel 2 is flat. Dithered, so rounding to uint8 adds noise, not bias."""
    h, w = 930, 960
    t = 0.25 * (np.arange((h, w)[axis]) + 0.5)
    t = t[None, :] if axis == 1 else t[:, None]
    planes = np.broadcast_arrays(t, 245.0 - t, np.full((1, 1), 100.0))
    dither = np.random.default_rng(7).uniform(-0.5, 0.5, (h, w, 3))
    return np.rint(np.stack(planes, axis=-1) + dither).astype(np.uint8)


@settings(max_examples=25, deadline=None)
@given(frame_per_crop=st.floats(1.0, 5.0), angle=st.floats(0.05, 0.3), clockwise=st.booleans(),
       cx=st.floats(400, 560), cy=st.floats(400, 530))
def test_warp_samples_the_frame_where_the_similarity_says(
        frame_per_crop: float, angle: float, clockwise: bool, cx: float, cy: float) -> None:
    # A ramp survives the pyramid's 2x2 averaging and the bilinear warp, so each crop pixel
    # must hold the ramp's value at the frame point its centre maps back to. From 2x on the
    # crop is resampled from a pyramid level; at 4x and more (level 2) a slip of half a level
    # pixel would be 1.5 frame px. OpenCV's rounding brightens each level a little; a rising
    # and a falling ramp tell that apart from a slip (brightening moves both the same way).
    # The crop is always a little rotated: each level is rounded to whole values again, a
    # staircase, and a crop on the level's own grid (no rotation, a scale of exactly 2 or 4)
    # would sample every step at the same phase, a bias of up to 0.9 px that is the test
    # image's, not the mapping's.
    angle = -angle if clockwise else angle
    s = 1.0 / frame_per_crop  # frame -> crop, the crop's centre on (cx, cy)
    c, n = math.cos(angle) * s, math.sin(angle) * s
    half = ALIGNED_SIZE / 2
    to_crop = np.array([[c, -n, half - (c * cx - n * cy)], [n, c, half - (n * cx + c * cy)]])
    o = np.arange(4, ALIGNED_SIZE - 4) + 0.5  # crop pixel centres, clear of the edges
    at = (np.stack(np.meshgrid(o, o), axis=-1) - to_crop[:, 2]) @ np.linalg.inv(to_crop[:, :2]).T
    for axis, coordinate in ((1, at[..., 0]), (0, at[..., 1])):
        crop = warp_face(_ramp_frame(axis), to_crop).astype(np.float64)[4:-4, 4:-4]
        rising = float((crop[..., 0] - 0.25 * coordinate).mean())
        falling = float((crop[..., 1] - (245.0 - 0.25 * coordinate)).mean())
        slip_px = (rising - falling) / 0.5  # brightening cancels out
        # Measured: within 0.05 px; a half-level-pixel slip is 1.5 px on level 2.
        assert abs(slip_px) < 0.5, (axis, slip_px)
