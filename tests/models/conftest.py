"""Fixtures of the models tests: the shared photos and one detector/embedder per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.face_detector import FaceDetector
from models.face_embedder import FaceEmbedder

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_FACES = REPO_ROOT.parent / "shared" / "data" / "faces"
"""``../shared/data/faces`` beside the checkout (see its README.md)."""


@pytest.fixture(scope="session")
def faces_dir() -> Path:
    """The shared face photos folder; skips the test when it is absent."""
    photos = SHARED_FACES / "photos"
    if not photos.is_dir():
        pytest.skip(f"../shared/data not found: no {photos} beside the checkout")
    return SHARED_FACES


@pytest.fixture(scope="session")
def detector() -> FaceDetector:
    """Full-range detector with default tiling (shared: invoke is per-thread safe)."""
    return FaceDetector()


@pytest.fixture(scope="session")
def embedder() -> FaceEmbedder:
    """MobileFaceNet with flip averaging."""
    return FaceEmbedder()
