"""``EmbeddingSchedule``: a track decided as not on the watchlist (or alerted) is embedded only on
re-checks, an undecided one every frame; driven through the matcher with a stand-in embedder that
records which frame each embedded crop came from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from actors.unit.alert_policy import AlertPolicyConfig
from actors.unit.detector import DetectedFaces, StreamEnded
from actors.unit.embedding_schedule import EmbeddingSchedule, EmbeddingScheduleConfig
from actors.unit.face_analysis import FaceCandidate
from actors.unit.gallery import Gallery, GalleryMatch
from actors.unit.match_alert import MatchAlert
from actors.unit.matcher import Matcher, MatcherConfig, MatcherOutput
from actors.unit.tracking import Track, Tracker
from guards.config_checks import ConfigError
from models.detection import FaceDetection
from models.face_quality import QualityVerdict
from runtime.system import ActorSystem
from tests.actors.support import eventually, toward
from tests.actors.unit.matcher_support import Sink, frame_of

DIM = 192
RNG = np.random.default_rng(11)
PEOPLE = RNG.standard_normal((4, DIM)).astype(np.float32)
PEOPLE /= np.linalg.norm(PEOPLE, axis=1, keepdims=True)
WANTED, LOOKALIKE, PASSER_BY = 0, 2, 3
SCHEDULE = EmbeddingScheduleConfig(decide_after=8, recheck_every=10)


class FrameRecordingEmbedder:
    """Returns the embedding of the person in the crop's first pixel; records (person, frame)
    of every crop it embeds (the frame index is in the crop's second pixel)."""

    def __init__(self) -> None:
        self.looks: list[tuple[int, int]] = []

    def embed(self, face: NDArray[np.uint8]) -> NDArray[np.float32]:
        self.looks.append((int(face[0, 0, 0]), int(face[0, 0, 1])))
        embedding: NDArray[np.float32] = PEOPLE[int(face[0, 0, 0])].copy()
        return embedding

    def frames_of(self, person: int) -> list[int]:
        return sorted(frame for p, frame in self.looks if p == person)


def _face(person: int, x0: float, index: int) -> FaceCandidate:
    crop = np.full((112, 112, 3), 90, np.uint8)
    crop[0, 0, 0], crop[0, 0, 1] = person, index
    keypoints = np.zeros((6, 2), np.float32)
    detection = FaceDetection(x0, 0.0, x0 + 40.0, 50.0, 0.9, keypoints)
    return FaceCandidate(detection, crop, QualityVerdict(None, 0.9, 20.0, 0.0, 100.0))


def _gallery() -> Gallery:
    # The lookalike scores 0.5 against a subject at threshold 0.6: within the margin (0.15).
    near = toward(RNG, PEOPLE[LOOKALIKE], 0.5)
    return Gallery(["wanted", "near"], np.stack([PEOPLE[WANTED], near]),
                   np.array([0.6, 0.6], np.float32))


async def _run(people: Sequence[tuple[tuple[int, float], ...]],
               schedule: EmbeddingScheduleConfig = SCHEDULE,
               ) -> tuple[FrameRecordingEmbedder, list[MatchAlert], list[DetectedFaces]]:
    """One frame per entry of ``people`` ((person, x0) per face); returns the embedder, the
    alerts and the frames sent."""
    embedder = FrameRecordingEmbedder()
    received: list[MatcherOutput] = []
    config = MatcherConfig(embedding=schedule, in_flight=2)
    frames = [frame_of(i, tuple(_face(p, x0, i) for p, x0 in faces))
              for i, faces in enumerate(people)]
    async with ActorSystem() as system:
        sink = await system.spawn("sink", lambda: Sink(received))
        matcher = await system.spawn("matcher", lambda: Matcher(embedder, _gallery(), sink,
                                                                config))
        for frame in frames:
            await matcher.tell(frame)
        await matcher.tell(StreamEnded("cam0", frames=len(frames)))
        await eventually(lambda: any(isinstance(m, StreamEnded) for m in received))
    return embedder, [m for m in received if isinstance(m, MatchAlert)], frames


async def test_a_track_decided_as_not_on_the_watchlist_is_embedded_only_on_rechecks() -> None:
    embedder, alerts, frames = await _run([((PASSER_BY, 50.0),)] * 60)
    looked = embedder.frames_of(PASSER_BY)
    assert alerts == []
    assert looked[:8] == list(range(8))  # every frame until decided (8 clear looks)
    # Decided at frame 7 (frames already in flight may still be embedded), then one re-check
    # every 10 frames.
    assert [i for i in looked if i > 10] == [17, 27, 37, 47, 57]
    # Privacy: the crops of the faces that were not embedded were wiped all the same.
    assert all(not face.aligned.any() for frame in frames for face in frame.faces)


async def test_a_recheck_that_matches_undecides_the_track_and_can_alert() -> None:
    # The same box: a decided passer-by "turns" into the wanted person at frame 30.
    people = [((PASSER_BY, 50.0),)] * 30 + [((WANTED, 50.0),)] * 30
    embedder, alerts, _ = await _run(people)
    assert len(alerts) == 1
    assert alerts[0].subject == "wanted"
    # Seen on the re-check at frame 37, then embedded every frame again until 3 of 5 hit.
    assert embedder.frames_of(WANTED)[0] == 37
    assert 39 <= alerts[0].frame_index <= 42
    assert alerts[0].hits == 3


async def test_a_face_entering_where_a_decided_track_was_missed_is_embedded() -> None:
    # A decided passer-by leaves (two frames without faces); the wanted person enters near where
    # they were: embedded at once, not taken for the passer-by's track until its re-check.
    people = [((PASSER_BY, 50.0),)] * 20 + [()] * 2 + [((WANTED, 60.0),)] * 10
    embedder, alerts, _ = await _run(people)
    assert embedder.frames_of(WANTED)[0] == 22
    assert [a.frame_index for a in alerts] == [24]


async def test_an_undecided_track_is_embedded_every_frame() -> None:
    # The lookalike stays within the margin of a threshold: never decided. The passer-by beside
    # it is decided: the schedule is per track.
    embedder, alerts, _ = await _run([((LOOKALIKE, 50.0), (PASSER_BY, 200.0))] * 40)
    assert alerts == []
    assert embedder.frames_of(LOOKALIKE) == list(range(40))
    assert len(embedder.frames_of(PASSER_BY)) < 20


async def test_an_alerted_track_is_not_embedded_every_frame() -> None:
    embedder, alerts, frames = await _run([((WANTED, 50.0),)] * 40)
    assert [a.frame_index for a in alerts] == [2]  # one alert per appearance, at 3 of 5
    assert [i for i in embedder.frames_of(WANTED) if i > 5] == [12, 22, 32]
    kept = [f.index for f in frames if f.faces[0].aligned.any()]
    assert kept == [2]  # only the alerting crop survives its decision


async def test_switched_off_every_face_is_embedded() -> None:
    off = replace(SCHEDULE, enabled=False)
    embedder, alerts, _ = await _run([((PASSER_BY, 50.0),)] * 30, off)
    assert embedder.frames_of(PASSER_BY) == list(range(30))
    assert alerts == []


# --- planning: which face is predicted to be a decided track ---------------------------------


def _decided_tracker(box: tuple[float, float, float, float]) -> Tracker:
    tracker = Tracker()
    (track,) = tracker.update(0.0, [box], PEOPLE[[PASSER_BY]])
    track.decided, track.next_look_index = True, 100
    return tracker


def test_plan_skips_only_faces_near_a_decided_track_and_of_its_size() -> None:
    schedule = EmbeddingSchedule(SCHEDULE)
    tracker = _decided_tracker((100.0, 0.0, 140.0, 50.0))  # 40 px wide, seen at t = 0
    # One frame (0.04 s) later, max_speed 1000 px/s: reach 40 / 4 + 40 = 50 px.
    assert schedule.plan(tracker, 1, 0.04, [(140.0, 0.0, 180.0, 50.0)]) == {0: 1}
    assert schedule.plan(tracker, 1, 0.04, [(160.0, 0.0, 200.0, 50.0)]) == {}  # 60 px away
    assert schedule.plan(tracker, 1, 0.04, [(100.0, 0.0, 200.0, 50.0)]) == {}  # 100 px wide
    # Two faces near one track: only the nearer is predicted to be it.
    two = [(130.0, 0.0, 170.0, 50.0), (105.0, 0.0, 145.0, 50.0)]
    assert schedule.plan(tracker, 1, 0.04, two) == {1: 1}


def test_a_large_face_beside_a_decided_one_is_not_taken_for_it() -> None:
    # Street clip, 12.1 s: a 200 px face enters beside a decided 200 px one whose own face the
    # detector missed on that frame. 210 px away, one frame later: beyond 200 / 4 + 40 px.
    schedule = EmbeddingSchedule(SCHEDULE)
    tracker = _decided_tracker((100.0, 0.0, 300.0, 250.0))
    assert schedule.plan(tracker, 1, 0.04, [(310.0, 0.0, 510.0, 250.0)]) == {}
    assert schedule.plan(tracker, 1, 0.04, [(180.0, 0.0, 380.0, 250.0)]) == {0: 1}


def test_a_decided_track_missed_in_the_latest_frame_is_not_trusted() -> None:
    schedule = EmbeddingSchedule(SCHEDULE)
    tracker = _decided_tracker((100.0, 0.0, 140.0, 50.0))
    tracker.update(0.04, [], np.zeros((0, DIM), np.float32))  # a frame without its face
    assert schedule.plan(tracker, 2, 0.08, [(100.0, 0.0, 140.0, 50.0)]) == {}


def test_a_face_nearer_an_undecided_track_is_embedded() -> None:
    # Street clip, 12.5 s: a decided track whose person had left, and the new face entering
    # near its last box, already an undecided track of its own.
    schedule = EmbeddingSchedule(SCHEDULE)
    tracker = _decided_tracker((150.0, 0.0, 360.0, 250.0))
    for t in (0.04, 0.08):  # the person left: their face is missed (the matcher sees each frame)
        tracker.update(t, [], np.zeros((0, DIM), np.float32))
    (new,) = tracker.update(0.12, [(-41.0, 0.0, 146.0, 250.0)], PEOPLE[[WANTED]])
    assert not new.decided
    assert schedule.plan(tracker, 2, 0.16, [(-9.0, 0.0, 181.0, 250.0)]) == {}


def test_plan_embeds_a_decided_tracks_face_when_its_recheck_is_due() -> None:
    schedule = EmbeddingSchedule(SCHEDULE)
    tracker = _decided_tracker((100.0, 0.0, 140.0, 50.0))
    assert schedule.plan(tracker, 100, 0.04, [(100.0, 0.0, 140.0, 50.0)]) == {}
    assert tracker.tracks[1].next_look_index == 110
    assert schedule.plan(tracker, 101, 0.08, [(100.0, 0.0, 140.0, 50.0)]) == {0: 1}


def _decided(track: Track) -> bool:
    """Read through a call: mypy would otherwise narrow the field across ``learn``."""
    return track.decided


def test_a_look_within_the_margin_undecides_but_one_at_an_alerted_subject_does_not() -> None:
    schedule = EmbeddingSchedule(SCHEDULE)
    tracker = _decided_tracker((100.0, 0.0, 140.0, 50.0))
    track = tracker.tracks[1]
    track.alerted.add("wanted")
    schedule.learn(track, GalleryMatch("wanted", 0.9, 0.6), 5, alerted=False)
    assert _decided(track)
    schedule.learn(track, GalleryMatch("other", 0.46, 0.6), 6, alerted=False)
    assert not _decided(track)
    for index in range(7, 14):
        schedule.learn(track, GalleryMatch("other", 0.44, 0.6), index, alerted=False)
    assert not _decided(track)  # 7 clear looks
    schedule.learn(track, GalleryMatch("other", 0.44, 0.6), 14, alerted=False)
    assert _decided(track)
    assert track.next_look_index == 24


# --- config ----------------------------------------------------------------------------------


@pytest.mark.parametrize("changes", [
    {"decide_after": 0}, {"margin": -0.1}, {"margin": 1.5}, {"recheck_every": 1},
    {"max_speed": 0.0},
])
def test_config_rejects_nonsense(changes: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="EmbeddingScheduleConfig"):
        replace(EmbeddingScheduleConfig(), **changes)


def test_a_track_is_decided_only_after_a_whole_fusion_window() -> None:
    with pytest.raises(ConfigError, match="decide_after"):
        MatcherConfig(embedding=EmbeddingScheduleConfig(decide_after=4),
                      alerts=AlertPolicyConfig(window=5))
