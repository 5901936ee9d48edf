"""Faces of still photos (watchlist enrolment, ``lfr verify``, ``lfr calibrate``).

One photo, one embedding: the photo must hold exactly one usable face, otherwise the caller gets
an error that names the photo and says what was found.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from actors.unit.face_analysis import analyse_faces, wipe
from guards.log_text import printable
from guards.user_input import UserInputError
from models.face_detector import FaceDetector
from models.face_embedder import FaceEmbedder
from models.face_quality import QualityConfig, QualityVerdict
from models.image_io import ImageLoadError, load_rgb


class NoUsableFace(UserInputError):
    """The photo holds no face that passed the quality gates."""


class SeveralFaces(UserInputError):
    """The photo holds more than one usable face, so it cannot stand for one person."""


@dataclass(frozen=True, slots=True)
class PhotoFacesConfig:
    """How photos are read."""

    quality: QualityConfig = field(default_factory=QualityConfig)
    """Quality gates, the same as on video by default."""


class PhotoFaces:
    """Loads the models once; embeds the single face of each photo."""

    def __init__(self, config: PhotoFacesConfig | None = None) -> None:
        self.config = config or PhotoFacesConfig()
        self.detector = FaceDetector()
        self.embedder = FaceEmbedder()

    def embed_single(self, path: Path) -> NDArray[np.float32]:
        """The unit-length embedding of the one usable face in ``path``.

        Raises ``ImageLoadError`` (not a regular file, unreadable, not a JPEG, PNG or WebP),
        ``NoUsableFace`` or ``SeveralFaces``; each names the photo, made printable.
        """
        image = load_rgb(path)
        analysis = analyse_faces(self.detector, image, self.config.quality)
        try:
            if not analysis.usable:
                detail = (f"{analysis.seen} face(s) found, all failed quality gates "
                          f"({', '.join(sorted({_gate(v) for v in analysis.rejected}))})"
                          if analysis.seen else "no face found")
                raise NoUsableFace(f"{printable(path)}: {detail}")
            if len(analysis.usable) > 1:
                raise SeveralFaces(f"{printable(path)}: {len(analysis.usable)} usable faces; an "
                                   "enrolment or comparison photo must show exactly one person")
            return self.embedder.embed(analysis.usable[0].aligned)
        finally:
            for face in analysis.usable:
                wipe(face.aligned)


def _gate(verdict: QualityVerdict) -> str:
    return verdict.failed_gate.value if verdict.failed_gate is not None else "none"


__all__ = ["ImageLoadError", "NoUsableFace", "PhotoFaces", "PhotoFacesConfig", "SeveralFaces"]
