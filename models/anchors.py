"""SSD anchors as MediaPipe's ``SsdAnchorsCalculator`` generates them for BlazeFace.

An anchor is a reference box, in coordinates normalised to the model input (0..1 across the
input tensor), that the model's regressor outputs are offsets from. Both BlazeFace models use
``fixed_anchor_size``: every anchor is 1x1, so the decoded box size comes only from the regressor
and the anchor just supplies the centre (a cell centre of the feature map).

Layers with the same stride share one feature map; each contributes one anchor per aspect ratio
plus, when ``interpolated_scale_aspect_ratio > 0``, one "interpolated scale" anchor. Anchors are
ordered feature map by feature map, then row (y), column (x), anchor within the cell: the order
of the model's 2304 / 896 outputs.

- full-range, 192x192 input: 1 layer, stride 4, no interpolated anchor:
  48 x 48 cells x 1 anchor = 2304.
- short-range, 128x128 input: 4 layers, strides 8, 16, 16, 16, interpolated ratio 1.0:
  16 x 16 x 2 (stride 8) + 8 x 8 x 6 (three stride-16 layers, 2 each) = 512 + 384 = 896.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "FULL_RANGE_ANCHORS",
    "SHORT_RANGE_ANCHORS",
    "AnchorOptions",
    "generate_anchors",
]


@dataclass(frozen=True)
class AnchorOptions:
    """The subset of MediaPipe's ``SsdAnchorsCalculatorOptions`` BlazeFace uses."""

    input_size: int
    """Side of the square model input in pixels (192 full-range, 128 short-range)."""

    strides: tuple[int, ...]
    """Stride in input pixels of each output layer; consecutive equal strides share a map."""

    min_scale: float = 0.1484375
    """Scale of the first layer's anchors (fraction of the input side)."""

    max_scale: float = 0.75
    """Scale of the last layer's anchors (fraction of the input side)."""

    aspect_ratios: tuple[float, ...] = (1.0,)
    """Width/height ratios of the anchors in each layer."""

    interpolated_scale_aspect_ratio: float = 1.0
    """Ratio of the extra anchor between this layer's and the next layer's scale; 0: none."""

    anchor_offset: float = 0.5
    """Anchor centre within its cell, in cells (0.5: the cell centre)."""

    fixed_anchor_size: bool = True
    """All anchors 1x1 (normalised): the regressor then predicts absolute box sizes."""


FULL_RANGE_ANCHORS = AnchorOptions(
    input_size=192, strides=(4,), interpolated_scale_aspect_ratio=0.0
)
"""MediaPipe ``face_detection_full_range.pbtxt``: 2304 anchors."""

SHORT_RANGE_ANCHORS = AnchorOptions(input_size=128, strides=(8, 16, 16, 16))
"""MediaPipe ``face_detection_short_range.pbtxt``: 896 anchors."""


def _layer_scale(options: AnchorOptions, layer: int) -> float:
    n = len(options.strides)
    if n == 1:
        return (options.min_scale + options.max_scale) / 2.0
    return options.min_scale + (options.max_scale - options.min_scale) * layer / (n - 1.0)


def generate_anchors(options: AnchorOptions) -> NDArray[np.float32]:
    """Anchors as an (N, 4) float32 array of [x_center, y_center, width, height], normalised."""
    strides = options.strides
    blocks: list[NDArray[np.float32]] = []
    layer = 0
    while layer < len(strides):
        # Sizes (w, h) of the anchors in one cell, for every layer sharing this stride.
        sizes: list[tuple[float, float]] = []
        last = layer
        while last < len(strides) and strides[last] == strides[layer]:
            scale = _layer_scale(options, last)
            ratios_scales = [(ratio, scale) for ratio in options.aspect_ratios]
            if options.interpolated_scale_aspect_ratio > 0.0:
                next_scale = 1.0 if last == len(strides) - 1 else _layer_scale(options, last + 1)
                ratios_scales.append(
                    (options.interpolated_scale_aspect_ratio, math.sqrt(scale * next_scale))
                )
            for ratio, s in ratios_scales:
                sizes.append((s * math.sqrt(ratio), s / math.sqrt(ratio)))
            last += 1
        side = math.ceil(options.input_size / strides[layer])
        centres = (np.arange(side, dtype=np.float64) + options.anchor_offset) / side
        # Order: row (y) major, then column (x), then anchor within the cell.
        cy, cx = np.meshgrid(centres, centres, indexing="ij")
        k = len(sizes)
        block = np.empty((side, side, k, 4), dtype=np.float64)
        block[..., 0] = cx[..., None]
        block[..., 1] = cy[..., None]
        if options.fixed_anchor_size:
            block[..., 2:] = 1.0
        else:
            block[..., 2] = np.array([w for w, _ in sizes])
            block[..., 3] = np.array([h for _, h in sizes])
        blocks.append(block.reshape(-1, 4).astype(np.float32))
        layer = last
    return np.concatenate(blocks, axis=0)
