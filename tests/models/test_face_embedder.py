"""MobileFaceNet embeddings: shape, normalisation, flip averaging, batching."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from guards.config_checks import ConfigError
from models.face_embedder import EMBEDDING_DIM, FaceEmbedder, FaceEmbedderConfig
from models.model_file import BLAZEFACE_FULL_RANGE, MOBILEFACENET


@pytest.fixture(scope="module")
def plain() -> FaceEmbedder:
    """MobileFaceNet without flip averaging: one view per face."""
    return FaceEmbedder(FaceEmbedderConfig(flip_average=False))


def _faces(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    return [rng.integers(0, 255, (112, 112, 3), dtype=np.uint8) for _ in range(n)]


def test_embedding_is_192_float32_unit_norm(embedder: FaceEmbedder) -> None:
    e = embedder.embed(_faces(1)[0])
    assert e.shape == (EMBEDDING_DIM,)
    assert e.dtype == np.float32
    assert float(np.linalg.norm(e)) == pytest.approx(1.0, abs=1e-5)
    assert embedder.model_id == MOBILEFACENET.model_id
    assert embedder.model_sha256 == MOBILEFACENET.sha256


def test_flip_averaging_makes_a_face_and_its_mirror_identical(embedder: FaceEmbedder) -> None:
    face = _faces(1)[0]
    np.testing.assert_allclose(embedder.embed(face), embedder.embed(face[:, ::-1]), atol=1e-5)


def test_flip_average_is_the_mean_of_both_views(embedder: FaceEmbedder,
                                                plain: FaceEmbedder) -> None:
    face = _faces(1)[0]
    mean = plain.embed(face) + plain.embed(np.ascontiguousarray(face[:, ::-1]))
    np.testing.assert_allclose(embedder.embed(face), mean / np.linalg.norm(mean), atol=1e-5)


def test_embed_many_matches_embed(embedder: FaceEmbedder) -> None:
    faces = _faces(3)
    many = embedder.embed_many(faces)
    assert many.shape == (3, EMBEDDING_DIM)
    for face, row in zip(faces, many, strict=True):
        np.testing.assert_allclose(row, embedder.embed(face), atol=1e-6)
    assert embedder.embed_many([]).shape == (0, EMBEDDING_DIM)


def test_without_flip_two_faces_share_an_invoke_with_the_same_results(
        plain: FaceEmbedder) -> None:
    faces = _faces(3)
    many = plain.embed_many(faces)  # invokes: [f0, f1], [f2, f2]
    for face, row in zip(faces, many, strict=True):
        np.testing.assert_allclose(row, plain.embed(face), atol=1e-5)
        assert float(np.linalg.norm(row)) == pytest.approx(1.0, abs=1e-5)


def test_wrong_face_shape_is_refused(embedder: FaceEmbedder) -> None:
    with pytest.raises(ValueError, match="112x112x3 uint8"):
        embedder.embed(np.zeros((100, 100, 3), np.uint8))
    with pytest.raises(ValueError, match="112x112x3 uint8"):
        embedder.embed(np.zeros((112, 112, 3), np.float32))


@pytest.mark.parametrize(("name", "value", "says"), [
    ("model", BLAZEFACE_FULL_RANGE, "must take input"),  # not an embedder
    ("edgetpu_model", MOBILEFACENET, "Edge TPU compiled"),  # a CPU model
    ("edgetpu_model", replace(BLAZEFACE_FULL_RANGE, file_name="x_edgetpu.tflite"),
     "must take input"),
])
def test_a_bad_model_is_refused_naming_its_field(name: str, value: Any, says: str) -> None:
    with pytest.raises(ConfigError, match=rf"FaceEmbedderConfig\.{name}\b.*{says}"):
        replace(FaceEmbedderConfig(), **{name: value})
