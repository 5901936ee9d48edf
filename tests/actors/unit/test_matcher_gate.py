"""The matcher following the unit's watchlist gate: without a watchlist faces are wiped and
nothing alerts; a new list makes it forget every track, fusion and opinion made under the old
one; a purge while the second model looks crashes nothing and decides nothing on the purged
list; a matcher (re)started while a two-model list is held loads the second model.

Both models are stand-ins (a unit test may mock): the first reads the person from the crop's
first pixel, the second returns the wanted subject's template (it agrees) and may be held at a
barrier to let the test purge mid-look.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from actors.unit import matcher as matcher_module
from actors.unit.detector import StreamEnded
from actors.unit.gallery import Gallery
from actors.unit.match_alert import MatchAlert
from actors.unit.matcher import GetMatcherStatistics, Matcher, MatcherOutput, MatcherStatistics
from actors.unit.second_opinion import SecondTemplates, TwoModelGallery
from actors.unit.watchlist_gate import HeldWatchlist, WatchlistGate
from runtime.ref import ActorRef
from runtime.system import ActorSystem, SystemConfig
from tests.actors.conftest import FAST_ROOT
from tests.actors.support import WAIT_S, eventually, unit_rows
from tests.actors.unit.matcher_support import Sink, face_of, frame_of

DIM = 192
RNG = np.random.default_rng(31)
PEOPLE = unit_rows(RNG, 3, DIM)
WANTED, PASSER_BY, FAILING = 0, 2, 99
TEMPLATE = RNG.standard_normal(128).astype(np.float32)
TEMPLATE *= np.float32(0.6 / np.linalg.norm(TEMPLATE))


class FirstModel:
    """The person is the crop's first pixel; person ``FAILING`` makes it raise."""

    def __init__(self) -> None:
        self.calls = 0

    def embed(self, face: NDArray[np.uint8]) -> NDArray[np.float32]:
        self.calls += 1
        if face[0, 0, 0] == FAILING:
            raise RuntimeError("embedder failed")
        row: NDArray[np.float32] = PEOPLE[int(face[0, 0, 0])].copy()
        return row


class SecondModel:
    """Returns the wanted template; waits at ``barrier`` (when set) until released."""

    def __init__(self, barrier: tuple[threading.Event, threading.Event] | None = None) -> None:
        self.barrier = barrier
        self.calls = 0

    def describe(self, pixels: NDArray[np.uint8],
                 box: tuple[float, float, float, float]) -> NDArray[np.float32]:
        self.calls += 1
        if self.barrier is not None:
            entered, release = self.barrier
            entered.set()
            if not release.wait(WAIT_S):
                raise TimeoutError("never released")
        return TEMPLATE.copy()


def one_model(version: int) -> HeldWatchlist:
    gallery = Gallery(["wanted", "other"], PEOPLE[[WANTED, 1]].copy(),
                      np.full(2, 0.6, np.float32))
    return HeldWatchlist("dep-1", version, 0.6, 2e9, "ab" * 32, gallery)


def two_model(version: int) -> HeldWatchlist:
    second = SecondTemplates("dlib-resnet-v1-128", "0" * 64, {"wanted": 0},
                             TEMPLATE[None, :].copy(), np.array([0.6], np.float32))
    gallery = TwoModelGallery(["wanted"], PEOPLE[[WANTED]].copy(), np.array([0.6], np.float32),
                              second)
    return HeldWatchlist("dep-1", version, 0.6, 2e9, "ab" * 32, gallery)


async def statistics(matcher: ActorRef[Any]) -> MatcherStatistics:
    stats = await matcher.ask(GetMatcherStatistics(), timeout=WAIT_S)
    assert isinstance(stats, MatcherStatistics)
    return stats


async def decided(matcher: ActorRef[Any], frames: int) -> None:
    """Wait until ``frames`` frames were decided."""
    async with asyncio.timeout(WAIT_S):
        while (await statistics(matcher)).frames < frames:  # noqa: ASYNC110 - an ask
            await asyncio.sleep(0.005)


def alerts(received: list[MatcherOutput]) -> list[MatchAlert]:
    return [m for m in received if isinstance(m, MatchAlert)]


def matcher_cell_metrics(system: ActorSystem) -> tuple[int, int]:
    cell = next(c for c in system.cells() if c.name == "matcher")
    return cell.metrics.failures, cell.metrics.restarts


async def test_without_a_watchlist_faces_are_wiped_and_nothing_alerts(
        system: ActorSystem) -> None:
    gate = WatchlistGate()
    received: list[MatcherOutput] = []
    sink = await system.spawn("sink", lambda: Sink(received))
    matcher = await system.spawn("matcher", lambda: Matcher(FirstModel(), gate, sink))
    frames = [frame_of(i, (face_of(WANTED, 10.0), face_of(PASSER_BY, 200.0)), fps=30)
              for i in range(6)]
    for frame in frames:
        await matcher.tell(frame)
    await matcher.tell(StreamEnded("cam0", frames=6))
    await eventually(lambda: any(isinstance(m, StreamEnded) for m in received))
    assert alerts(received) == []
    assert all(not face.aligned.any() for frame in frames for face in frame.faces)
    stats = await statistics(matcher)
    assert (stats.frames, stats.alerts, stats.faces) == (6, 0, 0)  # nothing was matched


async def test_a_new_watchlist_mid_stream_forgets_the_tracks_made_under_the_old_one(
        system: ActorSystem) -> None:
    gate = WatchlistGate()
    gate.install(one_model(1))
    received: list[MatcherOutput] = []
    sink = await system.spawn("sink", lambda: Sink(received))
    matcher = await system.spawn("matcher", lambda: Matcher(FirstModel(), gate, sink))
    for i in range(2):  # two hits of three under version 1
        await matcher.tell(frame_of(i, (face_of(WANTED, 10.0),), fps=30))
    await decided(matcher, 2)
    old = gate.install(one_model(2))
    assert old is not None
    old.gallery.wipe()
    for i in range(2, 4):  # had the hits under version 1 counted, frame 2 would alert
        await matcher.tell(frame_of(i, (face_of(WANTED, 10.0),), fps=30))
    await decided(matcher, 4)
    assert alerts(received) == []
    await matcher.tell(frame_of(4, (face_of(WANTED, 10.0),), fps=30))
    await eventually(lambda: len(alerts(received)) == 1)
    alert = alerts(received)[0]
    assert (alert.subject, alert.frame_index, alert.hits, alert.watchlist_version) == (
        "wanted", 4, 3, 2)


async def test_a_purge_mid_stream_stops_the_alerts_and_wipes_the_faces(
        system: ActorSystem) -> None:
    gate = WatchlistGate()
    gate.install(one_model(1))
    received: list[MatcherOutput] = []
    sink = await system.spawn("sink", lambda: Sink(received))
    matcher = await system.spawn("matcher", lambda: Matcher(FirstModel(), gate, sink))
    for i in range(2):
        await matcher.tell(frame_of(i, (face_of(WANTED, 10.0),), fps=30))
    await decided(matcher, 2)
    held = gate.clear()
    assert held is not None
    held.gallery.wipe()
    frames = [frame_of(i, (face_of(WANTED, 10.0),), fps=30) for i in range(2, 8)]
    for frame in frames:
        await matcher.tell(frame)
    await decided(matcher, 8)
    assert alerts(received) == []
    assert all(not frame.faces[0].aligned.any() for frame in frames)


async def test_a_purge_while_the_second_model_looks_decides_nothing_and_crashes_nothing(
) -> None:
    entered, release = threading.Event(), threading.Event()
    second = SecondModel((entered, release))
    gate = WatchlistGate()
    gate.install(two_model(1))
    received: list[MatcherOutput] = []
    # One worker: the frame's second look waits behind the first, so it starts after the purge.
    async with ActorSystem(SystemConfig(root=FAST_ROOT, blocking_workers=1)) as system:
        sink = await system.spawn("sink", lambda: Sink(received))
        matcher = await system.spawn("matcher", lambda: Matcher(FirstModel(), gate, sink,
                                                                describer=second))
        frame = frame_of(0, (face_of(WANTED, 10.0), face_of(WANTED, 200.0)), fps=30)
        await matcher.tell(frame)
        await eventually(entered.is_set)
        held = gate.clear()  # what the keeper does on a purge
        assert held is not None
        held.gallery.wipe()
        release.set()
        await decided(matcher, 1)
        later = frame_of(1, (face_of(WANTED, 10.0),), fps=30)
        await matcher.tell(later)
        await decided(matcher, 2)
        stats = await statistics(matcher)
        assert matcher_cell_metrics(system) == (0, 0)
    assert second.calls == 1  # the second look found the template wiped: no face shown
    assert stats.second_looks == 2
    assert alerts(received) == []
    assert all(not face.aligned.any() for face in (*frame.faces, *later.faces))


async def test_a_matcher_restarted_while_a_two_model_list_is_held_loads_the_second_model(
        monkeypatch: pytest.MonkeyPatch) -> None:
    second = SecondModel()
    loaded: list[SecondModel] = []

    def load() -> SecondModel:
        loaded.append(second)
        return second

    monkeypatch.setattr(matcher_module, "shared_second_worker", load)
    gate = WatchlistGate()
    gate.install(two_model(1))
    received: list[MatcherOutput] = []
    async with ActorSystem(SystemConfig(root=FAST_ROOT)) as system:
        sink = await system.spawn("sink", lambda: Sink(received))
        matcher = await system.spawn("matcher", lambda: Matcher(FirstModel(), gate, sink))
        # The first model fails once: the supervisor restarts the matcher with the list held.
        await matcher.tell(frame_of(0, (face_of(FAILING, 10.0),), fps=30))
        await eventually(lambda: matcher_cell_metrics(system) == (1, 1))
        for i in range(1, 8):
            await matcher.tell(frame_of(i, (face_of(WANTED, 10.0),), fps=30))
        await eventually(lambda: len(alerts(received)) == 1, timeout_s=WAIT_S)
        assert matcher_cell_metrics(system) == (1, 1)
    assert loaded
    assert second.calls >= 1  # it looked (one sure look may settle it)
    assert alerts(received)[0].watchlist_version == 1
