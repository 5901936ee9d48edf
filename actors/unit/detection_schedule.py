"""``DetectionSchedule``: per camera, whether a frame gets the full detector pass or only crops
around the faces the detector found in recent frames.

The full pass (whole frame plus the tile pyramid: 16 invokes on 1080p) finds new faces; between
full passes the detector looks only on a square crop around each known face (about one invoke a
face, ``models.track_crops``). With ``full_every`` = 5 at 25 fps a face entering the picture is
found within 4 frame intervals (160 ms), inside issue 12's 200 ms.

The schedule follows the detector's own detections, never the matcher's tracks: it remembers the
boxes of the latest frame whose results were taken, with a velocity per box from the nearest box
of the frame before (px per frame), and places each crop where that motion predicts the face.
Frames are planned when they are submitted and observed when their results are taken, in frame
order; with frames analysed concurrently the known boxes are a few frames old, which is what the
prediction is for.

Owned by the detector actor: touched only in its ``receive``. What reaches the worker thread is
the plan, a tuple of frozen ``Tile`` values (plain data).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from guards.config_checks import require_at_least, require_positive
from models.tiling import Tile
from models.track_crops import Box, CropConfig, plan_crops

FullPass = None
"""The plan of a frame that gets the full pass (whole frame and tiles)."""

DetectionPlan = tuple[Tile, ...] | None
"""Crops to run the detector on, or ``None`` for the full pass."""


@dataclass(frozen=True, slots=True)
class ScheduleConfig:
    """When a frame gets the full detector pass and when crops around known faces."""

    around_faces: bool = True
    """Between full passes, run the detector only on crops around known faces; False: every
    frame gets the full pass (the behaviour before issue 12)."""
    full_every: int = 5
    """A full pass at least every this many frames (by frame index): a new face is found within
    ``full_every - 1`` frame intervals of entering (160 ms at 25 fps with 5; issue 12 allows
    200 ms). Frames with no known face always get the full pass, and so does a camera's first."""
    max_crops: int = 8
    """More crops than this (a crowd) and the frame gets the full pass instead: 8 crop invokes
    are half of the 16 of a full pass on 1080p."""
    max_lead_frames: int = 4
    """Motion is extrapolated at most this many frames past the frame the boxes are from."""
    max_step: float = 1.5
    """A box continues the nearest box of the previous observed frame when their centres are at
    most this many box widths apart per frame in between (measured: small faces move 0.74 of
    their width per frame, docs/STREET.md); otherwise it has no velocity."""
    crops: CropConfig = field(default_factory=CropConfig)
    """Size and merging of the crops."""

    def __post_init__(self) -> None:
        require_at_least("ScheduleConfig.full_every", self.full_every, 1)
        require_at_least("ScheduleConfig.max_crops", self.max_crops, 1)
        require_at_least("ScheduleConfig.max_lead_frames", self.max_lead_frames, 0)
        require_positive("ScheduleConfig.max_step", self.max_step)


@dataclass(frozen=True, slots=True)
class KnownFace:
    """A face box the detector found, with its motion."""

    box: Box
    """Frame pixels, in the frame it was found in."""
    velocity: tuple[float, float] = (0.0, 0.0)
    """Centre motion in px per frame (x, y); zero for a face not seen in the frame before."""

    def predicted(self, frames_ahead: int) -> Box:
        """The box moved by ``frames_ahead`` frames of its velocity."""
        dx, dy = self.velocity[0] * frames_ahead, self.velocity[1] * frames_ahead
        x0, y0, x1, y1 = self.box
        return (x0 + dx, y0 + dy, x1 + dx, y1 + dy)


class DetectionSchedule:
    """The plan of each frame of one camera."""

    def __init__(self, config: ScheduleConfig | None = None) -> None:
        self.config = config or ScheduleConfig()
        self.faces: tuple[KnownFace, ...] = ()
        """Faces of the latest observed frame (invariant: from frame ``observed_index``)."""
        self.observed_index: int | None = None
        """Index of the latest frame whose boxes were observed."""
        self.last_full_index: int | None = None
        """Index of the latest frame planned for the full pass."""

    def plan(self, index: int, width: int, height: int) -> DetectionPlan:
        """The plan of frame ``index`` (``width`` x ``height`` px); call in frame order."""
        crops = self._crops(index, width, height)
        if crops is None:
            self.last_full_index = index
        return crops

    def _crops(self, index: int, width: int, height: int) -> DetectionPlan:
        config = self.config
        if (not config.around_faces or not self.faces or self.observed_index is None
                or self.last_full_index is None
                or index - self.last_full_index >= config.full_every):
            return FullPass
        lead = min(max(0, index - self.observed_index), config.max_lead_frames)
        crops = plan_crops([f.predicted(lead) for f in self.faces], width, height, config.crops)
        return tuple(crops) if len(crops) <= config.max_crops else FullPass

    def observe(self, index: int, boxes: Sequence[Box]) -> None:
        """Every face box the detector found in frame ``index`` (results taken in order)."""
        gap = index - self.observed_index if self.observed_index is not None else 0
        self.faces = tuple(KnownFace(box, self._velocity(box, gap)) for box in boxes)
        self.observed_index = index

    def _velocity(self, box: Box, gap: int) -> tuple[float, float]:
        if gap <= 0 or not self.faces:
            return (0.0, 0.0)
        cx, cy = _centre(box)
        limit = self.config.max_step * (box[2] - box[0]) * gap
        best: tuple[float, float] | None = None
        best_distance = math.inf
        for face in self.faces:
            px, py = _centre(face.box)
            distance = math.hypot(cx - px, cy - py)
            if distance <= limit and distance < best_distance:
                best, best_distance = ((cx - px) / gap, (cy - py) / gap), distance
        return best if best is not None else (0.0, 0.0)


def _centre(box: Box) -> tuple[float, float]:
    return (box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0
