"""FaceDetector: the prepare / detect_input / decode / merge steps, threads, input checks."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from guards.config_checks import ConfigError
from models.blazeface import SHORT_RANGE
from models.detection import FaceDetection
from models.face_detector import DetectorInput, FaceDetector, FaceDetectorConfig, RawDetectorOutput
from models.image_io import load_rgb
from models.model_file import BLAZEFACE_FULL_RANGE
from models.tiling import TilingConfig


def test_blank_and_noise_frames_have_no_faces(detector: FaceDetector) -> None:
    assert detector.detect(np.zeros((480, 640, 3), np.uint8)) == []
    noise = np.random.default_rng(5).integers(0, 256, (720, 1280, 3), dtype=np.uint8)
    assert detector.detect(noise) == []


def test_prepare_makes_one_input_for_small_frames_and_adds_tiles_for_large(
    detector: FaceDetector,
) -> None:
    small = detector.prepare(np.zeros((240, 320, 3), np.uint8))
    assert len(small) == 1
    assert small[0].tile is None
    assert small[0].image.shape == (192, 192, 3)
    assert small[0].min_face_px == 0.0

    big = detector.prepare(np.full((1080, 1920, 3), 255, np.uint8))
    assert len(big) == 16
    assert big[0].tile is None
    assert big[0].min_face_px > 0  # tiles below it: tiny faces are theirs
    assert all(i.tile is not None for i in big[1:])


def test_inputs_are_scaled_to_minus_one_to_one(detector: FaceDetector) -> None:
    (black,) = detector.prepare(np.zeros((192, 192, 3), np.uint8))
    (white,) = detector.prepare(np.full((192, 192, 3), 255, np.uint8))
    tensor = np.full(detector.interpreter().input_shape, np.nan, np.float32)
    black.fill(tensor)
    np.testing.assert_array_equal(tensor, -1.0)
    white.fill(tensor)
    np.testing.assert_allclose(tensor, 1.0, atol=1e-6)


def test_frames_of_the_wrong_kind_are_refused(detector: FaceDetector) -> None:
    with pytest.raises(ValueError, match="uint8 RGB"):
        detector.detect(np.zeros((100, 100), np.uint8))
    with pytest.raises(ValueError, match="uint8 RGB"):
        detector.detect(np.zeros((100, 100, 4), np.uint8))
    with pytest.raises(ValueError, match="uint8 RGB"):
        detector.detect(np.zeros((100, 100, 3), np.float32))
    with pytest.raises(ValueError, match="empty"):
        detector.detect(np.zeros((0, 100, 3), np.uint8))


def test_decode_drops_faces_left_to_finer_tiles(detector: FaceDetector) -> None:
    (inp,) = detector.prepare(np.zeros((192, 192, 3), np.uint8))
    n = detector.variant.num_anchors
    reg = np.zeros((n, 16), np.float32)
    logits = np.full((n,), -10.0, np.float32)
    reg[100, 2:4] = 10.0  # a 10 px face
    reg[200, 2:4] = 40.0  # a 40 px face
    logits[[100, 200]] = 3.0
    raw = RawDetectorOutput(reg, logits)
    assert len(detector.decode(raw, inp)) == 2
    coarse = DetectorInput(inp.image, inp.letterbox, None, min_face_px=20.0)
    kept = detector.decode(raw, coarse)
    assert len(kept) == 1
    assert kept.boxes[0, 2] - kept.boxes[0, 0] == pytest.approx(40.0)


def test_face_detection_is_immutable_and_validated() -> None:
    kp = np.zeros((6, 2), np.float32)
    det = FaceDetection(1.0, 2.0, 11.0, 22.0, 0.9, kp)
    kp[0, 0] = 99.0  # the detection holds its own copy
    assert det.keypoints[0, 0] == 0.0
    with pytest.raises(ValueError, match="read-only"):
        det.keypoints[0, 0] = 5.0
    assert (det.width, det.height) == (10.0, 20.0)
    with pytest.raises(ValueError, match=r"\(6, 2\)"):
        FaceDetection(0, 0, 1, 1, 0.5, np.zeros((5, 2), np.float32))


@pytest.fixture(scope="module")
def group_photo(faces_dir: Path) -> np.ndarray:
    return load_rgb(faces_dir / "photos" / "groups" / "obama_and_biden_2.jpg")


def test_detect_is_its_steps(detector: FaceDetector, group_photo: np.ndarray) -> None:
    inputs = detector.prepare(group_photo)
    assert len(inputs) > 1  # 1126 px wide: tiles too
    merged = detector.merge([detector.detect_input(i) for i in inputs])
    direct = detector.detect(group_photo)
    assert len(merged) == len(direct) == 2
    for a, b in zip(merged, direct, strict=True):
        np.testing.assert_array_equal(a.box, b.box)
        np.testing.assert_array_equal(a.keypoints, b.keypoints)
    assert merged[0].score >= merged[1].score


def test_inputs_run_on_a_two_thread_pool_match_sequential_ones(
    detector: FaceDetector, group_photo: np.ndarray
) -> None:
    inputs = detector.prepare(group_photo)
    sequential = [detector.detect_input(i) for i in inputs]
    assert sum(len(c) for c in sequential) > 0
    with ThreadPoolExecutor(max_workers=2) as pool:
        parallel = list(pool.map(detector.detect_input, inputs * 3))
    for k, cands in enumerate(parallel):
        want = sequential[k % len(inputs)]
        np.testing.assert_array_equal(cands.boxes, want.boxes)
        np.testing.assert_array_equal(cands.scores, want.scores)


def test_short_range_variant_and_max_faces(group_photo: np.ndarray) -> None:
    short = FaceDetector(
        FaceDetectorConfig(variant=SHORT_RANGE, tiling=TilingConfig(enabled=False))
    )
    assert short.model_id == "blazeface-short-range"
    assert short.prepare(group_photo)[0].image.shape == (128, 128, 3)
    assert len(short.detect(group_photo)) == 2
    one = FaceDetector(FaceDetectorConfig(max_faces=1))
    (best,) = one.detect(group_photo)
    assert best.score >= 0.9


@pytest.mark.parametrize(("name", "value"), [
    ("min_score", 1.2), ("min_score", math.nan),
    ("nms_iou_threshold", -0.1), ("nms_iou_threshold", 1.1),
    ("max_faces", 0), ("max_faces", 1.5),
    ("edgetpu_model", BLAZEFACE_FULL_RANGE),  # a CPU model where the Edge TPU one belongs
])
def test_a_bad_setting_is_refused_naming_its_field(name: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=rf"FaceDetectorConfig\.{name}\b"):
        replace(FaceDetectorConfig(), **{name: value})
