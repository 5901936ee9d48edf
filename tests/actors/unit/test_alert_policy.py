"""``AlertPolicy``: N-of-M fusion per track, one alert per appearance per camera."""

from __future__ import annotations

import itertools
import math
from collections import deque
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.unit.alert_policy import MAX_APPEARANCE_GAP_S, AlertPolicy, AlertPolicyConfig
from actors.unit.tracking import FrameOutcome, Track
from guards.config_checks import ConfigError

FRAME_S = 1 / 30
_ids = itertools.count(1)


def new_track(history: int = 5) -> Track:
    """A fresh track, as the tracker makes one (bounded outcome history)."""
    return Track(next(_ids), (0.0, 0.0, 10.0, 10.0), np.zeros(4, np.float32), 0.0,
                 deque(maxlen=history))


def hit(subject: str, score: float = 0.8) -> FrameOutcome:
    """A frame whose face matched ``subject``."""
    return FrameOutcome(subject, score)


MISS = FrameOutcome(None, 0.2)


def feed(policy: AlertPolicy, track: Track, outcomes: list[FrameOutcome],
         t0: float = 0.0) -> list[str | None]:
    """Observe ``outcomes`` on consecutive frames from ``t0``; the result of each."""
    return [policy.observe(track, o, t0 + i * FRAME_S) for i, o in enumerate(outcomes)]


# --- N of M -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("min_hits", "window"), [(1, 1), (1, 5), (2, 3), (3, 5), (5, 5),
                                                   (4, 8)])
def test_alert_exactly_at_the_nth_matching_frame(min_hits: int, window: int) -> None:
    policy = AlertPolicy(AlertPolicyConfig(min_hits=min_hits, window=window))
    results = feed(policy, new_track(history=window), [hit("A")] * (window + 3))
    assert results == [None] * (min_hits - 1) + ["A"] + [None] * (window + 3 - min_hits)


def test_default_is_three_of_five_with_misses_in_between() -> None:
    policy = AlertPolicy()
    assert (policy.config.min_hits, policy.config.window) == (3, 5)
    results = feed(policy, new_track(), [hit("A"), MISS, hit("A"), MISS, hit("A")])
    assert results == [None, None, None, None, "A"]


def test_hits_older_than_the_window_do_not_count() -> None:
    policy = AlertPolicy()
    # No five consecutive frames hold three hits.
    outcomes = [hit("A"), MISS, MISS, hit("A"), MISS, MISS, hit("A"), MISS, MISS, hit("A")]
    assert feed(policy, new_track(), outcomes) == [None] * len(outcomes)


def test_mixed_subjects_do_not_alert() -> None:
    policy = AlertPolicy()
    cycle = [hit("A"), hit("B"), hit("C")]
    outcomes = cycle * 5  # any five consecutive frames name each subject at most twice
    assert feed(policy, new_track(), outcomes) == [None] * len(outcomes)


def test_no_second_alert_for_the_same_track() -> None:
    policy = AlertPolicy()
    track = new_track()
    results = feed(policy, track, [hit("A")] * 3 + [MISS] * 5 + [hit("A")] * 10)
    assert results.count("A") == 1
    assert results[2] == "A"
    assert track.alerted == {"A"}


def test_a_track_alerts_once_per_subject() -> None:
    policy = AlertPolicy()
    track = new_track()
    results = feed(policy, track, [hit("A")] * 3 + [hit("B")] * 5 + [hit("A")] * 5)
    assert [r for r in results if r is not None] == ["A", "B"]
    assert track.alerted == {"A", "B"}


def test_alert_only_on_a_frame_that_itself_matches() -> None:
    policy = AlertPolicy()
    track = new_track()
    # Outcomes the track already holds (e.g. recorded before this policy saw it): three of A.
    track.outcomes.extend([hit("A"), hit("A"), hit("A")])
    # Fusion names A, but this frame's face did not match: no alert from a non-matching face.
    assert policy.observe(track, MISS, 0.0) is None
    assert policy.observe(track, hit("B"), FRAME_S) is None
    assert track.alerted == set()
    # The next matching frame raises it.
    assert policy.observe(track, hit("A"), 2 * FRAME_S) == "A"


def test_the_outcome_is_recorded_on_the_track() -> None:
    policy = AlertPolicy()
    track = new_track()
    feed(policy, track, [hit("A", 0.7), MISS, hit("B", 0.9)])
    assert list(track.outcomes) == [hit("A", 0.7), MISS, hit("B", 0.9)]


def test_every_subject_reaching_min_hits_alerts() -> None:
    policy = AlertPolicy(AlertPolicyConfig(min_hits=2, window=5))
    results = feed(policy, new_track(), [hit("A"), hit("B"), hit("A"), hit("B")])
    # Frame 3: two of A -> A. Frame 4: two of B in the last five, on a B frame -> B.
    assert results == [None, None, "A", "B"]


# --- appearances ------------------------------------------------------------------------------


def test_same_subject_on_a_new_track_within_the_gap_does_not_alert_again() -> None:
    policy = AlertPolicy(AlertPolicyConfig(appearance_gap_s=3.0))
    first = new_track()
    assert feed(policy, first, [hit("A")] * 30, t0=0.0)[2] == "A"  # matching until ~0.97 s
    last_match = 29 * FRAME_S
    # Lost after an occlusion, picked up again 2 s later by a new track: same appearance.
    second = new_track()
    assert feed(policy, second, [hit("A")] * 10, t0=last_match + 2.0) == [None] * 10
    # The new track still counts as having raised it: no late alert from it either.
    assert "A" in second.alerted


def test_same_subject_after_the_gap_alerts_again() -> None:
    policy = AlertPolicy(AlertPolicyConfig(appearance_gap_s=3.0))
    feed(policy, new_track(), [hit("A")] * 3, t0=0.0)
    last_match = 2 * FRAME_S
    returning = new_track()
    results = feed(policy, returning, [hit("A")] * 5, t0=last_match + 3.5)
    assert results == [None, None, "A", None, None]


def test_the_gap_is_measured_to_the_alerting_frame_and_is_inclusive() -> None:
    policy = AlertPolicy(AlertPolicyConfig(appearance_gap_s=3.0))
    first, at_gap, later = new_track(), new_track(), new_track()
    # Times are binary fractions, so the differences below are exact.
    assert [policy.observe(first, hit("A"), t) for t in (0.0, 0.25, 0.5)] == [None, None, "A"]
    # The new track's third hit lands exactly 3.0 s after the last match: same appearance.
    assert [policy.observe(at_gap, hit("A"), t) for t in (3.0, 3.25, 3.5)] == [None] * 3
    # That fused frame was a match too, so the gap now counts from 3.5 s; just over it alerts.
    just_over = math.nextafter(6.5, math.inf)
    assert [policy.observe(later, hit("A"), t) for t in (6.0, 6.25, just_over)] == [
        None, None, "A"]


def test_continuing_matches_keep_the_appearance_alive() -> None:
    policy = AlertPolicy(AlertPolicyConfig(appearance_gap_s=1.0))
    track = new_track()
    # Matching for 5 s: far longer than the gap, but the appearance never paused.
    results = feed(policy, track, [hit("A")] * 150)
    assert results.count("A") == 1
    # A new track 0.5 s after the last of those matches is the same appearance.
    assert feed(policy, new_track(), [hit("A")] * 3, t0=149 * FRAME_S + 0.5) == [None] * 3


def test_another_subject_is_another_appearance() -> None:
    policy = AlertPolicy()
    feed(policy, new_track(), [hit("A")] * 3)
    assert feed(policy, new_track(), [hit("B")] * 3, t0=0.2) == [None, None, "B"]


def test_appearances_are_per_policy_that_is_per_camera() -> None:
    cam0, cam1 = AlertPolicy(), AlertPolicy()
    assert feed(cam0, new_track(), [hit("A")] * 3)[-1] == "A"
    assert feed(cam1, new_track(), [hit("A")] * 3, t0=0.1)[-1] == "A"


# --- properties over any sequence of frames ----------------------------------------------------


@st.composite
def configs(draw: st.DrawFn) -> AlertPolicyConfig:
    window = draw(st.integers(1, 7))
    min_hits = draw(st.integers(1, window))
    gap = draw(st.sampled_from([0.0, 0.5, 3.0, MAX_APPEARANCE_GAP_S]))
    return AlertPolicyConfig(min_hits=min_hits, window=window, appearance_gap_s=gap)


STEPS = st.lists(st.tuples(st.integers(0, 3),                     # which track
                           st.sampled_from([None, "A", "B"]),      # outcome
                           st.sampled_from([0.0, 0.25, 0.5, 2.0, 6.0])),  # since last frame
                 max_size=80)


@settings(max_examples=300, deadline=None)
@given(config=configs(), steps=STEPS)
def test_alerts_follow_n_of_m_once_per_track_and_once_per_appearance(
        config: AlertPolicyConfig, steps: list[tuple[int, str | None, float]]) -> None:
    """What an officer is promised, checked against the frames alone:

    - an alert names the subject its own frame matched, and the track's last ``window`` frames
      (this one included) match that subject at least ``min_hits`` times ("fused");
    - a track alerts for a subject only on its first fused frame of that subject;
    - two alerts for one subject are more than ``appearance_gap_s`` apart;
    - and the converse: a track's first fused frame of a subject alerts unless that subject
      was fused on some track of the camera within ``appearance_gap_s`` before.
    """
    policy = AlertPolicy(config)
    tracks = {i: new_track(history=7) for i in range(4)}
    seen: dict[int, list[str | None]] = {i: [] for i in range(4)}
    fused_before: dict[int, set[str]] = {i: set() for i in range(4)}
    last_fused_s: dict[str, float] = {}
    last_alert_s: dict[str, float] = {}
    t = 0.0
    for track, subject, dt in steps:
        t += dt
        got = policy.observe(tracks[track], FrameOutcome(subject, 0.8 if subject else 0.1), t)
        seen[track].append(subject)
        fused = subject is not None and (
            seen[track][-config.window:].count(subject) >= config.min_hits)
        if got is not None:
            assert got == subject
            assert fused, "alert without min_hits of window"
            assert got not in fused_before[track], "second alert of a track for a subject"
            if got in last_alert_s:
                assert t - last_alert_s[got] > config.appearance_gap_s
            last_alert_s[got] = t
        elif fused:
            assert subject is not None
            first_on_track = subject not in fused_before[track]
            new_appearance = (subject not in last_fused_s
                              or t - last_fused_s[subject] > config.appearance_gap_s)
            assert not (first_on_track and new_appearance), "a new appearance did not alert"
        if fused:
            assert subject is not None
            fused_before[track].add(subject)
            last_fused_s[subject] = t


# --- configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize("gap", [0.0, 3.0, MAX_APPEARANCE_GAP_S])
def test_gaps_up_to_the_maximum_are_accepted(gap: float) -> None:
    assert AlertPolicyConfig(appearance_gap_s=gap).appearance_gap_s == gap


@pytest.mark.parametrize(("changes", "name"), [
    ({"appearance_gap_s": 5.01}, "appearance_gap_s"),
    ({"appearance_gap_s": -0.1}, "appearance_gap_s"),
    ({"appearance_gap_s": math.inf}, "appearance_gap_s"),
    ({"appearance_gap_s": math.nan}, "appearance_gap_s"),
    ({"min_hits": 6, "window": 5}, "min_hits"),
    ({"min_hits": 2, "window": 1}, "min_hits"),
    ({"min_hits": 0}, "min_hits"),
    ({"min_hits": 2.5}, "min_hits"),
    ({"window": 0, "min_hits": 1}, "window"),
])
def test_a_bad_setting_is_refused_naming_its_field(changes: dict[str, Any], name: str) -> None:
    with pytest.raises(ConfigError, match=rf"AlertPolicyConfig\.{name}\b"):
        replace(AlertPolicyConfig(), **changes)
