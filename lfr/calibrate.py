"""``lfr calibrate``: measure both face models on labelled pairs and find thresholds.

Reads a CSV of ``a,b,same`` (paths relative to ``--root``; same = 1 or 0), embeds every image
once with each model, scores every pair and reports, for the first model (cosine similarity,
the report's unprefixed keys as before), the ROC AUC, the threshold that keeps the false match
rate at or below a target, and the rates at the shipped default threshold; the same for the
second model (Euclidean distance of dlib descriptors, small = same: ``second_*`` keys); and for
the two-model rule (``both_*``): a pair is accepted when the first score reaches its threshold
*and* the second distance lies within its own. ``both_first_threshold_for_target_fmr`` is the
lowest first-model threshold that keeps the rule's false match rate at or below the target with
the second threshold at its default: how far the first threshold could come down, measured.
The rule's combined score is ``min(score - threshold, second threshold - distance)`` (>= 0:
accepted), whose ROC AUC is ``both_auc``.

Input is checked before the models load: the CSV is read as a regular file of bounded size,
strict UTF-8 without NUL bytes, with fields of path length; any fault names the file and line.
A figure that cannot be computed (no different pairs: no false match rate) is ``None`` (JSON
``null``), never NaN; a run in which every pair was skipped is an error, not a report.
"""

from __future__ import annotations

import csv
import io
import math
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from actors.unit.second_opinion import DEFAULT_SECOND_THRESHOLD, shared_second_model
from actors.unit.watchlist import DEFAULT_THRESHOLD
from guards.files import (
    UserFileError,
    check_output_target,
    read_user_file,
    write_file_atomically,
)
from guards.log_text import printable
from guards.user_input import UserInputError
from lfr.photo_faces import NoUsableFace, PhotoFaces, SeveralFaces
from lfr.watchlist_build import photo_descriptor
from models.image_io import ImageLoadError
from models.second_opinion_model import descriptor_distance

MAX_PAIRS = 1_000_000
MAX_CSV_BYTES = 128 * 1024 * 1024
"""Largest pairs CSV read (a million pairs of two 60-character paths is about 120 MB)."""
MAX_FIELD_CHARS = 4096
"""Longest CSV field: a path longer than PATH_MAX (4096 on Linux) names no file."""
MAX_LINE_CHARS = 4 * MAX_FIELD_CHARS
"""Longest line: checked before parsing, so csv's own field limit never reports a line."""


class CalibrationError(UserInputError):
    """Unusable calibration input (CSV, --root, --target-fmr) or a run with nothing scored."""


@dataclass(frozen=True, slots=True, eq=False)
class ImageFaces:
    """One image's face as both models see it."""

    first: NDArray[np.float32]
    """The first model's unit-length embedding."""
    second: NDArray[np.float32]
    """The second model's descriptor."""


@dataclass(frozen=True, slots=True)
class PairScore:
    """One pair as both models score it."""

    pair: Pair
    """The pair."""
    score: float
    """First model: cosine similarity (high: same)."""
    distance: float
    """Second model: descriptor distance (low: same)."""


@dataclass(frozen=True, slots=True)
class Pair:
    """One labelled pair."""

    a: str
    """First image, as written in the CSV."""
    b: str
    """Second image."""
    same: bool
    """True if both show the same person."""


def read_pairs(csv_path: Path) -> list[Pair]:
    """Parse the pairs CSV; ``CalibrationError`` names the file and the line that is wrong."""
    shown = printable(csv_path)
    text = _csv_text(read_user_file(csv_path, "pairs CSV", MAX_CSV_BYTES), shown)
    pairs: list[Pair] = []
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        _check_header(reader.fieldnames, shown)
        for row in reader:
            pairs.append(_pair(row, f"{shown}:{reader.line_num}"))
            if len(pairs) > MAX_PAIRS:
                raise CalibrationError(f"{shown}: more than {MAX_PAIRS} pairs")
    except csv.Error as exc:  # a field over csv's own limit, a stray quote in strict mode
        raise CalibrationError(f"{shown}:{reader.line_num}: malformed CSV: {exc}") from None
    if not pairs:
        raise CalibrationError(f"{shown}: no pairs")
    return pairs


def _check_header(fieldnames: Sequence[str] | None, shown: str) -> None:
    if fieldnames is None or not {"a", "b", "same"} <= set(fieldnames):
        raise CalibrationError(f"{shown}: needs a header with columns a,b,same")
    # DictReader keeps the last of two columns of one name: a,b,same,a would silently pair
    # other images than the ones the first column names.
    repeated = sorted(name for name, times in Counter(fieldnames).items() if times > 1)
    if repeated:
        listed = ", ".join(printable(name, max_chars=40) for name in repeated)
        raise CalibrationError(f"{shown}:1: header repeats column {listed}; each column once")


def _csv_text(data: bytes, shown: str) -> str:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise CalibrationError(f"{shown}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x} "
                               f"at offset {exc.start})") from None
    long_line = _first_long_line(text)
    if long_line is not None:
        raise CalibrationError(f"{shown}:{long_line}: line longer than {MAX_LINE_CHARS} characters")
    nul = text.find("\x00")
    if nul >= 0:
        raise CalibrationError(f"{shown}:{text.count(chr(10), 0, nul) + 1}: holds a NUL byte; "
                               "not a text CSV")
    return text


def _first_long_line(text: str) -> int | None:
    start = 0
    while start < len(text):
        end = text.find("\n", start)
        end = len(text) if end < 0 else end
        if end - start > MAX_LINE_CHARS:
            return text.count("\n", 0, start) + 1
        start = end + 1
    return None


def _pair(row: dict[str | None, str | None], where: str) -> Pair:
    fields = [value for value in row.values() if isinstance(value, str)]
    if any(len(value) > MAX_FIELD_CHARS for value in fields):
        raise CalibrationError(f"{where}: a field is longer than {MAX_FIELD_CHARS} characters")
    same = (row.get("same") or "").strip()
    if same not in ("0", "1"):
        raise CalibrationError(f"{where}: same must be 0 or 1, got {printable(same, max_chars=40)}")
    a, b = (row.get("a") or "").strip(), (row.get("b") or "").strip()
    if not a or not b:
        raise CalibrationError(f"{where}: both a and b must name an image")
    return Pair(a, b, same == "1")


def check_target_fmr(value: float) -> float:
    """A target false match rate is a finite number strictly between 0 and 1."""
    if not (math.isfinite(value) and 0 < value < 1):
        raise CalibrationError(f"--target-fmr must lie strictly between 0 and 1, got {value}")
    return value


def roc_auc(same_scores: NDArray[np.float64], diff_scores: NDArray[np.float64]) -> float:
    """Probability that a same pair outscores a different pair (ties count half)."""
    if len(same_scores) == 0 or len(diff_scores) == 0:
        return float("nan")
    greater = (same_scores[:, None] > diff_scores[None, :]).sum()
    ties = (same_scores[:, None] == diff_scores[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(same_scores) * len(diff_scores)))


def threshold_for_fmr(diff_scores: NDArray[np.float64], target_fmr: float) -> float:
    """The lowest threshold whose false match rate (share of different pairs >= it) <= target."""
    if len(diff_scores) == 0:
        return float("nan")
    ordered = np.sort(diff_scores)[::-1]
    allowed = int(np.floor(target_fmr * len(ordered)))
    if allowed >= len(ordered):
        return float(ordered[-1])
    # Just above the (allowed+1)-th highest different score.
    return float(np.nextafter(ordered[allowed], np.inf))


def calibrate(pairs: list[Pair], root: Path, *, target_fmr: float,
              threshold: float = DEFAULT_THRESHOLD,
              second_threshold: float = DEFAULT_SECOND_THRESHOLD,
              scores_out: Path | None = None) -> dict[str, object]:
    """Score every pair and compute the report ``lfr calibrate`` prints.

    ``CalibrationError`` for a bad ``target_fmr``, a missing ``root``, an output that is not a
    regular file (all checked before the models load) or when every pair was skipped.
    """
    check_target_fmr(target_fmr)
    if not root.is_dir():
        raise CalibrationError(f"--root {printable(root)}: not a folder")
    if scores_out is not None:
        check_output_target(scores_out, "--scores-out")
    embeddings, no_face, unreadable = _embed_all(pairs, root)
    scored = [PairScore(pair, float(np.dot(ea.first, eb.first)),
                        descriptor_distance(ea.second, eb.second)) for pair in pairs
              if (ea := embeddings[pair.a]) is not None and (eb := embeddings[pair.b]) is not None]
    for faces in embeddings.values():
        if faces is not None:  # what is measured is kept; the faces are not
            faces.first.fill(0.0)
            faces.second.fill(0.0)
    if not scored:
        raise CalibrationError(f"all {len(pairs)} pairs were skipped (no usable face or "
                               f"unreadable image: {len(no_face) + len(unreadable)} images, "
                               "named above); nothing to measure")
    if scores_out is not None:
        _write_scores(scores_out, scored)
    same = np.array([s.score for s in scored if s.pair.same], dtype=np.float64)
    diff = np.array([s.score for s in scored if not s.pair.same], dtype=np.float64)
    chosen = threshold_for_fmr(diff, target_fmr)
    first = {
        "pairs": len(scored),
        "pairs_skipped": len(pairs) - len(scored),
        "same_pairs": len(same),
        "different_pairs": len(diff),
        "auc": _number(roc_auc(same, diff)),
        "target_fmr": target_fmr,
        "threshold_for_target_fmr": _number(chosen),
        "tar_at_that_threshold": _share(same, chosen),
        "default_threshold": threshold,
        "accuracy_at_default": _number(_accuracy(same, diff, threshold)),
        "tar_at_default": _share(same, threshold),
        "fmr_at_default": _share(diff, threshold),
        "min_same_score": _number(float(same.min())) if len(same) else None,
        "max_different_score": _number(float(diff.max())) if len(diff) else None,
    }
    return {**first, **_second_report(scored, target_fmr, second_threshold),
            **_both_report(scored, target_fmr, threshold, second_threshold),
            "no_face": no_face, "unreadable": unreadable}


def _second_report(scored: list[PairScore], target_fmr: float,
                   limit: float) -> dict[str, object]:
    """The second model alone; its distances are negated so higher means same, like scores."""
    same = np.array([-s.distance for s in scored if s.pair.same], dtype=np.float64)
    diff = np.array([-s.distance for s in scored if not s.pair.same], dtype=np.float64)
    chosen = -threshold_for_fmr(diff, target_fmr)  # the largest distance still accepted
    return {
        "second_auc": _number(roc_auc(same, diff)),
        "second_threshold_for_target_fmr": _number(chosen),
        "second_tar_at_that_threshold": _share(same, -chosen),
        "second_default_threshold": limit,
        "second_tar_at_default": _share(same, -limit),
        "second_fmr_at_default": _share(diff, -limit),
        "second_max_same_distance": _number(float(-same.min())) if len(same) else None,
        "second_min_different_distance": _number(float(-diff.max())) if len(diff) else None,
    }


def _both_report(scored: list[PairScore], target_fmr: float, threshold: float,
                 limit: float) -> dict[str, object]:
    """The two-model rule: accepted when score >= threshold and distance <= limit."""
    def margins(first: float) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        values = [(s.pair.same, min(s.score - first, limit - s.distance)) for s in scored]
        return (np.array([m for same, m in values if same], dtype=np.float64),
                np.array([m for same, m in values if not same], dtype=np.float64))

    same, diff = margins(threshold)
    # The lowest first threshold whose rule keeps the FMR at or below the target: the
    # threshold_for_fmr of the first scores of the different pairs the second model accepts
    # (the others are refused at any first threshold).
    passed = np.array([s.score for s in scored if not s.pair.same and s.distance <= limit],
                      dtype=np.float64)
    allowed = int(np.floor(target_fmr * sum(1 for s in scored if not s.pair.same)))
    lowest = (float(np.nextafter(np.sort(passed)[::-1][allowed], np.inf))
              if len(passed) > allowed else 0.0)
    low_same, low_diff = margins(lowest)
    return {
        "both_auc": _number(roc_auc(same, diff)),
        "both_tar_at_defaults": _share(same, 0.0),
        "both_fmr_at_defaults": _share(diff, 0.0),
        "both_first_threshold_for_target_fmr": _number(lowest),
        "both_tar_at_that_threshold": _share(low_same, 0.0),
        "both_fmr_at_that_threshold": _share(low_diff, 0.0),
    }


def _embed_all(pairs: list[Pair], root: Path,
               ) -> tuple[dict[str, ImageFaces | None], list[str], list[str]]:
    faces = PhotoFaces()
    second = shared_second_model()
    embeddings: dict[str, ImageFaces | None] = {}
    no_face: list[str] = []
    unreadable: list[str] = []
    for name in sorted({p.a for p in pairs} | {p.b for p in pairs}):
        embeddings[name] = None
        try:
            first = faces.embed_single(root / name)
            try:
                embeddings[name] = ImageFaces(first, photo_descriptor(root / name, faces,
                                                                      second))
            except BaseException:
                first.fill(0.0)  # not kept when its photo is skipped
                raise
        except (NoUsableFace, SeveralFaces) as exc:
            print(f"lfr calibrate: {exc}", file=sys.stderr)
            no_face.append(name)
        except ImageLoadError as exc:
            print(f"lfr calibrate: {exc}", file=sys.stderr)
            unreadable.append(name)
    return embeddings, no_face, unreadable


def _write_scores(path: Path, scored: list[PairScore]) -> None:
    """Replace ``path`` atomically: a full disk leaves the old scores whole, never a cut file."""
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(["a", "b", "same", "score", "second_distance"])
    for s in scored:
        writer.writerow([s.pair.a, s.pair.b, int(s.pair.same), f"{s.score:.6f}",
                         f"{s.distance:.6f}"])
    try:
        # Paths and scores, no biometric data: readable like any file the user writes.
        write_file_atomically(path, text.getvalue().encode("utf-8"), "--scores-out", mode=0o644)
    except UserFileError as exc:  # a full disk, a folder removed or replaced meanwhile
        raise CalibrationError(str(exc)) from None


def _number(value: float) -> float | None:
    """``value`` rounded for the report, or None where it could not be computed (NaN)."""
    return round(value, 6) if math.isfinite(value) else None


def _share(scores: NDArray[np.float64], threshold: float) -> float | None:
    if len(scores) == 0 or not math.isfinite(threshold):
        return None
    return round(float((scores >= threshold).mean()), 6)


def _accuracy(same: NDArray[np.float64], diff: NDArray[np.float64], threshold: float) -> float:
    correct = int((same >= threshold).sum()) + int((diff < threshold).sum())
    total = len(same) + len(diff)
    return correct / total if total else float("nan")
