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

The enrolment loop (``enrol_subjects``) is written once for photo files and for photos held in
memory (``lfr.photo_faces.PhotoSource``): the command enrols each photo in turn
(``enrol_photo``), the van's console (``console.watchlist_build_job``) awaits each on its
worker pool. So the loop is a coroutine: the command runs it without an event loop
(``run_without_loop``: what it awaits never suspends), the console on its own.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

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
from lfr.photo_faces import NoUsableFace, PhotoFaces, PhotoFile, PhotoSource, SeveralFaces
from models.image_io import ImageLoadError
from models.second_opinion_model import SecondFaceModel

PHOTO_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp"})

P = TypeVar("P")
"""A photo as the caller holds it (a path, an upload's photo)."""
P_contra = TypeVar("P_contra", contravariant=True)
T = TypeVar("T")


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
    total = sum(len(photos) for photos in subjects.values())
    with tqdm(total=total, desc="enrolling", unit="photo", file=sys.stderr,
              disable=not progress) as bar:

        async def enrol(photo: Path, *, reference: bool) -> EnrolledPhoto:
            # (no reference photos here: lfr watchlist push --photos makes them)
            bar.update(1)
            return enrol_photo(faces, second, PhotoFile(photo))

        enrolled = run_without_loop(enrol_subjects(subjects, enrol, report))
    if not enrolled.ids:
        raise UserInputError(f"{printable(photos_dir)}: no subject has a usable photo")
    report.unusual_thresholds = [(s, t) for s, t in report.unusual_thresholds
                                 if s in enrolled.ids]
    watchlist = enrolled.watchlist(faces, second, wanted, created_at=time.time())
    return watchlist, report


def photo_descriptor(path: Path, faces: PhotoFaces,
                     second: SecondFaceModel) -> NDArray[np.float32]:
    """The second model's descriptor of the one usable face of ``path``, on the box the first
    model's detector found (call after ``faces.embed_single`` accepted the photo; the same
    errors otherwise)."""
    image = PhotoFile(path).decode()
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


ReferenceMaker = Callable[[NDArray[np.uint8], str], bytes]
"""Makes a subject's reference photo from a decoded photo and its shown name (blocking);
``ImageLoadError`` when it cannot."""


@dataclass(slots=True)
class EnrolledPhoto:
    """One photo's face as both models describe it (in memory only; wiped once averaged)."""

    embedding: NDArray[np.float32] = field(repr=False)
    """The first model's unit-length embedding."""
    descriptor: NDArray[np.float32] = field(repr=False)
    """The second model's descriptor, on the box the first model's detector found."""
    reference: bytes | None = field(default=None, repr=False)
    """The photo as a reference photo, when one was asked for."""

    def wipe(self) -> None:
        """Overwrite the embedding and the descriptor."""
        self.embedding.fill(0.0)
        self.descriptor.fill(0.0)


def enrol_photo(faces: PhotoFaces, second: SecondFaceModel, photo: PhotoSource, *,
                reference: ReferenceMaker | None = None) -> EnrolledPhoto:
    """Both models' view of the one usable face of ``photo``, decoded once (blocking).

    Raises ``ImageLoadError``, ``NoUsableFace`` or ``SeveralFaces``, each naming the photo.
    ``reference``: also make the photo's reference photo from the decoded image. The image and
    the aligned face are overwritten before it returns, the embedding too when it fails.
    """
    image = photo.decode()
    try:
        with faces.one_face(image, photo.shown) as face:
            embedding = faces.embedder.embed(face.aligned)
            try:
                descriptor = second.describe(image, face.detection.box)
                jpeg = reference(image, photo.shown) if reference is not None else None
            except BaseException:
                embedding.fill(0.0)
                raise
            return EnrolledPhoto(embedding, descriptor, jpeg)
    finally:
        wipe(image)


@dataclass(slots=True)
class EnrolledSubjects:
    """What ``enrol_subjects`` kept: one row per subject with a usable photo, in the order
    given (in memory only: ``watchlist`` stacks the rows and overwrites them)."""

    ids: list[str] = field(default_factory=list)
    """The subjects enrolled."""
    rows: list[NDArray[np.float32]] = field(default_factory=list, repr=False)
    """Per subject: the normalised mean of its photos' embeddings."""
    second_rows: list[NDArray[np.float32]] = field(default_factory=list, repr=False)
    """Per subject: the mean of its photos' second-model descriptors."""
    photos_used: list[int] = field(default_factory=list)
    """Per subject: its photos used."""
    references: dict[str, bytes] = field(default_factory=dict, repr=False)
    """Subject -> the reference photo of its first photo used (when asked for)."""

    def wipe(self) -> None:
        """Overwrite the rows and forget the reference photos."""
        for row in (*self.rows, *self.second_rows):
            row.fill(0.0)
        self.references.clear()

    def watchlist(self, faces: PhotoFaces, second: SecondFaceModel,
                  thresholds: Mapping[str, float], *, created_at: float) -> Watchlist:
        """The watchlist of the subjects enrolled, each with its threshold from
        ``thresholds`` and ``DEFAULT_SECOND_THRESHOLD``; the loose rows are overwritten."""
        watchlist = Watchlist(
            model_id=faces.embedder.model_id, model_sha256=faces.embedder.model_sha256,
            created_at=created_at, subjects=tuple(self.ids), embeddings=np.stack(self.rows),
            thresholds=np.array([thresholds[s] for s in self.ids], np.float32),
            photos=tuple(self.photos_used),
            second_model_id=second.model_id, second_model_sha256=second.model_sha256,
            second_embeddings=np.stack(self.second_rows),
            second_thresholds=np.full(len(self.ids), DEFAULT_SECOND_THRESHOLD, np.float32),
        )
        for row in (*self.rows, *self.second_rows):
            row.fill(0.0)  # stacked into the watchlist: the loose copies go
        return watchlist


class PhotoEnroller(Protocol[P_contra]):
    """Enrols one photo for ``enrol_subjects``: blocking (awaits nothing that suspends) or
    awaiting a worker pool."""

    def __call__(self, photo: P_contra, *, reference: bool) -> Awaitable[EnrolledPhoto]:
        """``photo``'s ``EnrolledPhoto`` (``reference``: with its reference photo, when the
        caller makes them)."""
        ...


async def enrol_subjects(subjects: Mapping[str, Sequence[P]], enrol: PhotoEnroller[P],
                         report: EnrolmentReport) -> EnrolledSubjects:
    """Enrol each subject from its photos, in order: ``enrol(photo, reference=...)`` gives a
    photo's ``EnrolledPhoto`` (``reference``: the subject has no photo used yet, so make its
    reference photo) or raises ``ImageLoadError``, ``NoUsableFace`` or ``SeveralFaces``, which
    skips the photo (its message goes to ``report.skipped``). A subject's row is the
    normalised mean of its photos' embeddings, its second row the mean of their descriptors;
    a subject without a usable photo is left out and named in ``report.skipped``,
    ``report.used`` counts the photos of the others. Every per-photo embedding and descriptor
    is overwritten once averaged, and everything kept so far if the loop fails or is
    cancelled."""
    enrolled = EnrolledSubjects()
    try:
        for subject, photos in subjects.items():
            faces: list[EnrolledPhoto] = []
            try:
                for photo in photos:
                    try:
                        faces.append(await enrol(photo, reference=not faces))
                    except (ImageLoadError, NoUsableFace, SeveralFaces) as exc:
                        report.skipped.append(str(exc))
                if not faces:
                    report.skipped.append(f"{printable(subject)}: no usable photo; "
                                          "subject left out")
                    continue
                mean = np.mean(np.stack([face.embedding for face in faces]), axis=0)
                enrolled.rows.append((mean / np.linalg.norm(mean)).astype(np.float32))
                enrolled.second_rows.append(np.mean(
                    np.stack([face.descriptor for face in faces]), axis=0).astype(np.float32))
                if faces[0].reference is not None:
                    enrolled.references[subject] = faces[0].reference
                enrolled.ids.append(subject)
                enrolled.photos_used.append(len(faces))
                report.used[subject] = len(faces)
            finally:
                for face in faces:
                    face.wipe()  # the per-photo embeddings and descriptors are not kept
    except BaseException:
        enrolled.wipe()
        raise
    return enrolled


def run_without_loop(coroutine: Coroutine[Any, Any, T]) -> T:
    """The result of ``coroutine`` run to its end on this thread, without an event loop: for
    a coroutine whose awaits never suspend (``enrol_subjects`` with a blocking ``enrol``).
    A signal's exception (``KeyboardInterrupt``) goes through it as through a plain call.
    ``RuntimeError`` if it suspends after all (it is closed first)."""
    try:
        coroutine.send(None)
    except StopIteration as finished:
        result: T = finished.value
        return result
    coroutine.close()
    raise RuntimeError("the enrolment waited on something: run it on an event loop")
