"""The model files this package knows, and loading them with their sha256 verified.

A model file is identified by an id and pinned by the sha256 of its bytes. The watchlist records
the embedder's id and sha256 next to each stored embedding, because embeddings from a different
model (or a silently corrupted one) are not comparable; so a file whose digest differs from the
pinned one is refused rather than used.

The bytes are read once, hashed, and the *same* bytes are handed to the interpreter
(``model_content``), so there is no window in which the file could change between the check and
its use.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Final

__all__ = [
    "BLAZEFACE_FULL_RANGE",
    "BLAZEFACE_SHORT_RANGE",
    "DATA_DIR",
    "KNOWN_MODELS",
    "MOBILEFACENET",
    "ModelFile",
    "ModelIntegrityError",
    "load_model_bytes",
    "sha256_hex",
]

DATA_DIR: Final[Path] = Path(__file__).resolve().parent / "data"
"""Folder holding the vendored ``.tflite`` files (see ``models/SOURCES.md``)."""


class ModelIntegrityError(RuntimeError):
    """A model file is missing or its bytes do not have the pinned sha256."""


@dataclass(frozen=True)
class ModelFile:
    """One pinned model file."""

    model_id: str
    """Stable identifier recorded with results (e.g. in the watchlist next to embeddings)."""

    file_name: str
    """File name inside the data folder. Edge TPU compiled variants end in ``_edgetpu.tflite``."""

    sha256: str
    """Lower-case hex sha256 of the file's bytes; loading refuses any other content."""

    input_shape: tuple[int, ...]
    """Shape of the model's single input tensor (NHWC), as the model declares it."""

    def path(self, data_dir: Path | None = None) -> Path:
        """Where the file lives: ``data_dir`` if given, else the package's data folder."""
        return (data_dir if data_dir is not None else DATA_DIR) / self.file_name

    @property
    def is_edgetpu(self) -> bool:
        """True for a model compiled for the Edge TPU (``*_edgetpu.tflite``)."""
        return self.file_name.endswith("_edgetpu.tflite")


BLAZEFACE_FULL_RANGE: Final = ModelFile(
    model_id="blazeface-full-range",
    file_name="face_detection_full_range.tflite",
    sha256="99bf9494d84f50acc6617d89873f71bf6635a841ea699c17cb3377f9507cfec3",
    input_shape=(1, 192, 192, 3),
)
"""MediaPipe BlazeFace full-range detector: 192x192 RGB in [-1, 1], 2304 anchors."""

BLAZEFACE_SHORT_RANGE: Final = ModelFile(
    model_id="blazeface-short-range",
    file_name="face_detection_short_range.tflite",
    sha256="3bc182eb9f33925d9e58b5c8d59308a760f4adea8f282370e428c51212c26633",
    input_shape=(1, 128, 128, 3),
)
"""MediaPipe BlazeFace short-range detector (faces within ~2 m): 128x128, 896 anchors."""

MOBILEFACENET: Final = ModelFile(
    model_id="mobilefacenet-192",
    file_name="MobileFaceNet.tflite",
    sha256="d8ba40c0127fb8ca9917e8fddc79bbbda063657bc92a496d34da0bc8a760443b",
    input_shape=(2, 112, 112, 3),
)
"""MobileFaceNet embedder: a fixed batch of 2 aligned 112x112 RGB faces -> 2 x 192 floats."""

KNOWN_MODELS: Final[dict[str, ModelFile]] = {
    m.model_id: m for m in (BLAZEFACE_FULL_RANGE, BLAZEFACE_SHORT_RANGE, MOBILEFACENET)
}
"""The vendored models by id."""


def sha256_hex(data: bytes) -> str:
    """Lower-case hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def load_model_bytes(model: ModelFile, path: Path | None = None) -> bytes:
    """Read a model file and return its bytes after checking their sha256.

    ``path`` overrides the file location (default: ``model.path()``). Raises
    ``ModelIntegrityError`` naming the file and both digests on a mismatch, or naming the file
    when it cannot be read.
    """
    file_path = path if path is not None else model.path()
    try:
        data = file_path.read_bytes()
    except OSError as exc:
        raise ModelIntegrityError(
            f"cannot read model file {file_path} ({model.model_id}): {exc}"
        ) from exc
    actual = sha256_hex(data)
    if actual != model.sha256.lower():
        raise ModelIntegrityError(
            f"model file {file_path} ({model.model_id}) has sha256 {actual}, "
            f"expected {model.sha256.lower()}; refusing to load it"
        )
    return data
