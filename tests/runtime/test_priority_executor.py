"""The worker threads that take the most urgent queued call first."""

from __future__ import annotations

import functools
import threading
from concurrent.futures import CancelledError

import pytest

from runtime.priority_executor import Lane, PriorityExecutor
from tests.runtime.helpers import WAIT_S


def test_queued_calls_run_by_lane_then_in_the_order_they_came() -> None:
    executor = PriorityExecutor(1, name="test")
    release = threading.Event()
    order: list[str] = []
    try:
        blocker = executor.submit(Lane.NORMAL, lambda: release.wait(WAIT_S))
        futures = [executor.submit(lane, functools.partial(order.append, name))
                   for lane, name in [(Lane.NORMAL, "n1"), (Lane.AHEAD, "a1"),
                                      (Lane.NORMAL, "n2"), (Lane.AHEAD, "a2")]]
        release.set()
        assert blocker.result(WAIT_S) is True
        for future in futures:
            future.result(WAIT_S)
    finally:
        executor.shutdown()
    assert order == ["a1", "a2", "n1", "n2"]


def test_results_and_errors_reach_the_caller() -> None:
    executor = PriorityExecutor(2, name="test")
    try:
        assert executor.submit(Lane.AHEAD, lambda: 6 * 7).result(WAIT_S) == 42
        failing = executor.submit(Lane.NORMAL, lambda: 1 // 0)
        with pytest.raises(ZeroDivisionError):
            failing.result(WAIT_S)
        assert executor.submit(Lane.NORMAL, lambda: "still working").result(WAIT_S) == (
            "still working")
    finally:
        executor.shutdown()


def test_a_call_cancelled_while_queued_never_runs() -> None:
    executor = PriorityExecutor(1, name="test")
    release = threading.Event()
    ran: list[str] = []
    try:
        executor.submit(Lane.NORMAL, lambda: release.wait(WAIT_S))
        queued = executor.submit(Lane.AHEAD, lambda: ran.append("queued"))
        assert queued.cancel()
        after = executor.submit(Lane.NORMAL, lambda: ran.append("after"))
        release.set()
        after.result(WAIT_S)
    finally:
        executor.shutdown()
    assert ran == ["after"]


def test_shutdown_cancels_queued_calls_lets_the_running_one_finish_and_joins() -> None:
    executor = PriorityExecutor(1, name="test")
    started, release = threading.Event(), threading.Event()

    def running() -> str:
        started.set()
        release.wait(WAIT_S)
        return "finished"

    first = executor.submit(Lane.NORMAL, running)
    assert started.wait(WAIT_S)
    queued = executor.submit(Lane.AHEAD, lambda: "never")
    threading.Timer(0.1, release.set).start()
    executor.shutdown()
    assert first.result(0) == "finished"
    with pytest.raises(CancelledError):
        queued.result(0)
    assert not any(t.name.startswith("test_") and t.is_alive() for t in threading.enumerate())
    with pytest.raises(RuntimeError, match="after shutdown"):
        executor.submit(Lane.NORMAL, lambda: None)
    executor.shutdown()  # a second shutdown is harmless


def test_at_least_one_worker() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        PriorityExecutor(0, name="test")
