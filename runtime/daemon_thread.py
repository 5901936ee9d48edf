"""``DaemonThread``: one thread for blocking calls that a stop never waits for long.

Some blocking calls cannot be cancelled from Python and may not return for a long time: an
FFmpeg open that waits for a dead RTSP camera returns only when FFmpeg's own timeout fires; a
write to a pipe nobody reads returns when somebody does. On a ``ThreadPoolExecutor`` they would
make ``stop()`` (and the interpreter's exit, which joins its threads) wait that long. This thread
is a daemon, and ``close(wait_s)`` waits at most ``wait_s`` seconds: a call still stuck then
finishes on its own, unobserved (its caller makes it release what it holds).

Users: the camera decodes on one (PyAV also gives up and retakes the GIL several times per
frame, so a pool worker waiting for it would leave a core idle), and the scan's alert printer
writes on one (a blocked stdout must not block the event loop, or no signal handler runs).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_Job = tuple[Callable[[], Any], asyncio.AbstractEventLoop, "asyncio.Future[Any]"]


class DaemonThread:
    """Runs blocking calls one at a time on a daemon thread; awaitable from the event loop."""

    def __init__(self, name: str) -> None:
        # Invariant: at most one job queued or running, since its one user (an actor) awaits
        # each call before making the next; the queue is bounded to say so.
        self._jobs: queue.Queue[_Job | None] = queue.Queue(maxsize=2)
        self._closed = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    async def run(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the thread and return its result (or raise what it raised)."""
        if self._closed.is_set():
            raise RuntimeError("daemon thread is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._idle.clear()
        self._jobs.put_nowait((fn, loop, future))
        return await future

    async def close(self, wait_s: float) -> bool:
        """Let the thread end after its current call; wait up to ``wait_s`` s for that call.

        Returns True when the thread was idle in time. False: a call is still stuck and
        finishes later, unobserved.
        """
        self._closed.set()
        with contextlib.suppress(queue.Full):
            self._jobs.put_nowait(None)
        return await asyncio.to_thread(self._idle.wait, wait_s)

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                self._idle.set()
                return
            fn, loop, future = job
            result: Any = None
            error: BaseException | None = None
            try:
                result = fn()
            except BaseException as exc:  # noqa: BLE001 - every outcome goes back to the caller
                error = exc
            # Idle before the caller hears of it: its next call clears this again.
            self._idle.set()
            self._deliver(loop, future, result, error)
            if self._closed.is_set():
                return

    @property
    def idle(self) -> bool:
        """True while no call is queued or running."""
        return self._idle.is_set()

    @staticmethod
    def _deliver(loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any],
                 result: Any, error: BaseException | None) -> None:
        def settle() -> None:
            if future.done():  # the caller was cancelled: nobody waits for this any more
                return
            if error is None:
                future.set_result(result)
            else:
                future.set_exception(error)

        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is left to tell
            loop.call_soon_threadsafe(settle)
