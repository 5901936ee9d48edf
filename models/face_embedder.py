"""Face embeddings with MobileFaceNet: aligned 112x112 face -> 192 floats, L2-normalised.

The model's batch dimension is fixed at 2 (it cannot be resized: the XNNPACK graph fails to
reshape). With flip averaging (the default) each invoke takes the face and its mirror image and
the two embeddings are averaged before normalising: test-time augmentation that makes the
embedding less sensitive to which half of the face the light or the pose favours. Without it,
two faces share one invoke. ``embed`` and ``embed_many`` run the same code (one
``ModelInterpreter.infer`` per invoke, which wipes the tensors afterwards).

Input normalisation: RGB ``(x - 127.5) / 128``, i.e. about [-1, 1]. Rows of a batch are
independent (checked: a face's embedding does not depend on its batch neighbour).

The cosine similarity of two embeddings is their dot product. The watchlist stores
``model_id`` and ``model_sha256`` with its embeddings: embeddings of different models are not
comparable.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import numpy as np
from numpy.typing import NDArray

from guards.config_checks import ConfigError
from models.face_alignment import ALIGNED_SIZE
from models.interpreter import (
    InterpreterConfig,
    PerThreadModel,
    require_edgetpu_variant,
    verify_model,
)
from models.model_file import MOBILEFACENET, ModelFile

__all__ = ["EMBEDDING_DIM", "FaceEmbedder", "FaceEmbedderConfig", "cosine_similarity"]

EMBEDDING_DIM: Final = 192
"""Length of a MobileFaceNet embedding."""

_BATCH: Final = 2  # fixed by the model file


@dataclass(frozen=True)
class FaceEmbedderConfig:
    """Face embedder settings."""

    model: ModelFile = MOBILEFACENET
    """The embedding model (input (2, 112, 112, 3), output (2, 192))."""

    flip_average: bool = True
    """Average the embeddings of the face and its mirror image (one invoke per face). False:
    one pass per face, two faces per invoke, somewhat less robust."""

    interpreter: InterpreterConfig = field(default_factory=InterpreterConfig)
    """Threads / Edge TPU settings for the model."""

    edgetpu_model: ModelFile | None = None
    """The Edge TPU compiled variant used when ``interpreter.use_edgetpu`` is set."""

    def __post_init__(self) -> None:
        wanted = (_BATCH, ALIGNED_SIZE, ALIGNED_SIZE, 3)
        for name, model in (("model", self.model), ("edgetpu_model", self.edgetpu_model)):
            if model is not None and model.input_shape != wanted:
                raise ConfigError(f"FaceEmbedderConfig.{name} must take input {wanted}, "
                                  f"{model.model_id} takes {model.input_shape}")
        require_edgetpu_variant("FaceEmbedderConfig.edgetpu_model", self.edgetpu_model)


def _fill_batch(faces: Sequence[NDArray[np.uint8]], batch: NDArray[np.float32], *,
                flip_average: bool) -> None:
    # MobileFaceNet takes (x - 127.5) / 128, one face per row. Flip averaging: row 1 is row 0
    # mirrored. Otherwise a lone face fills both rows (rows are independent: same result).
    for row, face in enumerate(faces):
        np.subtract(face, np.float32(127.5), out=batch[row], dtype=np.float32)
        np.multiply(batch[row], np.float32(1.0 / 128.0), out=batch[row])
    if flip_average:
        np.copyto(batch[1], batch[0][:, ::-1])
    elif len(faces) < _BATCH:
        np.copyto(batch[1], batch[0])


def _read_embeddings(count: int, outputs: list[NDArray[np.float32]], *,
                     flip_average: bool) -> NDArray[np.float32]:
    # New arrays: nothing of the interpreter's output view is kept.
    raw = outputs[0].reshape(_BATCH, EMBEDDING_DIM)
    if flip_average:
        # Normalise each view first so neither dominates the mean by its norm alone.
        views = _l2_normalise(raw)
        return _l2_normalise(views.mean(axis=0, keepdims=True))
    return _l2_normalise(raw[:count])


def _l2_normalise(x: NDArray[np.float32]) -> NDArray[np.float32]:
    norm: NDArray[np.float32] = np.linalg.norm(x, axis=-1, keepdims=True)
    # A zero vector stays zero rather than becoming NaN; it matches nothing.
    out: NDArray[np.float32] = (x / np.maximum(norm, np.float32(1e-12))).astype(np.float32)
    return out


def cosine_similarity(a: NDArray[np.float32], b: NDArray[np.float32]) -> float:
    """Cosine similarity of two embeddings (their dot product if already L2-normalised)."""
    na = float(np.linalg.norm(a))
    nb = float(np.linalg.norm(b))
    if na == 0.0 or nb == 0.0:
        return 0.0
    return float(np.dot(a, b)) / (na * nb)


class FaceEmbedder(PerThreadModel):
    """MobileFaceNet embedder over aligned 112x112x3 uint8 RGB faces."""

    def __init__(
        self, config: FaceEmbedderConfig | None = None, *, data_dir: Path | None = None
    ) -> None:
        """Load and verify the model (``ModelIntegrityError`` on a sha256 mismatch)."""
        self.config = config if config is not None else FaceEmbedderConfig()
        verified = verify_model(
            self.config.model,
            self.config.interpreter,
            edgetpu_model=self.config.edgetpu_model,
            data_dir=data_dir,
        )
        super().__init__(verified)

    def embed(self, face: NDArray[np.uint8]) -> NDArray[np.float32]:
        """Embedding (192,) float32, L2-normalised, of one aligned 112x112x3 uint8 RGB face."""
        single: NDArray[np.float32] = self.embed_many([face])[0]
        return single

    def embed_many(self, faces: Sequence[NDArray[np.uint8]]) -> NDArray[np.float32]:
        """Embeddings (N, 192) of N aligned faces; the same values as ``embed`` on each.

        With flip averaging: one invoke per face (the face and its mirror image); without: two
        faces per invoke. The calling thread's own interpreter runs them.
        """
        for face in faces:
            if face.shape != (ALIGNED_SIZE, ALIGNED_SIZE, 3) or face.dtype != np.uint8:
                raise ValueError(f"aligned face must be {ALIGNED_SIZE}x{ALIGNED_SIZE}x3 uint8, "
                                 f"got {face.shape} {face.dtype}")
        flip = self.config.flip_average
        per_invoke = 1 if flip else _BATCH
        interpreter = self.interpreter()
        rows = [
            interpreter.infer(functools.partial(_fill_batch, chunk, flip_average=flip),
                              functools.partial(_read_embeddings, len(chunk), flip_average=flip))
            for chunk in (faces[i:i + per_invoke] for i in range(0, len(faces), per_invoke))
        ]
        return np.concatenate(rows) if rows else np.zeros((0, EMBEDDING_DIM), np.float32)
