"""``lfr watchlist build``: one subfolder per subject, photos in it, one embedding per subject.

Every photo must hold exactly one usable face; any other photo is reported by name and skipped,
never silently used. A subject's embedding is the normalised mean of its photos' embeddings.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from actors.unit.watchlist import DEFAULT_THRESHOLD, Watchlist
from guards.user_input import UserInputError
from lfr.photo_faces import NoUsableFace, PhotoFaces, SeveralFaces
from models.image_io import ImageLoadError

PHOTO_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})


@dataclass(slots=True)
class EnrolmentReport:
    """What enrolment used and what it skipped, for the operator."""

    used: dict[str, int] = field(default_factory=dict)
    """Photos used per subject."""
    skipped: list[str] = field(default_factory=list)
    """One line per skipped photo or subject, naming it and saying why."""


def find_photos(photos_dir: Path) -> dict[str, list[Path]]:
    """Subject id -> its photos, both sorted; raises ``ValueError`` for an unusable folder."""
    if not photos_dir.is_dir():
        raise UserInputError(f"{photos_dir}: not a folder of subject folders")
    subjects: dict[str, list[Path]] = {}
    for folder in sorted(p for p in photos_dir.iterdir() if p.is_dir()):
        subjects[folder.name] = sorted(p for p in folder.iterdir()
                                       if p.is_file() and not p.name.startswith("."))
    if not subjects:
        raise UserInputError(f"{photos_dir}: no subject folders (one subfolder per subject)")
    return subjects


def build_watchlist(photos_dir: Path, faces: PhotoFaces, threshold: float = DEFAULT_THRESHOLD,
                    *, progress: bool = True,
                    subject_thresholds: dict[str, float] | None = None,
                    ) -> tuple[Watchlist, EnrolmentReport]:
    """Enrol every subject folder of ``photos_dir``.

    ``subject_thresholds`` overrides ``threshold`` for the subjects it names (each must exist).
    """
    subjects = find_photos(photos_dir)
    overrides = subject_thresholds or {}
    unknown = sorted(set(overrides) - set(subjects))
    if unknown:
        raise UserInputError(f"--subject-threshold names subjects with no folder: {unknown}")
    report = EnrolmentReport()
    ids: list[str] = []
    rows: list[np.ndarray] = []
    total = sum(len(photos) for photos in subjects.values())
    with tqdm(total=total, desc="enrolling", unit="photo", file=sys.stderr,
              disable=not progress) as bar:
        for subject, photos in subjects.items():
            embeddings = []
            for photo in photos:
                bar.update(1)
                if photo.suffix.lower() not in PHOTO_SUFFIXES:
                    report.skipped.append(f"{photo}: not a JPEG or PNG file")
                    continue
                try:
                    embeddings.append(faces.embed_single(photo))
                except (ImageLoadError, NoUsableFace, SeveralFaces) as exc:
                    report.skipped.append(str(exc))
            if not embeddings:
                report.skipped.append(f"{subject}: no usable photo; subject left out")
                continue
            mean = np.mean(np.stack(embeddings), axis=0)
            rows.append((mean / np.linalg.norm(mean)).astype(np.float32))
            for embedding in embeddings:
                embedding.fill(0.0)  # the per-photo embeddings are not kept
            ids.append(subject)
            report.used[subject] = len(embeddings)
    if not ids:
        raise UserInputError(f"{photos_dir}: no subject has a usable photo")
    watchlist = Watchlist(
        model_id=faces.embedder.model_id, model_sha256=faces.embedder.model_sha256,
        created_at=time.time(), subjects=tuple(ids), embeddings=np.stack(rows),
        thresholds=np.array([overrides.get(s, threshold) for s in ids], np.float32),
        photos=tuple(report.used[s] for s in ids),
    )
    return watchlist, report
