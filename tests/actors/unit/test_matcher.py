"""The matcher actor with a stand-in embedder: fusion into one alert, nothing kept of others,
frames decided in order on its own loop, failures to its supervisor.

The embedder is faked (a unit test may mock; the product uses the real model): each aligned crop
carries the id of the person in its first pixel, and the fake returns that person's embedding.
One test drives the matcher with the real embedder on crops of the shared photos.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from actors.unit.alert_policy import AlertPolicyConfig
from actors.unit.detector import DetectedFaces, DetectorOutput, StreamEnded
from actors.unit.face_analysis import FaceCandidate, analyse_faces
from actors.unit.gallery import Gallery, GalleryMatch
from actors.unit.match_alert import MatchAlert
from actors.unit.matcher import (
    GetMatcherStatistics,
    Matcher,
    MatcherConfig,
    MatcherOutput,
    MatcherStatistics,
)
from guards.config_checks import ConfigError
from models.face_detector import FaceDetector
from models.face_embedder import FaceEmbedder
from models.face_quality import QualityConfig
from models.image_io import load_rgb
from runtime.ordered_window import ResultsReady
from runtime.system import ActorSystem, SystemConfig
from tests.actors.conftest import FAST_ROOT
from tests.actors.support import eventually
from tests.actors.unit.matcher_support import Sink, face_of, frame_of

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


def _frame(index: int, faces: tuple[FaceCandidate, ...]) -> DetectedFaces:
    return frame_of(index, faces, fps=30)


async def test_three_matching_frames_raise_one_alert_and_non_matches_are_wiped() -> None:
    gallery = Gallery(["wanted", "other"], PEOPLE[[WANTED, 1]],
                      np.array([0.6, 0.6], np.float32))
    embedder = FakeEmbedder()
    received: list[MatcherOutput] = []
    async with ActorSystem() as system:
        sink = await system.spawn("sink", lambda: Sink(received))
        matcher = await system.spawn(
            "matcher", lambda: Matcher(embedder, gallery, sink))
        frames = [_frame(i, (face_of(WANTED, 10.0), face_of(PASSER_BY, 200.0))) for i in range(6)]
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
    assert stats.faces + stats.faces_skipped == 12  # the alerted track is then skipped

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
            await matcher.tell(_frame(i, (face_of(PASSER_BY, 50.0),)))
        await matcher.tell(StreamEnded("cam0", frames=10))
        await eventually(lambda: any(isinstance(m, StreamEnded) for m in received))
    assert [m for m in received if isinstance(m, MatchAlert)] == []


class SpyGallery(Gallery):
    """Records every embedding matrix the matcher searches with, and on which task."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queries: list[NDArray[np.float32]] = []
        self.tasks: list[asyncio.Task[object] | None] = []

    def search(self, queries: NDArray[np.float32], k: int = 3) -> list[list[GalleryMatch]]:
        self.queries.append(queries)
        self.tasks.append(asyncio.current_task())
        return super().search(queries, k)


async def test_embeddings_are_wiped_once_their_frame_is_decided() -> None:
    gallery = SpyGallery(["wanted"], PEOPLE[[WANTED]], np.array([0.6], np.float32))
    received: list[MatcherOutput] = []
    async with ActorSystem() as system:
        sink = await system.spawn("sink", lambda: Sink(received))
        matcher = await system.spawn("matcher", lambda: Matcher(FakeEmbedder(), gallery, sink))
        for i in range(4):
            await matcher.tell(_frame(i, (face_of(WANTED, 10.0), face_of(PASSER_BY, 200.0))))
        await matcher.tell(StreamEnded("cam0", frames=4))
        await eventually(lambda: any(isinstance(m, StreamEnded) for m in received))
    assert len(gallery.queries) == 4
    assert all(q.shape == (2, DIM) for q in gallery.queries)
    # Every frame's embeddings, the alerting frame's included, are zeros after its decision.
    assert all(not q.any() for q in gallery.queries)


class SlowEmbedder(FakeEmbedder):
    """Takes longer for earlier frames (the crop's second pixel holds the delay in ms), so
    frames finish embedding in reverse order; a person id of 99 makes it fail."""

    def embed(self, face: NDArray[np.uint8]) -> NDArray[np.float32]:
        time.sleep(int(face[0, 0, 1]) / 1000)
        if face[0, 0, 0] == FAILING:
            raise RuntimeError("embedder failed")
        return super().embed(face)


FAILING = 99


def _slow_face(person: int, x0: float, delay_ms: int) -> FaceCandidate:
    face = face_of(person, x0)
    face.aligned[0, 0, 1] = delay_ms
    return face


async def test_frames_are_decided_in_order_on_the_matchers_own_loop() -> None:
    gallery = SpyGallery(["wanted"], PEOPLE[[WANTED]], np.array([0.6], np.float32))
    loop_tasks: set[asyncio.Task[object] | None] = set()
    received: list[MatcherOutput] = []

    class Recorded(Matcher):
        async def receive(self, message: DetectorOutput | GetMatcherStatistics | ResultsReady,
                          ) -> MatcherStatistics | None:
            loop_tasks.add(asyncio.current_task())
            return await super().receive(message)

    config = MatcherConfig(in_flight=4)
    async with ActorSystem(SystemConfig(blocking_workers=4)) as system:
        sink = await system.spawn("sink", lambda: Sink(received))
        matcher = await system.spawn(
            "matcher", lambda: Recorded(SlowEmbedder(), gallery, sink, config))
        # Frame i holds i + 1 faces (so the spy can tell frames apart); earlier ones are slower.
        for i in range(4):
            faces = tuple(_slow_face(PASSER_BY, 60.0 * j, 40 - 10 * i) for j in range(i + 1))
            await matcher.tell(_frame(i, faces))
        await eventually(lambda: len(gallery.queries) == 4)  # no further message needed
        stats = await matcher.ask(GetMatcherStatistics())
    assert [len(q) for q in gallery.queries] == [1, 2, 3, 4]
    assert len(loop_tasks) == 1
    assert set(gallery.tasks) == loop_tasks
    assert isinstance(stats, MatcherStatistics)
    assert (stats.frames, stats.faces) == (4, 10)


async def test_a_failed_embedding_fails_the_matcher_and_its_supervisor_restarts_it() -> None:
    gallery = Gallery(["wanted"], PEOPLE[[WANTED]], np.array([0.6], np.float32))
    incarnations: list[Matcher] = []
    received: list[MatcherOutput] = []
    config = SystemConfig(root=FAST_ROOT)
    async with ActorSystem(config) as system:
        sink = await system.spawn("sink", lambda: Sink(received))

        def make() -> Matcher:
            incarnations.append(Matcher(SlowEmbedder(), gallery, sink))
            return incarnations[-1]

        matcher = await system.spawn("matcher", make)
        await matcher.tell(_frame(0, (_slow_face(FAILING, 10.0, 30),)))
        stats = await matcher.ask(GetMatcherStatistics())  # while the embedding still runs
        assert isinstance(stats, MatcherStatistics)  # an ask gets its answer, not the failure
        await eventually(lambda: len(incarnations) == 2)  # restarted with no further message
        assert isinstance(await matcher.ask(GetMatcherStatistics()), MatcherStatistics)


@pytest.fixture(scope="module")
def obama_and_biden(shared_data: Path) -> tuple[NDArray[np.uint8], ...]:
    """Aligned crops, by the real detector: Obama twice (two photos), then Biden."""
    detector = FaceDetector()
    photos = shared_data / "faces" / "photos"
    crops = []
    for path in (photos / "barack_obama" / "obama_1.jpg", photos / "barack_obama" / "obama_2.jpg",
                 photos / "joe_biden" / "biden_1.jpg"):
        analysis = analyse_faces(detector, load_rgb(path), QualityConfig())
        crops.append(analysis.usable[0].aligned)
    return tuple(crops)


async def test_the_real_embedder_drives_the_matcher(
        obama_and_biden: tuple[NDArray[np.uint8], ...]) -> None:
    enrolled, seen_again, passer_by = obama_and_biden
    embedder = FaceEmbedder()
    gallery = Gallery(["obama"], embedder.embed(enrolled)[None, :], np.array([0.6], np.float32))
    received: list[MatcherOutput] = []
    async with ActorSystem() as system:
        sink = await system.spawn("sink", lambda: Sink(received))
        matcher = await system.spawn("matcher", lambda: Matcher(embedder, gallery, sink))
        for i in range(4):
            obama, biden = face_of(0, 10.0), face_of(0, 200.0)
            obama.aligned[:] = seen_again
            biden.aligned[:] = passer_by
            await matcher.tell(_frame(i, (obama, biden)))
        await matcher.tell(StreamEnded("cam0", frames=4))
        await eventually(lambda: any(isinstance(m, StreamEnded) for m in received))
    alerts = [m for m in received if isinstance(m, MatchAlert)]
    assert [(a.subject, a.frame_index, a.box[0]) for a in alerts] == [("obama", 2, 10.0)]
    assert alerts[0].score >= 0.6


@pytest.mark.parametrize(("changes", "name"), [
    ({"in_flight": 0}, "in_flight"),
    ({"unit_id": ""}, "unit_id"),
    ({"unit_id": "van\n7"}, "unit_id"),
    ({"alerts": AlertPolicyConfig(min_hits=3, window=6)}, "alerts.window"),
])
def test_a_bad_setting_is_refused_naming_its_field(changes: dict[str, Any],
                                                   name: str) -> None:
    with pytest.raises(ConfigError, match=rf"MatcherConfig\.{name}\b"):
        replace(MatcherConfig(), **changes)
