"""Deferred alerts: a fused match waiting for the second model holds up no frame behind it, is
decided on the looks its frame would have waited for, keeps only a wiped-after-use crop of its
face, and is bounded.

The matcher runs with the stand-ins of second_opinion_support (the first model reads the person
from the crop's first pixel; the second is a mock describer whose looks the test can hold).
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

import actors.unit.matcher as matcher_module
from actors.unit.alert_policy import AlertPolicy
from actors.unit.deferred_alerts import DeferredAlert, DeferredAlerts
from actors.unit.detector import DetectedFaces
from actors.unit.gallery import GalleryMatch
from actors.unit.matcher import CROP_CONTEXT, MatcherConfig, alert_crop
from actors.unit.tracking import FrameOutcome, Track, TrackerConfig
from models.second_opinion_model import CROP_MARGIN, face_crop
from tests.actors.support import eventually
from tests.actors.unit.matcher_support import face_of, frame_of
from tests.actors.unit.second_opinion_support import (
    STRANGER,
    WANTED,
    SlowSecondModel,
    two_model_matcher,
)

MARGIN = max(CROP_CONTEXT, CROP_MARGIN)


def _track(track_id: int = 1) -> Track:
    return Track(track_id, (0.0, 0.0, 10.0, 10.0), np.zeros(4, np.float32), 0.0)


def _kept(monkeypatch: pytest.MonkeyPatch) -> list[DeferredAlert]:
    """Every alert deferred from now on (the test reads their pixels afterwards)."""
    kept: list[DeferredAlert] = []
    add = DeferredAlerts.add

    def keep(self: DeferredAlerts, alert: DeferredAlert) -> None:
        kept.append(alert)
        add(self, alert)

    monkeypatch.setattr(DeferredAlerts, "add", keep)
    return kept


async def test_frames_behind_a_deferred_alert_are_decided_before_its_looks_answer(
        monkeypatch: pytest.MonkeyPatch) -> None:
    kept = _kept(monkeypatch)
    second = SlowSecondModel()
    # The wanted face on frames 0-2 (fused at 2), then only a stranger elsewhere.
    frames = [frame_of(i, (face_of(WANTED, 10.0),)) for i in range(3)]
    frames += [frame_of(i, (face_of(STRANGER, 200.0),)) for i in range(3, 8)]
    async with two_model_matcher(second) as rig:
        for frame in frames:
            await rig.matcher.tell(frame)
        # Every frame but the one that fused is decided while the looks are held.
        await rig.until_decided(len(frames) - 1)
        assert second.started.is_set()
        assert second.given == []
        assert not rig.alerts()
        assert len(kept) == 1
        assert kept[0].index == 2
        assert kept[0].region.any()
        # The looks answer and no frame follows: the finished look itself resolves the alert.
        second.answer.set()
        await eventually(lambda: bool(rig.alerts()))
        await rig.until_decided(len(frames))
        await rig.end_stream(len(frames))
    alerts = rig.alerts()
    assert [(a.subject, a.frame_index, a.hits, a.box) for a in alerts] == [
        ("wanted", 2, 3, frames[2].faces[0].detection.box)]
    # The crop is the one the frame itself would have given; the kept pixels are wiped.
    assert alerts[0].crop_jpeg == alert_crop(frames[2].pixels, frames[2].faces[0].detection.box)
    assert not kept[0].region.any()


@pytest.mark.parametrize("distance", [0.3, 0.9])
async def test_a_deferred_alerts_pixels_are_wiped_whether_it_alerts_or_not(
        monkeypatch: pytest.MonkeyPatch, distance: float) -> None:
    kept = _kept(monkeypatch)
    second = SlowSecondModel()
    second.distance = distance
    frames = [frame_of(i, (face_of(WANTED, 10.0),)) for i in range(10)]
    async with two_model_matcher(second) as rig:
        for frame in frames:
            await rig.matcher.tell(frame)
        # Frames 2-9 all fuse while the looks are held: frame 2's alert is deferred, the later
        # frames are decided at once (the track alerts once, on frame 2, or not at all).
        await rig.until_decided(len(frames) - 1)
        assert len(kept) == 1
        assert kept[0].index == 2
        assert kept[0].region.any()
        second.answer.set()
        await rig.end_stream(len(frames))
        stats = await rig.statistics()
    alerts = rig.alerts()
    assert [a.frame_index for a in alerts] == ([2] if distance < 0.6 else [])
    assert stats.frames == len(frames)  # every deferred frame was decided by the stream's end
    assert all(not alert.region.any() for alert in kept)
    # Disagreeing, the deferred fusion was held.
    assert stats.held == (0 if distance < 0.6 else 1)


async def test_at_the_bound_a_new_deferral_first_waits_for_the_oldest(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(matcher_module, "MAX_DEFERRED_ALERTS", 1)
    kept = _kept(monkeypatch)
    sizes: list[int] = []
    pop = DeferredAlerts.pop

    def popped(self: DeferredAlerts, alert: DeferredAlert) -> None:
        sizes.append(len(self))
        pop(self, alert)

    monkeypatch.setattr(DeferredAlerts, "pop", popped)
    second = SlowSecondModel()
    # Two tracks of the wanted face fuse on frame 2: the second must wait for the first.
    frames = [frame_of(i, (face_of(WANTED, 10.0), face_of(WANTED, 200.0))) for i in range(3)]
    frames.append(frame_of(3, ()))
    async with two_model_matcher(second) as rig:
        for frame in frames:
            await rig.matcher.tell(frame)
        await rig.until_decided(2)
        await eventually(lambda: len(kept) == 1)
        # Frame 2 now waits inside its decision (an ask would wait too) for the first
        # deferral's looks before it may defer the second.
        await asyncio.sleep(0.2)
        assert len(kept) == 1
        second.answer.set()
        await rig.until_decided(len(frames))
        await rig.end_stream(len(frames))
    assert len(kept) == 2
    assert max(sizes) == 1
    # One person, two tracks within the appearance gap: one alert.
    assert len(rig.alerts()) == 1


@pytest.mark.parametrize("box", [(10.0, 5.0, 50.0, 55.0), (0.5, 0.0, 30.2, 41.7),
                                 (280.0, 70.0, 319.5, 119.9), (100.3, 40.6, 180.9, 118.2)])
def test_the_kept_pixels_give_the_crops_the_whole_frame_gives(
        box: tuple[float, float, float, float]) -> None:
    rng = np.random.default_rng(5)
    frame = frame_of(4, ())
    pixels = rng.integers(0, 256, frame.pixels.shape, dtype=np.uint8)
    frame = DetectedFaces(frame.camera, frame.index, frame.t_s, frame.captured_ns,
                          frame.captured_at, pixels, (), 0)
    alert = DeferredAlert.cut(frame, box, track=_track(), match=GalleryMatch("w", 0.7, 0.6),
                              hits=3, looked_at=False, margin=MARGIN)
    assert alert.region.nbytes < pixels.nbytes
    assert alert_crop(alert.region, alert.region_box) == alert_crop(pixels, box)
    kept, kept_box = face_crop(alert.region, alert.region_box)
    whole, whole_box = face_crop(pixels, box)
    assert np.array_equal(kept, whole)
    assert np.allclose(kept_box, whole_box)
    alert.wipe()
    assert not alert.region.any()
    assert pixels.any()  # a copy: the frame itself is untouched


def _deferred(index: int, track_id: int, subject: str = "w") -> DeferredAlert:
    frame = frame_of(index, ())
    return DeferredAlert.cut(frame, (10.0, 10.0, 40.0, 50.0), track=_track(track_id),
                             match=GalleryMatch(subject, 0.7, 0.6), hits=3, looked_at=False,
                             margin=MARGIN)


def test_deferred_alerts_are_one_per_opinion_in_frame_order_and_bounded() -> None:
    alerts = DeferredAlerts(limit=3)
    early, other, late = _deferred(2, 2), _deferred(3, 1, "x"), _deferred(4, 1)  # captured so
    for alert in (late, early, other):
        alerts.add(alert)
    assert alerts.full
    assert len(alerts) == 3
    with pytest.raises(OverflowError, match="3 deferred alerts"):
        alerts.add(_deferred(5, 3))
    assert alerts.waiting(("cam0", 1, "w"))
    assert not alerts.waiting(("cam0", 3, "w"))
    assert alerts.in_frame_order() == [early, other, late]
    assert alerts.oldest() is early
    assert alerts.track_ids("cam0") == {1, 2}
    assert alerts.track_ids("cam1") == set()
    alerts.pop(early)
    with pytest.raises(ValueError, match="not deferred"):
        alerts.pop(early)
    with pytest.raises(ValueError, match="already waits"):
        alerts.add(_deferred(6, 1))  # the same opinion as ``late``
    dropped = alerts.drop("cam0")
    assert set(map(id, dropped)) == {id(late), id(other)}
    assert len(alerts) == 0
    assert alerts.oldest() is None
    assert all(not alert.region.any() for alert in dropped)
    assert early.region.any()  # popped, not dropped: the caller wipes it


def test_a_deferred_confirmation_counts_as_the_same_appearance_and_keeps_the_clock() -> None:
    policy = AlertPolicy()
    early, late = _track(1), _track(2)
    match = FrameOutcome("wanted", 0.9)
    for i in range(3):
        policy.observe(early, match, 1.0 + i * 0.04, confirmed=False)  # deferred at 1.08 s
        policy.observe(late, match, 1.2 + i * 0.04)
    assert late.alerted == {"wanted"}  # confirmed on its own frame at 1.28 s
    # The early track's deferral is confirmed afterwards: the same appearance, no alert.
    assert policy.confirm(early, "wanted", 1.08) is None
    # The clock stayed at 1.28 s: a new appearance is counted from there.
    assert policy.confirm(_track(3), "wanted", 1.28 + policy.config.appearance_gap_s) is None
    assert policy.confirm(_track(4), "wanted", 1.29 + 2 * policy.config.appearance_gap_s) \
        == "wanted"


async def test_a_track_that_ends_before_its_deferred_alert_is_resolved_leaves_no_looks() -> None:
    second = SlowSecondModel()
    second.distance = 0.9  # disagrees: the alert is dropped
    config = MatcherConfig(tracking=TrackerConfig(max_age_s=0.1))
    frames = [frame_of(i, (face_of(WANTED, 10.0),)) for i in range(3)]
    frames += [frame_of(i, ()) for i in range(3, 30)]
    frames += [frame_of(30, (face_of(STRANGER, 200.0),))]
    async with two_model_matcher(second, config) as rig:
        for frame in frames:
            await rig.matcher.tell(frame)
        # Frame 30 is decided after the track ended, its alert still deferred.
        await rig.until_decided(len(frames) - 1)
        assert rig.made[-1]._trackers["cam0"].tracks.keys() == {2}  # the stranger's only
        assert len(rig.made[-1]._deferred) == 1
        # The looks answer after the track ended: recorded for the alert, then dropped with it.
        recorded: list[int] = []
        opinion = rig.made[-1]._second["cam0"]
        record = opinion.record

        def count(track_id: int, subject: str, distance: float, *, frame: int = 0) -> None:
            recorded.append(track_id)
            record(track_id, subject, distance, frame=frame)

        opinion.record = count  # type: ignore[method-assign]
        second.answer.set()
        await rig.until_decided(len(frames))
        assert recorded
        assert set(recorded) == {1}
        assert opinion.tracks_kept == 0  # no later frame was needed for that
        stats = await rig.statistics()
        await rig.end_stream(len(frames))
    assert not rig.alerts()
    assert stats.held == 1
