"""``lfr watchlist build``: one subfolder per subject, photos in it, one embedding per subject.

Every photo must hold exactly one usable face; any other photo is reported by name and skipped,
never silently used. A subject's embedding is the normalised mean of its photos' embeddings.
Each photo's face is also described by the second face model (dlib's descriptor, on the box the
first model's detector found): a subject's second template is the mean of those descriptors, with
``DEFAULT_SECOND_THRESHOLD`` as its distance threshold (the two-model rule,
``actors.unit.second_opinion``). Per-photo embeddings and descriptors are wiped once averaged.

The folder is checked before anything is enrolled: a subject folder whose name cannot be a
subject id (not valid UTF-8, control characters, too long) refuses the build, naming it; hidden
folders (``.git``) and loose files beside the subject folders are skipped, named in the report.
Every name is reported through ``printable`` (a folder named "x\\nCRITICAL fake" forges no line).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm

from actors.unit.face_analysis import analyse_faces, wipe
from actors.unit.second_opinion import DEFAULT_SECOND_THRESHOLD, shared_second_model
from actors.unit.watchlist import (
    DEFAULT_THRESHOLD,
    MAX_SUBJECT_ID_CHARS,
    Watchlist,
    check_usual_thresholds,
)
from guards.log_text import printable
from guards.user_input import UserInputError
from lfr.photo_faces import NoUsableFace, PhotoFaces, SeveralFaces
from models.image_io import ImageLoadError, load_rgb
from models.second_opinion_model import SecondFaceModel

PHOTO_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp"})


@dataclass(slots=True)
class EnrolmentReport:
    """What enrolment used and what it skipped, for the operator."""

    used: dict[str, int] = field(default_factory=dict)
    """Photos used per subject."""
    skipped: list[str] = field(default_factory=list)
    """One line per skipped photo, folder or subject, naming it (printable) and saying why."""
    unusual_thresholds: list[tuple[str, float]] = field(default_factory=list)
    """Subjects whose threshold lies outside the usual range (accepted by the override flag)."""


@dataclass(slots=True)
class PhotoFolders:
    """What ``find_photos`` found: the subjects' photos and what it will not enrol."""

    subjects: dict[str, list[Path]]
    """Subject id -> its photo candidates, both sorted."""
    skipped: list[str]
    """Hidden folders, loose files and entries that are not photos, named and explained."""


def _subject_id_problem(name: str) -> str | None:
    if not name.isprintable():  # surrogates (undecodable bytes) are not printable either
        return "not printable UTF-8 text"
    if len(name) > MAX_SUBJECT_ID_CHARS:
        return f"longer than {MAX_SUBJECT_ID_CHARS} characters"
    return None


def find_photos(photos_dir: Path) -> PhotoFolders:
    """The subject folders of ``photos_dir`` and their photo candidates; ``UserInputError``
    for an unusable folder or a folder name that cannot be a subject id."""
    if not photos_dir.is_dir():
        raise UserInputError(f"{printable(photos_dir)}: not a folder of subject folders")
    found = PhotoFolders({}, [])
    bad: list[str] = []
    for entry in sorted(photos_dir.iterdir()):
        shown = printable(entry)
        if entry.name.startswith("."):
            found.skipped.append(f"{shown}: hidden; not enrolled")
        elif not entry.is_dir():
            found.skipped.append(f"{shown}: not a folder; subjects are subfolders")
        elif (problem := _subject_id_problem(entry.name)) is not None:
            bad.append(f"{printable(entry.name)} ({problem})")
        else:
            found.subjects[entry.name] = _photo_candidates(entry, found.skipped)
    if bad:
        raise UserInputError(f"{printable(photos_dir)}: subject folder names become subject ids "
                             f"and must be printable UTF-8 text; rename: {', '.join(bad)}")
    if not found.subjects:
        raise UserInputError(f"{printable(photos_dir)}: no subject folders (one subfolder per "
                             "subject)")
    return found


def _photo_candidates(folder: Path, skipped: list[str]) -> list[Path]:
    photos = []
    for photo in sorted(folder.iterdir()):
        if photo.name.startswith("."):
            continue  # .DS_Store, editor files: not photos by anyone's intent
        if not photo.is_file():  # a folder, a FIFO, a device, a dangling link
            skipped.append(f"{printable(photo)}: not a regular file")
        elif photo.suffix.lower() not in PHOTO_SUFFIXES:
            skipped.append(f"{printable(photo)}: not a JPEG, PNG or WebP file")
        else:
            photos.append(photo)
    return photos


def build_watchlist(photos_dir: Path, faces: PhotoFaces, threshold: float = DEFAULT_THRESHOLD,
                    *, progress: bool = True,
                    subject_thresholds: dict[str, float] | None = None,
                    allow_unusual_thresholds: bool = False,
                    second_model: SecondFaceModel | None = None,
                    ) -> tuple[Watchlist, EnrolmentReport]:
    """Enrol every subject folder of ``photos_dir`` with both face models.

    ``subject_thresholds`` overrides ``threshold`` for the subjects it names (each must exist).
    Thresholds outside the usual range are refused unless ``allow_unusual_thresholds``; either
    way this is checked, like the folder names, before any photo is enrolled.
    ``second_model``: the second face model (default: the vendored one, loaded once).
    """
    found = find_photos(photos_dir)
    subjects = found.subjects
    overrides = subject_thresholds or {}
    unknown = sorted(set(overrides) - set(subjects))
    if unknown:
        raise UserInputError("--subject-threshold names subjects with no folder: "
                             f"{', '.join(printable(s) for s in unknown)}")
    wanted = {s: overrides.get(s, threshold) for s in subjects}
    report = EnrolmentReport(skipped=list(found.skipped))
    report.unusual_thresholds = check_usual_thresholds(
        wanted.items(), "--threshold/--subject-threshold",
        allow_unusual=allow_unusual_thresholds)
    second = second_model if second_model is not None else shared_second_model()
    ids, rows, second_rows = _enrol(subjects, faces, second, report, progress=progress)
    if not ids:
        raise UserInputError(f"{printable(photos_dir)}: no subject has a usable photo")
    report.unusual_thresholds = [(s, t) for s, t in report.unusual_thresholds if s in ids]
    watchlist = Watchlist(
        model_id=faces.embedder.model_id, model_sha256=faces.embedder.model_sha256,
        created_at=time.time(), subjects=tuple(ids), embeddings=np.stack(rows),
        thresholds=np.array([wanted[s] for s in ids], np.float32),
        photos=tuple(report.used[s] for s in ids),
        second_model_id=second.model_id, second_model_sha256=second.model_sha256,
        second_embeddings=np.stack(second_rows),
        second_thresholds=np.full(len(ids), DEFAULT_SECOND_THRESHOLD, np.float32),
    )
    return watchlist, report


def photo_descriptor(path: Path, faces: PhotoFaces,
                     second: SecondFaceModel) -> NDArray[np.float32]:
    """The second model's descriptor of the one usable face of ``path``, on the box the first
    model's detector found (call after ``faces.embed_single`` accepted the photo; the same
    errors otherwise)."""
    image = load_rgb(path)
    analysis = analyse_faces(faces.detector, image, faces.config.quality)
    try:
        if len(analysis.usable) != 1:
            raise NoUsableFace(f"{printable(path)}: {len(analysis.usable)} usable faces "
                               "for the second model; expected one")
        return second.describe(image, analysis.usable[0].detection.box)
    finally:
        for face in analysis.usable:
            wipe(face.aligned)
        wipe(image)


def _enrol(subjects: dict[str, list[Path]], faces: PhotoFaces, second: SecondFaceModel,
           report: EnrolmentReport, *,
           progress: bool) -> tuple[list[str], list[np.ndarray], list[np.ndarray]]:
    ids: list[str] = []
    rows: list[np.ndarray] = []
    second_rows: list[np.ndarray] = []
    total = sum(len(photos) for photos in subjects.values())
    with tqdm(total=total, desc="enrolling", unit="photo", file=sys.stderr,
              disable=not progress) as bar:
        for subject, photos in subjects.items():
            embeddings = []
            descriptors = []
            for photo in photos:
                bar.update(1)
                try:
                    embedding = faces.embed_single(photo)
                    try:
                        descriptors.append(photo_descriptor(photo, faces, second))
                    except BaseException:
                        embedding.fill(0.0)
                        raise
                    embeddings.append(embedding)
                except (ImageLoadError, NoUsableFace, SeveralFaces) as exc:
                    report.skipped.append(str(exc))
            if not embeddings:
                report.skipped.append(f"{printable(subject)}: no usable photo; subject left out")
                continue
            mean = np.mean(np.stack(embeddings), axis=0)
            rows.append((mean / np.linalg.norm(mean)).astype(np.float32))
            second_rows.append(np.mean(np.stack(descriptors), axis=0).astype(np.float32))
            for kept in (*embeddings, *descriptors):
                kept.fill(0.0)  # the per-photo embeddings and descriptors are not kept
            ids.append(subject)
            report.used[subject] = len(embeddings)
    return ids, rows, second_rows
