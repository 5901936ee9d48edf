"""``DetectionSchedule``: per camera, what the detector runs on each frame: a share of the full
pass plus crops around the faces it found in recent frames, or the whole full pass.

The full pass (whole frame plus the tile pyramid: 16 parts, one invoke each, on 1080p) finds new
faces; a square crop around each known face (about one invoke a face, ``models.track_crops``)
follows the faces already found. **Spread** (the default): the full pass's parts are shared out
evenly over ``full_every`` consecutive frames (on 1080p with 5: 3, 3, 3, 3 and 4 parts; a full
pass of fewer parts than ``full_every`` over as many frames as it has parts, one a frame), and
every frame also gets the crops around known faces. Every part of the picture is looked at once
every ``full_every`` frames or sooner, so a face entering is found within ``full_every - 1``
frame intervals (160 ms at 25 fps), inside issue 12's 200 ms, as with a full pass every 5th
frame, but no frame carries 16 invokes: that frame was the latency tail of a live camera
(docs/STREET.md).
**Unchanged parts are skipped** (``skip_unchanged``): on its turn, a part whose region of the
picture has not changed since it last ran (``models.scene_change``: a grey thumbnail of the
frame at 1/8 scale) is skipped, since no face can have entered it; it still runs at least once
every ``refresh_every`` turns (1 s at 25 fps), so a face the detector missed while it stood
still is looked for again. Not spread: a full pass every ``full_every``-th frame and on frames
with no known face, crops only on the frames between (the behaviour before). Either way a crowd
(more than ``max_crops`` crops) gets the full pass.

The schedule follows the detector's own detections, never the matcher's tracks: it remembers the
boxes of the latest frame whose results were taken, with a velocity per box from the nearest box
of the frame before (px per frame), and places each crop where that motion predicts the face.
Frames are planned when they are submitted and observed when their results are taken, in frame
order; with frames analysed concurrently the known boxes are a few frames old, which is what the
prediction is for.

The share is taken by frames planned, not by frame index: a live camera's frames dropped before
the detector never skip a part. Owned by the detector actor: touched only in its ``receive``.
What reaches the worker thread is the plan, a frozen ``PartialPass`` (plain data).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from guards.config_checks import require_at_least, require_positive
from models.detection_plan import PartialPass
from models.scene_change import ChangeConfig, region_changed
from models.tiling import Tile
from models.track_crops import Box, CropConfig, Region, plan_crops

FullPass = None
"""The plan of a frame that gets the full pass (whole frame and tiles)."""

DetectionPlan = PartialPass | None
"""Parts of the full pass and crops to run the detector on, or ``None`` for the full pass."""


@dataclass(frozen=True, slots=True)
class ScheduleConfig:
    """When a frame gets the full detector pass and when crops around known faces."""

    around_faces: bool = True
    """Run the detector on crops around known faces, and the full pass only in part or now and
    then; False: every frame gets the full pass (the behaviour before issue 12)."""
    spread: bool = True
    """Share the full pass's parts out over ``full_every`` frames, each frame also getting the
    crops; False: the whole full pass every ``full_every``-th frame (by frame index), on frames
    with no known face and on a camera's first frame, and crops only in between."""
    full_every: int = 5
    """Every part of the full pass runs at least once every this many frames: a new face is
    found within ``full_every - 1`` frame intervals of entering (160 ms at 25 fps with 5;
    issue 12 allows 200 ms)."""
    max_crops: int = 8
    """More crops than this (a crowd) and the frame gets the full pass instead: 8 crop invokes
    are half of the 16 of a full pass on 1080p. (Spread, the full pass then restarts the share:
    every part has just run.)"""
    max_lead_frames: int = 4
    """Motion is extrapolated at most this many frames past the frame the boxes are from."""
    max_step: float = 1.5
    """A box continues the nearest box of the previous observed frame when their centres are at
    most this many box widths apart per frame in between (measured: small faces move 0.74 of
    their width per frame, docs/STREET.md); otherwise it has no velocity."""
    crops: CropConfig = field(default_factory=CropConfig)
    """Size and merging of the crops."""
    skip_unchanged: bool = True
    """Spread: skip a part on its turn when its region has not changed since it last ran."""
    refresh_every: int = 5
    """Spread: a part runs at least once every this many of its turns, changed or not (5 turns
    of 5 frames: 1 s at 25 fps); 1 runs every part on every turn."""
    change: ChangeConfig = field(default_factory=ChangeConfig)
    """What counts as a changed region."""

    def __post_init__(self) -> None:
        require_at_least("ScheduleConfig.full_every", self.full_every, 1)
        require_at_least("ScheduleConfig.refresh_every", self.refresh_every, 1)
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
        self.share_slot = 0
        """Spread: which share of the full pass the next frame gets (invariant: 0 <= share_slot
        < min(full_every, parts)); back to 0 after a full pass and when the parts change."""
        self.share_parts: int | None = None
        """Spread: the full pass size the shares were counted for; a new size restarts them
        and forgets the references."""
        self.references: dict[int, NDArray[np.uint8]] = {}
        """Spread: per part, the thumbnail of the frame it last ran on (memory only, like the
        frames themselves; dropped with the schedule when the stream ends)."""
        self.skipped_turns: dict[int, int] = {}
        """Spread: per part, the turns skipped in a row since it last ran (invariant: <
        ``refresh_every``)."""
        self.parts_unchanged = 0
        """Parts skipped on their turn because their region had not changed."""

    def plan(self, index: int, width: int, height: int, regions: Sequence[Region],
             thumbnail: NDArray[np.uint8] | None = None) -> DetectionPlan:
        """The plan of frame ``index`` (``width`` x ``height`` px), whose full pass has a part
        on each of ``regions``, with the frame's ``scene_change.thumbnail`` (None: every part
        runs on its turn); call in frame order."""
        plan = self._plan(index, width, height, regions, thumbnail)
        if plan is FullPass:
            self.last_full_index = index
            self.share_parts, self.share_slot = len(regions), 0
            if thumbnail is not None:
                self.references = dict.fromkeys(range(len(regions)), thumbnail)
                self.skipped_turns.clear()
        return plan

    def _plan(self, index: int, width: int, height: int, regions: Sequence[Region],
              thumbnail: NDArray[np.uint8] | None) -> DetectionPlan:
        config = self.config
        if not config.around_faces:
            return FullPass
        if not config.spread:
            return self._crops_between_full_passes(index, width, height)
        crops = self._crops(index, width, height)
        if crops is None:
            return FullPass
        due = self._next_share(len(regions))
        return PartialPass(tuple(p for p in due if self._runs(p, regions[p], thumbnail)), crops)

    def _runs(self, part: int, region: Region, thumbnail: NDArray[np.uint8] | None) -> bool:
        """Whether a due part runs; records its reference when it does."""
        config = self.config
        reference = self.references.get(part)
        skipped = self.skipped_turns.get(part, 0)
        if (thumbnail is not None and reference is not None and config.skip_unchanged
                and skipped + 1 < config.refresh_every
                and not region_changed(thumbnail, reference, region, config.change)):
            self.skipped_turns[part] = skipped + 1
            self.parts_unchanged += 1
            return False
        if thumbnail is not None:
            self.references[part] = thumbnail
        self.skipped_turns[part] = 0
        return True

    def _crops_between_full_passes(self, index: int, width: int, height: int) -> DetectionPlan:
        if (not self.faces or self.last_full_index is None
                or index - self.last_full_index >= self.config.full_every):
            return FullPass
        crops = self._crops(index, width, height)
        return FullPass if crops is None else PartialPass((), crops)

    def _crops(self, index: int, width: int, height: int) -> tuple[Tile, ...] | None:
        """Crops around the known faces where their motion puts them at ``index``; None for a
        crowd (more than ``max_crops``)."""
        if not self.faces or self.observed_index is None:
            return ()
        config = self.config
        lead = min(max(0, index - self.observed_index), config.max_lead_frames)
        crops = plan_crops([f.predicted(lead) for f in self.faces], width, height, config.crops)
        return tuple(crops) if len(crops) <= config.max_crops else None

    def _next_share(self, parts: int) -> tuple[int, ...]:
        """The next frame's share of ``parts`` parts, over a cycle of k = min(full_every, parts)
        frames (every frame runs at least one part): slot s gets parts
        [s * parts // k, (s + 1) * parts // k), so k frames in a row run each part once."""
        if parts != self.share_parts:
            self.share_parts, self.share_slot = parts, 0
            self.references.clear()
            self.skipped_turns.clear()
        k = min(self.config.full_every, parts)
        slot = self.share_slot % k
        self.share_slot = (slot + 1) % k
        return tuple(range(slot * parts // k, (slot + 1) * parts // k))

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
