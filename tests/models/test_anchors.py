"""SSD anchors as MediaPipe generates them for the two BlazeFace models."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from models.anchors import FULL_RANGE_ANCHORS, SHORT_RANGE_ANCHORS, generate_anchors


def test_full_range_has_2304_anchors_on_a_48x48_grid() -> None:
    anchors = generate_anchors(FULL_RANGE_ANCHORS)
    assert anchors.shape == (2304, 4)
    assert anchors.dtype == np.float32
    np.testing.assert_allclose(anchors[0], [0.5 / 48, 0.5 / 48, 1, 1], rtol=1e-6)
    np.testing.assert_allclose(anchors[1], [1.5 / 48, 0.5 / 48, 1, 1], rtol=1e-6)
    np.testing.assert_allclose(anchors[48], [0.5 / 48, 1.5 / 48, 1, 1], rtol=1e-6)
    np.testing.assert_allclose(anchors[2303], [47.5 / 48, 47.5 / 48, 1, 1], rtol=1e-6)


def test_short_range_has_896_anchors_512_at_stride_8_and_384_at_stride_16() -> None:
    anchors = generate_anchors(SHORT_RANGE_ANCHORS)
    assert anchors.shape == (896, 4)
    # Stride 8: 16 x 16 cells, 2 anchors per cell (aspect 1 + interpolated).
    np.testing.assert_allclose(anchors[0], [1 / 32, 1 / 32, 1, 1], rtol=1e-6)
    np.testing.assert_allclose(anchors[1], anchors[0])
    np.testing.assert_allclose(anchors[2], [3 / 32, 1 / 32, 1, 1], rtol=1e-6)
    np.testing.assert_allclose(anchors[32], [1 / 32, 3 / 32, 1, 1], rtol=1e-6)
    np.testing.assert_allclose(anchors[511], [31 / 32, 31 / 32, 1, 1], rtol=1e-6)
    # Stride 16 (three layers merged): 8 x 8 cells, 6 anchors per cell.
    for i in range(512, 518):
        np.testing.assert_allclose(anchors[i], [1 / 16, 1 / 16, 1, 1], rtol=1e-6)
    np.testing.assert_allclose(anchors[518], [3 / 16, 1 / 16, 1, 1], rtol=1e-6)
    np.testing.assert_allclose(anchors[895], [15 / 16, 15 / 16, 1, 1], rtol=1e-6)


def test_all_anchor_centres_lie_inside_the_input() -> None:
    for options in (FULL_RANGE_ANCHORS, SHORT_RANGE_ANCHORS):
        anchors = generate_anchors(options)
        assert (anchors[:, :2] > 0).all()
        assert (anchors[:, :2] < 1).all()


def test_sized_anchors_follow_the_ssd_scale_schedule() -> None:
    anchors = generate_anchors(replace(SHORT_RANGE_ANCHORS, fixed_anchor_size=False))
    s0 = 0.1484375
    s1 = s0 + (0.75 - s0) / 3
    assert anchors[0, 2] == pytest.approx(s0)
    assert anchors[1, 2] == pytest.approx(math.sqrt(s0 * s1))
    # Last stride-16 layer's interpolated anchor uses scale_next = 1.0.
    assert anchors[517, 2] == pytest.approx(math.sqrt(0.75 * 1.0))
