"""``LogBudget``: so many lines per window, then only counted, then one summary line."""

from __future__ import annotations

import logging

import pytest

from runtime.log_budget import LogBudget

log = logging.getLogger("lfr.test.log_budget")


class Clock:
    """A hand-moved monotonic clock (s)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == log.name]


def test_a_flood_logs_the_budget_then_one_summary_per_window(
        caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    budget = LogBudget(log, "link to van", lines=3, window_s=10.0, clock=clock)
    with caplog.at_level(logging.WARNING, logger=log.name):
        for n in range(1000):
            budget.warning("bad frame %d", n)
        assert _lines(caplog) == ["bad frame 0", "bad frame 1", "bad frame 2"]
        clock.now += 9.9  # still the same window: nothing more
        budget.warning("bad frame %d", 1000)
        assert len(_lines(caplog)) == 3
        clock.now += 0.1  # the next window opens with the summary of the last one
        budget.warning("bad frame %d", 1001)
    assert _lines(caplog)[3:] == [
        "link to van: 998 more warnings were not logged (at most 3 per 10 s)",
        "bad frame 1001",
    ]
    assert budget.suppressed_total == 998


def test_flush_logs_what_was_left_out_once(caplog: pytest.LogCaptureFixture) -> None:
    budget = LogBudget(log, "actor svc", lines=1, window_s=10.0, clock=Clock())
    with caplog.at_level(logging.WARNING, logger=log.name):
        budget.flush()  # nothing left out: no line
        budget.warning("one")
        budget.warning("two")
        budget.flush()
        budget.flush()
    summary = "actor svc: 1 more warnings were not logged (at most 1 per 10 s)"
    assert _lines(caplog) == ["one", summary]


def test_lines_point_at_the_caller(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger=log.name):
        LogBudget(log, "x").warning("here")
    assert caplog.records[0].funcName == "test_lines_point_at_the_caller"
