"""The two-model rule in the matcher: an alert needs both models; the second model sees only
candidates, a bounded number of times per track, and keeps nothing of an ended track.

The first model is the stand-in of test_matcher (the crop's first pixel names the person);
the second is a mock describer (a unit test may mock) that returns a descriptor at a chosen
distance from the wanted subject's template and records which faces it was shown.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from numpy.typing import NDArray

from actors.unit.alert_policy import AlertPolicy
from actors.unit.detector import DetectedFaces
from actors.unit.gallery import GalleryMatch
from actors.unit.match_alert import MatchAlert
from actors.unit.matcher import MatcherConfig, MatcherStatistics
from actors.unit.second_opinion import SecondOpinion, SecondOpinionConfig
from actors.unit.tracking import FrameOutcome, Track, TrackerConfig
from guards.config_checks import ConfigError
from tests.actors.support import WAIT_S, eventually
from tests.actors.unit.matcher_support import face_of, frame_of
from tests.actors.unit.second_opinion_support import (
    BELOW_CANDIDATE,
    STRANGER,
    WANTED,
    SecondModel,
    SlowSecondModel,
    two_model_gallery,
    two_model_matcher,
)


async def _run(second: SecondModel, frames: list[DetectedFaces],
               config: MatcherConfig | None = None,
               ) -> tuple[list[MatchAlert], MatcherStatistics, int]:
    """Alerts, the statistics once every frame is decided, and how many tracks had looks kept
    then (before the end of the stream drops them all)."""
    async with two_model_matcher(second, config) as rig:
        for frame in frames:
            await rig.matcher.tell(frame)
        stats = await rig.until_decided(len(frames))
        opinion = rig.made[-1]._second.get("cam0")
        kept = opinion.tracks_kept if opinion is not None else 0
        await rig.end_stream(len(frames))
        assert rig.made[-1]._second == {}  # the end of the stream drops every look
    return rig.alerts(), stats, kept


async def test_a_second_model_that_disagrees_blocks_the_alert() -> None:
    second = SecondModel(distance=0.9)  # beyond the subject's 0.6
    # Enough frames for every look it may make, one at a time.
    frames = [frame_of(i, (face_of(WANTED, 10.0),)) for i in range(60)]
    alerts, stats, _ = await _run(second, frames)
    assert alerts == []
    assert stats.second_looks == SecondOpinionConfig().max_looks  # then it stops looking
    assert stats.held > 0  # the first model alone would have alerted


async def test_frames_are_decided_while_a_look_is_in_flight_and_the_alert_waits_for_it(
        ) -> None:
    # Frames 0 and 1 are candidates but cannot fuse (3 of 5 needs a third match): they are
    # decided without waiting for their looks. Frame 2 fuses: it waits for them, then alerts.
    second = SlowSecondModel()
    async with two_model_matcher(second) as rig:
        for i in range(2):
            await rig.matcher.tell(frame_of(i, (face_of(WANTED, 10.0),)))
        await rig.until_decided(2)
        assert second.started.is_set()
        assert not second.answer.is_set()
        assert second.given == []  # no look has answered: both frames were decided without
        await rig.matcher.tell(frame_of(2, (face_of(WANTED, 10.0),)))
        second.answer.set()
        await eventually(lambda: bool(rig.alerts()))
    assert [(a.subject, a.frame_index) for a in rig.alerts()] == [("wanted", 2)]
    # One look at a time on a track: frame 1 started none while frame 0's was in flight, and
    # that one (0.3, within 0.6 - sure_margin) settled the opinion alone.
    assert len(second.given) == 1


async def test_a_second_model_that_agrees_lets_the_alert_through() -> None:
    second = SecondModel(distance=0.55)  # within the subject's 0.6, but not by sure_margin
    frames = [frame_of(i, (face_of(WANTED, 10.0),)) for i in range(12)]
    alerts, stats, _ = await _run(second, frames)
    assert [(a.subject, a.frame_index, a.hits) for a in alerts] == [("wanted", 2, 3)]
    # Two agreeing looks settle the opinion; no look after that (nor after the alert).
    assert stats.second_looks == SecondOpinionConfig().min_agreeing
    # The descriptors it made were wiped once compared.
    assert second.given
    assert all(not d.any() for d in second.given)


async def test_an_alert_waits_for_the_second_models_agreement_then_comes() -> None:
    # Needing 4 agreeing looks, the fusion (3 of 5 at frame 2) is held: only 3 looks were made
    # up to frame 2. The next frames fuse again, a fourth look agrees, and the alert comes.
    config = MatcherConfig(second_opinion=SecondOpinionConfig(min_agreeing=4, sure_margin=None))
    async with two_model_matcher(SecondModel(distance=0.3), config) as rig:
        for i in range(3):
            await rig.matcher.tell(frame_of(i, (face_of(WANTED, 10.0),)))
        await rig.until_decided(3)  # frame 2 is counted once its deferred alert was resolved
        assert (await rig.statistics()).held == 1
        assert not rig.alerts()
        for i in range(3, 8):
            await rig.matcher.tell(frame_of(i, (face_of(WANTED, 10.0),)))
        await eventually(lambda: bool(rig.alerts()))
        stats = await rig.statistics()
    assert [(a.subject, a.frame_index) for a in rig.alerts()] == [("wanted", 3)]
    assert stats.held == 1


async def test_the_second_model_never_sees_a_face_below_the_candidate_score() -> None:
    second = SecondModel(distance=0.3)
    frames = [frame_of(i, (face_of(BELOW_CANDIDATE, 10.0), face_of(STRANGER, 200.0)))
              for i in range(10)]
    alerts, stats, _ = await _run(second, frames)
    assert alerts == []
    assert second.boxes == []
    assert stats.second_looks == 0
    assert stats.faces + stats.faces_skipped == 20  # the stranger's track may be decided
    assert stats.faces >= 10  # the face below the candidate score was embedded every frame


async def test_only_the_candidate_of_a_frame_is_shown_to_the_second_model() -> None:
    second = SecondModel(distance=0.3)
    frames = [frame_of(i, (face_of(WANTED, 10.0), face_of(BELOW_CANDIDATE, 200.0)))
              for i in range(4)]
    alerts, _, _ = await _run(second, frames)
    assert len(alerts) == 1
    assert second.boxes
    assert all(box[0] == 10.0 for box in second.boxes)


async def test_the_second_models_looks_are_dropped_with_their_track() -> None:
    config = MatcherConfig(tracking=TrackerConfig(max_age_s=0.1))
    second = SecondModel(distance=0.9)
    # The wanted face on frames 0-2, then nobody for a second: its track ends.
    frames = [frame_of(i, (face_of(WANTED, 10.0),)) for i in range(3)]
    frames += [frame_of(i, ()) for i in range(3, 30)]
    frames += [frame_of(30, (face_of(STRANGER, 200.0),))]
    _, stats, kept = await _run(second, frames, config)
    assert stats.second_looks >= 2  # frame 0's, then frame 1's or the deferred frame 2's
    # The looks at the ended track were dropped when the next frame with faces was decided.
    assert kept == 0


def test_an_unconfirmed_fusion_starts_no_appearance() -> None:
    policy = AlertPolicy()
    track = Track(1, (0.0, 0.0, 10.0, 10.0), np.zeros(4, np.float32), 0.0)
    match = FrameOutcome("wanted", 0.9)
    for i in range(3):
        assert policy.observe(track, match, i * 0.04, confirmed=False) is None
    assert track.alerted == set()
    assert policy.fuses(track, "wanted")
    # Agreement arrives on the next frame: the alert comes (not taken for a repeat).
    assert policy.observe(track, match, 0.12, confirmed=True) == "wanted"


def test_an_opinion_agrees_only_within_the_subjects_threshold() -> None:
    templates = two_model_gallery().second
    opinion = SecondOpinion(templates, SecondOpinionConfig(max_looks=3, min_agreeing=2))
    assert opinion.is_candidate(GalleryMatch("wanted", 0.50, 0.6))
    assert not opinion.is_candidate(GalleryMatch("wanted", 0.49, 0.6))
    assert not opinion.is_candidate(None)
    opinion.record(7, "wanted", 0.61)
    opinion.record(7, "wanted", 0.59)
    assert not opinion.agrees(7, "wanted")
    assert opinion.wants_look(7, "wanted")
    opinion.record(7, "wanted", 0.6)
    assert opinion.agrees(7, "wanted")
    assert not opinion.wants_look(7, "wanted")
    opinion.forget_ended([8])
    assert opinion.tracks_kept == 0


def test_one_look_well_inside_the_threshold_agrees_by_itself() -> None:
    templates = two_model_gallery().second  # the subject's distance threshold: 0.6
    opinion = SecondOpinion(templates, SecondOpinionConfig())  # sure below 0.5
    opinion.record(7, "wanted", 0.55, frame=3)
    assert not opinion.agrees(7, "wanted")
    assert opinion.wants_look(7, "wanted")
    opinion.record(8, "wanted", 0.49, frame=3)
    assert opinion.agrees(8, "wanted")
    assert not opinion.wants_look(8, "wanted")
    # Only looks at frames up to ``up_to`` count (a deferred alert's view).
    opinion.record(7, "wanted", 0.4, frame=5)
    assert opinion.agrees(7, "wanted")
    assert not opinion.agrees(7, "wanted", up_to=4)
    assert opinion.wants_look(7, "wanted", up_to=4)
    # Without the margin, one look never agrees alone; two within the threshold do.
    strict = SecondOpinion(templates, SecondOpinionConfig(sure_margin=None))
    strict.record(7, "wanted", 0.1)
    assert not strict.agrees(7, "wanted")
    strict.record(7, "wanted", 0.59)
    assert strict.agrees(7, "wanted")


class OneAtATimeSecondModel(SecondModel):
    """Answers a look only when the test releases it (``release``); distance 0.3: sure."""

    def __init__(self) -> None:
        super().__init__(distance=0.3)
        self.permits = threading.Semaphore(0)

    def describe(self, pixels: NDArray[np.uint8],
                 box: tuple[float, float, float, float]) -> NDArray[np.float32]:
        assert self.permits.acquire(timeout=WAIT_S), "the test never released the look"
        return super().describe(pixels, box)


async def test_one_sure_look_lets_the_alert_through_without_waiting_for_the_next() -> None:
    second = OneAtATimeSecondModel()
    async with two_model_matcher(second) as rig:
        for i in range(4):  # a look starts on frame 0; the fusion defers frame 2
            await rig.matcher.tell(frame_of(i, (face_of(WANTED, 10.0),)))
        second.permits.release()  # only one look may answer
        await eventually(lambda: bool(rig.alerts()))
        assert len(second.given) == 1
        second.permits.release()  # a later look, if one was started, ends too
        await rig.end_stream(4)
    assert [a.frame_index for a in rig.alerts()] == [2]


@pytest.mark.parametrize("changes", [{"min_agreeing": 0}, {"max_looks": 0},
                                     {"min_agreeing": 3, "max_looks": 2},
                                     {"candidate_margin": -0.1}, {"candidate_margin": 0.6},
                                     {"sure_margin": -0.1}, {"sure_margin": 1.5}])
def test_a_bad_setting_is_refused_naming_its_field(changes: dict[str, float]) -> None:
    with pytest.raises(ConfigError, match="SecondOpinionConfig"):
        SecondOpinionConfig(**changes)  # type: ignore[arg-type]


class KeepingSecondModel(SecondModel):
    """Also keeps a reference to every image it is shown (to read it after the look)."""

    def __init__(self, distance: float) -> None:
        super().__init__(distance)
        self.shown: list[NDArray[np.uint8]] = []

    def describe(self, pixels: NDArray[np.uint8],
                 box: tuple[float, float, float, float]) -> NDArray[np.float32]:
        assert pixels.any()  # a face, not zeros
        self.shown.append(pixels)
        return super().describe(pixels, box)


async def test_a_look_is_given_a_copy_of_the_face_not_the_frame_and_wipes_it() -> None:
    second = KeepingSecondModel(distance=0.55)
    frames = [frame_of(i, (face_of(WANTED, 10.0),)) for i in range(6)]
    alerts, _, _ = await _run(second, frames)
    assert len(alerts) == 1
    assert second.shown
    frame_pixels = frames[0].pixels
    for image in second.shown:
        assert image.size < frame_pixels.size  # the face and its margin only
        assert not any(np.shares_memory(image, f.pixels) for f in frames)
        assert not image.any()  # wiped once the look answered
    assert all(f.pixels.any() for f in frames)  # the frames themselves are untouched
