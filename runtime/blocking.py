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
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


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

    def statistics(self) -> BlockingPoolStatistics:
        """Current load."""
        return BlockingPoolStatistics(self.workers, self._in_flight, self._waiting, self._completed)

    def shutdown(self) -> None:
        """Wait for running calls and release the threads."""
        self._executor.shutdown(wait=True, cancel_futures=True)
