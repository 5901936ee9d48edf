"""``Tracker``: faces followed across frames by (predicted) box overlap and embedding similarity,
gated by plausible motion.

Privacy invariant under test: an ended track's embedding array is overwritten with zeros (the
array object itself, so any reference still held elsewhere sees zeros) and dropped.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from actors.unit.tracking import Box, FrameOutcome, Tracker, TrackerConfig, iou
from guards.config_checks import ConfigError
from tests.actors.support import toward, unit_rows

D = 32


def faces(*rows: NDArray[np.float32]) -> NDArray[np.float32]:
    """One frame's embeddings, a row per face."""
    return np.stack(rows).astype(np.float32)


def shifted(box: Box, dx: float, dy: float = 0.0) -> Box:
    """``box`` moved by ``dx``, ``dy`` pixels."""
    return (box[0] + dx, box[1] + dy, box[2] + dx, box[3] + dy)


# --- iou --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("a", "b", "expected"), [
    ((0, 0, 10, 10), (0, 0, 10, 10), 1.0),              # identical
    ((0, 0, 10, 10), (5, 0, 15, 10), 50 / 150),          # half shifted
    ((0, 0, 10, 10), (0, 0, 5, 5), 25 / 100),            # contained
    ((0, 0, 10, 10), (5, 5, 15, 15), 25 / 175),          # corner overlap
    ((0, 0, 10, 10), (10, 0, 20, 10), 0.0),              # touching edges
    ((0, 0, 10, 10), (20, 20, 30, 30), 0.0),             # disjoint
    ((0, 0, 10, 10), (-5, -5, 1, 1), 1 / 135),           # partly off-frame box
    ((0, 0, 0, 0), (0, 0, 0, 0), 0.0),                   # degenerate
])
def test_iou_values(a: Box, b: Box, expected: float) -> None:
    assert iou(a, b) == pytest.approx(expected)
    assert iou(b, a) == pytest.approx(expected)


COORD = st.floats(-100, 100, allow_nan=False)
SIZE = st.floats(0.5, 100, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(x=COORD, y=COORD, w=SIZE, h=SIZE, x2=COORD, y2=COORD, w2=SIZE, h2=SIZE)
def test_iou_is_symmetric_and_bounded(x: float, y: float, w: float, h: float, x2: float,
                                      y2: float, w2: float, h2: float) -> None:
    a: Box = (x, y, x + w, y + h)
    b: Box = (x2, y2, x2 + w2, y2 + h2)
    assert 0.0 <= iou(a, b) <= 1.0 + 1e-12
    assert iou(a, b) == pytest.approx(iou(b, a))
    assert iou(a, a) == pytest.approx(1.0)


# --- association ------------------------------------------------------------------------------


def test_overlapping_box_continues_the_track_even_with_a_dissimilar_embedding() -> None:
    rng = np.random.default_rng(0)
    (a,) = unit_rows(rng, 1, D)
    tracker = Tracker()
    (first,) = tracker.update(0.0, [(100, 100, 150, 160)], faces(a))
    # A blurred frame: the embedding is unrecognisable but the face has barely moved.
    moved: Box = (104, 102, 154, 162)
    (second,) = tracker.update(0.033, [moved], faces(toward(rng, a, 0.0)))
    assert second is first
    assert second.box == moved
    assert second.last_seen_s == 0.033
    assert len(tracker.tracks) == 1


def test_embedding_continues_the_track_without_overlap_within_the_gate() -> None:
    rng = np.random.default_rng(1)
    (a,) = unit_rows(rng, 1, D)
    tracker = Tracker()
    (first,) = tracker.update(0.0, [(10, 10, 60, 70)], faces(a))
    # 0.1 s later, 80 px (1.6 widths) away: no overlap at all, the same face by its embedding.
    moved: Box = (90, 10, 140, 70)
    assert iou(moved, (10, 10, 60, 70)) == 0.0
    (second,) = tracker.update(0.1, [moved], faces(toward(rng, a, 0.7)))
    assert second is first
    assert second.box == moved


def test_neither_overlap_nor_similarity_starts_a_new_track() -> None:
    rng = np.random.default_rng(2)
    (a,) = unit_rows(rng, 1, D)
    tracker = Tracker()
    (first,) = tracker.update(0.0, [(10, 10, 60, 70)], faces(a))
    (second,) = tracker.update(0.1, [(400, 50, 560, 250)], faces(toward(rng, a, 0.3)))
    assert second is not first
    assert second.track_id != first.track_id
    assert len(tracker.tracks) == 2


def test_two_faces_stay_on_their_own_tracks() -> None:
    rng = np.random.default_rng(3)
    a, b = unit_rows(rng, 2, D)
    tracker = Tracker()
    # Side by side and overlapping each other: each new box also overlaps the other face's
    # track by more than min_iou, so overlap alone is ambiguous and the embeddings decide.
    box_a: Box = (0, 0, 10, 10)
    box_b: Box = (6, 0, 16, 10)
    track_a, track_b = tracker.update(0.0, [box_a, box_b], faces(a, b))
    assert track_a is not track_b
    for step in range(1, 10):
        t = step * 0.033
        box_a, box_b = shifted(box_a, 0.7), shifted(box_b, 0.7)
        ea, eb = toward(rng, a, 0.8), toward(rng, b, 0.8)
        # The detector's order changes from frame to frame.
        if step % 2:
            got_b, got_a = tracker.update(t, [box_b, box_a], faces(eb, ea))
        else:
            got_a, got_b = tracker.update(t, [box_a, box_b], faces(ea, eb))
        assert got_a is track_a
        assert got_b is track_b
    assert len(tracker.tracks) == 2
    assert tracker.tracks[track_a.track_id].box == box_a


def test_two_tracks_never_take_the_same_face() -> None:
    rng = np.random.default_rng(4)
    a, b = unit_rows(rng, 2, D)
    tracker = Tracker()
    tracker.update(0.0, [(0, 0, 10, 10), (2, 0, 12, 10)], faces(a, b))
    # One face left, overlapping both tracks: only one of them continues.
    (only,) = tracker.update(0.033, [(1, 0, 11, 10)], faces(a))
    assert only.track_id == 1  # the similar one
    assert sorted(tracker.tracks) == [1, 2]


def test_the_track_keeps_its_own_copy_of_the_embedding() -> None:
    rng = np.random.default_rng(5)
    (a,) = unit_rows(rng, 1, D)
    tracker = Tracker()
    frame = faces(a)
    (track,) = tracker.update(0.0, [(0, 0, 10, 10)], frame)
    frame.fill(0.0)  # what the matcher does once a frame is decided
    assert np.array_equal(track.embedding, a)
    # Association by embedding still works after the caller wiped its copy.
    (again,) = tracker.update(0.1, [(30, 0, 40, 10)], faces(a))
    assert again is track


# --- expiry and clearing ----------------------------------------------------------------------


def test_track_expires_after_max_age_and_its_embedding_is_zeroed() -> None:
    rng = np.random.default_rng(6)
    a, b = unit_rows(rng, 2, D)
    tracker = Tracker(TrackerConfig(max_age_s=1.0))
    (track,) = tracker.update(0.0, [(0, 0, 10, 10)], faces(a))
    embedding = track.embedding  # a reference held elsewhere, taken long before expiry
    later = faces(toward(rng, a, 0.9))
    (same,) = tracker.update(0.5, [(1, 0, 11, 10)], later)
    assert same is track
    # Updated in place: no older copy of the face is left behind in some replaced array, and
    # the tracker does not share the caller's array (which the matcher wipes).
    assert track.embedding is embedding
    expected = later[0].copy()
    later.fill(0.0)
    assert np.array_equal(embedding, expected)
    assert np.any(embedding != 0)
    track.outcomes.append(FrameOutcome("subject", 0.9))

    # Exactly max_age_s unseen: still alive.
    assert tracker.update(1.5, [], faces(b)[:0]) == []
    assert tracker.expire(1.5) == []
    assert track.track_id in tracker.tracks
    assert np.any(embedding != 0)

    # Another face elsewhere keeps the tracker busy; ours is now over max_age_s unseen.
    (other,) = tracker.update(1.5001, [(200, 200, 220, 220)], faces(b))
    assert track.track_id not in tracker.tracks
    assert list(tracker.tracks) == [other.track_id]
    assert embedding is track.embedding
    assert not np.any(embedding), "an ended track's embedding must be overwritten with zeros"
    assert len(track.outcomes) == 0

    # The same face coming back is a new track.
    (back,) = tracker.update(1.6, [(1, 0, 11, 10)], faces(a))
    assert back.track_id not in (track.track_id, other.track_id)


def test_expire_returns_the_ended_tracks_zeroed() -> None:
    rng = np.random.default_rng(7)
    a, b = unit_rows(rng, 2, D)
    tracker = Tracker(TrackerConfig(max_age_s=0.5))
    old, young = tracker.update(0.0, [(0, 0, 10, 10), (50, 50, 60, 60)], faces(a, b))
    tracker.update(0.4, [(51, 50, 61, 60)], faces(b))
    arrays = [old.embedding, young.embedding]
    ended = tracker.expire(0.6)
    assert ended == [old]
    assert not np.any(arrays[0])
    assert np.array_equal(arrays[1], b)
    assert list(tracker.tracks) == [young.track_id]


def test_clear_zeroes_and_drops_every_track() -> None:
    rng = np.random.default_rng(8)
    embeddings = unit_rows(rng, 3, D)
    tracker = Tracker()
    tracks = tracker.update(0.0, [(0, 0, 10, 10), (50, 0, 60, 10), (100, 0, 110, 10)],
                            embeddings.copy())
    arrays = [t.embedding for t in tracks]
    for t in tracks:
        t.outcomes.append(FrameOutcome("x", 0.7))
    tracker.clear()
    assert tracker.tracks == {}
    for t, array in zip(tracks, arrays, strict=True):
        assert t.embedding is array
        assert not np.any(array)
        assert len(t.outcomes) == 0


def test_outcome_history_is_bounded_by_the_config() -> None:
    rng = np.random.default_rng(9)
    (a,) = unit_rows(rng, 1, D)
    tracker = Tracker(TrackerConfig(history=4))
    (track,) = tracker.update(0.0, [(0, 0, 10, 10)], faces(a))
    for i in range(10):
        track.outcomes.append(FrameOutcome(None, i / 10))
    assert [o.score for o in track.outcomes] == [0.6, 0.7, 0.8, 0.9]


@pytest.mark.parametrize(("name", "value"), [
    ("min_iou", 0.0), ("min_iou", 1.5), ("min_iou", math.nan),
    ("min_similarity", -0.2), ("min_similarity", 2.0),
    ("max_age_s", 0.0), ("max_age_s", -1.0), ("max_age_s", math.inf),
    ("history", 0), ("history", 2.5),
    ("max_speed_widths", 0.0), ("max_speed_widths", math.inf),
    ("slack_widths", -0.5), ("slack_widths", math.nan),
    ("max_size_ratio", 0.9), ("max_size_ratio", 10.0), ("near_widths", -1.0),
])
def test_a_bad_setting_is_refused_naming_its_field(name: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=rf"TrackerConfig\.{name}\b"):
        replace(TrackerConfig(), **{name: value})


# --- faces that were not embedded (hints from the embedding schedule) -------------------------


def test_a_hinted_face_joins_its_track_and_keeps_the_tracks_embedding() -> None:
    rng = np.random.default_rng(3)
    a, b = unit_rows(rng, 2, D)
    tracker = Tracker()
    first = tracker.update(0.0, [(0, 0, 40, 50), (200, 0, 240, 50)], faces(a, b))
    # Not embedded: its row is zeros, and its box moved beyond any overlap with its track.
    unseen = np.zeros((2, D), np.float32)
    unseen[1] = b
    second = tracker.update(0.04, [(90, 0, 130, 50), (200, 0, 240, 50)], unseen,
                            hints={0: first[0].track_id})
    assert [t.track_id for t in second] == [t.track_id for t in first]
    assert np.allclose(second[0].embedding, a)  # not overwritten with the zero row
    assert second[0].box == (90.0, 0.0, 130.0, 50.0)
    assert second[0].last_seen_s == 0.04


def test_an_embedded_face_cannot_take_a_track_a_hinted_face_holds() -> None:
    rng = np.random.default_rng(4)
    (a,) = unit_rows(rng, 1, D)
    tracker = Tracker()
    (track,) = tracker.update(0.0, [(0, 0, 40, 50)], faces(a))
    # The embedded face overlaps the track and has its embedding; the hint wins.
    rows = faces(np.zeros(D, np.float32), a)
    result = tracker.update(0.04, [(300, 0, 340, 50), (0, 0, 40, 50)], rows,
                            hints={0: track.track_id})
    assert result[0] is track
    assert result[1] is not track


def test_a_hint_to_an_ended_track_starts_a_new_track_no_similarity_reaches() -> None:
    rng = np.random.default_rng(5)
    (a,) = unit_rows(rng, 1, D)
    tracker = Tracker()
    (gone,) = tracker.update(0.0, [(0, 0, 40, 50)], faces(a))
    (new,) = tracker.update(5.0, [(0, 0, 40, 50)], faces(a), hints={0: gone.track_id})
    assert new.track_id != gone.track_id
    assert not new.embedding.any()  # the row of a face not embedded is never used


# --- the motion gate --------------------------------------------------------------------------
# Each test below fails with the gate removed (``within_gate`` always true and the overlap taken
# with the track's last box instead of its predicted one): checked when the gate was built.

SMALL = 26.0
"""A small street face (px); it moves 19 px (0.74 of its width) a frame (docs/STREET.md)."""
STEP = 19.0
FRAME_S = 0.04


def small_box(x: float, y: float) -> Box:
    """A ``SMALL`` px face whose box starts at ``x``, ``y``."""
    return (x, y, x + SMALL, y + SMALL)


def test_a_face_does_not_take_a_track_across_an_implausible_jump_whatever_its_embedding() -> None:
    rng = np.random.default_rng(10)
    (a,) = unit_rows(rng, 1, D)
    tracker = Tracker()
    (track,) = tracker.update(0.0, [(100, 100, 150, 160)], faces(a))
    # One frame later the same-looking face 10 widths away (a lookalike across the street, or
    # a camera cut): the gate allows 0.5 + 40 x 0.04 = 2.1 widths.
    jumped: Box = (600, 100, 650, 160)
    assert not tracker.within_gate(jumped, track, FRAME_S)
    (other,) = tracker.update(FRAME_S, [jumped], faces(toward(rng, a, 0.95)))
    assert other is not track
    assert tracker.tracks[track.track_id].box == (100, 100, 150, 160)  # untouched
    # Nor a face three times the size in the same place (a cut to a close-up).
    close_up: Box = (60, 60, 210, 240)
    assert not tracker.within_gate(close_up, track, 2 * FRAME_S)
    (third,) = tracker.update(2 * FRAME_S, [close_up], faces(toward(rng, a, 0.95)))
    assert third not in (track, other)
    # The reach grows with the time the track went unseen: the same 10 widths after 0.3 s.
    assert tracker.within_gate(jumped, track, 0.3)


def test_a_small_fast_face_stays_on_its_track_through_short_misses_for_the_fusion() -> None:
    rng = np.random.default_rng(11)
    (a,) = unit_rows(rng, 1, D)
    tracker = Tracker()
    x, t = 100.0, 0.0
    # A small face's embeddings are poor (0.4 alike frame to frame, below min_similarity), and
    # it moves 0.74 of its width a frame: its last box overlaps the next by IoU 0.15 only.
    assert iou(small_box(x, 300), small_box(x + STEP, 300)) < TrackerConfig().min_iou
    (track,) = tracker.update(t, [small_box(x, 300)], faces(a))
    track.outcomes.append(FrameOutcome("subject", 0.62))
    seen = [track]
    for frame in range(1, 16):
        x, t = x + STEP, t + FRAME_S
        if frame in (5, 6, 7, 11, 12):  # missed by the detector (turned away, occluded)
            tracker.update(t, [], faces(a)[:0])
            continue
        (got,) = tracker.update(t, [small_box(x, 300)], faces(toward(rng, a, 0.4)))
        seen.append(got)
        got.outcomes.append(FrameOutcome("subject", 0.62))
    assert all(s is track for s in seen), "the face split over several tracks"
    assert list(tracker.tracks) == [track.track_id]
    # The fusion sees the person's looks together: every one of them on the one track.
    assert len(track.outcomes) == TrackerConfig().history
    assert track.velocity == pytest.approx((STEP / FRAME_S, 0.0))


def test_two_people_crossing_keep_their_tracks_even_when_each_looks_like_the_other() -> None:
    rng = np.random.default_rng(12)
    a, b = unit_rows(rng, 2, D)
    # Two small faces walking towards each other, one 2.5 widths above the other, so their
    # paths cross; as they pass, each face (half turned, blurred) looks more like the other
    # person than like its own last look.
    ya, yb = 300.0, 300.0 + 2.5 * SMALL
    xa, xb = 100.0, 100.0 + 20 * STEP
    tracker = Tracker()
    track_a, track_b = tracker.update(0.0, [small_box(xa, ya), small_box(xb, yb)], faces(a, b))
    t = 0.0
    for frame in range(1, 21):
        xa, xb, t = xa + STEP, xb - STEP, t + FRAME_S
        ea, eb = toward(rng, a, 0.4), toward(rng, b, 0.4)
        if frame in (9, 10, 11):  # passing each other: each face resembles the other track
            ea, eb = toward(rng, b, 0.9), toward(rng, a, 0.9)
        boxes = [small_box(xa, ya), small_box(xb, yb)]
        if frame % 2:  # the detector's order changes from frame to frame
            got_b, got_a = tracker.update(t, boxes[::-1], faces(eb, ea))
        else:
            got_a, got_b = tracker.update(t, boxes, faces(ea, eb))
        assert (got_a, got_b) == (track_a, track_b), f"tracks swapped or split at frame {frame}"
    assert sorted(tracker.tracks) == sorted([track_a.track_id, track_b.track_id])
    assert track_a.box == small_box(xa, ya)
    assert track_b.box == small_box(xb, yb)
