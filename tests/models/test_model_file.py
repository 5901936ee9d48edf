"""Model files: pinned sha256 values and refusal of anything else."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import pytest

from models.face_detector import FaceDetector
from models.face_embedder import FaceEmbedder
from models.model_file import (
    BLAZEFACE_FULL_RANGE,
    KNOWN_MODELS,
    MOBILEFACENET,
    ModelFile,
    ModelIntegrityError,
    load_model_bytes,
)


@pytest.mark.parametrize("model", list(KNOWN_MODELS.values()), ids=list(KNOWN_MODELS))
def test_vendored_files_match_their_pinned_sha256(model: ModelFile) -> None:
    data = load_model_bytes(model)
    assert hashlib.sha256(data).hexdigest() == model.sha256


def test_tampered_model_is_refused_with_both_hashes(tmp_path: Path) -> None:
    original = BLAZEFACE_FULL_RANGE.path().read_bytes()
    tampered = bytearray(original)
    tampered[len(tampered) // 2] ^= 0xFF
    (tmp_path / BLAZEFACE_FULL_RANGE.file_name).write_bytes(bytes(tampered))
    actual = hashlib.sha256(bytes(tampered)).hexdigest()

    with pytest.raises(ModelIntegrityError) as excinfo:
        FaceDetector(data_dir=tmp_path)
    message = str(excinfo.value)
    assert BLAZEFACE_FULL_RANGE.file_name in message
    assert actual in message
    assert BLAZEFACE_FULL_RANGE.sha256 in message


def test_embedder_refuses_a_different_model_file(tmp_path: Path) -> None:
    # A valid TFLite file, but not the pinned embedder: still refused.
    (tmp_path / MOBILEFACENET.file_name).write_bytes(BLAZEFACE_FULL_RANGE.path().read_bytes())
    with pytest.raises(ModelIntegrityError, match=MOBILEFACENET.sha256):
        FaceEmbedder(data_dir=tmp_path)


def test_missing_model_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ModelIntegrityError, match=r"MobileFaceNet\.tflite"):
        load_model_bytes(MOBILEFACENET, tmp_path / MOBILEFACENET.file_name)


def test_edgetpu_variant_is_recognised_by_name() -> None:
    assert not BLAZEFACE_FULL_RANGE.is_edgetpu
    assert replace(BLAZEFACE_FULL_RANGE, file_name="x_edgetpu.tflite").is_edgetpu
