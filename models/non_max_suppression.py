"""Weighted non-maximum suppression, as MediaPipe's ``NonMaxSuppressionCalculator`` (WEIGHTED).

A detector fires on several neighbouring anchors for one face. Plain NMS keeps the best one and
drops the rest; weighted NMS instead *averages* each cluster, which is steadier from frame to
frame:

1. take the highest-scoring remaining candidate;
2. its cluster is every remaining candidate (itself included) whose IoU with it exceeds the
   threshold;
3. the output box and keypoints are the score-weighted mean of the cluster's; the output score
   is the top candidate's score (not a mean);
4. remove the cluster and repeat.

Boxes are (x0, y0, x1, y1); any unit, as long as all boxes share it (IoU is unaffected by a
common scale and offset, so pixels and normalised coordinates give the same clusters).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = ["Candidates", "iou_one_to_many", "weighted_nms"]


@dataclass(frozen=True, eq=False)
class Candidates:
    """Parallel arrays of N candidate detections (N may be 0)."""

    boxes: NDArray[np.float32]
    """(N, 4) float32 boxes (x0, y0, x1, y1)."""

    scores: NDArray[np.float32]
    """(N,) float32 scores in [0, 1]."""

    keypoints: NDArray[np.float32]
    """(N, K, 2) float32 keypoints (x, y), in the boxes' unit."""

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @staticmethod
    def empty(num_keypoints: int = 6) -> Candidates:
        """No candidates."""
        return Candidates(
            np.zeros((0, 4), np.float32),
            np.zeros((0,), np.float32),
            np.zeros((0, num_keypoints, 2), np.float32),
        )

    @staticmethod
    def concatenate(parts: list[Candidates]) -> Candidates:
        """All candidates of ``parts`` in one set (an empty list gives an empty set)."""
        if not parts:
            return Candidates.empty()
        return Candidates(
            np.concatenate([p.boxes for p in parts]),
            np.concatenate([p.scores for p in parts]),
            np.concatenate([p.keypoints for p in parts]),
        )

    def select(self, mask: NDArray[np.bool_]) -> Candidates:
        """The candidates where ``mask`` is true."""
        return Candidates(self.boxes[mask], self.scores[mask], self.keypoints[mask])


def iou_one_to_many(box: NDArray[np.float32], boxes: NDArray[np.float32]) -> NDArray[np.float32]:
    """Intersection over union of ``box`` (4,) with each of ``boxes`` (N, 4); 0 where disjoint
    or degenerate."""
    ix0 = np.maximum(box[0], boxes[:, 0])
    iy0 = np.maximum(box[1], boxes[:, 1])
    ix1 = np.minimum(box[2], boxes[:, 2])
    iy1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(ix1 - ix0, 0.0, None) * np.clip(iy1 - iy0, 0.0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area + areas - inter
    safe = np.where(union > 0.0, union, 1.0)
    return np.where(union > 0.0, inter / safe, 0.0).astype(np.float32)


def weighted_nms(
    candidates: Candidates, iou_threshold: float = 0.3, max_detections: int | None = None
) -> Candidates:
    """Merge overlapping candidates (IoU > ``iou_threshold``) into score-weighted means.

    Output is sorted by score, highest first, at most ``max_detections`` long (None: no limit).
    """
    n = len(candidates)
    if n == 0:
        return candidates
    order = np.argsort(-candidates.scores, kind="stable")
    boxes = candidates.boxes[order].astype(np.float64)
    scores = candidates.scores[order].astype(np.float64)
    keypoints = candidates.keypoints[order].astype(np.float64)
    remaining = np.arange(n)
    out_boxes: list[NDArray[np.float64]] = []
    out_scores: list[float] = []
    out_keypoints: list[NDArray[np.float64]] = []
    limit = n if max_detections is None else max_detections
    while remaining.size > 0 and len(out_scores) < limit:
        top = remaining[0]  # remaining stays sorted by score
        iou = iou_one_to_many(boxes[top].astype(np.float32), boxes[remaining].astype(np.float32))
        in_cluster = iou > iou_threshold
        in_cluster[0] = True  # the top box is in its own cluster even if degenerate
        cluster = remaining[in_cluster]
        weights = scores[cluster]
        total = weights.sum()
        out_boxes.append((boxes[cluster] * weights[:, None]).sum(axis=0) / total)
        out_keypoints.append((keypoints[cluster] * weights[:, None, None]).sum(axis=0) / total)
        out_scores.append(float(scores[top]))
        remaining = remaining[~in_cluster]
    return Candidates(
        np.asarray(out_boxes, dtype=np.float32).reshape(-1, 4),
        np.asarray(out_scores, dtype=np.float32),
        np.asarray(out_keypoints, dtype=np.float32).reshape(-1, *candidates.keypoints.shape[1:]),
    )
