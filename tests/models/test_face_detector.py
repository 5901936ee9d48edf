"""FaceDetector: the prepare / detect_input / decode / merge steps, threads, input checks."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from guards.config_checks import ConfigError
from models.blazeface import SHORT_RANGE
from models.detection import FaceDetection
from models.detection_plan import PartialPass
from models.face_detector import DetectorInput, FaceDetector, FaceDetectorConfig, RawDetectorOutput
from models.image_io import load_rgb
from models.model_file import BLAZEFACE_FULL_RANGE
from models.tiling import TilingConfig
from models.track_crops import CropConfig, plan_crops


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


def _street_frame(photo: np.ndarray, at: tuple[int, int]) -> np.ndarray:
    """A 1920x1080 frame of noise with ``photo`` pasted with its top left corner at ``at``."""
    frame = np.random.default_rng(12).integers(0, 256, (1080, 1920, 3), dtype=np.uint8)
    x, y = at
    frame[y : y + photo.shape[0], x : x + photo.shape[1]] = photo
    return frame


@pytest.fixture(scope="module")
def small_kit(faces_dir: Path) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """kit_2.jpeg shrunk 0.3x (face about 60 px wide) and where its face is in it."""
    photo = load_rgb(faces_dir / "photos" / "kit_harington" / "kit_2.jpeg")
    small = np.ascontiguousarray(cv2.resize(photo, None, fx=0.3, fy=0.3,
                                            interpolation=cv2.INTER_AREA))
    # Measured on the full-size photo: the face box is (275, 80, 476, 281), 201 px wide.
    return small, (275 * 0.3, 80 * 0.3, 476 * 0.3, 281 * 0.3)


@pytest.mark.parametrize("at", [(1400, 700), (300, 150), (1920 - 189, 1080 - 112)],
                         ids=["inside", "elsewhere", "bottom-right-corner"])
def test_a_crops_detections_are_in_frame_pixels_where_the_face_was_placed(
        detector: FaceDetector, small_kit: tuple[np.ndarray, Any], at: tuple[int, int]) -> None:
    photo, face = small_kit
    frame = _street_frame(photo, at)
    x, y = at
    expected = (face[0] + x, face[1] + y, face[2] + x, face[3] + y)
    crops = plan_crops([expected], 1920, 1080, CropConfig())
    assert len(crops) == 1
    assert len(detector.prepare_crops(frame, crops)) == 1
    (found,) = detector.detect_crops(frame, crops)
    width = expected[2] - expected[0]
    assert found.box == pytest.approx(expected, abs=0.15 * width)
    assert found.score > 0.8
    # Keypoints too: the eyes lie in the upper half of the box, in frame pixels.
    assert (found.keypoints[:2, 0] > found.x0).all()
    assert (found.keypoints[:2, 0] < found.x1).all()
    assert (found.keypoints[:2, 1] > found.y0).all()
    assert (found.keypoints[:2, 1] < (found.y0 + found.y1) / 2).all()


def test_the_same_face_on_crops_elsewhere_moves_by_exactly_the_offset(
        detector: FaceDetector, small_kit: tuple[np.ndarray, Any]) -> None:
    photo, face = small_kit
    found = []
    for x, y in ((1400, 700), (300, 150)):
        box = (face[0] + x, face[1] + y, face[2] + x, face[3] + y)
        crops = plan_crops([box], 1920, 1080, CropConfig())
        (detection,) = detector.detect_crops(_street_frame(photo, (x, y)), crops)
        found.append(detection)
    a, b = found
    np.testing.assert_allclose(np.subtract(a.box, b.box), [1100, 550, 1100, 550], atol=1.0)
    np.testing.assert_allclose(a.keypoints - b.keypoints, np.tile([1100, 550], (6, 1)), atol=1.0)


def test_a_crop_away_from_the_face_finds_nothing(
        detector: FaceDetector, small_kit: tuple[np.ndarray, Any]) -> None:
    photo, _ = small_kit
    frame = _street_frame(photo, (1400, 700))
    crops = plan_crops([(300.0, 300.0, 360.0, 360.0)], 1920, 1080, CropConfig())
    assert detector.detect_crops(frame, crops) == []
    assert len(detector.detect(frame)) == 1  # the full pass finds it


def test_a_crops_candidates_reaching_its_inner_edges_are_dropped(detector: FaceDetector) -> None:
    crops = plan_crops([(1000.0, 500.0, 1030.0, 530.0)], 1920, 1080, CropConfig())
    (inp,) = detector.prepare_crops(np.zeros((1080, 1920, 3), np.uint8), crops)
    anchors = detector.variant.coord_offset[:, 0:2]  # anchor centres, 0..1 across the input
    edge = int(np.argmin(np.hypot(anchors[:, 0] - 0.05, anchors[:, 1] - 0.5)))
    middle = int(np.argmin(np.hypot(anchors[:, 0] - 0.5, anchors[:, 1] - 0.5)))
    reg = np.zeros((detector.variant.num_anchors, 16), np.float32)
    logits = np.full((detector.variant.num_anchors,), -10.0, np.float32)
    reg[[edge, middle], 2:4] = 40.0  # 40 px faces; the one at the left edge is cut by it
    logits[[edge, middle]] = 3.0
    kept = detector.decode(RawDetectorOutput(reg, logits), inp)
    assert len(kept) == 1
    assert (kept.boxes[0, 0] + kept.boxes[0, 2]) / 2 == pytest.approx(1015.0, abs=2.0)


def test_a_partial_pass_naming_a_part_the_frame_has_not_is_refused(
        detector: FaceDetector) -> None:
    frame = np.zeros((1080, 1920, 3), np.uint8)
    parts = len(detector.full_pass_regions(1920, 1080))
    assert len(detector.prepare_partial(frame, PartialPass((0, parts - 1), ()))) == 2
    with pytest.raises(ValueError, match=rf"\[{parts}\] are outside the {parts} parts"):
        detector.prepare_partial(frame, PartialPass((0, parts), ()))
    with pytest.raises(ValueError, match="outside"):
        detector.prepare_partial(frame, PartialPass((-1,), ()))
