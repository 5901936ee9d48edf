"""Faces of still photos (watchlist enrolment, ``lfr verify``, ``lfr calibrate``).

One photo, one face: the photo must hold exactly one usable face, otherwise the caller gets an
error that names the photo and says what was found.

A photo comes from a file (``PhotoFile``, read through ``models.image_io.load_rgb``) or from
bytes held in memory (``PhotoBytes``, e.g. an upload to the van's console, decoded by
``decode_rgb`` with the same limits); both are a ``PhotoSource``, so enrolment runs the same
code on either. The decoded image and every aligned face are overwritten once used.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from actors.unit.face_analysis import FaceCandidate, analyse_faces, wipe
from guards.log_text import printable
from guards.user_input import UserInputError
from models.face_detector import FaceDetector
from models.face_embedder import FaceEmbedder
from models.face_quality import QualityConfig, QualityVerdict
from models.image_io import ImageLoadError, decode_rgb, load_rgb

MAX_SHOWN_NAME_CHARS = 200
"""Characters of an in-memory photo's name kept in messages (a browser sends the name)."""


class NoUsableFace(UserInputError):
    """The photo holds no face that passed the quality gates."""


class SeveralFaces(UserInputError):
    """The photo holds more than one usable face, so it cannot stand for one person."""


class PhotoSource(Protocol):
    """A photo to read: its name for messages and how to decode it."""

    @property
    def shown(self) -> str:
        """Its name as messages show it (printable: no forged lines)."""
        ...

    def decode(self) -> NDArray[np.uint8]:
        """Its pixels, H x W x 3 uint8 RGB, a new array the caller wipes; ``ImageLoadError``
        naming it when it is no JPEG, PNG or WebP photo the loader accepts."""
        ...


@dataclass(frozen=True, slots=True)
class PhotoFile:
    """A photo file (read at most ``models.image_io.DEFAULT_MAX_BYTES``, a regular file only)."""

    path: Path
    """Where it is."""

    @property
    def shown(self) -> str:
        """The path, printable."""
        return printable(self.path)

    def decode(self) -> NDArray[np.uint8]:
        """``load_rgb`` of the file."""
        return load_rgb(self.path)


@dataclass(frozen=True, slots=True)
class PhotoBytes:
    """An encoded photo held in memory; its bytes are not copied, so whoever owns them wipes
    them (the decoder's own copy is a transient ``bytes`` object)."""

    name: str
    """Its name for messages (e.g. the path inside an uploaded folder), untrusted."""
    data: bytes | bytearray = field(repr=False)
    """The file's bytes."""

    @property
    def shown(self) -> str:
        """The name, printable and at most ``MAX_SHOWN_NAME_CHARS`` of it."""
        return printable(self.name, max_chars=MAX_SHOWN_NAME_CHARS)

    def decode(self) -> NDArray[np.uint8]:
        """``decode_rgb`` of the bytes."""
        return decode_rgb(bytes(self.data), name=self.name)


@dataclass(frozen=True, slots=True)
class PhotoFacesConfig:
    """How photos are read."""

    quality: QualityConfig = field(default_factory=QualityConfig)
    """Quality gates, the same as on video by default."""


class PhotoFaces:
    """Loads the models once; finds and embeds the single face of each photo."""

    def __init__(self, config: PhotoFacesConfig | None = None) -> None:
        self.config = config or PhotoFacesConfig()
        self.detector = FaceDetector()
        self.embedder = FaceEmbedder()

    def embed_single(self, photo: Path | PhotoSource) -> NDArray[np.float32]:
        """The unit-length embedding of the one usable face in ``photo`` (a path or a source).

        Raises ``ImageLoadError`` (not a regular file, unreadable, not a JPEG, PNG or WebP),
        ``NoUsableFace`` or ``SeveralFaces``; each names the photo, made printable.
        """
        source = PhotoFile(photo) if isinstance(photo, Path) else photo
        image = source.decode()
        try:
            with self.one_face(image, source.shown) as face:
                return self.embedder.embed(face.aligned)
        finally:
            wipe(image)

    @contextmanager
    def one_face(self, image: NDArray[np.uint8], shown: str) -> Iterator[FaceCandidate]:
        """The one usable face of ``image`` (``shown``: its name for messages), its aligned
        crop overwritten when the block ends; ``NoUsableFace`` or ``SeveralFaces`` otherwise."""
        analysis = analyse_faces(self.detector, image, self.config.quality)
        try:
            if not analysis.usable:
                detail = (f"{analysis.seen} face(s) found, all failed quality gates "
                          f"({', '.join(sorted({_gate(v) for v in analysis.rejected}))})"
                          if analysis.seen else "no face found")
                raise NoUsableFace(f"{shown}: {detail}")
            if len(analysis.usable) > 1:
                raise SeveralFaces(f"{shown}: {len(analysis.usable)} usable faces; an "
                                   "enrolment or comparison photo must show exactly one person")
            yield analysis.usable[0]
        finally:
            for face in analysis.usable:
                wipe(face.aligned)


def _gate(verdict: QualityVerdict) -> str:
    return verdict.failed_gate.value if verdict.failed_gate is not None else "none"


__all__ = ["ImageLoadError", "NoUsableFace", "PhotoBytes", "PhotoFaces", "PhotoFacesConfig",
           "PhotoFile", "PhotoSource", "SeveralFaces"]
