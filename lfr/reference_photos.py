"""Reference photos for the van: one per watchlist subject, re-encoded as plain JPEG.

``lfr watchlist push SIGNED --photos DIR`` gives the van, beside the signed list, one photo per
subject so the officer can compare an alert's crop with it. ``DIR`` has one subfolder per
subject, as for ``lfr watchlist build``; the first photo of a subject that loads (sorted by
name; JPEG, PNG or WebP, checked and bounded by ``models.image_io``) is taken. Each is decoded
and re-encoded as JPEG, at most ``MAX_SIDE_PX`` on its longer side: no metadata (EXIF, GPS,
camera serials) reaches the van, and no file bigger than ``MAX_PHOTO_BYTES``. Folders of people
not on the list are skipped and named: the van keeps photos of listed subjects only.
"""

from __future__ import annotations

import io
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from guards.log_text import printable
from lfr.watchlist_build import find_photos
from models.image_io import ImageLoadError, load_rgb

MAX_SIDE_PX: Final = 1024
"""A reference photo is scaled down to this on its longer side."""
JPEG_QUALITY: Final = 90
MAX_PHOTO_BYTES: Final = 2 * 1024 * 1024
"""As the van's store accepts (``actors.van.deployment_store.MAX_PHOTO_BYTES``)."""


@dataclass(slots=True)
class ReferencePhotos:
    """What ``reference_photos`` made, and what it skipped."""

    photos: dict[str, bytes] = field(default_factory=dict)
    """Subject id -> JPEG."""
    skipped: list[str] = field(default_factory=list)
    """One printable line per folder or photo not used, and per subject without a photo."""


def reference_photos(photos_dir: Path, subjects: Collection[str]) -> ReferencePhotos:
    """One JPEG per subject of ``subjects`` found in ``photos_dir`` (module docstring);
    ``UserInputError`` for an unusable folder."""
    found = find_photos(photos_dir)
    made = ReferencePhotos(skipped=list(found.skipped))
    wanted = set(subjects)
    for subject, candidates in found.subjects.items():
        if subject not in wanted:
            made.skipped.append(f"{printable(subject)}: not on the watchlist; no photo kept")
            continue
        for path in candidates:
            try:
                made.photos[subject] = _jpeg(path)
                break
            except ImageLoadError as exc:
                made.skipped.append(f"{printable(path)}: {printable(exc)}")
    made.skipped += [f"{printable(subject)}: no reference photo"
                     for subject in sorted(wanted - set(made.photos))]
    return made


def _jpeg(path: Path) -> bytes:
    return reference_jpeg(load_rgb(path), printable(path))


def reference_jpeg(image: NDArray[np.uint8], shown: str) -> bytes:
    """``image`` (RGB) as a reference photo: JPEG, at most ``MAX_SIDE_PX`` on its longer side,
    no metadata; ``ImageLoadError`` naming ``shown`` when it is still over ``MAX_PHOTO_BYTES``.
    ``lfr watchlist push --photos`` and the console's build both make them here."""
    picture = Image.fromarray(image)
    picture.thumbnail((MAX_SIDE_PX, MAX_SIDE_PX))
    out = io.BytesIO()
    picture.save(out, format="JPEG", quality=JPEG_QUALITY)
    data = out.getvalue()
    if len(data) > MAX_PHOTO_BYTES:
        raise ImageLoadError(f"{shown}: over {MAX_PHOTO_BYTES} bytes as JPEG")
    return data
