"""DetectionSchedule alone: the full pass spread over frames (or every k-th frame), unchanged
parts skipped, crops placed by motion prediction, the crowd limit."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray

from actors.unit.detection_schedule import DetectionPlan, DetectionSchedule, ScheduleConfig
from guards.config_checks import ConfigError
from models.detection_plan import PartialPass
from models.scene_change import ChangeConfig, thumbnail

W, H = 1920, 1080
PARTS = 16  # the full pass of 1080p: the whole frame and 15 tiles


def strips(parts: int, width: int = W, height: int = H) -> tuple[tuple[int, int, int, int], ...]:
    """A stand-in full pass of ``parts`` vertical strips."""
    return tuple((p * width // parts, 0, (p + 1) * width // parts, height) for p in range(parts))


REGIONS = strips(PARTS)


def box_at(x: float, y: float = 500.0, width: float = 30.0) -> tuple[float, float, float, float]:
    return (x, y, x + width, y + width)


def partial(plan: DetectionPlan, index: int) -> PartialPass:
    assert plan is not None, f"frame {index} got the full pass"
    return plan


def crop_centres(schedule: DetectionSchedule, index: int) -> list[tuple[float, float]]:
    plan = partial(schedule.plan(index, W, H, REGIONS), index)
    return [((c.x0 + c.x1) / 2, (c.y0 + c.y1) / 2) for c in plan.crops]


def test_spread_every_full_every_frames_run_each_part_of_the_full_pass_once() -> None:
    schedule = DetectionSchedule(ScheduleConfig(full_every=5))
    shares = [partial(schedule.plan(i, W, H, REGIONS), i).sweep for i in range(10)]
    assert [len(s) for s in shares] == [3, 3, 3, 3, 4] * 2  # no frame carries the whole pass
    assert sorted(p for s in shares[:5] for p in s) == list(range(PARTS))
    assert shares[5:] == shares[:5]


@pytest.mark.parametrize("parts", [1, 2, 3, 5, 6, 16, 60])
@pytest.mark.parametrize("full_every", [1, 2, 5, 7])
def test_any_full_every_consecutive_frames_cover_every_part(parts: int, full_every: int) -> None:
    # Whatever frame a face enters on, its part runs within full_every frames; a cycle runs
    # each part exactly once and every frame runs at least one.
    schedule = DetectionSchedule(ScheduleConfig(full_every=full_every))
    regions = strips(parts)
    shares = [partial(schedule.plan(i, W, H, regions), i).sweep for i in range(3 * full_every)]
    assert all(shares)
    cycle = min(full_every, parts)
    for start in range(len(shares) - full_every + 1):
        assert {p for s in shares[start:start + full_every] for p in s} == set(range(parts))
    for start in range(0, len(shares) - cycle + 1, cycle):
        assert sorted(p for s in shares[start:start + cycle] for p in s) == list(range(parts))


def test_the_share_follows_frames_planned_not_frame_indices() -> None:
    # A live camera drops frames before the detector: indices jump, no part is skipped.
    schedule = DetectionSchedule(ScheduleConfig(full_every=5))
    shares = [partial(schedule.plan(i, W, H, REGIONS), i).sweep for i in (0, 7, 8, 20, 31)]
    assert sorted(p for s in shares for p in s) == list(range(PARTS))


def test_a_full_pass_of_fewer_parts_than_full_every_runs_one_part_a_frame() -> None:
    schedule = DetectionSchedule(ScheduleConfig(full_every=5))
    regions = strips(2, 640, 360)
    assert [partial(schedule.plan(i, 640, 360, regions), i).sweep for i in range(5)] == [
        (0,), (1,), (0,), (1,), (0,)]


def test_a_new_frame_size_restarts_the_share() -> None:
    schedule = DetectionSchedule(ScheduleConfig(full_every=5))
    schedule.plan(0, W, H, REGIONS)
    schedule.plan(1, W, H, REGIONS)
    regions = strips(3, 640, 480)
    assert [partial(schedule.plan(i, 640, 480, regions), i).sweep for i in range(2, 6)] == [
        (0,), (1,), (2,), (0,)]


def test_spread_every_frame_also_gets_crops_around_the_known_faces() -> None:
    schedule = DetectionSchedule()
    for i in range(6):
        plan = partial(schedule.plan(i, W, H, REGIONS), i)
        assert len(plan.crops) == (0 if i == 0 else 1)  # nobody known before frame 0's results
        schedule.observe(i, [box_at(900.0)])


def test_not_spread_the_first_frame_and_every_full_every_th_get_the_full_pass() -> None:
    schedule = DetectionSchedule(ScheduleConfig(full_every=3, spread=False))
    plans = []
    for i in range(8):
        plans.append(schedule.plan(i, W, H, REGIONS))
        schedule.observe(i, [box_at(900.0)])
    assert [p is None for p in plans] == [True, False, False, True, False, False, True, False]
    assert all(p.sweep == () for p in plans if p is not None)  # crops only in between


def test_not_spread_frames_with_no_known_face_get_the_full_pass() -> None:
    schedule = DetectionSchedule(ScheduleConfig(spread=False))
    schedule.plan(0, W, H, REGIONS)
    schedule.observe(0, [])
    assert schedule.plan(1, W, H, REGIONS) is None


def test_crops_are_placed_where_the_faces_motion_predicts_them() -> None:
    schedule = DetectionSchedule()
    schedule.plan(0, W, H, REGIONS)
    schedule.observe(0, [box_at(900.0)])
    schedule.observe(1, [box_at(920.0, 510.0)])  # 20 px right, 10 down per frame
    # Frame 3 is planned while frame 2 is still being analysed: two frames ahead of frame 1.
    assert crop_centres(schedule, 3) == [pytest.approx((975.0, 545.0), abs=0.5)]


def test_prediction_goes_at_most_max_lead_frames_ahead() -> None:
    schedule = DetectionSchedule(ScheduleConfig(full_every=50, max_lead_frames=2))
    schedule.plan(0, W, H, REGIONS)
    schedule.observe(0, [box_at(900.0)])
    schedule.observe(1, [box_at(920.0)])
    assert crop_centres(schedule, 9) == [pytest.approx((975.0, 515.0), abs=0.5)]


def test_a_box_too_far_from_any_earlier_one_has_no_motion() -> None:
    schedule = DetectionSchedule()
    schedule.plan(0, W, H, REGIONS)
    schedule.observe(0, [box_at(900.0)])
    schedule.observe(1, [box_at(1200.0)])  # 10 widths away: another face, not a move
    assert crop_centres(schedule, 3) == [pytest.approx((1215.0, 515.0), abs=0.5)]


@pytest.mark.parametrize("spread", [True, False])
def test_a_crowd_gets_the_full_pass(spread: bool) -> None:
    schedule = DetectionSchedule(ScheduleConfig(max_crops=3, spread=spread))
    schedule.plan(0, W, H, REGIONS)
    schedule.observe(0, [box_at(x) for x in (100.0, 500.0, 900.0)])
    assert schedule.plan(1, W, H, REGIONS) is not None
    schedule.observe(1, [box_at(x) for x in (100.0, 500.0, 900.0, 1300.0)])
    assert schedule.plan(2, W, H, REGIONS) is None
    assert schedule.last_full_index == 2
    if spread:  # every part has just run: the share starts again from the first
        schedule.observe(2, [box_at(100.0)])
        assert partial(schedule.plan(3, W, H, REGIONS), 3).sweep == (0, 1, 2)


def test_with_around_faces_off_every_frame_gets_the_full_pass() -> None:
    schedule = DetectionSchedule(ScheduleConfig(around_faces=False))
    for i in range(4):
        assert schedule.plan(i, W, H, REGIONS) is None
        schedule.observe(i, [box_at(900.0)])


# --- unchanged parts are skipped ---------------------------------------------------------------

STILL = np.full((H, W, 3), 90, np.uint8)
"""A still picture: grey everywhere."""


def with_person(x: int) -> NDArray[np.uint8]:
    """The still picture with a bright 40 px square (someone) at column ``x``."""
    frame = STILL.copy()
    frame[500:540, x:x + 40] = 230
    return frame


def sweeps(schedule: DetectionSchedule, frames: list[NDArray[np.uint8]],
           regions: tuple[tuple[int, int, int, int], ...] = REGIONS,
           start: int = 0) -> list[tuple[int, ...]]:
    change = schedule.config.change
    return [partial(schedule.plan(start + i, W, H, regions, thumbnail(f, change)),
                    start + i).sweep for i, f in enumerate(frames)]


def test_a_part_whose_region_did_not_change_is_skipped_on_its_turn() -> None:
    schedule = DetectionSchedule(ScheduleConfig(full_every=4))
    four = strips(4)
    assert sweeps(schedule, [STILL] * 4, four) == [(0,), (1,), (2,), (3,)]  # first turns run
    assert sweeps(schedule, [STILL] * 4, four, start=4) == [(), (), (), ()]
    assert schedule.parts_unchanged == 4


def test_a_part_runs_on_its_turn_once_something_moved_in_it() -> None:
    schedule = DetectionSchedule(ScheduleConfig(full_every=4))
    four = strips(4)  # 480 px wide strips
    sweeps(schedule, [STILL] * 4, four)
    # Someone enters strip 2 at frame 5: strip 2's turn (frame 6) runs, the others are skipped.
    got = sweeps(schedule, [STILL, with_person(1000), with_person(1004), with_person(1008)],
                 four, start=4)
    assert got == [(), (), (2,), ()]


def test_an_unchanged_part_still_runs_every_refresh_every_turns() -> None:
    schedule = DetectionSchedule(ScheduleConfig(full_every=2, refresh_every=3))
    got = sweeps(schedule, [STILL] * 12, strips(2))
    assert got == [(0,), (1,), (), (), (), (), (0,), (1,), (), (), (), ()]


def test_a_change_outside_a_region_does_not_make_it_run() -> None:
    schedule = DetectionSchedule(ScheduleConfig(full_every=2))
    sweeps(schedule, [STILL] * 2, strips(2))
    assert sweeps(schedule, [with_person(1500)] * 2, strips(2), start=2) == [(), (1,)]


def test_without_a_thumbnail_or_with_skipping_off_every_due_part_runs() -> None:
    off = DetectionSchedule(ScheduleConfig(full_every=2, skip_unchanged=False))
    assert sweeps(off, [STILL] * 4, strips(2)) == [(0,), (1,), (0,), (1,)]
    blind = DetectionSchedule(ScheduleConfig(full_every=2))
    assert [partial(blind.plan(i, W, H, strips(2)), i).sweep for i in range(4)] == [
        (0,), (1,), (0,), (1,)]


def test_a_crowds_full_pass_becomes_every_parts_reference() -> None:
    schedule = DetectionSchedule(ScheduleConfig(full_every=2, max_crops=1))
    schedule.observe(0, [box_at(100.0), box_at(900.0)])  # two crops: a crowd for max_crops 1
    change = schedule.config.change
    assert schedule.plan(1, W, H, strips(2), thumbnail(STILL, change)) is None
    schedule.observe(1, [])
    assert sweeps(schedule, [STILL] * 2, strips(2), start=2) == [(), ()]


@pytest.mark.parametrize(("field", "value"), [
    ("scale", 0), ("level", -1), ("pixels", 0),
])
def test_bad_change_settings_are_refused_by_name(field: str, value: int) -> None:
    with pytest.raises(ConfigError, match=rf"ChangeConfig\.{field}\b"):
        ChangeConfig(**{field: value})
