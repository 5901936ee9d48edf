"""Decoding raw BlazeFace outputs into boxes, keypoints and scores."""

from __future__ import annotations

import numpy as np
import pytest

from models.blazeface import FULL_RANGE, NUM_COORDS, SHORT_RANGE, decode_raw_outputs


def _empty_outputs(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((n, NUM_COORDS), np.float32), np.full((n,), -10.0, np.float32)


def test_one_anchor_decodes_to_the_expected_box_and_keypoints() -> None:
    reg, logits = _empty_outputs(FULL_RANGE.num_anchors)
    k = 48 * 20 + 30  # row 20, column 30: anchor centre (30.5/48, 20.5/48)
    ax, ay = 30.5 / 48, 20.5 / 48
    # In model pixels (scale 192): centre offset (+9.6, -19.2), size 38.4 x 57.6.
    reg[k, :4] = [9.6, -19.2, 38.4, 57.6]
    reg[k, 4:] = np.arange(12, dtype=np.float32) * 1.92  # keypoint i: (2i, 2i+1) * 1.92 px
    logits[k] = 2.0

    c = decode_raw_outputs(reg, logits, FULL_RANGE)

    assert len(c) == 1
    assert c.scores[0] == pytest.approx(1 / (1 + np.exp(-2.0)), rel=1e-6)
    xc, yc = ax + 0.05, ay - 0.1
    np.testing.assert_allclose(
        c.boxes[0], [xc - 0.1, yc - 0.15, xc + 0.1, yc + 0.15], rtol=0, atol=1e-6
    )
    expected_kp = np.stack(
        [ax + np.arange(0, 12, 2) * 0.01, ay + np.arange(1, 12, 2) * 0.01], axis=-1
    )
    np.testing.assert_allclose(c.keypoints[0], expected_kp, atol=1e-6)


def test_scores_below_the_threshold_are_dropped() -> None:
    reg, logits = _empty_outputs(SHORT_RANGE.num_anchors)
    logits[[3, 4, 5]] = [0.5, 0.0, -0.5]  # sigmoid 0.62, 0.5, 0.38
    assert len(decode_raw_outputs(reg, logits, SHORT_RANGE)) == 2  # short-range cut: 0.5
    assert len(decode_raw_outputs(reg, logits, SHORT_RANGE, min_score=0.6)) == 1


def test_huge_logits_are_clipped_not_overflowing() -> None:
    reg, logits = _empty_outputs(SHORT_RANGE.num_anchors)
    logits[0] = 1e30
    logits[1] = -1e30
    with np.errstate(over="raise", invalid="raise"):
        c = decode_raw_outputs(reg, logits, SHORT_RANGE, min_score=0.0)
    assert np.isfinite(c.scores).all()
    assert c.scores.max() == pytest.approx(1.0)
    assert c.scores.min() == pytest.approx(0.0, abs=1e-30)


def test_accepts_the_models_batched_output_shapes() -> None:
    reg, logits = _empty_outputs(FULL_RANGE.num_anchors)
    logits[7] = 3.0
    c = decode_raw_outputs(reg[None], logits[None, :, None], FULL_RANGE)
    assert len(c) == 1


def test_nan_logits_are_never_candidates() -> None:
    reg, logits = _empty_outputs(FULL_RANGE.num_anchors)
    logits[[1, 2]] = [np.nan, 4.0]
    assert len(decode_raw_outputs(reg, logits, FULL_RANGE)) == 1
    # A threshold whose logit is below the clipping range keeps every anchor but the NaN one.
    every = decode_raw_outputs(reg, logits, FULL_RANGE, min_score=1e-50)
    assert len(every) == FULL_RANGE.num_anchors - 1
    assert np.isfinite(every.scores).all()


def test_a_certain_threshold_keeps_nothing() -> None:
    reg, logits = _empty_outputs(SHORT_RANGE.num_anchors)
    logits[0] = 1e30  # clipped to 100: a score of 1.0 in float32, yet logit(1.0) is infinite
    assert len(decode_raw_outputs(reg, logits, SHORT_RANGE, min_score=1.0)) == 0


@pytest.mark.parametrize("min_score", [3.72008e-44, 1e-45, 1e-30, 0.25, 0.6, 1 - 1e-7,
                                       float("nan")])
def test_kept_anchors_are_exactly_those_the_plain_rule_keeps(min_score: float) -> None:
    # The plain rule: sigmoid of the clipped logit, in float64, compared with the threshold
    # (1.0 is the one exception: see test_a_certain_threshold_keeps_nothing).
    rng = np.random.default_rng(5)
    reg, _ = _empty_outputs(FULL_RANGE.num_anchors)
    logits = rng.choice(np.array([-1e30, -100.0, -99.999999, -50.0, -1.0, 0.0, 0.4, 2.0, 17.0,
                                  99.999999, 100.0, 1e30, np.nan], np.float32),
                        FULL_RANGE.num_anchors)
    clipped = np.clip(logits.astype(np.float64), -100.0, 100.0)
    plain = (1.0 / (1.0 + np.exp(-clipped))).astype(np.float32)
    with np.errstate(invalid="ignore"):
        expected = int(np.count_nonzero(plain >= np.float32(min_score)))
    assert len(decode_raw_outputs(reg, logits, FULL_RANGE, min_score=min_score)) == expected
