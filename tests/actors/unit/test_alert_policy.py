"""``AlertPolicy``: N-of-M fusion per track, one alert per appearance per camera."""

from __future__ import annotations

import itertools
import math
from collections import Counter, deque

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.unit.alert_policy import MAX_APPEARANCE_GAP_S, AlertPolicy, AlertPolicyConfig
from actors.unit.tracking import FrameOutcome, Track

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


# --- the documented rule, as a reference model ------------------------------------------------


class ReferenceModel:
    """The module docstring, written out directly (for configs where no two subjects can both
    reach min_hits, i.e. 2 * min_hits > window)."""

    def __init__(self, config: AlertPolicyConfig) -> None:
        self.config = config
        self.outcomes: dict[int, list[FrameOutcome]] = {}
        self.alerted: dict[int, set[str]] = {}
        self.last_matched: dict[str, float] = {}

    def observe(self, track: int, outcome: FrameOutcome, t_s: float) -> str | None:
        history = self.outcomes.setdefault(track, [])
        history.append(outcome)
        recent = Counter(o.subject for o in history[-self.config.window:])
        subject = outcome.subject
        if subject is None or recent[subject] < self.config.min_hits:
            return None
        previous = self.last_matched.get(subject)
        self.last_matched[subject] = t_s
        alerted = self.alerted.setdefault(track, set())
        if subject in alerted:
            return None
        alerted.add(subject)
        if previous is not None and t_s - previous <= self.config.appearance_gap_s:
            return None
        return subject


@st.composite
def configs(draw: st.DrawFn) -> AlertPolicyConfig:
    window = draw(st.integers(1, 7))
    min_hits = draw(st.integers(window // 2 + 1, window))
    gap = draw(st.sampled_from([0.0, 0.5, 3.0, MAX_APPEARANCE_GAP_S]))
    return AlertPolicyConfig(min_hits=min_hits, window=window, appearance_gap_s=gap)


STEPS = st.lists(st.tuples(st.integers(0, 3),                     # which track
                           st.sampled_from([None, "A", "B"]),      # outcome
                           st.floats(0.0, 2.0)),                   # time since last frame
                 max_size=80)


@settings(max_examples=200, deadline=None)
@given(config=configs(), steps=STEPS)
def test_policy_follows_the_documented_rule(
        config: AlertPolicyConfig, steps: list[tuple[int, str | None, float]]) -> None:
    policy = AlertPolicy(config)
    model = ReferenceModel(config)
    tracks = {i: new_track(history=7) for i in range(4)}
    t = 0.0
    raised: list[tuple[int, str]] = []
    for track, subject, dt in steps:
        t += dt
        outcome = FrameOutcome(subject, 0.8 if subject else 0.1)
        got = policy.observe(tracks[track], outcome, t)
        assert got == model.observe(track, outcome, t)
        if got is not None:
            assert got == subject  # only on a frame that itself matches
            raised.append((track, got))
    assert len(raised) == len(set(raised))  # at most one alert per track and subject


# --- configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize("gap", [0.0, 3.0, MAX_APPEARANCE_GAP_S])
def test_gaps_up_to_the_maximum_are_accepted(gap: float) -> None:
    assert AlertPolicyConfig(appearance_gap_s=gap).appearance_gap_s == gap


@pytest.mark.parametrize("gap", [5.01, 60.0, -0.1, math.inf, math.nan])
def test_gap_outside_zero_to_five_seconds_is_refused(gap: float) -> None:
    with pytest.raises(ValueError, match="appearance_gap_s"):
        AlertPolicyConfig(appearance_gap_s=gap)


@pytest.mark.parametrize(("min_hits", "window"), [(6, 5), (2, 1), (0, 5), (-1, 5), (1, 0)])
def test_min_hits_outside_one_to_window_is_refused(min_hits: int, window: int) -> None:
    with pytest.raises(ValueError, match="min_hits"):
        AlertPolicyConfig(min_hits=min_hits, window=window)
