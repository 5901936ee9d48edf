"""Enrolment templates: the mean of a subject's photos against one template per photo.

A watchlist subject is enrolled today as one template per model (``lfr.watchlist_build``): the
first model's row is the renormalised mean of its photos' embeddings (MobileFaceNet,
flip-averaged, unit length), the second model's the plain mean of their dlib descriptors. The
alternative measured here keeps every photo's template and scores a face by the best of them:
the largest cosine (first model), the smallest distance (second model).

Leave-one-out on the shared photos (``../shared/data/faces/photos/<subject>/*``; the folder
``groups`` and ``obama-240p/480p/1080p``, copies of ``obama-720p``, are left out): every photo
P is a probe against every subject S. When S is P's own subject, S's gallery is S's other
photos (so subjects with one photo give no same-person pair); for any other S it is all of S's
photos, as a real watchlist would hold them (leave-one-out removes nothing there: the probe is
not among them). Each pair is scored by both rules of both models: ``mean`` (today: cosine with
the renormalised mean; distance to the mean descriptor) and ``max`` / ``min`` (best over the
per-photo templates). Reported per rule: the worst same-person and different-person scores and
the pairs that gave them, their margin, the ROC AUC and the true / false match rates at the
default thresholds (0.60 cosine, 0.60 distance); again over only the pairs whose gallery holds
two or more photos (with one photo both rules score the same template).

Twice: over every photo (``all_photos``) and over one photo per photograph (``distinct``): the
Obama folder holds further copies (``FURTHER_COPIES``), and a probe whose copy stays in its
leave-one-out gallery is scored against itself by the best-template rule.

Guarantees: the photos are read, and both models run, only through the product's own code
(``lfr.watchlist_build.find_photos`` for the folders, ``enrol_photo`` on a ``PhotoFile`` for each
photo: ``models.image_io.load_rgb``, the quality gates, the aligned embedding and the
descriptor on the detector's box); today's templates are made by the product's own enrolment
loop (``enrol_subjects``), and cosines are computed by the unit's ``Gallery`` search. A photo
without exactly one usable face is skipped and named, never used. Nothing but scores and file
names is printed; every embedding and descriptor is overwritten before the run returns. One
thread for numpy's BLAS; the models run one call at a time on the calling thread.

Run: ``python -m bench.enrolment_templates [--json] [--photos DIR]``: one JSON object on
stdout (``--json``: on one line; otherwise indented).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import numpy as np
from numpy.typing import NDArray
from threadpoolctl import threadpool_limits

from actors.unit.gallery import Gallery
from actors.unit.second_opinion import DEFAULT_SECOND_THRESHOLD, shared_second_model
from actors.unit.watchlist import DEFAULT_THRESHOLD
from bench.photo_bench_command import photo_bench_main
from guards.log_text import printable
from guards.user_input import UserInputError
from lfr.calibrate import roc_auc
from lfr.photo_faces import NoUsableFace, PhotoFaces, PhotoFile, SeveralFaces
from lfr.watchlist_build import (
    EnrolledPhoto,
    EnrolmentReport,
    enrol_photo,
    enrol_subjects,
    find_photos,
    run_without_loop,
)
from models.image_io import ImageLoadError
from models.second_opinion_model import SecondFaceModel, descriptor_distance

REPO_ROOT: Final = Path(__file__).resolve().parents[1]
DEFAULT_PHOTOS: Final = REPO_ROOT.parent / "shared" / "data" / "faces" / "photos"
"""The shared photos, beside the repository (as the tests find them)."""
LEFT_OUT_FOLDERS: Final = frozenset({"groups"})
"""Folders of several people per photo: no subject's enrolment photos."""
LEFT_OUT_PHOTOS: Final = frozenset({("barack_obama", "obama-240p.jpg"),
                                    ("barack_obama", "obama-480p.jpg"),
                                    ("barack_obama", "obama-1080p.jpg")})
"""(subject, file) of copies of ``obama-720p.jpg`` at other sizes: one photo counted once."""
FURTHER_COPIES: Final = frozenset({("barack_obama", "obama_1.jpg"),
                                   ("barack_obama", "obama_small.jpg"),
                                   ("barack_obama", "obama_partial_face.jpg"),
                                   ("barack_obama", "obama_4_rgba32.png")})
"""(subject, file) of further copies of one photograph, left out of the ``distinct`` view:
``obama_1``, ``obama_small`` and ``obama_partial_face`` are the portrait of ``obama-720p``
(other crops and sizes; first-model cosine 0.93-0.996 with it), ``obama_4_rgba32`` is
``obama_2`` as an RGBA PNG (mean pixel difference 1.4 of 255, cosine 0.9999). Left in, a probe's
own copy stays in its leave-one-out gallery, and the best-template rule scores the copy."""
DIGITS: Final = 6
"""Decimals kept in the report."""


@dataclass(frozen=True, slots=True)
class Probe:
    """One photo's face as both models describe it (in memory only; wiped by the run)."""

    subject: str
    """Its subject (folder name)."""
    file: str
    """Its file name in the subject's folder."""
    name: str
    """``subject/file``, printable, for the report."""
    face: EnrolledPhoto = field(repr=False)
    """Both models' templates of its face."""


@dataclass(frozen=True, slots=True)
class PairScores:
    """One probe against one subject's gallery, by both rules of both models."""

    probe: str
    """The probe's ``subject/file``."""
    subject: str
    """The gallery's subject."""
    same: bool
    """True when the probe shows that subject."""
    gallery_photos: int
    """Photos in the gallery (with 1 the two rules are the same template)."""
    mean_cosine: float
    """First model, today's rule: cosine with the renormalised mean embedding."""
    max_cosine: float
    """First model: the largest cosine over the per-photo embeddings."""
    mean_distance: float
    """Second model, today's rule: distance to the mean descriptor."""
    min_distance: float
    """Second model: the smallest distance over the per-photo descriptors."""


def shared_photos(photos_dir: Path) -> tuple[dict[str, list[Path]], list[str]]:
    """Subject -> its photos (``find_photos``) without the group folder and the copies, and
    one line per folder or photo left out; ``UserInputError`` for an unusable folder."""
    found = find_photos(photos_dir)
    left_out = list(found.skipped)
    subjects: dict[str, list[Path]] = {}
    for subject, photos in found.subjects.items():
        if subject in LEFT_OUT_FOLDERS:
            left_out.append(f"{printable(subject)}: group photos; no subject's enrolment")
            continue
        kept = [p for p in photos if (subject, p.name) not in LEFT_OUT_PHOTOS]
        left_out += [f"{printable(subject)}/{printable(p.name)}: a copy of another photo"
                     for p in photos if (subject, p.name) in LEFT_OUT_PHOTOS]
        subjects[subject] = kept
    return subjects, left_out


def enrol_probes(subjects: dict[str, list[Path]], faces: PhotoFaces,
                 second: SecondFaceModel) -> tuple[list[Probe], list[str]]:
    """Every photo's ``EnrolledPhoto`` (``enrol_photo``); photos without exactly one usable
    face, or that do not load, are skipped and named."""
    probes: list[Probe] = []
    skipped: list[str] = []
    try:
        for subject, photos in subjects.items():
            for path in photos:
                try:
                    face = enrol_photo(faces, second, PhotoFile(path))
                except (ImageLoadError, NoUsableFace, SeveralFaces) as exc:
                    skipped.append(str(exc))
                    continue
                probes.append(Probe(subject, path.name,
                                    f"{printable(subject)}/{printable(path.name)}", face))
    except BaseException:
        wipe_probes(probes)
        raise
    return probes, skipped


def wipe_probes(probes: Sequence[Probe]) -> None:
    """Overwrite every probe's embedding and descriptor."""
    for probe in probes:
        probe.face.wipe()


def mean_templates(gallery: Sequence[EnrolledPhoto],
                   ) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Today's templates of a subject enrolled from ``gallery``, made by the product's own
    enrolment loop on copies (the loop overwrites what it is given): the renormalised mean
    embedding and the mean descriptor. The caller wipes both."""
    report = EnrolmentReport()

    async def enrol(photo: EnrolledPhoto, *, reference: bool) -> EnrolledPhoto:
        return EnrolledPhoto(photo.embedding.copy(), photo.descriptor.copy())

    enrolled = run_without_loop(enrol_subjects({"subject": list(gallery)}, enrol, report))
    try:
        return enrolled.rows[0].copy(), enrolled.second_rows[0].copy()
    finally:
        enrolled.wipe()


def best_cosine(rows: NDArray[np.float32], query: NDArray[np.float32]) -> float:
    """The best cosine of ``query`` over ``rows``, as the unit's ``Gallery`` computes it (its
    own unit-length copy of the rows is wiped afterwards)."""
    gallery = Gallery(["subject"] * len(rows), rows,
                      np.full(len(rows), DEFAULT_THRESHOLD, np.float32), index="exact")
    try:
        return gallery.search(query[None, :], k=1)[0][0].score
    finally:
        gallery.wipe()


def score_pairs(probes: Sequence[Probe]) -> list[PairScores]:
    """Every probe against every subject (module docstring: leave-one-out for its own)."""
    subjects = sorted({p.subject for p in probes})
    pairs: list[PairScores] = []
    for probe in probes:
        for subject in subjects:
            gallery = [p.face for p in probes if p.subject == subject and p is not probe]
            if not gallery:
                continue  # the probe's subject has no other photo
            pairs.append(_pair(probe, subject, gallery))
    return pairs


def _pair(probe: Probe, subject: str, gallery: Sequence[EnrolledPhoto]) -> PairScores:
    mean_row, mean_descriptor = mean_templates(gallery)
    rows = np.stack([photo.embedding for photo in gallery])
    try:
        return PairScores(
            probe=probe.name, subject=subject, same=probe.subject == subject,
            gallery_photos=len(gallery),
            mean_cosine=best_cosine(mean_row[None, :], probe.face.embedding),
            max_cosine=best_cosine(rows, probe.face.embedding),
            mean_distance=descriptor_distance(probe.face.descriptor, mean_descriptor),
            min_distance=min(descriptor_distance(probe.face.descriptor, photo.descriptor)
                             for photo in gallery),
        )
    finally:
        for array in (mean_row, mean_descriptor, rows):
            array.fill(0.0)


def _round(value: float) -> float | None:
    return round(value, DIGITS) if math.isfinite(value) else None


def _label(pair: PairScores) -> str:
    return f"{pair.probe} vs {pair.subject}"


def rule_report(pairs: Sequence[PairScores], value: Callable[[PairScores], float], *,
                threshold: float, higher_is_same: bool) -> dict[str, object]:
    """One rule's figures: for a cosine (``higher_is_same``) the lowest same-person and highest
    different-person score, for a distance the highest same and lowest different one; the
    margin between them (positive: the rule separates every pair), the ROC AUC, and the true /
    false match rates at ``threshold`` (accepted: score >= it, distance <= it)."""
    sign = 1.0 if higher_is_same else -1.0
    same = [p for p in pairs if p.same]
    different = [p for p in pairs if not p.same]
    same_scores = np.array([sign * value(p) for p in same], dtype=np.float64)
    diff_scores = np.array([sign * value(p) for p in different], dtype=np.float64)
    worst_same = min(same, key=lambda p: sign * value(p), default=None)
    worst_diff = max(different, key=lambda p: sign * value(p), default=None)
    edge = sign * threshold
    report: dict[str, object] = {
        "worst_same": None if worst_same is None else _round(value(worst_same)),
        "worst_same_pair": None if worst_same is None else _label(worst_same),
        "worst_different": None if worst_diff is None else _round(value(worst_diff)),
        "worst_different_pair": None if worst_diff is None else _label(worst_diff),
        "margin": (None if worst_same is None or worst_diff is None else
                   _round(sign * (value(worst_same) - value(worst_diff)))),
        "auc": _round(roc_auc(same_scores, diff_scores)),
        "threshold": threshold,
        "true_match_rate": (_round(float((same_scores >= edge).mean()))
                            if len(same_scores) else None),
        "false_match_rate": (_round(float((diff_scores >= edge).mean()))
                             if len(diff_scores) else None),
        "mean_same": _round(float(sign * same_scores.mean())) if len(same_scores) else None,
        "mean_different": (_round(float(sign * diff_scores.mean()))
                           if len(diff_scores) else None),
    }
    return report


def models_report(pairs: Sequence[PairScores]) -> dict[str, object]:
    """``rule_report`` of both rules of both models over ``pairs``."""
    def first(value: Callable[[PairScores], float]) -> dict[str, object]:
        return rule_report(pairs, value, threshold=DEFAULT_THRESHOLD, higher_is_same=True)

    def second(value: Callable[[PairScores], float]) -> dict[str, object]:
        return rule_report(pairs, value, threshold=DEFAULT_SECOND_THRESHOLD,
                           higher_is_same=False)

    return {"first_model": {"mean": first(lambda p: p.mean_cosine),
                            "max": first(lambda p: p.max_cosine)},
            "second_model": {"mean": second(lambda p: p.mean_distance),
                             "min": second(lambda p: p.min_distance)}}


def view_report(probes: Sequence[Probe]) -> dict[str, object]:
    """Both rules of both models over every pair of ``probes`` (``score_pairs``)."""
    pairs = score_pairs(probes)
    per_subject: dict[str, int] = {}
    for probe in probes:
        per_subject[probe.subject] = per_subject.get(probe.subject, 0) + 1

    # Where the gallery holds one photo both rules score the one template: the rules can
    # differ only on the pairs whose gallery holds two or more.
    several = [p for p in pairs if p.gallery_photos >= 2]
    return {
        "photos": len(probes),
        "photos_per_subject": dict(sorted(per_subject.items())),
        "subjects": len(per_subject),
        "subjects_with_2_or_more_photos": sum(1 for n in per_subject.values() if n >= 2),
        "same_pairs": sum(1 for p in pairs if p.same),
        "different_pairs": sum(1 for p in pairs if not p.same),
        "same_pairs_with_2_or_more_templates": sum(1 for p in pairs
                                                   if p.same and p.gallery_photos >= 2),
        "different_pairs_with_2_or_more_templates": sum(
            1 for p in pairs if not p.same and p.gallery_photos >= 2),
        **models_report(pairs),
        "with_2_or_more_templates": models_report(several),
        "same_pair_scores": [
            {"pair": _label(p), "gallery_photos": p.gallery_photos,
             "mean_cosine": _round(p.mean_cosine), "max_cosine": _round(p.max_cosine),
             "mean_distance": _round(p.mean_distance), "min_distance": _round(p.min_distance)}
            for p in pairs if p.same],
    }


def is_further_copy(probe: Probe) -> bool:
    """True for a photo ``FURTHER_COPIES`` names."""
    return (probe.subject, probe.file) in FURTHER_COPIES


def run(photos_dir: Path = DEFAULT_PHOTOS) -> dict[str, object]:
    """Measure both rules of both models on ``photos_dir`` (module docstring), on every photo
    (``all_photos``) and on one photo per photograph (``distinct``); ``UserInputError`` when
    the folder is unusable or fewer than two photos have a face."""
    started = time.monotonic()
    subjects, left_out = shared_photos(photos_dir)
    with threadpool_limits(limits=1):
        faces = PhotoFaces()
        probes, skipped = enrol_probes(subjects, faces, shared_second_model())
        try:
            if len(probes) < 2:
                raise UserInputError(f"{printable(photos_dir)}: {len(probes)} usable photo(s); "
                                     "nothing to compare")
            distinct = [p for p in probes if not is_further_copy(p)]
            return {
                "same_gallery": "leave-one-out: the subject's photos other than the probe",
                "different_gallery": "all of the subject's photos (leave-one-out removes "
                                     "nothing from them: the probe is not among them)",
                "first_threshold": DEFAULT_THRESHOLD,
                "second_threshold": DEFAULT_SECOND_THRESHOLD,
                "all_photos": view_report(probes),
                "distinct": {"left_out": sorted(p.name for p in probes if is_further_copy(p)),
                             **view_report(distinct)},
                "left_out": left_out,
                "skipped": skipped,
                "elapsed_s": round(time.monotonic() - started, 2),
            }
        finally:
            wipe_probes(probes)


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, run, print one JSON object."""
    return photo_bench_main("bench.enrolment_templates", __doc__, run, DEFAULT_PHOTOS, argv)


if __name__ == "__main__":
    sys.exit(main())
