"""Small faces: how recognition degrades with face size, and what the eye-distance gate guards.

Issue 12 asks what the pipeline reaches for 26-32 px faces. The quality gates refuse all of them
on the street clip (eye distance 8-10 px, below ``QualityConfig.min_eye_distance_px`` = 12); this
measures whether that refusal is a false-match guard: do impostor scores approach or cross the
thresholds at 8-11 px between the eyes, for either model or for both together, and would a
lower eye gate admit impostors or genuine matches?

Method, on the shared photos (``../shared/data/faces/photos/<subject>/*``; the folder ``groups``,
``obama-240p/480p/1080p`` and the further copies ``bench.enrolment_templates.FURTHER_COPIES``
are left out: one photo per photograph):

1. Every photo enrolled at full size by the product's enrolment steps (``PhotoFaces.one_face``:
   detector, alignment, quality gates; the first model's flip-averaged embedding; the second
   model's descriptor on the detector's box). A subject's template for a probe of its own is the
   mean of its OTHER photos (leave-one-out), for any other probe the mean of all its photos;
   both made by the product's enrolment loop (``bench.enrolment_templates.mean_templates``).
2. Every photo downscaled whole (``cv2.INTER_AREA``, as a camera's optics average light) so its
   full-size face box is W px wide, for W in ``SIZES`` (smaller than the photo's face); the
   original size is the enrolment face itself. The small image is centred on a black canvas
   of at least the detector's input side (so the detector's letterbox does not enlarge it: a
   camera frame is large) and the face is looked for as the unit looks for a known face
   between full passes: one square crop around where it is (``models.track_crops.plan_crops``,
   side >= 192 px, so a small face stays its size in the model's input), through the
   product's ``analyse_faces``. The detection kept is the one overlapping the expected box
   best (IoU >= ``MIN_IOU``).
3. Every face found is aligned, embedded and described, whatever the gates say (the analysis
   runs with every gate open); each face is then marked with the product's verdict
   (``assess_quality`` with ``QualityConfig()``: passed, or the first gate that refused it) and
   with the verdicts the other gates give with the eye gate at 10 px and 8 px. The second model
   runs on the detector's box of the canvas, as the matcher's ``look`` does.
4. Every face is scored against every subject's template (cosine for the first model, through
   the unit's ``Gallery``; descriptor distance for the second). Both models' scores are
   reported for every face: the matcher shows the second model only candidates (first-model
   score >= 0.50), so "both models" counts at 0.50 and above are what the two-model rule sees.

Reported per size: photos, faces detected, faces passing the gates today and which gate refused
the others (and which refuse them without the eye gate), eye distance, box width and sharpness
measured, and for the faces each eye gate (12 as today, 10, 8, and no gate at all) admits: the
lowest same-person and highest different-person score of each model, their margin and means,
how many pairs reach each first-model threshold in ``FIRST_THRESHOLDS``, lie within the second
model's distance threshold, and both at once (the two-model rule). Again over every downscaled
face grouped by measured eye distance (``EYE_BANDS``), and one row of numbers per face.

Limits (say them with the figures): about a dozen photos of six people, no lookalikes; a
downscaled photo is not a small face filmed in a street (no motion blur, no compression, no
noise, and the crop is centred on the true face).

Guarantees: photos are read only through ``PhotoFile`` (``models.image_io.load_rgb``, the checked
loader) and both models run only through the product's code; nothing is written anywhere.
Every decoded, downscaled and padded image, every aligned face, embedding and descriptor is
overwritten with zeros once used (a scaled face's embedding and descriptor as soon as it is
scored), the templates when the run ends. Only numbers and file names are printed. One thread
for numpy's BLAS; the models run one call at a time on the calling thread.

Run: ``python -m bench.small_faces [--json] [--photos DIR]``: one JSON object on stdout
(``--json``: on one line; otherwise indented).
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import cv2
import numpy as np
from numpy.typing import NDArray
from threadpoolctl import threadpool_limits

from actors.unit.face_analysis import FaceCandidate, analyse_faces, wipe
from actors.unit.second_opinion import (
    DEFAULT_SECOND_THRESHOLD,
    SecondOpinionConfig,
    shared_second_model,
)
from actors.unit.watchlist import DEFAULT_THRESHOLD
from bench.enrolment_templates import (
    DEFAULT_PHOTOS,
    FURTHER_COPIES,
    best_cosine,
    mean_templates,
    shared_photos,
)
from bench.photo_bench_command import photo_bench_main
from guards.log_text import printable
from guards.user_input import UserInputError
from lfr.photo_faces import NoUsableFace, PhotoFaces, PhotoFile, SeveralFaces
from lfr.watchlist_build import EnrolledPhoto
from models.detection import FaceDetection
from models.detection_plan import PartialPass
from models.face_quality import QualityConfig, QualityVerdict, assess_quality
from models.image_io import ImageLoadError
from models.second_opinion_model import SecondFaceModel, descriptor_distance
from models.track_crops import CropConfig, plan_crops

SIZES: Final = (64, 48, 40, 32, 28, 24, 20)
"""Face box widths (px) each photo is downscaled to; the original size is reported first.
20 px is below the street's smallest (26 px): on these photos the eye distance is about 0.37 of
the box width (on the street clip's tiles about 0.33), so 20 px is where 8 px between the eyes
lies."""
TODAY_EYE_GATE: Final = QualityConfig().min_eye_distance_px
"""The product's eye gate (12 px)."""
EYE_GATES: Final = (TODAY_EYE_GATE, 10.0, 8.0)
"""Eye gates measured, today's first; the other gates stay as the product has them."""
FIRST_THRESHOLDS: Final = (DEFAULT_THRESHOLD - SecondOpinionConfig().candidate_margin, 0.55,
                           DEFAULT_THRESHOLD)
"""First-model cosines counted: the second model's candidate score (0.50), 0.55, the alert
threshold (0.60)."""
EYE_BANDS: Final = ((0.0, 8.0), (8.0, 10.0), (10.0, 12.0), (12.0, math.inf))
"""Eye-distance bands (px, [low, high)) the downscaled faces are grouped by."""
MIN_IOU: Final = 0.3
"""Least overlap of a detection with the expected box (the photo's face, scaled) to be it."""
OPEN_GATES: Final = QualityConfig(min_detector_score=0.0, min_eye_distance_px=0.0,
                                  max_abs_yaw_deg=90.0, min_sharpness=0.0)
"""Gates that let every detection through (aligned and scored); each is marked afterwards."""
NO_EYE_GATE: Final = dataclasses.replace(QualityConfig(), min_eye_distance_px=0.0)
"""The product's gates without the eye gate (a face passing them and eye gate E passes all
gates with the eye gate at E: the gates are independent tests of the same face)."""
CROP: Final = CropConfig()
"""The unit's crops around known faces (side >= the detector's 192 px input)."""
DIGITS: Final = 6
"""Decimals kept in the report."""

Box = tuple[float, float, float, float]


@dataclass(frozen=True, slots=True)
class FullFace:
    """One photo's face at full size (in memory only; wiped by the run)."""

    subject: str
    """Its subject (folder name)."""
    name: str
    """``subject/file``, printable."""
    path: Path
    """The photo."""
    box: Box
    """The detector's box at full size (image pixels)."""
    quality: QualityVerdict
    """Its quality verdict at full size (passed: enrolment required it)."""
    face: EnrolledPhoto = field(repr=False)
    """Both models' view of it, as enrolment makes it."""


@dataclass(slots=True)
class Templates:
    """Both models' mean templates: one per subject (all its photos) and one per photo whose
    subject has other photos (leave-one-out). In memory only; ``wipe`` overwrites them."""

    full: dict[str, tuple[NDArray[np.float32], NDArray[np.float32]]] = field(
        default_factory=dict, repr=False)
    """Subject -> (embedding, descriptor) of all its photos."""
    without: dict[str, tuple[NDArray[np.float32], NDArray[np.float32]]] = field(
        default_factory=dict, repr=False)
    """Photo name -> its subject's (embedding, descriptor) without that photo."""

    def for_pair(self, probe: str, probe_subject: str,
                 subject: str) -> tuple[NDArray[np.float32], NDArray[np.float32]] | None:
        """The template ``probe`` meets for ``subject``; None when it is the probe's own
        subject and that subject has no other photo."""
        return self.without.get(probe) if subject == probe_subject else self.full[subject]

    def wipe(self) -> None:
        """Overwrite every template."""
        for row, descriptor in (*self.full.values(), *self.without.values()):
            row.fill(0.0)
            descriptor.fill(0.0)


@dataclass(frozen=True, slots=True)
class SubjectScore:
    """One face against one subject's template."""

    subject: str
    """The template's subject."""
    same: bool
    """True when the face shows that subject."""
    cosine: float
    """First model: cosine with the mean embedding."""
    distance: float
    """Second model: distance to the mean descriptor."""


@dataclass(frozen=True, slots=True)
class ScaledFace:
    """What one photo at one size gave (numbers only: no face data)."""

    name: str
    """The photo's ``subject/file``."""
    subject: str
    """Its subject."""
    width: int | None
    """The target box width (px); None: the original size."""
    detected: bool
    """A detection overlapped the expected box (the rest are empty when not)."""
    box_width: float = math.nan
    """The detection's box width (px)."""
    verdict: QualityVerdict | None = None
    """The product's gates (``QualityConfig()``) on the face; None when not detected."""
    other_gates_failed: str | None = None
    """The first of the product's detector-score, pose and blur gates (the eye gate aside)
    that refuses the face, or None when they all pass it (also None when not detected)."""
    scores: tuple[SubjectScore, ...] = ()
    """Against every subject's template (none when not detected)."""

    def admitted(self, eye_gate: float) -> bool:
        """Passes every gate with the eye gate at ``eye_gate`` px (the others as today)."""
        return (self.verdict is not None and self.other_gates_pass
                and self.verdict.eye_distance_px >= eye_gate)

    @property
    def other_gates_pass(self) -> bool:
        """Detected, and passes every gate but the eye gate."""
        return self.detected and self.other_gates_failed is None


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes (0 when either is empty)."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def distinct_photos(photos_dir: Path) -> tuple[dict[str, list[Path]], list[str]]:
    """``shared_photos`` without the further copies: one photo per photograph."""
    subjects, left_out = shared_photos(photos_dir)
    for subject, photos in subjects.items():
        left_out += [f"{printable(subject)}/{printable(p.name)}: a further copy of another photo"
                     for p in photos if (subject, p.name) in FURTHER_COPIES]
        subjects[subject] = [p for p in photos if (subject, p.name) not in FURTHER_COPIES]
    return subjects, left_out


def enrol_full(subjects: dict[str, list[Path]], faces: PhotoFaces,
               second: SecondFaceModel) -> tuple[list[FullFace], list[str]]:
    """Every photo's full-size face, by enrolment's steps (``enrol_photo``'s, keeping the box);
    photos without exactly one usable face, or that do not load, are skipped and named."""
    found: list[FullFace] = []
    skipped: list[str] = []
    try:
        for subject, photos in subjects.items():
            for path in photos:
                source = PhotoFile(path)
                try:
                    image = source.decode()
                except ImageLoadError as exc:
                    skipped.append(str(exc))
                    continue
                try:
                    with faces.one_face(image, source.shown) as face:
                        enrolled = _describe_both(faces, second, image, face)
                        found.append(FullFace(subject, f"{printable(subject)}/"
                                              f"{printable(path.name)}", path,
                                              face.detection.box, face.quality, enrolled))
                except (NoUsableFace, SeveralFaces) as exc:
                    skipped.append(str(exc))
                finally:
                    wipe(image)
    except BaseException:
        for full in found:
            full.face.wipe()
        raise
    return found, skipped


def _describe_both(faces: PhotoFaces, second: SecondFaceModel, image: NDArray[np.uint8],
                   face: FaceCandidate) -> EnrolledPhoto:
    """Both models' view of ``face`` of ``image`` (as ``enrol_photo`` and the matcher make
    it: the aligned crop embedded, the second model on the detector's box)."""
    embedding = faces.embedder.embed(face.aligned)
    try:
        return EnrolledPhoto(embedding, second.describe(image, face.detection.box))
    except BaseException:
        embedding.fill(0.0)
        raise


def make_templates(full: Sequence[FullFace]) -> Templates:
    """Every subject's template and every photo's leave-one-out one (module docstring)."""
    templates = Templates()
    try:
        for subject in sorted({f.subject for f in full}):
            own = [f for f in full if f.subject == subject]
            templates.full[subject] = mean_templates([f.face for f in own])
            if len(own) < 2:
                continue
            for probe in own:
                templates.without[probe.name] = mean_templates(
                    [f.face for f in own if f is not probe])
    except BaseException:
        templates.wipe()
        raise
    return templates


def score(face: EnrolledPhoto, name: str, subject: str,
          templates: Templates) -> tuple[SubjectScore, ...]:
    """``face`` (of ``subject``'s photo ``name``) against every subject's template."""
    scores: list[SubjectScore] = []
    for other in sorted(templates.full):
        template = templates.for_pair(name, subject, other)
        if template is None:
            continue  # its own subject has no other photo: no same-person pair
        row, descriptor = template
        scores.append(SubjectScore(other, other == subject, best_cosine(row[None, :],
                                                                       face.embedding),
                                   descriptor_distance(face.descriptor, descriptor)))
    return tuple(scores)


def original_face(full: FullFace, templates: Templates) -> ScaledFace:
    """The full-size face (it passed every gate: enrolment required it)."""
    return ScaledFace(full.name, full.subject, None, detected=True,
                      box_width=full.box[2] - full.box[0], verdict=full.quality,
                      scores=score(full.face, full.name, full.subject, templates))


@dataclass(frozen=True, slots=True)
class Canvas:
    """A photo downscaled and centred on a black canvas (in memory only; wiped by its user)."""

    pixels: NDArray[np.uint8] = field(repr=False)
    """H x W x 3 RGB, each side at least ``CROP.min_side_px``."""
    expected: Box
    """The full-size face box, scaled and moved with the photo."""


@dataclass(frozen=True, slots=True)
class ScaledRun:
    """What scoring the photos at a smaller size needs: the models and the templates."""

    faces: PhotoFaces
    """The first model's detector and embedder."""
    second: SecondFaceModel
    """The second model."""
    templates: Templates
    """Every template."""


def downscaled(image: NDArray[np.uint8], box: Box, width: int) -> Canvas:
    """``image`` shrunk (``INTER_AREA``) so ``box`` is ``width`` px wide, on a black canvas."""
    h, w = image.shape[:2]
    factor = width / (box[2] - box[0])
    new_w, new_h = max(1, round(w * factor)), max(1, round(h * factor))
    small = np.asarray(cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA),
                       dtype=np.uint8)
    try:
        side_w, side_h = max(new_w, CROP.min_side_px), max(new_h, CROP.min_side_px)
        left, top = (side_w - new_w) // 2, (side_h - new_h) // 2
        pixels = np.zeros((side_h, side_w, 3), dtype=np.uint8)
        pixels[top:top + new_h, left:left + new_w] = small
    finally:
        wipe(small)
    sx, sy = new_w / w, new_h / h
    return Canvas(pixels, (box[0] * sx + left, box[1] * sy + top,
                           box[2] * sx + left, box[3] * sy + top))


def scaled_face(run: ScaledRun, full: FullFace, image: NDArray[np.uint8],
                width: int) -> ScaledFace:
    """The photo at ``width`` px: found on a crop around its face, marked, scored (module
    docstring, steps 2-4); every image, crop, embedding and descriptor wiped."""
    canvas = downscaled(image, full.box, width)
    try:
        h, w = canvas.pixels.shape[:2]
        crops = tuple(plan_crops([canvas.expected], w, h, CROP))
        analysis = analyse_faces(run.faces.detector, canvas.pixels, OPEN_GATES,
                                 PartialPass((), crops))
        try:
            best = max(analysis.usable, default=None,
                       key=lambda c: iou(c.detection.box, canvas.expected))
            if best is None or iou(best.detection.box, canvas.expected) < MIN_IOU:
                return ScaledFace(full.name, full.subject, width, detected=False)
            return _marked(run, full, width, canvas.pixels, best)
        finally:
            for candidate in analysis.usable:
                wipe(candidate.aligned)
    finally:
        wipe(canvas.pixels)


def _marked(run: ScaledRun, full: FullFace, width: int, pixels: NDArray[np.uint8],
            face: FaceCandidate) -> ScaledFace:
    """One found face marked by the gates and scored; its embedding and descriptor wiped."""
    detection: FaceDetection = face.detection
    others = assess_quality(detection, face.aligned, NO_EYE_GATE)
    described = _describe_both(run.faces, run.second, pixels, face)
    try:
        scores = score(described, full.name, full.subject, run.templates)
    finally:
        described.wipe()
    return ScaledFace(full.name, full.subject, width, detected=True,
                      box_width=detection.x1 - detection.x0,
                      verdict=assess_quality(detection, face.aligned, QualityConfig()),
                      other_gates_failed=(None if others.failed_gate is None
                                          else others.failed_gate.value),
                      scores=scores)


def scale_photo(run: ScaledRun, full: FullFace) -> Iterator[ScaledFace]:
    """``full``'s photo at every size in ``SIZES`` smaller than its face (decoded again, wiped
    at the end)."""
    image = PhotoFile(full.path).decode()
    try:
        for width in SIZES:
            if width < full.box[2] - full.box[0]:
                yield scaled_face(run, full, image, width)
    finally:
        wipe(image)


# ---- the report ------------------------------------------------------------------------------


def _round(value: float) -> float | None:
    return round(value, DIGITS) if math.isfinite(value) else None


def _spread(values: Sequence[float]) -> dict[str, float | None]:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return {"min": None, "median": None, "max": None}
    return {"min": _round(min(finite)), "median": _round(statistics.median(finite)),
            "max": _round(max(finite))}


def _key(threshold: float) -> str:
    return f"{threshold:.2f}"


Pair = tuple[ScaledFace, SubjectScore]


def _label(pair: Pair) -> str:
    return f"{pair[0].name} at {pair[0].width or 'original'} vs {pair[1].subject}"


def scores_report(faces: Sequence[ScaledFace]) -> dict[str, object]:
    """Both models' figures over every pair of ``faces`` (module docstring)."""
    pairs: list[Pair] = [(face, s) for face in faces for s in face.scores]
    same = [p for p in pairs if p[1].same]
    different = [p for p in pairs if not p[1].same]
    second_edge = DEFAULT_SECOND_THRESHOLD

    def extreme(group: list[Pair], value: Callable[[Pair], float],
                pick: Callable[..., Pair]) -> dict[str, object]:
        chosen = pick(group, key=value) if group else None
        return {"score": None if chosen is None else _round(value(chosen)),
                "pair": None if chosen is None else _label(chosen)}

    def mean(group: list[Pair], value: Callable[[Pair], float]) -> float | None:
        return _round(statistics.fmean(value(p) for p in group)) if group else None

    def margin(sign: float, value: Callable[[Pair], float]) -> float | None:
        """Worst same-person minus worst different-person score, signed so that positive
        means every pair is separated (``sign`` -1 for a distance)."""
        if not same or not different:
            return None
        return _round(min(sign * value(p) for p in same)
                      - max(sign * value(p) for p in different))

    def cosine(p: Pair) -> float:
        return p[1].cosine

    def distance(p: Pair) -> float:
        return p[1].distance

    def first(group: list[Pair], threshold: float) -> int:
        return sum(1 for p in group if cosine(p) >= threshold)

    def second(group: list[Pair]) -> int:
        return sum(1 for p in group if distance(p) <= second_edge)

    def both(group: list[Pair], threshold: float) -> int:
        return sum(1 for p in group if cosine(p) >= threshold and distance(p) <= second_edge)

    return {
        "faces": len(faces),
        "refused_by_todays_gates": sum(1 for f in faces
                                       if f.verdict is not None and not f.verdict.passed),
        "same_pairs": len(same),
        "different_pairs": len(different),
        "first_model": {
            "lowest_same": extreme(same, cosine, min),
            "highest_different": extreme(different, cosine, max),
            "margin": margin(1.0, cosine),
            "mean_same": mean(same, cosine),
            "mean_different": mean(different, cosine),
            "same_at_or_above": {_key(t): first(same, t) for t in FIRST_THRESHOLDS},
            "different_at_or_above": {_key(t): first(different, t) for t in FIRST_THRESHOLDS},
        },
        "second_model": {
            "highest_same": extreme(same, distance, max),
            "lowest_different": extreme(different, distance, min),
            "margin": margin(-1.0, distance),
            "mean_same": mean(same, distance),
            "mean_different": mean(different, distance),
            "same_within": {_key(second_edge): second(same)},
            "different_within": {_key(second_edge): second(different)},
        },
        "both_models": {_key(t): {"same": both(same, t), "different": both(different, t)}
                        for t in FIRST_THRESHOLDS},
    }


def _gate_key(gate: float) -> str:
    return f"eye_gate_{gate:g}px"


def size_report(width: int | None, faces: Sequence[ScaledFace]) -> dict[str, object]:
    """One size's figures (module docstring)."""
    found = [f for f in faces if f.detected]
    refused: dict[str, int] = {}
    refused_without_eye: dict[str, int] = {}
    for face in found:
        if face.verdict is not None and face.verdict.failed_gate is not None:
            gate = face.verdict.failed_gate.value
            refused[gate] = refused.get(gate, 0) + 1
        if face.other_gates_failed is not None:
            gate = face.other_gates_failed
            refused_without_eye[gate] = refused_without_eye.get(gate, 0) + 1
    return {
        "width_px": width,
        "photos": len(faces),
        "detected": len(found),
        "box_width_px": _spread([f.box_width for f in found]),
        "eye_distance_px": _spread([f.verdict.eye_distance_px for f in found
                                    if f.verdict is not None]),
        "sharpness": _spread([f.verdict.sharpness for f in found if f.verdict is not None]),
        "passed_todays_gates": sum(1 for f in found if f.verdict is not None
                                   and f.verdict.passed),
        "refused_by": dict(sorted(refused.items())),
        "refused_without_the_eye_gate_by": dict(sorted(refused_without_eye.items())),
        "admitted": {_gate_key(g): sum(1 for f in found if f.admitted(g))
                     for g in EYE_GATES},
        "scored": {
            **{_gate_key(g): scores_report([f for f in found if f.admitted(g)])
               for g in EYE_GATES},
            "no_gates": scores_report(found),
        },
    }


def band_report(faces: Sequence[ScaledFace]) -> dict[str, object]:
    """Every downscaled face found, by measured eye distance: those the other gates (detector
    score, pose, blur) admit, and all of them."""
    report: dict[str, object] = {}
    for low, high in EYE_BANDS:
        inside = [f for f in faces if f.detected and f.verdict is not None
                  and low <= f.verdict.eye_distance_px < high]
        others = [f for f in inside if f.other_gates_pass]
        name = f"{low:g}-{high:g}px" if math.isfinite(high) else f"{low:g}px_and_more"
        report[name] = {"other_gates_pass": scores_report(others),
                        "no_gates": scores_report(inside)}
    return report


def face_rows(faces: Sequence[ScaledFace]) -> list[dict[str, object]]:
    """One row of numbers per photo and size."""
    rows: list[dict[str, object]] = []
    for face in faces:
        row: dict[str, object] = {"photo": face.name, "width_px": face.width,
                                  "detected": face.detected}
        if face.detected and face.verdict is not None:
            own = [s for s in face.scores if s.same]
            others = [s for s in face.scores if not s.same]
            best = max(others, key=lambda s: s.cosine, default=None)
            nearest = min(others, key=lambda s: s.distance, default=None)
            verdict = face.verdict
            row.update({
                "box_width_px": _round(face.box_width),
                "eye_distance_px": _round(verdict.eye_distance_px),
                "detector_score": _round(verdict.detector_score),
                "yaw_deg": _round(verdict.yaw_deg),
                "sharpness": _round(verdict.sharpness),
                "todays_gates": ("passed" if verdict.failed_gate is None
                                 else verdict.failed_gate.value),
                "admitted": {_gate_key(g): face.admitted(g) for g in EYE_GATES},
                "own_cosine": _round(own[0].cosine) if own else None,
                "own_distance": _round(own[0].distance) if own else None,
                "best_other_cosine": None if best is None else _round(best.cosine),
                "best_other_subject": None if best is None else best.subject,
                "nearest_other_distance": None if nearest is None else _round(nearest.distance),
                "nearest_other_subject": None if nearest is None else nearest.subject,
            })
        rows.append(row)
    return rows


def run(photos_dir: Path = DEFAULT_PHOTOS) -> dict[str, object]:
    """Measure recognition against face size on ``photos_dir`` (module docstring);
    ``UserInputError`` when the folder is unusable or fewer than two photos have a face."""
    started = time.monotonic()
    subjects, left_out = distinct_photos(photos_dir)
    with threadpool_limits(limits=1):
        faces = PhotoFaces()
        second = shared_second_model()
        full, skipped = enrol_full(subjects, faces, second)
        templates = Templates()
        try:
            if len(full) < 2:
                raise UserInputError(f"{printable(photos_dir)}: {len(full)} usable photo(s); "
                                     "nothing to compare")
            templates = make_templates(full)
            scaled_run = ScaledRun(faces, second, templates)
            originals = [original_face(f, templates) for f in full]
            scaled = [s for f in full for s in scale_photo(scaled_run, f)]
        finally:
            templates.wipe()
            for f in full:
                f.face.wipe()
    by_size = [size_report(None, originals)] + [
        size_report(w, [s for s in scaled if s.width == w]) for w in SIZES]
    return {
        "method": "each photo downscaled whole (INTER_AREA) so its face box is width_px wide, "
                  "centred on a black canvas >= 192 px, found on one crop around the face "
                  "(the unit's detection around known faces), every face aligned, embedded and "
                  "described whatever the gates say, then marked by them",
        "templates": "mean of the subject's full-size photos, leave-one-out for its own",
        "first_threshold": DEFAULT_THRESHOLD,
        "first_thresholds_counted": [_key(t) for t in FIRST_THRESHOLDS],
        "second_threshold": DEFAULT_SECOND_THRESHOLD,
        "todays_eye_gate_px": TODAY_EYE_GATE,
        "quality_gates": dataclasses.asdict(QualityConfig()),
        "photos": len(full),
        "subjects": len({f.subject for f in full}),
        "sizes": by_size,
        "by_eye_distance": band_report(scaled),
        "faces": face_rows(originals + scaled),
        "left_out": left_out,
        "skipped": skipped,
        "elapsed_s": round(time.monotonic() - started, 2),
    }


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, run, print one JSON object."""
    return photo_bench_main("bench.small_faces", __doc__, run, DEFAULT_PHOTOS, argv)


if __name__ == "__main__":
    sys.exit(main())
