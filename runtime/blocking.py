"""``BlockingPool``: the one place CPU-bound and blocking calls run, off the event loop.

Model inference (TFLite ``invoke`` releases the GIL), image decoding and file I/O go here, so no
actor blocks the loop. The pool is bounded twice: ``workers`` threads run calls, and at most
``max_pending`` calls may be queued or running; further callers wait (backpressure) instead of
piling work into the executor's unbounded queue.
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

from runtime.errors import RuntimeFault

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
    """Calls submitted and not yet finished."""
    waiting: int
    """Callers waiting for a free slot."""
    completed: int
    """Calls finished since the pool was created."""


class BlockingPool:
    """A bounded thread pool; use ``await pool.run(fn, *args)``."""

    def __init__(self, workers: int | None = None, max_pending: int | None = None) -> None:
        self.workers = workers or os.cpu_count() or 1
        self.max_pending = max_pending or 2 * self.workers
        if self.max_pending < self.workers:
            raise ValueError(f"max_pending ({self.max_pending}) must be at least the number of "
                             f"workers ({self.workers}), or some workers could never be used")
        self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="lfr-blocking")
        self._slots = asyncio.Semaphore(self.max_pending)
        self._in_flight = 0
        self._waiting = 0
        self._completed = 0

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn(*args, **kwargs)`` on a worker thread and return its result."""
        self._waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self._waiting -= 1
        self._in_flight += 1
        try:
            loop = asyncio.get_running_loop()
            if kwargs:
                return await loop.run_in_executor(self._executor,
                                                  functools.partial(fn, *args, **kwargs))
            return await loop.run_in_executor(self._executor, fn, *args)
        finally:
            self._in_flight -= 1
            self._completed += 1
            self._slots.release()

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
        """Wait for running calls and release the threads."""
        self._executor.shutdown(wait=True, cancel_futures=True)
