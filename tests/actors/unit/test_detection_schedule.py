"""DetectionSchedule alone: full pass or crops, motion prediction, the crowd limit."""

from __future__ import annotations

import pytest

from actors.unit.detection_schedule import DetectionSchedule, ScheduleConfig

W, H = 1920, 1080


def box_at(x: float, y: float = 500.0, width: float = 30.0) -> tuple[float, float, float, float]:
    return (x, y, x + width, y + width)


def crop_centres(schedule: DetectionSchedule, index: int) -> list[tuple[float, float]]:
    plan = schedule.plan(index, W, H)
    assert plan is not None, f"frame {index} got the full pass"
    return [((c.x0 + c.x1) / 2, (c.y0 + c.y1) / 2) for c in plan]


def test_the_first_frame_and_every_full_every_th_get_the_full_pass() -> None:
    schedule = DetectionSchedule(ScheduleConfig(full_every=3))
    plans = []
    for i in range(8):
        plans.append(schedule.plan(i, W, H))
        schedule.observe(i, [box_at(900.0)])
    assert [p is None for p in plans] == [True, False, False, True, False, False, True, False]


def test_crops_are_placed_where_the_faces_motion_predicts_them() -> None:
    schedule = DetectionSchedule()
    schedule.plan(0, W, H)
    schedule.observe(0, [box_at(900.0)])
    schedule.observe(1, [box_at(920.0, 510.0)])  # 20 px right, 10 down per frame
    # Frame 3 is planned while frame 2 is still being analysed: two frames ahead of frame 1.
    assert crop_centres(schedule, 3) == [pytest.approx((975.0, 545.0), abs=0.5)]


def test_prediction_goes_at_most_max_lead_frames_ahead() -> None:
    schedule = DetectionSchedule(ScheduleConfig(full_every=50, max_lead_frames=2))
    schedule.plan(0, W, H)
    schedule.observe(0, [box_at(900.0)])
    schedule.observe(1, [box_at(920.0)])
    assert crop_centres(schedule, 9) == [pytest.approx((975.0, 515.0), abs=0.5)]


def test_a_box_too_far_from_any_earlier_one_has_no_motion() -> None:
    schedule = DetectionSchedule()
    schedule.plan(0, W, H)
    schedule.observe(0, [box_at(900.0)])
    schedule.observe(1, [box_at(1200.0)])  # 10 widths away: another face, not a move
    assert crop_centres(schedule, 3) == [pytest.approx((1215.0, 515.0), abs=0.5)]


def test_a_crowd_gets_the_full_pass() -> None:
    schedule = DetectionSchedule(ScheduleConfig(max_crops=3))
    schedule.plan(0, W, H)
    schedule.observe(0, [box_at(x) for x in (100.0, 500.0, 900.0)])
    assert schedule.plan(1, W, H) is not None
    schedule.observe(1, [box_at(x) for x in (100.0, 500.0, 900.0, 1300.0)])
    assert schedule.plan(2, W, H) is None
    # ... and that full pass restarts the count to the next one.
    assert schedule.last_full_index == 2
