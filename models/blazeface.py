"""BlazeFace model variants and decoding of their raw outputs, as MediaPipe configures them.

Per anchor the model outputs 16 regressor values and 1 classifier logit. Regressor layout
(MediaPipe ``reverse_output_order: true``): ``[dx, dy, w, h, kx0, ky0, ..., kx5, ky5]``, all in
model-input pixels. Decoding (``TensorsToDetectionsCalculator``), with the anchor centre
(ax, ay) and size (aw, ah) normalised and ``scale`` = the input side (192 or 128)::

    x_center = dx / scale * aw + ax        w = w / scale * aw
    y_center = dy / scale * ah + ay        h = h / scale * ah
    keypoint_i = (kx_i / scale * aw + ax, ky_i / scale * ah + ay)

Score: ``sigmoid(clip(logit, -100, 100))`` (clipping keeps ``exp`` finite); candidates below
the variant's ``min_score`` are dropped before non-maximum suppression.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from models.anchors import FULL_RANGE_ANCHORS, SHORT_RANGE_ANCHORS, AnchorOptions, generate_anchors
from models.detection import NUM_KEYPOINTS
from models.model_file import BLAZEFACE_FULL_RANGE, BLAZEFACE_SHORT_RANGE, ModelFile
from models.non_max_suppression import Candidates

__all__ = [
    "FULL_RANGE",
    "NUM_COORDS",
    "SHORT_RANGE",
    "BlazeFaceVariant",
    "decode_raw_outputs",
]

NUM_COORDS = 4 + 2 * NUM_KEYPOINTS
"""Regressor values per anchor: box (4) + 6 keypoints x (x, y)."""


@dataclass(frozen=True)
class BlazeFaceVariant:
    """One BlazeFace model with the decoding options MediaPipe's graph uses for it."""

    model: ModelFile
    """The pinned ``.tflite`` file."""

    anchor_options: AnchorOptions
    """How its anchors are generated."""

    num_anchors: int
    """Number of anchors (= rows of the model's outputs)."""

    min_score: float
    """MediaPipe's ``min_score_thresh`` for this model."""

    score_clipping: float = 100.0
    """Logits are clipped to +-this before the sigmoid."""

    anchors: NDArray[np.float32] = field(init=False, repr=False, compare=False)
    """(num_anchors, 4) [x_center, y_center, w, h], generated from ``anchor_options``."""

    coord_scale: NDArray[np.float32] = field(init=False, repr=False, compare=False)
    """(num_anchors, 16): each regressor value times this, plus ``coord_offset``, is the
    decoded value: ``[aw, ah, aw, ah, aw, ah, ...] / input_size`` per anchor."""

    coord_offset: NDArray[np.float32] = field(init=False, repr=False, compare=False)
    """(num_anchors, 16): ``[ax, ay, 0, 0, ax, ay, ax, ay, ...]`` per anchor (sizes get no
    offset, centres and keypoints the anchor centre)."""

    def __post_init__(self) -> None:
        anchors = generate_anchors(self.anchor_options)
        if anchors.shape[0] != self.num_anchors:
            raise ValueError(
                f"{self.model.model_id}: {anchors.shape[0]} anchors generated, "
                f"model has {self.num_anchors}"
            )
        pairs = NUM_COORDS // 2  # (x, y) pairs: centre, size, then the keypoints
        scale = np.tile(anchors[:, 2:4] / np.float32(self.input_size), (1, pairs))
        offset = np.tile(anchors[:, 0:2], (1, pairs))
        offset[:, 2:4] = 0.0
        for name, values in (("anchors", anchors), ("coord_scale", scale),
                             ("coord_offset", offset)):
            frozen = np.ascontiguousarray(values, dtype=np.float32)
            frozen.setflags(write=False)
            object.__setattr__(self, name, frozen)

    @property
    def input_size(self) -> int:
        """Side of the square model input in pixels."""
        return self.anchor_options.input_size


FULL_RANGE = BlazeFaceVariant(
    model=BLAZEFACE_FULL_RANGE,
    anchor_options=FULL_RANGE_ANCHORS,
    num_anchors=2304,
    min_score=0.6,
)
"""Full-range model (faces up to ~5 m), 192x192: MediaPipe ``face_detection_full_range``."""

SHORT_RANGE = BlazeFaceVariant(
    model=BLAZEFACE_SHORT_RANGE,
    anchor_options=SHORT_RANGE_ANCHORS,
    num_anchors=896,
    min_score=0.5,
)
"""Short-range model (faces within ~2 m), 128x128: MediaPipe ``face_detection_short_range``."""


def _sigmoid(x: NDArray[np.float32]) -> NDArray[np.float32]:
    # In float64: exp(100) overflows float32 (max ~3.4e38) but not float64.
    return (1.0 / (1.0 + np.exp(-x.astype(np.float64)))).astype(np.float32)


def _logit(p: float) -> float:
    if p <= 0.0:
        return -math.inf
    if p >= 1.0:
        return math.inf
    return math.log(p / (1.0 - p))


def _candidate_anchors(raw_scores: NDArray[np.float32], threshold: float,
                       clip: float) -> NDArray[np.intp]:
    """Indices of the anchors whose clipped logit reaches the threshold's logit.

    The sigmoid is monotonic, so this keeps exactly the anchors scoring >= threshold, and runs
    it on those few only. For a threshold logit inside (-clip, clip], clipping cannot change
    the comparison, so it is skipped; NaN logits (and a NaN threshold) keep nothing. All in
    float32, as the comparison with the float32 logits is.
    """
    limit, bound = np.float32(_logit(threshold)), np.float32(clip)
    if not limit <= bound:  # above the clipped range, or NaN
        return np.zeros(0, dtype=np.intp)
    return np.flatnonzero(raw_scores >= (limit if limit > -bound else np.float32(-np.inf)))


def decode_raw_outputs(
    regressors: NDArray[np.float32],
    logits: NDArray[np.float32],
    variant: BlazeFaceVariant,
    min_score: float | None = None,
) -> Candidates:
    """Decode one image's raw outputs into candidates in normalised input coordinates.

    ``regressors``: (num_anchors, 16) or (1, num_anchors, 16); ``logits``: (num_anchors,),
    (num_anchors, 1) or (1, num_anchors, 1). ``min_score`` defaults to the variant's. Boxes are
    (x0, y0, x1, y1) in 0..1 across the model input (they may extend past it).
    """
    n = variant.num_anchors
    reg = np.asarray(regressors, dtype=np.float32).reshape(n, NUM_COORDS)
    raw_scores = np.asarray(logits, dtype=np.float32).reshape(n)
    clip = variant.score_clipping
    threshold = variant.min_score if min_score is None else min_score
    kept = _candidate_anchors(raw_scores, threshold, clip)
    if kept.size == 0:
        return Candidates.empty(NUM_KEYPOINTS)
    scores = _sigmoid(np.clip(raw_scores[kept], -clip, clip))
    survivors = scores >= threshold  # guards the float rounding of the logit comparison
    if not survivors.all():
        kept, scores = kept[survivors], scores[survivors]
        if kept.size == 0:
            return Candidates.empty(NUM_KEYPOINTS)
    # One multiply-add decodes everything: centre, size and keypoints (see ``coord_scale``).
    decoded = reg[kept] * variant.coord_scale[kept] + variant.coord_offset[kept]
    centre, half = decoded[:, 0:2], decoded[:, 2:4] * np.float32(0.5)
    boxes = np.concatenate([centre - half, centre + half], axis=1)
    keypoints = decoded[:, 4:].reshape(-1, NUM_KEYPOINTS, 2)
    return Candidates(boxes, scores, keypoints)
