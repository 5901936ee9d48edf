"""The watchlist file: subjects' embeddings, the model that made them, and their thresholds.

On disk a watchlist is one codec message (``Watchlist``, msgpack), so it is decoded by the same
strict, size-limited decoder as everything else that crosses a boundary. The secure-delivery work
wraps these bytes in a signed, encrypted envelope; the payload stays this message.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from actors.unit.gallery import Gallery
from guards.user_input import UserInputError
from runtime.codec import Codec, DecodeError
from runtime.message import message

DEFAULT_THRESHOLD = 0.60
"""Cosine similarity a face must reach, per frame, to count as a match for a subject.
Chosen from measurements: see docs/THRESHOLDS.md."""
MAX_WATCHLIST_BYTES = 512 * 1024 * 1024
"""Largest watchlist file accepted (about 650k subjects of 192 float32)."""


class WatchlistError(UserInputError):
    """A watchlist file that cannot be used; the text names the file and the problem."""


@message(120)
@dataclass(frozen=True, slots=True, eq=False)
class Watchlist:
    """Subjects and their embeddings, column by column."""

    model_id: str
    """Embedding model the embeddings come from; another model's watchlist is refused."""
    model_sha256: str
    """sha256 of that model file."""
    created_at: float
    """When it was built, seconds since the epoch."""
    subjects: tuple[str, ...]
    """Subject ids (unique), in row order."""
    embeddings: npt.NDArray[np.float32]
    """(n, d) unit-length embeddings, the normalised mean of each subject's photos."""
    thresholds: npt.NDArray[np.float32]
    """(n,) per-subject alert thresholds (cosine)."""
    photos: tuple[int, ...]
    """How many photos each subject's embedding averages."""

    def __post_init__(self) -> None:
        n = len(self.subjects)
        if self.embeddings.dtype != np.float32 or self.thresholds.dtype != np.float32:
            raise ValueError("embeddings and thresholds must be float32 arrays")
        if len(set(self.subjects)) != n:
            raise ValueError("subject ids must be unique")
        if self.embeddings.ndim != 2 or self.embeddings.shape[0] != n:
            raise ValueError(f"embeddings must have shape ({n}, d), got {self.embeddings.shape}")
        if self.thresholds.shape != (n,) or len(self.photos) != n:
            raise ValueError(f"need {n} thresholds and {n} photo counts")
        if not np.all(np.isfinite(self.embeddings)) or not np.all(np.isfinite(self.thresholds)):
            raise ValueError("embeddings and thresholds must be finite")
        norms = np.linalg.norm(self.embeddings, axis=1)
        if n and not np.allclose(norms, 1.0, atol=1e-3):
            raise ValueError("embeddings must be unit length")
        if np.any((self.thresholds <= 0) | (self.thresholds >= 1)):
            raise ValueError("thresholds must lie strictly between 0 and 1")

    def gallery(self, threshold: float | None = None) -> Gallery:
        """A gallery to search; ``threshold`` overrides every subject's threshold."""
        thresholds = (np.full(len(self.subjects), threshold, np.float32)
                      if threshold is not None else self.thresholds)
        return Gallery(self.subjects, self.embeddings, thresholds)

    def check_model(self, model_id: str, model_sha256: str, source: str) -> None:
        """Refuse a watchlist made with another embedding model."""
        if (self.model_id, self.model_sha256) != (model_id, model_sha256):
            raise WatchlistError(
                f"{source}: watchlist was built with model {self.model_id} "
                f"(sha256 {self.model_sha256}), this unit uses {model_id} "
                f"(sha256 {model_sha256}); rebuild it with this model")


def save_watchlist(watchlist: Watchlist, path: Path) -> None:
    """Write ``watchlist`` atomically (a temporary file renamed into place)."""
    data = Codec(max_message_bytes=MAX_WATCHLIST_BYTES).encode(watchlist)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    tmp.replace(path)


def load_watchlist(path: Path, *, max_bytes: int = MAX_WATCHLIST_BYTES) -> Watchlist:
    """Read and strictly decode a watchlist file; ``WatchlistError`` names what is wrong."""
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise WatchlistError(f"{path}: watchlist of {size} bytes is over the limit of "
                                 f"{max_bytes}")
        data = path.read_bytes()
    except OSError as exc:
        raise WatchlistError(f"{path}: cannot read watchlist: {exc.strerror or exc}") from None
    try:
        decoded = Codec(max_message_bytes=max_bytes).decode(data)
    except DecodeError as exc:
        raise WatchlistError(f"{path}: not a valid watchlist: {exc}") from None
    if not isinstance(decoded, Watchlist):
        raise WatchlistError(f"{path}: holds a {type(decoded).__name__}, not a Watchlist")
    return decoded


def check_threshold(value: float) -> float:
    """Validate a threshold given on the command line."""
    if not (math.isfinite(value) and 0 < value < 1):
        raise ValueError(f"threshold must lie strictly between 0 and 1, got {value}")
    return value
