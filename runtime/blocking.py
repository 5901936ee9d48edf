"""``BlockingPool``: the one place CPU-bound and blocking calls run, off the event loop.

Model inference (TFLite ``invoke`` releases the GIL), image decoding and file I/O go here, so no
actor blocks the loop. The pool is bounded twice: ``workers`` threads run calls, and at most
``max_pending`` calls of each lane may be queued or running; further callers wait
(backpressure) instead of piling work into the executor's queue.

Two lanes (``runtime.priority_executor``): ``run_ahead`` calls are taken before any queued
``run`` call, so work that finishes what is under way (embedding a frame already analysed,
sealing an alert) does not wait behind new work (the next frame's analysis). Within a lane,
calls run in the order they came.
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

from runtime.errors import RuntimeFault
from runtime.priority_executor import Lane, PriorityExecutor

P = ParamSpec("P")
T = TypeVar("T")


class WorkersBusy(RuntimeFault, RuntimeError):
    """``BlockingPool.run_on_each_worker`` could not reach every worker in time."""


@dataclass(frozen=True, slots=True)
class BlockingPoolStatistics:
    """A snapshot of the pool's load."""

    workers: int
    """Threads in the pool."""
    running_or_queued: int
    """Calls submitted and not yet finished (both lanes)."""
    waiting: int
    """Callers waiting for a free slot (both lanes)."""
    completed: int
    """Calls finished since the pool was created."""


class BlockingPool:
    """A bounded thread pool; use ``await pool.run(fn, *args)``."""

    def __init__(self, workers: int | None = None, max_pending: int | None = None) -> None:
        self.workers = workers or os.cpu_count() or 1
        self.max_pending = max_pending or 2 * self.workers
        """Calls of one lane queued or running at most (each lane has its own)."""
        if self.max_pending < self.workers:
            raise ValueError(f"max_pending ({self.max_pending}) must be at least the number of "
                             f"workers ({self.workers}), or some workers could never be used")
        self._executor = PriorityExecutor(self.workers, name="lfr-blocking")
        self._slots = {lane: asyncio.Semaphore(self.max_pending) for lane in Lane}
        self._in_flight = 0
        self._waiting = 0
        self._completed = 0

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn(*args, **kwargs)`` on a worker thread and return its result."""
        return await self._run(Lane.NORMAL, functools.partial(fn, *args, **kwargs))

    async def run_ahead(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """As ``run``, taken before every queued ``run`` call: for work that finishes what is
        under way, never for new work (or the normal lane would starve)."""
        return await self._run(Lane.AHEAD, functools.partial(fn, *args, **kwargs))

    async def _run(self, lane: Lane, call: Callable[[], T]) -> T:
        slots = self._slots[lane]
        self._waiting += 1
        try:
            await slots.acquire()
        finally:
            self._waiting -= 1
        self._in_flight += 1
        try:
            future = self._executor.submit(lane, call)
            return await asyncio.wrap_future(future)  # cancelled here: never runs if queued
        finally:
            self._in_flight -= 1
            self._completed += 1
            slots.release()

    async def run_on_each_worker(self, fn: Callable[[], T], timeout_s: float = 30.0) -> list[T]:
        """Run ``fn()`` once on every worker thread; its results, one per worker.

        For per-thread set-up before work arrives, such as opening each thread's model
        interpreters. Each call holds its thread until all have run, so no thread runs two.
        Meant for start-up, when the pool is idle: ``timeout_s`` bounds how long a call that
        has run waits for the others to start and finish; if it runs out (other work holds a
        worker, or ``fn`` is that slow), ``WorkersBusy`` says so. If ``fn`` raises on any
        thread, that error is raised. Cancelling the caller releases every waiting thread.
        """
        barrier = threading.Barrier(self.workers)

        def once() -> T:
            try:
                result = fn()
            except BaseException:
                barrier.abort()  # the other threads stop waiting for this one
                raise
            try:
                barrier.wait(timeout_s)
            except threading.BrokenBarrierError:
                raise WorkersBusy(f"blocking pool: not all of its {self.workers} workers ran "
                                  f"the call within {timeout_s} s") from None
            return result

        try:
            outcomes = await asyncio.gather(*(self.run(once) for _ in range(self.workers)),
                                            return_exceptions=True)
        except BaseException:  # cancelled: no thread may stay parked at the barrier
            barrier.abort()
            raise
        failures = [o for o in outcomes if isinstance(o, BaseException)]
        if failures:  # fn's own error first: WorkersBusy on the others is its consequence
            raise next((f for f in failures if not isinstance(f, WorkersBusy)), failures[0])
        return [o for o in outcomes if not isinstance(o, BaseException)]

    def statistics(self) -> BlockingPoolStatistics:
        """Current load."""
        return BlockingPoolStatistics(self.workers, self._in_flight, self._waiting, self._completed)

    def shutdown(self) -> None:
        """Cancel queued calls, wait for running ones and release the threads."""
        self._executor.shutdown()
