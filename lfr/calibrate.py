"""``lfr calibrate``: measure the embedder on labelled pairs and find thresholds.

Reads a CSV of ``a,b,same`` (paths relative to ``--root``; same = 1 or 0), embeds every image
once, scores every pair and reports the ROC AUC, the threshold that keeps the false match rate
at or below a target, and the rates at the shipped default threshold.
"""

from __future__ import annotations

import csv
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from actors.unit.watchlist import DEFAULT_THRESHOLD
from guards.user_input import UserInputError
from lfr.photo_faces import NoUsableFace, PhotoFaces, SeveralFaces
from models.image_io import ImageLoadError

MAX_PAIRS = 1_000_000


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
    """Parse the pairs CSV; ``ValueError`` names the line that is wrong."""
    pairs: list[Pair] = []
    with open(csv_path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not {"a", "b", "same"} <= set(reader.fieldnames):
            raise UserInputError(f"{csv_path}: needs a header with columns a,b,same")
        for line, row in enumerate(reader, start=2):
            same = (row.get("same") or "").strip()
            if same not in ("0", "1"):
                raise UserInputError(f"{csv_path}:{line}: same must be 0 or 1, got {same!r}")
            a, b = (row.get("a") or "").strip(), (row.get("b") or "").strip()
            if not a or not b:
                raise UserInputError(f"{csv_path}:{line}: both a and b must name an image")
            pairs.append(Pair(a, b, same == "1"))
            if len(pairs) > MAX_PAIRS:
                raise UserInputError(f"{csv_path}: more than {MAX_PAIRS} pairs")
    if not pairs:
        raise UserInputError(f"{csv_path}: no pairs")
    return pairs


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
              scores_out: Path | None = None) -> dict[str, object]:
    """Score every pair and compute the report ``lfr calibrate`` prints."""
    faces = PhotoFaces()
    embeddings: dict[str, NDArray[np.float32] | None] = {}
    no_face: list[str] = []
    for name in sorted({p.a for p in pairs} | {p.b for p in pairs}):
        try:
            embeddings[name] = faces.embed_single(root / name)
        except (NoUsableFace, SeveralFaces, ImageLoadError) as exc:
            print(f"lfr calibrate: {exc}", file=sys.stderr)
            embeddings[name] = None
            no_face.append(name)
    scored: list[tuple[Pair, float]] = []
    for pair in pairs:
        ea, eb = embeddings[pair.a], embeddings[pair.b]
        if ea is not None and eb is not None:
            scored.append((pair, float(np.dot(ea, eb))))
    if scores_out is not None:
        with open(scores_out, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["a", "b", "same", "score"])
            for pair, score in scored:
                writer.writerow([pair.a, pair.b, int(pair.same), f"{score:.6f}"])
    same = np.array([s for p, s in scored if p.same], dtype=np.float64)
    diff = np.array([s for p, s in scored if not p.same], dtype=np.float64)
    chosen = threshold_for_fmr(diff, target_fmr)
    return {
        "pairs": len(scored),
        "pairs_skipped": len(pairs) - len(scored),
        "same_pairs": len(same),
        "different_pairs": len(diff),
        "auc": round(roc_auc(same, diff), 6),
        "target_fmr": target_fmr,
        "threshold_for_target_fmr": round(chosen, 6),
        "tar_at_that_threshold": _share(same, chosen),
        "default_threshold": threshold,
        "accuracy_at_default": _accuracy(same, diff, threshold),
        "tar_at_default": _share(same, threshold),
        "fmr_at_default": _share(diff, threshold),
        "min_same_score": round(float(same.min()), 6) if len(same) else None,
        "max_different_score": round(float(diff.max()), 6) if len(diff) else None,
        "no_face": no_face,
    }


def _share(scores: NDArray[np.float64], threshold: float) -> float | None:
    if len(scores) == 0 or np.isnan(threshold):
        return None
    return round(float((scores >= threshold).mean()), 6)


def _accuracy(same: NDArray[np.float64], diff: NDArray[np.float64], threshold: float) -> float:
    correct = int((same >= threshold).sum()) + int((diff < threshold).sum())
    total = len(same) + len(diff)
    return round(correct / total, 6) if total else float("nan")
