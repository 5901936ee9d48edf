"""The unit's watchlist gate: what it holds and its generation, the gallery built from a verified
watchlist on copies of its own, wiping (the decoded watchlist, a dropped gallery of one or both
models, an indexed gallery), and the detector, which analyses no frame while the gate holds
nothing."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from actors.unit.camera import EndOfStream, Frame
from actors.unit.detector import (
    DetectedFaces,
    Detector,
    DetectorConfig,
    DetectorOutput,
    StreamEnded,
)
from actors.unit.gallery import Gallery
from actors.unit.second_opinion import TwoModelGallery, look
from actors.unit.watchlist import Watchlist
from actors.unit.watchlist_gate import HeldWatchlist, WatchlistGate, held_gallery, wipe_watchlist
from models.detection import FaceDetection
from models.detection_plan import PartialPass
from runtime.actor import Actor
from runtime.codec import Codec
from runtime.system import ActorSystem
from tests.actors.support import eventually
from tests.actors.van.test_watchlist_board import DAY, NOW, make_watchlist


def held(version: int = 1, *, second: bool = True, seed: int = 0) -> HeldWatchlist:
    watchlist = make_watchlist(3, seed=seed, second=second)
    return HeldWatchlist("dep-1", version, 0.6, NOW + DAY, "ab" * 32,
                         held_gallery(watchlist, 0.6))


def decoded(watchlist: Watchlist) -> Watchlist:
    """``watchlist`` as a unit gets it: decoded by the codec (read-only array views)."""
    codec = Codec()
    result = codec.decode(codec.encode(watchlist))
    assert isinstance(result, Watchlist)
    return result


# --- the gate -----------------------------------------------------------------------------------


def test_a_new_gate_holds_nothing_and_does_not_scan() -> None:
    gate = WatchlistGate()
    assert (gate.held, gate.scanning, gate.version, gate.generation) == (None, False, 0, 0)
    assert gate.clear() is None
    assert gate.generation == 1  # every change of what is held, even to nothing


def test_install_and_clear_hand_back_what_they_replace_and_move_the_generation() -> None:
    gate = WatchlistGate()
    first, second = held(1), held(2, seed=1)
    assert gate.install(first) is None
    assert (gate.held, gate.scanning, gate.version, gate.generation) == (first, True, 1, 1)
    assert gate.install(second) is first
    assert (gate.version, gate.generation) == (2, 2)
    assert gate.clear() is second
    assert (gate.held, gate.scanning, gate.version, gate.generation) == (None, False, 0, 3)
    assert second.subjects == 3


def test_the_highest_version_installed_per_deployment_never_falls() -> None:
    gate = WatchlistGate()
    assert gate.highest_version("dep-1") is None
    gate.install(held(3))
    gate.clear()
    assert gate.highest_version("dep-1") == 3  # dropped, still remembered
    gate.install(held(2))  # the gate installs what it is given; the keeper checks versions
    assert (gate.version, gate.highest_version("dep-1")) == (2, 3)
    other = held(1)
    gate.install(HeldWatchlist("dep-2", 1, 0.6, NOW + DAY, "cd" * 32, other.gallery))
    assert (gate.highest_version("dep-1"), gate.highest_version("dep-2")) == (3, 1)


# --- the gallery a unit holds -------------------------------------------------------------------


def test_the_deployments_threshold_is_a_floor_under_the_signed_ones() -> None:
    # The list was signed at 0.6 per subject: a van cannot lower it, only raise it.
    watchlist = decoded(make_watchlist(3))
    assert np.array_equal(held_gallery(watchlist, 0.55).thresholds,
                          np.full(3, 0.6, np.float32))
    assert np.array_equal(held_gallery(watchlist, 0.7).thresholds,
                          np.full(3, 0.7, np.float32))


def test_the_held_gallery_has_both_models_and_the_deployments_threshold() -> None:
    watchlist = decoded(make_watchlist(3))
    gallery = held_gallery(watchlist, 0.65)
    assert isinstance(gallery, TwoModelGallery)
    assert gallery.subjects == list(watchlist.subjects)
    assert np.array_equal(gallery.thresholds, np.full(3, 0.65, np.float32))
    assert np.allclose(gallery.embeddings, watchlist.embeddings)
    assert gallery.second.rows == {subject: i for i, subject in enumerate(watchlist.subjects)}
    assert np.array_equal(gallery.second.embeddings, watchlist.second_embeddings)
    assert np.array_equal(gallery.second.thresholds, watchlist.second_thresholds)
    match = gallery.search(watchlist.embeddings[1:2].copy(), k=1)[0][0]
    assert (match.subject, match.threshold) == (watchlist.subjects[1], float(np.float32(0.65)))


def test_a_watchlist_without_the_second_model_gives_a_one_model_gallery() -> None:
    gallery = held_gallery(decoded(make_watchlist(2, second=False)), 0.6)
    assert type(gallery) is Gallery
    assert len(gallery) == 2


def test_the_gallery_owns_writable_copies_so_the_decoded_list_can_be_wiped() -> None:
    # 20 subjects: every array's buffer is over MIN_WIPE_BYTES (a 3-subject list's thresholds,
    # 12 bytes in a buffer of under 64, are left as they are: secure.memory_wipe).
    watchlist = decoded(make_watchlist(20))
    originals = (watchlist.embeddings.copy(), watchlist.second_embeddings.copy())
    assert not watchlist.embeddings.flags.writeable  # the codec's read-only views
    gallery = held_gallery(watchlist, 0.6)
    assert isinstance(gallery, TwoModelGallery)
    for array in (gallery.embeddings, gallery.thresholds, gallery.second.embeddings,
                  gallery.second.thresholds):
        assert array.flags.writeable
    wipe_watchlist(watchlist)
    for array in (watchlist.embeddings, watchlist.thresholds, watchlist.second_embeddings,
                  watchlist.second_thresholds):
        assert not array.any()
    # The gallery was untouched by wiping the watchlist it was made from.
    assert np.allclose(gallery.embeddings, originals[0])
    assert np.array_equal(gallery.second.embeddings, originals[1])


def test_wiping_a_one_model_watchlist_leaves_its_empty_second_arrays_alone() -> None:
    watchlist = decoded(make_watchlist(2, second=False))
    wipe_watchlist(watchlist)
    assert not watchlist.embeddings.any()
    assert watchlist.second_embeddings.shape == (0, 128)


def test_a_wiped_gallery_finds_nobody_and_holds_only_zeros() -> None:
    watchlist = make_watchlist(3)
    gallery = held_gallery(watchlist, 0.6)
    assert isinstance(gallery, TwoModelGallery)
    second = gallery.second
    gallery.wipe()
    assert not gallery.embeddings.any()
    assert not second.embeddings.any()
    assert not second.thresholds.any()
    assert gallery.subjects == []
    assert second.rows == {}
    assert len(gallery) == 0
    assert gallery.search(watchlist.embeddings.copy(), k=1) == [[], [], []]
    # The second model's look at a wiped subject confirms nobody (and shows no face to it).
    assert look(_NeverCalled(), second, np.zeros((8, 8, 3), np.uint8), (0, 0, 4, 4),
                watchlist.subjects[0]) == float("inf")


@dataclass
class _NeverCalled:
    def describe(self, pixels: NDArray[np.uint8],
                 box: tuple[float, float, float, float]) -> NDArray[np.float32]:
        raise AssertionError("a wiped template must not lead to a look")


def test_an_indexed_gallery_is_wiped_with_its_index() -> None:
    watchlist = make_watchlist(40, second=False)
    gallery = Gallery(watchlist.subjects, watchlist.embeddings, watchlist.thresholds,
                      index="sq8")
    assert gallery.search(watchlist.embeddings[:1].copy(), k=1)[0][0].subject == (
        watchlist.subjects[0])
    gallery.wipe()
    assert not gallery.embeddings.any()
    assert gallery.search(watchlist.embeddings[:1].copy(), k=3) == [[]]


# --- the detector, gated ------------------------------------------------------------------------


@dataclass
class CountingFinder:
    """Finds one face in every frame; counts the frames it was shown."""

    calls: list[int] = field(default_factory=list)

    def detect(self, image: NDArray[np.uint8]) -> list[FaceDetection]:
        self.calls.append(int(image[0, 0, 0]))
        keypoints = np.array([[30, 20], [50, 20], [40, 30], [40, 40], [20, 25], [60, 25]],
                             np.float32)
        return [FaceDetection(20.0, 0.0, 60.0, 50.0, 0.9, keypoints)]

    def full_pass_regions(self, frame_width: int,
                          frame_height: int) -> tuple[tuple[int, int, int, int], ...]:
        return ((0, 0, frame_width, frame_height),)

    def detect_partial(self, image: NDArray[np.uint8],
                       partial: PartialPass) -> list[FaceDetection]:
        return self.detect(image)


class Sink(Actor[DetectorOutput]):
    def __init__(self, received: list[DetectorOutput]) -> None:
        self.received = received

    async def receive(self, message: DetectorOutput) -> None:
        self.received.append(message)


def frame(index: int) -> Frame:
    pixels = np.random.default_rng(index).integers(0, 256, (120, 320, 3), dtype=np.uint8)
    pixels[0, 0, 0] = index
    return Frame("cam0", index, index / 30, time.monotonic_ns(), time.time(), pixels)


async def test_a_detector_analyses_no_frame_while_the_gate_holds_nothing(
        system: ActorSystem) -> None:
    gate = WatchlistGate()
    finder = CountingFinder()
    received: list[DetectorOutput] = []
    detectors: list[Detector] = []

    def make() -> Detector:
        detectors.append(Detector(finder, sink, DetectorConfig(in_flight=1), gate=gate))
        return detectors[-1]

    sink = await system.spawn("sink", lambda: Sink(received))
    detector = await system.spawn("detector", make)
    for i in range(4):
        await detector.tell(frame(i))
    await eventually(lambda: bool(detectors) and detectors[0].frames_idle == 4)
    assert finder.calls == []
    assert received == []

    gate.install(held())
    for i in range(4, 7):
        await detector.tell(frame(i))
    await eventually(lambda: len(received) == 3)
    assert finder.calls == [4, 5, 6]
    assert [m.index for m in received if isinstance(m, DetectedFaces)] == [4, 5, 6]

    gate.clear()  # purged: the next frames are dropped again, the stream still ends
    for i in range(7, 9):
        await detector.tell(frame(i))
    await detector.tell(EndOfStream("cam0", 9))
    await eventually(lambda: any(isinstance(m, StreamEnded) for m in received))
    assert finder.calls == [4, 5, 6]
    assert detectors[0].frames_idle == 6
    assert len(detectors) == 1


async def test_a_detector_without_a_gate_analyses_every_frame(system: ActorSystem) -> None:
    finder = CountingFinder()
    received: list[DetectorOutput] = []
    sink = await system.spawn("sink", lambda: Sink(received))
    detector = await system.spawn("detector", lambda: Detector(finder, sink))
    for i in range(3):
        await detector.tell(frame(i))
    await eventually(lambda: len(received) == 3)
    assert finder.calls == [0, 1, 2]


def test_a_list_past_its_not_after_is_not_held_even_before_the_keeper_drops_it() -> None:
    now = [1000.0]
    gate = WatchlistGate(clock=lambda: now[0])
    gate.install(HeldWatchlist("dep-1", 1, 0.6, 1010.0, "0" * 64,
                               held_gallery(decoded(make_watchlist(3)), 0.6)))
    before, scanning = gate.generation, gate.scanning
    now[0] = 1010.0
    assert (scanning, gate.scanning) == (True, False)
    assert gate.held is None
    assert gate.version == 0
    assert gate.expired()
    assert gate.generation > before  # the matcher forgets the list at its next frame
    dropped = gate.clear()  # the keeper still gets it, to overwrite it
    assert dropped is not None
    assert not gate.expired()
