"""``Detector``: finds, aligns and quality-gates the faces of each frame.

Each frame gets the full detector pass or a partial one (a share of the full pass and crops
around the faces of recent frames), as the camera's ``DetectionSchedule`` plans it (kept here,
touched only in ``receive``: planned when a frame is submitted, fed when its results are taken;
the worker gets the plan as plain data).
Up to ``in_flight`` frames are analysed at once on the worker pool (one per core by default), and
results are passed on in frame order, by the actor's own loop (``OrderedWindow``: a finished
analysis is taken inside ``receive``, never from the window's tasks). Faces failing a quality
gate are counted and dropped here. ``StreamEnded`` follows the faces of every frame analysed.
Privacy: nothing is logged or written; a rejected face's crop is zeroed before it is dropped.
With a ``WatchlistGate`` (a camera unit), a frame that arrives while the unit holds no
watchlist is not analysed at all, only counted (``frames_idle``): no face is even looked at.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from actors.unit.camera import CameraOutput, EndOfStream, Frame
from actors.unit.detection_schedule import DetectionPlan, DetectionSchedule, ScheduleConfig
from actors.unit.face_analysis import FaceAnalysis, FaceCandidate, FaceFinder, analyse_faces
from actors.unit.watchlist_gate import WatchlistGate
from guards.config_checks import require_at_least
from models.face_quality import QualityConfig
from models.scene_change import thumbnail
from runtime.actor import Actor
from runtime.ordered_window import OrderedWindow, ResultsReady, tell_owner
from runtime.ref import ActorRef


@dataclass(frozen=True, slots=True, eq=False)
class DetectedFaces:
    """The usable faces of one frame. In-process only: deliberately not registered."""

    camera: str
    """Camera id."""
    index: int
    """Frame index."""
    t_s: float
    """Stream time of the frame (s)."""
    captured_ns: int
    """``time.monotonic_ns()`` at decode, for latency."""
    captured_at: float
    """Wall-clock decode time, seconds since the epoch."""
    pixels: NDArray[np.uint8]
    """The frame, kept (in memory only) so an alert can carry a crop."""
    faces: tuple[FaceCandidate, ...]
    """Faces that passed the quality gates."""
    rejected: int
    """Faces detected but dropped by a quality gate."""


@dataclass(frozen=True, slots=True)
class StreamEnded:
    """The stream ended; carries the counters of every stage so far. In-process only."""

    camera: str
    """Camera id."""
    frames: int
    """Frames decoded."""
    faces_seen: int = 0
    """Faces detected."""
    faces_rejected: int = 0
    """Faces dropped by quality gates."""
    alerts: int = 0
    """Alerts raised."""


DetectorOutput = DetectedFaces | StreamEnded


@dataclass(frozen=True, slots=True)
class DetectorWork:
    """What the detector's schedule planned so far (counts only; for benchmarks and health)."""

    full_passes: int
    """Frames that got the whole full pass."""
    partial_passes: int
    """Frames that got a partial pass (a share of the full pass and crops)."""
    parts_swept: int
    """Parts of the full pass run in partial passes (one invoke each)."""
    parts_unchanged: int
    """Parts skipped on their turn because their region had not changed."""
    crops_run: int
    """Crops around known faces run (one invoke each)."""
    frames_superseded: int = 0
    """Frames dropped unanalysed for a newer one (``DetectorConfig.newest_wins``)."""


@dataclass(frozen=True, slots=True, eq=False)
class _Analysed:
    """A frame's result inside the window: its faces and every box found (for the schedule)."""

    faces: DetectedFaces
    boxes: tuple[tuple[float, float, float, float], ...]


@dataclass(frozen=True, slots=True)
class DetectorConfig:
    """Detector actor settings."""

    quality: QualityConfig = field(default_factory=QualityConfig)
    """Quality gates applied before any embedding."""
    in_flight: int = field(default_factory=lambda: os.cpu_count() or 1)
    """Frames of a file scanned as fast as it decodes analysed concurrently on the worker pool
    (or analysed and not yet passed on): one per core, for throughput."""
    live_in_flight: int = 1
    """The same for a live or paced camera, where latency counts and the newest frame wins:
    one frame at a time has a core to itself, the other is left to the matcher and the uplink
    (paced 1080p street clip: capture-to-decision p99 234-238 ms against 262-317 ms with two,
    docs/STREET.md)."""
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    """Full pass or crops around known faces, frame by frame."""
    newest_wins: bool = False
    """A frame arriving while ``in_flight`` frames are analysed waits beside the window, not
    in ``receive``, and a newer frame replaces it (``frames_superseded``): at most one frame
    waits, and it is the newest. Set for a live or paced camera (``lfr.scan``): blocked in
    ``receive``, a frame already planned waited there while the mailbox held the next, so a
    frame could wait for two analyses (a traced paced 1080p run: 29 of its 40 slowest frames
    waited 80-160 ms before their analysis began). False: ``receive`` waits for room, so the
    camera is held back and every frame is analysed (a file scanned as fast as it decodes)."""

    def __post_init__(self) -> None:
        require_at_least("DetectorConfig.in_flight", self.in_flight, 1)
        require_at_least("DetectorConfig.live_in_flight", self.live_in_flight, 1)


class Detector(Actor[CameraOutput | ResultsReady]):
    """Frames in, ``DetectedFaces`` out, in order."""

    def __init__(self, detector: FaceFinder, output: ActorRef[DetectorOutput],
                 config: DetectorConfig | None = None, *,
                 gate: WatchlistGate | None = None) -> None:
        """``gate``: analyse frames only while it holds a watchlist (None: always)."""
        self.detector = detector
        self.output = output
        self.config = config or DetectorConfig()
        self.gate = gate
        self.frames_idle = 0
        """Frames dropped unanalysed because the unit held no watchlist."""
        self.faces_seen = 0
        self.faces_rejected = 0
        self.full_passes = 0
        """Frames planned for the full pass (whole frame and tiles)."""
        self.partial_passes = 0
        """Frames planned for a partial pass (a share of the full pass and crops)."""
        self.parts_swept = 0
        """Parts of the full pass run in partial passes."""
        self.crops_run = 0
        """Crops around known faces run."""
        self.parts_unchanged = 0
        """Parts of the full pass skipped on their turn: their region had not changed."""
        self.frames_superseded = 0
        """Frames dropped unanalysed because a newer one arrived while they waited
        (``DetectorConfig.newest_wins``)."""
        self._waiting: Frame | None = None
        """``newest_wins``: the newest frame that arrived while the window was full, not yet
        planned (at most one; dropped with the stream or the actor)."""
        self._schedules: dict[str, DetectionSchedule] = {}
        self._window: OrderedWindow[_Analysed] | None = None

    def work(self) -> DetectorWork:
        """The schedule's counts so far."""
        return DetectorWork(self.full_passes, self.partial_passes, self.parts_swept,
                            self.parts_unchanged, self.crops_run, self.frames_superseded)

    async def on_start(self) -> None:
        self._window = OrderedWindow(self.config.in_flight, self._emit,
                                     tell_owner(self.context.ref),
                                     name=f"{self.context.name}:window")

    async def on_stop(self) -> None:
        if self._window is not None:
            await self._window.close()

    async def receive(self, message: CameraOutput | ResultsReady) -> None:
        assert self._window is not None
        # Every message first passes on the finished analyses (a ResultsReady does only this,
        # and starts the frame waiting, if any).
        await self._window.take_ready()
        if isinstance(message, Frame):
            if self.gate is not None and not self.gate.scanning:
                self.frames_idle += 1
                return
            if self.config.newest_wins:
                if self._waiting is not None:
                    self.frames_superseded += 1  # never planned: no part of the pass is lost
                self._waiting = message
            else:
                await self._window.submit(self._analyse(message, self._plan(message)))
        if self._waiting is not None and (self._window.in_flight < self._window.capacity
                                          or isinstance(message, EndOfStream)):
            frame, self._waiting = self._waiting, None
            await self._window.submit(self._analyse(frame, self._plan(frame)))
        if isinstance(message, EndOfStream):
            await self._window.drain()
            self._schedules.pop(message.camera, None)
            await self.output.tell(StreamEnded(message.camera, message.frames, self.faces_seen,
                                               self.faces_rejected))

    def _plan(self, frame: Frame) -> DetectionPlan:
        schedule = self._schedules.get(frame.camera)
        if schedule is None:
            schedule = self._schedules[frame.camera] = DetectionSchedule(self.config.schedule)
        height, width = frame.pixels.shape[:2]
        regions = self.detector.full_pass_regions(width, height)
        config = self.config.schedule
        # The thumbnail costs 1-2 ms of C (GIL released) on this loop; only when it is used.
        thumb = (thumbnail(frame.pixels, config.change)
                 if config.spread and config.skip_unchanged and len(regions) > 1 else None)
        unchanged = schedule.parts_unchanged
        plan = schedule.plan(frame.index, width, height, regions, thumb)
        self.parts_unchanged += schedule.parts_unchanged - unchanged
        if plan is None:
            self.full_passes += 1
        else:
            self.partial_passes += 1
            self.parts_swept += len(plan.sweep)
            self.crops_run += len(plan.crops)
        return plan

    async def _analyse(self, frame: Frame, plan: DetectionPlan) -> _Analysed:
        analysis: FaceAnalysis = await self.context.run_blocking(
            analyse_faces, self.detector, frame.pixels, self.config.quality, plan)
        faces = DetectedFaces(frame.camera, frame.index, frame.t_s, frame.captured_ns,
                              frame.captured_at, frame.pixels, analysis.usable,
                              len(analysis.rejected))
        return _Analysed(faces, analysis.boxes)

    async def _emit(self, analysed: _Analysed) -> None:
        faces = analysed.faces
        schedule = self._schedules.get(faces.camera)
        if schedule is not None:
            schedule.observe(faces.index, analysed.boxes)
        self.faces_seen += len(faces.faces) + faces.rejected
        self.faces_rejected += faces.rejected
        await self.output.tell(faces)

