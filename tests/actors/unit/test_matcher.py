"""The matcher actor with a stand-in embedder: fusion into one alert, and nothing kept of others.

The embedder is faked (a unit test may mock; the product uses the real model): each aligned crop
carries the id of the person in its first pixel, and the fake returns that person's embedding.
"""

from __future__ import annotations

import time

import numpy as np
from numpy.typing import NDArray

from actors.unit.detector import DetectedFaces, StreamEnded
from actors.unit.face_analysis import FaceCandidate
from actors.unit.gallery import Gallery
from actors.unit.match_alert import MatchAlert
from actors.unit.matcher import (
    Embedder,
    GetMatcherStatistics,
    Matcher,
    MatcherOutput,
    MatcherStatistics,
)
from models.detection import FaceDetection
from models.face_embedder import FaceEmbedder
from models.face_quality import QualityVerdict
from runtime.actor import Actor
from runtime.system import ActorSystem
from tests.actors.support import eventually

DIM = 192
RNG = np.random.default_rng(7)
PEOPLE = RNG.standard_normal((4, DIM)).astype(np.float32)
PEOPLE /= np.linalg.norm(PEOPLE, axis=1, keepdims=True)
WANTED, PASSER_BY = 0, 3


class FakeEmbedder:
    """Reads the person id from the crop's first pixel; records every crop it was given."""

    def __init__(self) -> None:
        self.crops: list[NDArray[np.uint8]] = []

    def embed(self, face: NDArray[np.uint8]) -> NDArray[np.float32]:
        self.crops.append(face)
        embedding: NDArray[np.float32] = PEOPLE[int(face[0, 0, 0])].copy()
        return embedding


class Sink(Actor[MatcherOutput]):
    def __init__(self, received: list[MatcherOutput]) -> None:
        self.received = received

    async def receive(self, message: MatcherOutput) -> None:
        self.received.append(message)


def _face(person: int, x0: float) -> FaceCandidate:
    crop = np.full((112, 112, 3), 90, np.uint8)
    crop[0, 0, 0] = person
    keypoints = np.array([[x0 + 10, 20], [x0 + 30, 20], [x0 + 20, 30], [x0 + 20, 40],
                          [x0, 25], [x0 + 40, 25]], np.float32)
    detection = FaceDetection(x0, 0.0, x0 + 40.0, 50.0, 0.9, keypoints)
    verdict = QualityVerdict(None, 0.9, 20.0, 0.0, 100.0)
    return FaceCandidate(detection, crop, verdict)


def _frame(index: int, faces: tuple[FaceCandidate, ...]) -> DetectedFaces:
    pixels = np.full((120, 320, 3), 60, np.uint8)
    return DetectedFaces("cam0", index, index / 30, time.monotonic_ns(), time.time(), pixels,
                         faces, rejected=0)


async def test_three_matching_frames_raise_one_alert_and_non_matches_are_wiped() -> None:
    gallery = Gallery(["wanted", "other"], PEOPLE[[WANTED, 1]],
                      np.array([0.6, 0.6], np.float32))
    embedder = FakeEmbedder()
    received: list[MatcherOutput] = []
    async with ActorSystem() as system:
        sink = await system.spawn("sink", lambda: Sink(received))
        matcher = await system.spawn(
            "matcher", lambda: Matcher(embedder, gallery, sink))
        frames = [_frame(i, (_face(WANTED, 10.0), _face(PASSER_BY, 200.0))) for i in range(6)]
        for frame in frames:
            await matcher.tell(frame)
        await matcher.tell(StreamEnded("cam0", frames=6, faces_seen=12))
        await eventually(lambda: any(isinstance(m, StreamEnded) for m in received))
        stats = await matcher.ask(GetMatcherStatistics())

    alerts = [m for m in received if isinstance(m, MatchAlert)]
    assert len(alerts) == 1, alerts
    alert = alerts[0]
    assert alert.subject == "wanted"
    assert alert.frame_index == 2  # the third matching frame (3 of 5)
    assert alert.hits == 3
    assert alert.score > 0.99
    assert alert.crop_jpeg.startswith(b"\xff\xd8")  # a JPEG for the officer
    ended = [m for m in received if isinstance(m, StreamEnded)]
    assert ended[0].alerts == 1
    assert ended[0].faces_seen == 12
    assert isinstance(stats, MatcherStatistics)
    assert stats.frames == 6
    assert stats.faces == 12

    # Privacy: every crop of the passer-by was wiped once its frame was decided; of the wanted
    # person's crops, only the alerting one may keep its pixels (the others were wiped too).
    passer_by = [f.faces[1].aligned for f in frames]
    assert all(not crop.any() for crop in passer_by)
    kept = [i for i, f in enumerate(frames) if f.faces[0].aligned.any()]
    assert kept == [2]


async def test_a_person_matching_nobody_never_alerts() -> None:
    gallery = Gallery(["wanted"], PEOPLE[[WANTED]], np.array([0.6], np.float32))
    received: list[MatcherOutput] = []
    async with ActorSystem() as system:
        sink = await system.spawn("sink", lambda: Sink(received))
        matcher = await system.spawn(
            "matcher", lambda: Matcher(FakeEmbedder(), gallery, sink))
        for i in range(10):
            await matcher.tell(_frame(i, (_face(PASSER_BY, 50.0),)))
        await matcher.tell(StreamEnded("cam0", frames=10))
        await eventually(lambda: any(isinstance(m, StreamEnded) for m in received))
    assert [m for m in received if isinstance(m, MatchAlert)] == []


def test_the_real_embedder_satisfies_the_matchers_protocol() -> None:
    real: Embedder = FaceEmbedder.__new__(FaceEmbedder)  # type-checked, not loaded
    assert callable(real.embed)
    assert FakeEmbedder().embed(_face(1, 0.0).aligned).shape == (DIM,)
