"""``PriorityExecutor``: worker threads that take the most urgent queued call first.

``concurrent.futures.ThreadPoolExecutor`` runs queued calls in the order they came. A pipeline
that queues the next frame's analysis and, behind it, the embedding of a frame already analysed
then finishes the old frame last: under load every stage waits behind the first. Here each call
has a lane (``Lane.AHEAD`` before ``Lane.NORMAL``) and runs in order of lane, then of arrival,
so work already under way is finished before new work starts.

Semantics are those of an executor's futures: a queued call whose future is cancelled never
runs; ``shutdown`` cancels every queued call, lets running ones finish and joins the threads.
Like ``ThreadPoolExecutor``'s, the threads are not daemons, and an executor nobody shut down is
shut down when the interpreter exits, before it joins its threads (the hook
``concurrent.futures`` itself uses), so a forgotten executor cannot hang the exit.
The queue has no bound of its own: its only user, ``runtime.blocking.BlockingPool``, bounds what
it submits per lane.
"""

from __future__ import annotations

import enum
import functools
import itertools
import queue
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Lane", "PriorityExecutor"]


class Lane(enum.IntEnum):
    """Which queued calls go first (lower first)."""

    AHEAD = 0
    """Work that finishes what is under way (a frame already analysed, an alert)."""
    NORMAL = 1
    """Everything else, new work included."""


_register_atexit: Callable[[Callable[[], None]], None] = (
    threading._register_atexit)  # type: ignore[attr-defined]  # the stdlib's own hook, untyped
"""Runs a callable when the interpreter exits, before it joins non-daemon threads (the hook
``concurrent.futures`` uses for its own workers)."""


def _shutdown_if_alive(executor: weakref.ref[PriorityExecutor]) -> None:
    alive = executor()
    if alive is not None:
        alive.shutdown()


_STOP = -1
"""The lane of the sentinel that ends a worker: before any call, so shutdown is not delayed."""


@dataclass(order=True, slots=True)
class _Item:
    """A queued call, ordered by lane then arrival; a sentinel has no call."""

    lane: int
    seq: int
    call: Callable[[], Any] | None = field(compare=False)
    future: Future[Any] | None = field(compare=False)


class PriorityExecutor:
    """``workers`` threads running submitted calls, most urgent lane first."""

    def __init__(self, workers: int, name: str) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self._queue: queue.PriorityQueue[_Item] = queue.PriorityQueue()
        self._seq = itertools.count()
        self._lock = threading.Lock()
        self._shut = False  # invariant: once True, nothing more is queued (under _lock)
        self._threads = [threading.Thread(target=self._work, name=f"{name}_{i}")
                         for i in range(workers)]
        for thread in self._threads:
            thread.start()
        _register_atexit(functools.partial(_shutdown_if_alive, weakref.ref(self)))

    def submit(self, lane: Lane, call: Callable[[], Any]) -> Future[Any]:
        """Queue ``call`` in ``lane``; its future. ``RuntimeError`` after ``shutdown``."""
        future: Future[Any] = Future()
        with self._lock:
            if self._shut:
                raise RuntimeError("cannot submit a call after shutdown")
            self._queue.put(_Item(int(lane), next(self._seq), call, future))
        return future

    def shutdown(self) -> None:
        """Cancel every queued call, let running ones finish, join the threads."""
        with self._lock:
            if self._shut:
                return
            self._shut = True
            cancelled: list[_Item] = []
            while True:
                try:
                    cancelled.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            for _ in self._threads:
                self._queue.put(_Item(_STOP, next(self._seq), None, None))
        for item in cancelled:
            if item.future is not None:
                item.future.cancel()
        for thread in self._threads:
            thread.join()

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item.call is None or item.future is None:
                return
            if not item.future.set_running_or_notify_cancel():
                continue  # cancelled while queued: it never runs
            try:
                result = item.call()
            except BaseException as exc:  # noqa: BLE001 - the caller's error, handed over in its future
                item.future.set_exception(exc)
            else:
                item.future.set_result(result)
            del item
