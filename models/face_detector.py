"""Face detection with BlazeFace: letterbox, invoke, decode, weighted NMS, tiles for large frames.

``FaceDetector.detect(frame)`` does everything, in these public steps (the benchmarks and tests
use the same ones)::

    inputs = detector.prepare(frame)                      # whole frame + tiles, CPU, numpy
    cands = [detector.detect_input(i) for i in inputs]    # the model (GIL released), decoded
    faces = detector.merge(cands)                         # weighted NMS across all inputs

A frame may instead get a partial pass (``detect_partial``, ``models.detection_plan``): some
parts of the full pass (the whole frame is part 0 when it is run, then each tile) and crops
around known faces (planned by ``models.track_crops``): the same steps with ``prepare_partial``
in place of ``prepare``.

``prepare``, ``decode`` and ``merge`` are pure functions of their arguments. ``detect_input``
runs the calling thread's own interpreter (``ModelInterpreter.infer``, which wipes its tensors
after every call), so one ``FaceDetector`` may be shared by a thread pool.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from guards.config_checks import require_at_least, require_between
from models.blazeface import FULL_RANGE, NUM_COORDS, BlazeFaceVariant, decode_raw_outputs
from models.detection import FaceDetection
from models.detection_plan import PartialPass
from models.interpreter import (
    InterpreterConfig,
    PerThreadModel,
    require_edgetpu_variant,
    verify_model,
)
from models.letterbox import FramePyramid, Letterbox, letterbox_region
from models.model_file import ModelFile
from models.non_max_suppression import Candidates, weighted_nms
from models.tiling import Tile, TilingConfig, plan_tiles, tiles_hold_every_face

__all__ = [
    "DetectorInput",
    "FaceDetector",
    "FaceDetectorConfig",
    "RawDetectorOutput",
]


@dataclass(frozen=True)
class FaceDetectorConfig:
    """Face detector settings; defaults follow MediaPipe's full-range face detection graph."""

    variant: BlazeFaceVariant = FULL_RANGE
    """Which BlazeFace model (``FULL_RANGE`` for surveillance distances, ``SHORT_RANGE`` for
    faces within ~2 m)."""

    min_score: float | None = None
    """Candidates scoring below this are dropped; None: the variant's MediaPipe value (0.6
    full-range, 0.5 short-range)."""

    nms_iou_threshold: float = 0.3
    """Candidates overlapping a better one by more than this IoU are merged into it
    (MediaPipe: 0.3)."""

    max_faces: int | None = None
    """Keep at most this many faces per frame, best first; None: all."""

    tiling: TilingConfig = field(default_factory=TilingConfig)
    """Extra passes on overlapping tiles of large frames, for small faces."""

    interpreter: InterpreterConfig = field(default_factory=InterpreterConfig)
    """Threads / Edge TPU settings for the model."""

    edgetpu_model: ModelFile | None = None
    """The Edge TPU compiled variant (``*_edgetpu.tflite``) used when
    ``interpreter.use_edgetpu`` is set."""

    def __post_init__(self) -> None:
        if self.min_score is not None:
            require_between("FaceDetectorConfig.min_score", self.min_score, 0.0, 1.0)
        require_between("FaceDetectorConfig.nms_iou_threshold", self.nms_iou_threshold, 0.0, 1.0)
        if self.max_faces is not None:
            require_at_least("FaceDetectorConfig.max_faces", self.max_faces, 1)
        require_edgetpu_variant("FaceDetectorConfig.edgetpu_model", self.edgetpu_model)


@dataclass(frozen=True, eq=False)
class DetectorInput:
    """One model input prepared from a frame: the whole frame or one tile."""

    image: NDArray[np.uint8]
    """(S, S, 3) uint8 RGB, the region letterboxed (black padding). Kept as bytes: it is
    scaled to the model's float range straight into the interpreter's input tensor."""

    letterbox: Letterbox
    """Maps normalised model coordinates back to frame pixels."""

    tile: Tile | None
    """The tile this input covers; None for the whole-frame pass."""

    min_face_px: float = 0.0
    """Detections narrower than this (frame pixels) are dropped: finer tiles cover such faces
    (see ``TilingConfig.coarse_min_face``). 0 keeps all."""

    def fill(self, tensor: NDArray[np.float32]) -> None:
        """Write the model input into ``tensor`` (1, S, S, 3): RGB scaled to [-1, 1],
        x / 127.5 - 1 (black padding is -1)."""
        np.multiply(self.image, np.float32(1.0 / 127.5), out=tensor[0])
        np.subtract(tensor[0], np.float32(1.0), out=tensor[0])


@dataclass(frozen=True, eq=False)
class RawDetectorOutput:
    """The model's raw outputs for one input (in ``detect_input``: views into the interpreter,
    valid only while ``decode`` runs)."""

    regressors: NDArray[np.float32]
    """(num_anchors, 16) box and keypoint regressions, in model-input pixels."""

    logits: NDArray[np.float32]
    """(num_anchors,) classifier logits (before the sigmoid)."""


def _check_frame(frame: NDArray[np.uint8]) -> None:
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(
            f"frame must be an H x W x 3 uint8 RGB array, got shape {frame.shape} {frame.dtype}"
        )
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise ValueError(f"frame is empty: shape {frame.shape}")


class FaceDetector(PerThreadModel):
    """BlazeFace face detector over whole frames (plus tiles of large frames)."""

    def __init__(
        self, config: FaceDetectorConfig | None = None, *, data_dir: Path | None = None
    ) -> None:
        """Load and verify the model (``ModelIntegrityError`` on a sha256 mismatch).

        ``data_dir`` overrides where the model file is read from.
        """
        self.config = config if config is not None else FaceDetectorConfig()
        self.variant = self.config.variant
        verified = verify_model(
            self.variant.model,
            self.config.interpreter,
            edgetpu_model=self.config.edgetpu_model,
            data_dir=data_dir,
        )
        super().__init__(verified)
        self._min_score = (
            self.config.min_score if self.config.min_score is not None else self.variant.min_score
        )

    def plan(self, frame_width: int, frame_height: int) -> list[Tile]:
        """The tiles a frame of this size gets (empty: whole-frame pass only)."""
        return plan_tiles(frame_width, frame_height, self.config.tiling)

    def full_pass_regions(self, frame_width: int,
                          frame_height: int) -> tuple[tuple[int, int, int, int], ...]:
        """The region (x0, y0, x1, y1) of each part (model input) of the full pass of a frame
        of this size, in order: the whole frame first when it is run, then each tile."""
        return tuple((0, 0, frame_width, frame_height) if tile is None else tile.region
                     for tile, _ in _full_pass_parts(frame_width, frame_height,
                                                      self.config.tiling))

    def prepare(self, frame: NDArray[np.uint8]) -> list[DetectorInput]:
        """Model inputs for ``frame`` (H x W x 3 uint8 RGB): the whole frame first, then tiles.

        The whole-frame pass is left out when the tiles already hold every face the frame can
        (``tiling.tiles_hold_every_face``).
        """
        _check_frame(frame)
        return self._part_inputs(FramePyramid(frame), None)

    def prepare_crops(self, frame: NDArray[np.uint8], crops: Sequence[Tile]) -> list[DetectorInput]:
        """Model inputs for the given crops of ``frame`` only (no whole-frame pass, no tiles).

        Each crop is letterboxed like a tile, keeps every face size (``min_face_px`` 0) and
        drops detections reaching its inner edges (``decode``). Crops must lie inside the frame.
        """
        _check_frame(frame)
        return self._crop_inputs(FramePyramid(frame), crops)

    def prepare_partial(self, frame: NDArray[np.uint8],
                        partial: PartialPass) -> list[DetectorInput]:
        """Model inputs of a partial pass: its parts of the full pass, then its crops, over one
        shared ``FramePyramid``."""
        _check_frame(frame)
        pyramid = FramePyramid(frame)  # its halvings are built once, shared by all regions
        return self._part_inputs(pyramid, partial.sweep) + self._crop_inputs(pyramid,
                                                                               partial.crops)

    def _part_inputs(self, pyramid: FramePyramid,
                     parts: Sequence[int] | None) -> list[DetectorInput]:
        h, w = pyramid.frame.shape[:2]
        full = _full_pass_parts(w, h, self.config.tiling)
        if parts is not None:
            bad = [i for i in parts if not 0 <= i < len(full)]
            if bad:
                raise ValueError(f"full pass parts {bad} are outside the {len(full)} parts of "
                                 f"a {w}x{h} frame")
        chosen = full if parts is None else [full[i] for i in parts]
        size = self.variant.input_size
        inputs: list[DetectorInput] = []
        for tile, min_face_px in chosen:
            region = (0, 0, w, h) if tile is None else tile.region
            fitted, mapping = letterbox_region(pyramid, region, size)
            inputs.append(DetectorInput(fitted, mapping, tile, min_face_px))
        return inputs

    def _crop_inputs(self, pyramid: FramePyramid, crops: Sequence[Tile]) -> list[DetectorInput]:
        size = self.variant.input_size
        inputs: list[DetectorInput] = []
        for crop in crops:
            fitted, mapping = letterbox_region(pyramid, crop.region, size)
            inputs.append(DetectorInput(fitted, mapping, crop, 0.0))
        return inputs

    def detect_input(self, detector_input: DetectorInput) -> Candidates:
        """Run the model on one input (the calling thread's own interpreter) and decode its
        candidates in frame pixels (``decode``); the raw outputs are read in place."""
        return self.interpreter().infer(
            detector_input.fill, lambda outputs: self.decode(_raw_view(outputs), detector_input))

    def decode(self, raw: RawDetectorOutput, detector_input: DetectorInput) -> Candidates:
        """Candidates (before NMS) of one input, in frame pixels.

        On a tile, candidates reaching an inner tile edge are dropped: the neighbouring tile or
        the whole-frame pass sees those faces whole. Candidates narrower than
        ``detector_input.min_face_px`` are dropped: finer tiles see those faces sharper.
        """
        cands = decode_raw_outputs(raw.regressors, raw.logits, self.variant, self._min_score)
        if len(cands) == 0:
            return cands
        mul, add = detector_input.letterbox.frame_affine()
        boxes = (cands.boxes.reshape(-1, 2, 2) * mul + add).reshape(-1, 4)
        keep: NDArray[np.bool_] | None = None
        if detector_input.min_face_px > 0.0:
            keep = boxes[:, 2] - boxes[:, 0] >= detector_input.min_face_px
        tile = detector_input.tile
        if tile is not None:
            margin = self.config.tiling.edge_margin * tile.level_size
            inside = ~tile.crosses_inner_edge(boxes, margin)
            keep = inside if keep is None else keep & inside
        framed = Candidates(boxes, cands.scores, cands.keypoints * mul + add)
        return framed if keep is None or keep.all() else framed.select(keep)

    def merge(self, candidates: Sequence[Candidates]) -> list[FaceDetection]:
        """Weighted NMS over the candidates of all inputs of one frame; best first."""
        merged = weighted_nms(
            Candidates.concatenate(list(candidates)),
            self.config.nms_iou_threshold,
            self.config.max_faces,
        )
        return [
            FaceDetection(
                x0=float(b[0]),
                y0=float(b[1]),
                x1=float(b[2]),
                y1=float(b[3]),
                score=float(s),
                keypoints=k,
            )
            for b, s, k in zip(merged.boxes, merged.scores, merged.keypoints, strict=True)
        ]

    def detect(self, frame: NDArray[np.uint8]) -> list[FaceDetection]:
        """All faces in ``frame`` (H x W x 3 uint8 RGB), best first, in frame pixels."""
        inputs = self.prepare(frame)
        return self.merge([self.detect_input(i) for i in inputs])

    def detect_crops(self, frame: NDArray[np.uint8], crops: Sequence[Tile]) -> list[FaceDetection]:
        """The faces found on ``crops`` of ``frame`` (one invoke each), best first, in frame
        pixels, merged by the same weighted NMS as a full pass."""
        return self.merge([self.detect_input(i) for i in self.prepare_crops(frame, crops)])

    def detect_partial(self, frame: NDArray[np.uint8],
                       partial: PartialPass) -> list[FaceDetection]:
        """The faces found by a partial pass (its parts of the full pass and its crops, one
        invoke each), best first, in frame pixels, merged by one weighted NMS."""
        return self.merge([self.detect_input(i) for i in self.prepare_partial(frame, partial)])


@functools.lru_cache(maxsize=64)
def _full_pass_parts(width: int, height: int,
                     tiling: TilingConfig) -> tuple[tuple[Tile | None, float], ...]:
    """The full pass of a ``width`` x ``height`` frame: (tile, or None for the whole frame;
    the smallest face width it keeps, 0 for all), whole frame first."""
    tiles = plan_tiles(width, height, tiling)
    coarse = tiling.coarse_min_face
    parts: list[tuple[Tile | None, float]] = []
    if not tiles_hold_every_face(tiles, width, height, tiling):
        parts.append((None, coarse * max(width, height) if tiles else 0.0))
    parts.extend((tile, coarse * tile.level_size if tile.finer_level_below else 0.0)
                 for tile in tiles)
    return tuple(parts)


def _raw_view(outputs: list[NDArray[np.float32]]) -> RawDetectorOutput:
    # Tell the outputs apart by shape (names differ between the two variants).
    regressors = next(o for o in outputs if o.shape[-1] == NUM_COORDS)
    logits = next(o for o in outputs if o.shape[-1] == 1)
    return RawDetectorOutput(regressors.reshape(-1, NUM_COORDS), logits.reshape(-1))
