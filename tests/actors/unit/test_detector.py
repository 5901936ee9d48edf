"""The detector actor with a stand-in face finder: frames in order, counts, the end of stream
after every frame's faces, failures to the supervisor, and results passed on by its own loop.

The face finder is faked (a unit test may mock; the product uses BlazeFace): the test decides
which faces each frame holds, and how long its analysis takes. Alignment and the quality gates
are the real ones: a face on the frame's noise is sharp, one on its flat grey strip is blurred.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import pytest
from numpy.typing import NDArray

from actors.unit.camera import CameraOutput, EndOfStream, Frame
from actors.unit.detection_schedule import ScheduleConfig
from actors.unit.detector import (
    DetectedFaces,
    Detector,
    DetectorConfig,
    DetectorOutput,
    StreamEnded,
)
from actors.unit.face_analysis import FaceCandidate
from guards.config_checks import ConfigError
from models.detection import FaceDetection
from models.detection_plan import PartialPass
from models.face_quality import QualityVerdict
from runtime.actor import Actor
from runtime.codec import Codec, EncodeError
from runtime.mailbox import MailboxConfig, MailboxPolicy
from runtime.ordered_window import ResultsReady
from runtime.ref import ActorRef
from runtime.system import ActorSystem, SystemConfig
from tests.actors.conftest import FAST_ROOT
from tests.actors.support import WAIT_S, eventually

FLAT_FROM_X = 240
"""Frames are noise left of this column and flat grey from it on: faces there are blurred."""


def face_at(x0: float, score: float = 0.9) -> FaceDetection:
    """A frontal face 40 px wide, eyes 20 px apart, at ``x0``."""
    keypoints = np.array([[x0 + 10, 20], [x0 + 30, 20], [x0 + 20, 30], [x0 + 20, 40],
                          [x0, 25], [x0 + 40, 25]], np.float32)
    return FaceDetection(x0, 0.0, x0 + 40.0, 50.0, score, keypoints)


SHARP = face_at(20.0)
SHARP_2 = face_at(120.0)
DOUBTFUL = face_at(70.0, score=0.65)  # below the 0.7 detector score gate
BLURRED = face_at(260.0)  # on the flat strip: fails the sharpness gate


def frame(index: int, camera: str = "cam0") -> Frame:
    pixels = np.random.default_rng(index).integers(0, 256, (120, 320, 3), dtype=np.uint8)
    pixels[:, FLAT_FROM_X:] = 128
    pixels[0, 0, 0] = index  # how the stand-in finder knows the frame
    return Frame(camera, index, index / 30, time.monotonic_ns(), time.time(), pixels)


@dataclass
class FakeFinder:
    """Returns the faces the test gave each frame; may hold a frame until released."""

    faces: dict[int, list[FaceDetection]] = field(default_factory=dict)
    hold: dict[int, threading.Event] = field(default_factory=dict)
    fail: set[int] = field(default_factory=set)
    started: list[int] = field(default_factory=list)
    on_start: Callable[[], None] = lambda: None

    def detect(self, image: NDArray[np.uint8]) -> list[FaceDetection]:
        index = int(image[0, 0, 0])
        self.started.append(index)
        self.on_start()
        gate = self.hold.get(index)
        if gate is not None and not gate.wait(WAIT_S):
            raise TimeoutError(f"frame {index} was never released")
        if index in self.fail:
            raise RuntimeError(f"model failed on frame {index}")
        return list(self.faces.get(index, []))

    def full_pass_regions(self, frame_width: int,
                          frame_height: int) -> tuple[tuple[int, int, int, int], ...]:
        return ((0, 0, frame_width, frame_height),)

    def detect_partial(self, image: NDArray[np.uint8],
                       partial: PartialPass) -> list[FaceDetection]:
        """All the frame's faces when its one part runs, else those whole inside a crop."""
        faces = self.detect(image)
        if partial.sweep:
            return faces
        return [f for f in faces if any(inside(f, c.region) for c in partial.crops)]


def inside(face: FaceDetection, region: tuple[int, int, int, int]) -> bool:
    x0, y0, x1, y1 = region
    return x0 <= face.x0 and y0 <= face.y0 and face.x1 <= x1 and face.y1 <= y1


EVERY_FRAME = ScheduleConfig(around_faces=False)
"""These tests are about order, counts and failures: every frame gets the full pass (the
schedule's own tests are further down)."""


class Sink(Actor[DetectorOutput]):
    def __init__(self, received: list[DetectorOutput]) -> None:
        self.received = received

    async def receive(self, message: DetectorOutput) -> None:
        self.received.append(message)


def frames_of(received: list[DetectorOutput]) -> list[DetectedFaces]:
    return [m for m in received if isinstance(m, DetectedFaces)]


def ended(received: list[DetectorOutput]) -> list[StreamEnded]:
    return [m for m in received if isinstance(m, StreamEnded)]


async def spawn(system: ActorSystem, finder: FakeFinder, output: ActorRef[DetectorOutput],
                in_flight: int = 2, mailbox: MailboxConfig | None = None,
                ) -> ActorRef[CameraOutput | ResultsReady]:
    config = DetectorConfig(in_flight=in_flight, schedule=EVERY_FRAME)
    return await system.spawn("detector", lambda: Detector(finder, output, config),
                              mailbox or MailboxConfig(capacity=2))


async def test_frames_are_passed_on_in_order_with_their_faces_counted(
        system: ActorSystem) -> None:
    finder = FakeFinder(faces={0: [SHARP, DOUBTFUL], 1: [], 2: [SHARP, SHARP_2, BLURRED],
                               3: [DOUBTFUL, BLURRED], 4: [SHARP_2]})
    # Earlier frames take longer: they finish after later ones, and must still come first.
    finder.hold = {i: threading.Event() for i in range(5)}
    received: list[DetectorOutput] = []
    sink = await system.spawn("sink", lambda: Sink(received))
    detector = await spawn(system, finder, sink, in_flight=3)
    for i in range(5):
        await detector.tell(frame(i))
    await detector.tell(EndOfStream("cam0", 5))
    for i in reversed(range(5)):
        await asyncio.sleep(0.01)
        finder.hold[i].set()
    await eventually(lambda: bool(ended(received)))

    got = frames_of(received)
    assert [f.index for f in got] == [0, 1, 2, 3, 4]
    assert [len(f.faces) for f in got] == [1, 0, 2, 0, 1]
    assert [f.rejected for f in got] == [1, 0, 1, 2, 0]
    assert [f.faces[0].detection.x0 for f in got if f.faces] == [20.0, 20.0, 120.0]
    assert all(f.faces[0].aligned.shape == (112, 112, 3) for f in got if f.faces)
    assert received[-1] == StreamEnded("cam0", frames=5, faces_seen=8, faces_rejected=4)


async def test_stream_ended_waits_for_the_faces_of_every_frame(system: ActorSystem) -> None:
    finder = FakeFinder(faces={0: [SHARP], 1: [SHARP, DOUBTFUL]},
                        hold={1: threading.Event()})
    received: list[DetectorOutput] = []
    sink = await system.spawn("sink", lambda: Sink(received))
    detector = await spawn(system, finder, sink)
    await detector.tell(frame(0))
    await detector.tell(frame(1))
    await detector.tell(EndOfStream("cam0", 2))
    await eventually(lambda: len(received) == 1)
    await asyncio.sleep(0.05)
    assert [type(m) for m in received] == [DetectedFaces]  # frame 1 is still being analysed
    finder.hold[1].set()
    await eventually(lambda: bool(ended(received)))
    assert [type(m) for m in received] == [DetectedFaces, DetectedFaces, StreamEnded]
    assert received[-1] == StreamEnded("cam0", frames=2, faces_seen=3, faces_rejected=1)


async def test_a_frames_faces_do_not_wait_for_the_next_message(system: ActorSystem) -> None:
    # A live camera may send nothing for a while: a finished frame is passed on anyway.
    finder = FakeFinder(faces={0: [SHARP]}, hold={0: threading.Event()})
    received: list[DetectorOutput] = []
    sink = await system.spawn("sink", lambda: Sink(received))
    detector = await spawn(system, finder, sink)
    await detector.tell(frame(0))
    await eventually(lambda: finder.started == [0])
    finder.hold[0].set()
    await eventually(lambda: len(received) == 1)
    assert frames_of(received)[0].index == 0


async def test_nothing_is_lost_with_a_live_mailbox_of_one_that_drops_the_oldest(
        system: ActorSystem) -> None:
    finder = FakeFinder(faces={0: [SHARP], 1: [SHARP_2]}, hold={0: threading.Event()})
    received: list[DetectorOutput] = []
    sink = await system.spawn("sink", lambda: Sink(received))
    live = MailboxConfig(capacity=1, policy=MailboxPolicy.DROP_OLDEST)
    detector = await spawn(system, finder, sink, in_flight=1, mailbox=live)
    await detector.tell(frame(0))
    await eventually(lambda: finder.started == [0])
    await detector.tell(frame(1))  # taken at once; waits in receive for frame 0's place
    await eventually(lambda: detector.statistics().depth == 0)
    await detector.tell(EndOfStream("cam0", 2))  # the mailbox is full now
    finder.hold[0].set()  # frame 0 is ready while the end of stream is queued
    await eventually(lambda: bool(ended(received)))
    assert [f.index for f in frames_of(received)] == [0, 1]
    assert received[-1] == StreamEnded("cam0", frames=2, faces_seen=2, faces_rejected=0)
    assert detector.statistics().dropped == 0


async def test_a_live_detector_analyses_the_newest_frame_next_and_no_stale_one(
        system: ActorSystem) -> None:
    finder = FakeFinder(faces={i: [SHARP] for i in range(8)},
                        hold={0: threading.Event(), 5: threading.Event()})
    received: list[DetectorOutput] = []
    sink = await system.spawn("sink", lambda: Sink(received))
    live = MailboxConfig(capacity=1, policy=MailboxPolicy.DROP_OLDEST)
    config = DetectorConfig(in_flight=1, schedule=EVERY_FRAME, newest_wins=True)
    made: list[Detector] = []

    def make() -> Detector:
        made.append(Detector(finder, sink, config))
        return made[-1]

    detector = await system.spawn("detector", make, live)
    await detector.tell(frame(0))
    await eventually(lambda: finder.started == [0])
    for i in range(1, 6):  # each waits beside the window; the next replaces it
        await detector.tell(frame(i))
        await eventually(lambda: detector.statistics().depth == 0)
    finder.hold[0].set()
    # Frame 0's place goes to frame 5, the newest: nothing in between was planned or analysed.
    await eventually(lambda: finder.started == [0, 5])
    await detector.tell(frame(6))  # waits while 5 is held
    await eventually(lambda: detector.statistics().depth == 0)
    await detector.tell(EndOfStream("cam0", 7))  # the frame waiting is analysed before the end
    finder.hold[5].set()
    await eventually(lambda: bool(ended(received)))
    assert [f.index for f in frames_of(received)] == [0, 5, 6]
    assert made[-1].frames_superseded == 4
    assert made[-1].work().frames_superseded == 4
    assert made[-1].full_passes == 3  # planned when analysed: the superseded never were
    assert received[-1] == StreamEnded("cam0", frames=7, faces_seen=3, faces_rejected=0)


async def test_at_most_in_flight_frames_are_analysed_or_waiting_to_be_passed_on() -> None:
    told: list[DetectorOutput] = []
    pending: list[int] = []
    finder = FakeFinder(faces={i: [SHARP] for i in range(12)})
    finder.on_start = lambda: pending.append(len(finder.started) - len(told))

    class Output:
        async def tell(self, message: DetectorOutput) -> None:
            await asyncio.sleep(0.002)  # a slow downstream: results pile up unless bounded
            told.append(message)

    config = SystemConfig(name="bound", root=FAST_ROOT, blocking_workers=4)
    async with ActorSystem(config) as system:
        detector = await spawn(system, finder, cast(ActorRef[DetectorOutput], Output()),
                               in_flight=2)
        for i in range(12):
            await detector.tell(frame(i))
        await detector.tell(EndOfStream("cam0", 12))
        await eventually(lambda: bool(ended(told)))
    assert len(frames_of(told)) == 12
    assert max(pending) == 2


async def test_faces_are_passed_on_by_the_detectors_own_loop(system: ActorSystem) -> None:
    loop_tasks: set[asyncio.Task[object] | None] = set()
    telling_tasks: list[asyncio.Task[object] | None] = []

    class Recorded(Detector):
        async def receive(self, message: CameraOutput | ResultsReady) -> None:
            loop_tasks.add(asyncio.current_task())
            await super().receive(message)

    class Output:
        async def tell(self, message: DetectorOutput) -> None:
            telling_tasks.append(asyncio.current_task())

    finder = FakeFinder(faces={i: [SHARP] for i in range(6)},
                        hold={i: threading.Event() for i in range(6)})
    output = cast(ActorRef[DetectorOutput], Output())
    detector = await system.spawn(
        "detector", lambda: Recorded(finder, output,
                                     DetectorConfig(in_flight=3, schedule=EVERY_FRAME)))
    for i in range(6):
        await detector.tell(frame(i))
    for i in (2, 1, 0, 5, 4, 3):
        await asyncio.sleep(0.01)
        finder.hold[i].set()  # frames finish while the detector is idle or handling others
    await eventually(lambda: len(telling_tasks) == 6)
    await detector.tell(EndOfStream("cam0", 6))
    await eventually(lambda: len(telling_tasks) == 7)
    assert len(loop_tasks) == 1  # one incarnation: one loop task
    assert set(telling_tasks) == loop_tasks


async def test_a_failed_analysis_fails_the_detector_and_its_supervisor_restarts_it(
        system: ActorSystem) -> None:
    finder = FakeFinder(faces={0: [SHARP], 1: [SHARP], 2: [SHARP]}, fail={1})
    incarnations: list[Detector] = []
    received: list[DetectorOutput] = []
    sink = await system.spawn("sink", lambda: Sink(received))

    def make() -> Detector:
        incarnations.append(
            Detector(finder, sink, DetectorConfig(in_flight=2, schedule=EVERY_FRAME)))
        return incarnations[-1]

    detector = await system.spawn("detector", make)
    await detector.tell(frame(0))
    await detector.tell(frame(1))  # the last message for now: the failure must not wait
    await eventually(lambda: len(incarnations) == 2)
    await detector.tell(frame(2))
    await detector.tell(EndOfStream("cam0", 3))
    await eventually(lambda: bool(ended(received)))
    assert [f.index for f in frames_of(received)] == [0, 2]  # frame 1 has no result


@pytest.mark.parametrize("message", [
    DetectedFaces("cam0", 7, 0.25, 1, 2.0, np.zeros((36, 64, 3), np.uint8),
                  (FaceCandidate(SHARP, np.full((112, 112, 3), 128, np.uint8),
                                 QualityVerdict(None, 0.9, 30.0, 0.0, 100.0)),), 1),
    DetectedFaces("cam0", 8, 0.28, 1, 2.0, np.zeros((36, 64, 3), np.uint8), (), 0),
    StreamEnded("cam0", 275, faces_seen=40, faces_rejected=3, alerts=1),
    FaceCandidate(SHARP, np.full((112, 112, 3), 128, np.uint8),
                  QualityVerdict(None, 0.9, 30.0, 0.0, 100.0)),
    ResultsReady(),
], ids=["faces", "no-faces", "stream-ended", "face-candidate", "results-ready"])
def test_in_process_messages_cannot_be_encoded(message: object) -> None:
    with pytest.raises(EncodeError, match="not a registered message"):
        Codec().encode(message)


@pytest.mark.parametrize("in_flight", [0, -1, 1.5])
def test_in_flight_must_be_a_positive_integer(in_flight: Any) -> None:
    with pytest.raises(ConfigError, match=r"DetectorConfig\.in_flight\b"):
        DetectorConfig(in_flight=in_flight)


# Detection around known faces: a share of the full pass on every frame plus crops around the
# faces found (spread), or a full pass every ``full_every`` frames and crops in between.

WIDE_W = 800
"""Scheduling frames are 800 px wide, all noise: a face far from another lies outside its crop."""

STRIPS = 8
"""The stand-in full pass: 8 vertical strips of 100 px (its parts), like a detector's tiles;
spread over 5 frames they run as (0,), (1, 2), (3,), (4, 5), (6, 7)."""


def wide_frame(index: int) -> Frame:
    pixels = np.random.default_rng(index).integers(0, 256, (120, WIDE_W, 3), dtype=np.uint8)
    pixels[0, 0, 0] = index
    return Frame("cam0", index, index / 25, time.monotonic_ns(), time.time(), pixels)


def strip(part: int) -> tuple[int, int, int, int]:
    side = WIDE_W // STRIPS
    return (part * side, 0, (part + 1) * side, 120)


@dataclass
class World(FakeFinder):
    """A stand-in detector over a scene: the full pass finds every face of the frame, a part of
    it the faces lying whole inside its strip, a crop those lying whole inside it. Records
    which frames got which pass."""

    full: list[int] = field(default_factory=list)
    partial: list[tuple[int, PartialPass]] = field(default_factory=list)

    def full_pass_regions(self, frame_width: int,
                          frame_height: int) -> tuple[tuple[int, int, int, int], ...]:
        return tuple(strip(p) for p in range(STRIPS))

    def detect(self, image: NDArray[np.uint8]) -> list[FaceDetection]:
        self.full.append(int(image[0, 0, 0]))
        return super().detect(image)

    def detect_partial(self, image: NDArray[np.uint8],
                       partial: PartialPass) -> list[FaceDetection]:
        self.partial.append((int(image[0, 0, 0]), partial))
        regions = [strip(p) for p in partial.sweep] + [c.region for c in partial.crops]
        faces = FakeFinder.detect(self, image)
        return [f for f in faces if any(inside(f, r) for r in regions)]

    def cropped(self) -> list[int]:
        return [i for i, p in self.partial if p.crops]

    def swept(self) -> list[tuple[int, ...]]:
        return [p.sweep for _, p in self.partial]


async def run_frames(system: ActorSystem, world: World, frames: int,
                     config: DetectorConfig | None = None) -> list[DetectedFaces]:
    """Frames one at a time, each passed on before the next is told (no lag in the schedule)."""
    received: list[DetectorOutput] = []
    sink = await system.spawn("sink", lambda: Sink(received))
    config = config or DetectorConfig(in_flight=1)
    detector = await system.spawn("detector", lambda: Detector(world, sink, config))
    for i in range(frames):
        await detector.tell(wide_frame(i))
        await eventually(functools.partial(lambda n: len(received) == n, i + 1))
    await detector.tell(EndOfStream("cam0", frames))
    await eventually(lambda: bool(ended(received)))
    return frames_of(received)


async def test_each_frame_runs_a_share_of_the_full_pass_and_crops_around_known_faces(
        system: ActorSystem) -> None:
    world = World(faces={i: [face_at(100.0)] for i in range(12)})
    got = await run_frames(system, world, 12)
    assert world.full == []  # no frame carries the whole pass
    assert world.swept() == [(0,), (1, 2), (3,), (4, 5), (6, 7)] * 2 + [(0,), (1, 2)]
    # Frame 0 sweeps strip 0 and finds nobody; frame 1 sweeps strips 1-2 and finds the face.
    assert world.cropped() == list(range(2, 12))
    for _, partial in world.partial[2:]:  # one crop, around the face
        (crop,) = partial.crops
        assert crop.region == (24, 0, 216, 120)  # 192 px centred on x = 120, clipped to 120 high
    # Found in its strip (part 0) on frame 1, then followed on crops; frame 0 never looked there.
    assert [len(f.faces) for f in got] == [0] + [1] * 11


async def test_a_face_appearing_mid_stream_is_found_within_full_every_frames(
        system: ActorSystem) -> None:
    # One face all along; a second one enters at frame 7, far away (strip 3).
    newcomer = face_at(600.0)
    world = World(faces={i: [face_at(100.0)] + ([newcomer] if i >= 7 else []) for i in range(16)})
    config = DetectorConfig(in_flight=1)
    got = await run_frames(system, world, 16, config)
    with_newcomer = [f.index for f in got if any(c.detection.x0 == 600.0 for c in f.faces)]
    first = with_newcomer[0]
    assert 7 <= first < 7 + config.schedule.full_every
    assert with_newcomer == list(range(first, 16))  # then followed on crops


async def test_a_face_lost_by_its_crop_is_found_again_by_the_sweep(system: ActorSystem) -> None:
    # The face jumps 300 px at frame 6 (a missed prediction): its crop misses it.
    world = World(faces={i: [face_at(100.0 if i < 6 else 400.0)] for i in range(14)})
    got = await run_frames(system, world, 14)
    found = [f.index for f in got if f.faces]
    # Frames 6 and 7 look at the old place and strips 1 to 3; frame 8 sweeps strip 4: found.
    assert found == [1, 2, 3, 4, 5, 8, 9, 10, 11, 12, 13]


def still_frame(index: int, faces: list[FaceDetection]) -> Frame:
    """The same noise on every frame, with other noise where each face is (a still street
    with people in it)."""
    pixels = np.random.default_rng(7).integers(0, 256, (120, WIDE_W, 3), dtype=np.uint8)
    for face in faces:
        x0, x1 = int(face.x0), int(face.x1)
        pixels[0:50, x0:x1] = np.random.default_rng(x0).integers(0, 256, (50, x1 - x0, 3))
    pixels[0, 0, 0] = index
    return Frame("cam0", index, index / 25, time.monotonic_ns(), time.time(), pixels)


async def test_in_a_still_scene_unchanged_parts_are_skipped_and_a_newcomer_is_still_found(
        system: ActorSystem) -> None:
    newcomer = face_at(600.0)
    faces = {i: [face_at(100.0)] + ([newcomer] if i >= 12 else []) for i in range(20)}
    world = World(faces=faces)
    received: list[DetectorOutput] = []
    sink = await system.spawn("sink", lambda: Sink(received))
    made: list[Detector] = []

    def make() -> Detector:
        made.append(Detector(world, sink, DetectorConfig(in_flight=1)))
        return made[-1]

    detector = await system.spawn("detector", make)
    for i in range(20):
        await detector.tell(still_frame(i, faces[i]))
        await eventually(functools.partial(lambda n: len(received) == n, i + 1))
    got = frames_of(received)
    # The first cycle (frames 0-4) looks at every strip; the second (5-9) at none: nothing
    # moved. The newcomer's strip (6) changed at frame 12 and runs on its turn, frame 14.
    assert world.swept()[:5] == [(0,), (1, 2), (3,), (4, 5), (6, 7)]
    assert world.swept()[5:10] == [()] * 5
    with_newcomer = [f.index for f in got if any(c.detection.x0 == 600.0 for c in f.faces)]
    assert with_newcomer == list(range(14, 20))
    assert made[0].parts_unchanged >= 8 + 7  # all of the second cycle, most of the third
    assert [len(f.faces) for f in got][1:] == [1] * 13 + [2] * 6  # the first face all along


async def test_not_spread_frames_with_no_known_face_get_the_full_pass(
        system: ActorSystem) -> None:
    world = World(faces={6: [face_at(100.0)], 7: [face_at(100.0)]})  # nobody before frame 6
    not_spread = DetectorConfig(in_flight=1, schedule=ScheduleConfig(spread=False))
    await run_frames(system, world, 10, not_spread)
    assert world.full == [0, 1, 2, 3, 4, 5, 6, 9]  # 8: crops around the face of 7; 9: gone
    assert world.cropped() == [7, 8]
    assert world.swept() == [(), ()]  # crops only between full passes


async def test_each_camera_has_its_own_schedule(system: ActorSystem) -> None:
    world = World(faces={i: [face_at(100.0)] for i in range(4)})
    received: list[DetectorOutput] = []
    sink = await system.spawn("sink", lambda: Sink(received))
    detector = await system.spawn(
        "detector", lambda: Detector(world, sink, DetectorConfig(in_flight=1)))
    for i, camera in enumerate(("cam0", "cam0", "cam0", "cam1")):
        pixels = wide_frame(i)
        await detector.tell(Frame(camera, i, pixels.t_s, pixels.captured_ns, pixels.captured_at,
                                  pixels.pixels))
        await eventually(functools.partial(lambda n: len(received) == n, i + 1))
    # cam1's first frame starts its own share and knows no face of cam0's.
    assert world.swept() == [(0,), (1, 2), (3,), (0,)]
    assert [bool(p.crops) for _, p in world.partial] == [False, False, True, False]


async def test_with_around_faces_off_every_frame_gets_the_full_pass(system: ActorSystem) -> None:
    world = World(faces={i: [face_at(100.0)] for i in range(6)})
    off = DetectorConfig(in_flight=1, schedule=ScheduleConfig(around_faces=False))
    await run_frames(system, world, 6, off)
    assert world.full == [0, 1, 2, 3, 4, 5]
    assert world.partial == []


@pytest.mark.parametrize(("field", "value"), [
    ("full_every", 0), ("full_every", 2.5), ("max_crops", 0), ("max_lead_frames", -1),
    ("max_step", 0.0), ("max_step", float("nan")),
])
def test_bad_schedule_settings_are_refused_by_name(field: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=rf"ScheduleConfig\.{field}\b"):
        ScheduleConfig(**{field: value})


async def test_a_new_stream_of_a_camera_starts_its_schedule_again(system: ActorSystem) -> None:
    world = World(faces={i: [face_at(100.0)] for i in range(3)})
    received: list[DetectorOutput] = []
    sink = await system.spawn("sink", lambda: Sink(received))
    detector = await system.spawn(
        "detector", lambda: Detector(world, sink, DetectorConfig(in_flight=1)))
    for stream in range(2):  # the same file scanned twice: frame indices start again at 0
        for i in range(3):
            await detector.tell(wide_frame(i))
            await eventually(functools.partial(lambda n: len(received) == n, stream * 4 + i + 1))
        await detector.tell(EndOfStream("cam0", 3))
        await eventually(functools.partial(lambda n: len(ended(received)) == n, stream + 1))
    assert world.swept() == [(0,), (1, 2), (3,)] * 2
    assert world.cropped() == [2, 2]  # no face carried over from the first stream
