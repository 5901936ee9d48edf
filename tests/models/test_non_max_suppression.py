"""Weighted non-maximum suppression as MediaPipe does it."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.non_max_suppression import Candidates, iou_one_to_many, weighted_nms


def _cands(boxes: list[list[float]], scores: list[float]) -> Candidates:
    b = np.asarray(boxes, np.float32)
    # Keypoints: the box corners, so they are merged exactly like the boxes.
    kp = b.reshape(-1, 2, 2)
    return Candidates(b, np.asarray(scores, np.float32), kp)


def test_iou() -> None:
    box = np.array([0, 0, 10, 10], np.float32)
    others = np.array(
        [[0, 0, 10, 10], [5, 0, 15, 10], [10, 0, 20, 10], [20, 20, 30, 30], [3, 3, 3, 3]],
        np.float32,
    )
    np.testing.assert_allclose(iou_one_to_many(box, others), [1.0, 50 / 150, 0, 0, 0])


def test_overlapping_boxes_merge_into_the_score_weighted_mean() -> None:
    a, b = [0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 11.0, 12.0]
    far = [50.0, 50.0, 60.0, 60.0]
    out = weighted_nms(_cands([b, far, a], [0.6, 0.7, 0.9]), iou_threshold=0.3)

    assert len(out) == 2
    expected = (0.9 * np.array(a) + 0.6 * np.array(b)) / 1.5
    np.testing.assert_allclose(out.boxes[0], expected, rtol=1e-6)
    np.testing.assert_allclose(out.keypoints[0].reshape(4), expected, rtol=1e-6)
    assert out.scores[0] == pytest.approx(0.9)  # the top score, not a mean
    np.testing.assert_allclose(out.boxes[1], far)  # non-overlapping: kept as is
    assert out.scores[1] == pytest.approx(0.7)


def test_clusters_form_around_the_best_box_only() -> None:
    # A overlaps B, B overlaps C, A does not overlap C: clusters {A, B} then {C}.
    a, b, c = [0.0, 0.0, 10.0, 10.0], [4.0, 0.0, 14.0, 10.0], [8.0, 0.0, 18.0, 10.0]
    out = weighted_nms(_cands([a, b, c], [0.9, 0.8, 0.7]), iou_threshold=0.3)
    assert len(out) == 2
    np.testing.assert_allclose(out.boxes[0], (0.9 * np.array(a) + 0.8 * np.array(b)) / 1.7)
    np.testing.assert_allclose(out.boxes[1], c)


def test_iou_equal_to_the_threshold_does_not_merge() -> None:
    a, b = [0.0, 0.0, 10.0, 10.0], [5.0, 0.0, 15.0, 10.0]  # IoU = 1/3
    assert len(weighted_nms(_cands([a, b], [0.9, 0.8]), iou_threshold=1 / 3)) == 2
    assert len(weighted_nms(_cands([a, b], [0.9, 0.8]), iou_threshold=0.3)) == 1


def test_empty_and_max_detections() -> None:
    assert len(weighted_nms(Candidates.empty())) == 0
    boxes = [[i * 20.0, 0.0, i * 20.0 + 10.0, 10.0] for i in range(5)]
    out = weighted_nms(_cands(boxes, [0.5, 0.9, 0.7, 0.6, 0.8]), max_detections=2)
    np.testing.assert_allclose(out.scores, [0.9, 0.8])


_box = st.tuples(st.floats(0, 100), st.floats(0, 100), st.floats(1, 50), st.floats(1, 50)).map(
    lambda t: [t[0], t[1], t[0] + t[2], t[1] + t[3]]
)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(_box, st.floats(0.05, 1.0)), min_size=1, max_size=12))
def test_merged_boxes_stay_inside_the_inputs_hull_and_scores_sort(
    items: list[tuple[list[float], float]],
) -> None:
    cands = _cands([b for b, _ in items], [s for _, s in items])
    out = weighted_nms(cands, 0.3)
    assert 1 <= len(out) <= len(cands)
    assert (np.diff(out.scores) <= 0).all()
    lo = cands.boxes.min(axis=0)
    hi = cands.boxes.max(axis=0)
    assert (out.boxes >= lo - 1e-3).all()
    assert (out.boxes <= hi + 1e-3).all()
    # No merging at all when nothing can overlap by more than IoU 1.
    assert len(weighted_nms(cands, 1.0)) == len(cands)
