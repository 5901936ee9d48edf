"""The second face model: its vendored files are pinned (sha256, size) and checked before dlib
sees them, and on the shared photos it tells people apart on the first detector's boxes."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from models.face_detector import FaceDetector
from models.image_io import load_rgb
from models.model_file import DATA_DIR, ModelFile, ModelIntegrityError
from models.second_opinion_model import (
    DESCRIPTOR_DIM,
    DLIB_RESNET_V1,
    DLIB_SHAPE_5,
    MAX_MODEL_BYTES,
    SecondFaceModel,
    SecondModelUnavailable,
    descriptor_distance,
    dlib_box,
)


@pytest.mark.parametrize("model", [DLIB_RESNET_V1, DLIB_SHAPE_5], ids=lambda m: m.model_id)
def test_the_vendored_files_have_their_pinned_sha256(model: ModelFile) -> None:
    data = model.path().read_bytes()
    assert len(data) <= MAX_MODEL_BYTES
    assert hashlib.sha256(data).hexdigest() == model.sha256


def test_the_68_point_predictor_is_never_vendored() -> None:
    assert not list(DATA_DIR.glob("*68*"))


def _copy_data(tmp_path: Path) -> Path:
    for model in (DLIB_RESNET_V1, DLIB_SHAPE_5):
        (tmp_path / model.file_name).write_bytes(model.path().read_bytes())
    return tmp_path


def test_a_tampered_file_is_refused_before_dlib_loads_it(tmp_path: Path) -> None:
    data_dir = _copy_data(tmp_path)
    target = data_dir / DLIB_SHAPE_5.file_name
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(data)
    with pytest.raises(ModelIntegrityError, match=f"expected {DLIB_SHAPE_5.sha256}"):
        SecondFaceModel(data_dir=data_dir)


def test_an_oversized_file_is_refused_before_it_is_read(tmp_path: Path) -> None:
    data_dir = _copy_data(tmp_path)
    with (data_dir / DLIB_RESNET_V1.file_name).open("r+b") as out:
        out.truncate(MAX_MODEL_BYTES + 1)  # sparse: no 64 MB written
    with pytest.raises(ModelIntegrityError, match="more than"):
        SecondFaceModel(data_dir=data_dir)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    data_dir = _copy_data(tmp_path)
    os.unlink(data_dir / DLIB_RESNET_V1.file_name)
    with pytest.raises(ModelIntegrityError, match=DLIB_RESNET_V1.file_name):
        SecondFaceModel(data_dir=data_dir)


def test_the_predictor_box_is_blazefaces_shrunk_about_its_centre() -> None:
    assert dlib_box((100.0, 200.0, 200.0, 320.0)) == pytest.approx((105.0, 206.0, 195.0, 314.0))


@pytest.fixture(scope="module")
def second_model() -> SecondFaceModel:
    return SecondFaceModel()


def test_on_the_shared_photos_the_same_person_is_nearer_than_another(
        faces_dir: Path, detector: FaceDetector, second_model: SecondFaceModel) -> None:
    descriptors = {}
    for name in ("barack_obama/obama_1.jpg", "barack_obama/obama_2.jpg",
                 "joe_biden/biden_1.jpg"):
        pixels = load_rgb(faces_dir / "photos" / name)
        before = pixels.copy()
        (face,) = detector.detect(pixels)
        descriptors[name] = second_model.describe(pixels, face.box)
        assert np.array_equal(pixels, before)  # the caller's frame is never wiped
    for descriptor in descriptors.values():
        assert descriptor.shape == (DESCRIPTOR_DIM,)
        assert descriptor.dtype == np.float32
    same = descriptor_distance(descriptors["barack_obama/obama_1.jpg"],
                               descriptors["barack_obama/obama_2.jpg"])
    different = descriptor_distance(descriptors["barack_obama/obama_1.jpg"],
                                    descriptors["joe_biden/biden_1.jpg"])
    assert same < 0.6 < different


def test_a_box_outside_the_frame_or_empty_is_refused(second_model: SecondFaceModel) -> None:
    pixels = np.zeros((100, 100, 3), np.uint8)
    with pytest.raises(ValueError, match="outside"):
        second_model.describe(pixels, (200.0, 200.0, 240.0, 240.0))
    with pytest.raises(ValueError, match="empty"):
        second_model.describe(pixels, (10.0, 10.0, 10.0, 40.0))


def test_without_dlib_the_model_says_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "dlib", None)  # import dlib now raises ImportError
    with pytest.raises(SecondModelUnavailable, match="dlib-bin"):
        SecondFaceModel()
