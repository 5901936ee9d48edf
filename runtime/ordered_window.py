"""``OrderedWindow``: one actor keeps up to N slow jobs in flight and takes their results in order.

An actor handles one message at a time, so an actor that awaits a 20 ms model call per message
keeps only one core busy. The window lets ``receive`` start a job and return: at most
``capacity`` jobs are in flight (started, their result not yet taken; ``submit`` waits for the
oldest when the window is full, which is backpressure on the actor's mailbox), and results are
handed to ``emit`` strictly in submission order, so a downstream tracker still sees frame n
before frame n+1.

The actor promise (state touched only by the actor's own loop) holds: ``emit`` is called only
inside ``take_ready``, ``submit`` and ``drain``, which the owner calls from its ``receive``, so
``emit`` runs on the owner's task, one message at a time. The window's own tasks only run jobs.
When the oldest job has finished, the window calls ``on_ready`` (from the event loop, outside
any ``receive``); ``tell_owner`` makes that a ``ResultsReady`` told to the owner, so results do
not wait for its next message. That tell may be skipped (a full mailbox) or later dropped (a
``DROP_OLDEST`` mailbox) without losing anything: the owner calls ``take_ready`` at the start
of every ``receive``, and a message is always queued when the tell was skipped or dropped.

A job that raised is a failure of its owner: the ``take_ready``, ``submit`` or ``drain`` that
reaches it, in order, raises its error inside the owner's ``receive``, so the supervisor decides.
An ``ask`` must not take results (its error would go to the asker): it calls ``announce_ready``.
``close()`` cancels every job and waits.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from runtime.errors import RuntimeFault

if TYPE_CHECKING:
    from runtime.ref import ActorRef

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ResultsReady:
    """Told by ``tell_owner`` to the owning actor when its oldest job has finished: handling
    any message takes the finished results. Runtime-internal and in-process: never registered,
    so the codec refuses it."""


def tell_owner(owner: ActorRef[ResultsReady]) -> Callable[[], None]:
    """An ``on_ready`` callback that tells ``owner`` a ``ResultsReady`` if its mailbox has room.

    A full mailbox gets nothing: a queued message will take the results anyway, and telling
    would make a ``DROP_OLDEST`` mailbox discard that message (a frame or an end of stream).
    A stopping owner gets nothing either.
    """

    def announce() -> None:
        statistics = owner.statistics()
        if statistics.depth < statistics.capacity:
            with contextlib.suppress(RuntimeFault):
                owner.tell_nowait(ResultsReady())

    return announce


def _nothing() -> None:
    return None


class OrderedWindow(Generic[T]):
    """Bounded concurrent jobs whose results the owner takes in submission order."""

    def __init__(self, capacity: int, emit: Callable[[T], Awaitable[None]],
                 on_ready: Callable[[], None] = _nothing, name: str = "window") -> None:
        if capacity < 1:
            raise ValueError(f"window capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self.name = name
        self._emit = emit
        self._on_ready = on_ready
        # Jobs whose result is not yet taken, in submission order; invariant: len <= capacity
        # (submit takes the oldest before starting one more).
        self._jobs: deque[asyncio.Task[T]] = deque()
        self._closed = False
        self.submitted = 0
        """Jobs submitted so far."""
        self.emitted = 0
        """Results emitted so far."""

    @property
    def in_flight(self) -> int:
        """Jobs submitted whose result is not yet taken."""
        return len(self._jobs)

    @property
    def ready(self) -> bool:
        """True when the oldest job has finished: ``take_ready`` would emit (or raise)."""
        return bool(self._jobs) and self._jobs[0].done()

    async def submit(self, job: Coroutine[Any, Any, T]) -> None:
        """Take the finished results, wait for the oldest job while ``capacity`` are in flight,
        then start ``job``. Raises the error of a failed job it takes (``job`` is not started)."""
        try:
            while self.ready or len(self._jobs) >= self.capacity:
                await self._take_oldest()
        except BaseException:
            job.close()  # never awaited: close it so it does not warn
            raise
        task = asyncio.create_task(job, name=f"{self.name}:job{self.submitted}")
        task.add_done_callback(self._job_done)
        self._jobs.append(task)
        self.submitted += 1

    async def take_ready(self) -> None:
        """Emit the results of the finished jobs at the head, in order; never waits for a job."""
        while self.ready:
            await self._take_oldest()

    async def drain(self) -> None:
        """Wait for every job and emit its result, in order."""
        while self._jobs:
            await self._take_oldest()

    def announce_ready(self) -> None:
        """Call ``on_ready`` if a result is waiting (for a handler that may not take it)."""
        if self.ready and not self._closed:
            self._on_ready()

    async def close(self) -> None:
        """Cancel every job and wait for them; nothing is emitted any more."""
        self._closed = True
        jobs = list(self._jobs)
        self._jobs.clear()
        for job in jobs:
            job.cancel()
        await asyncio.gather(*jobs, return_exceptions=True)

    async def _take_oldest(self) -> None:
        head = self._jobs[0]
        # Waiting through asyncio.wait: cancelling the owner must not cancel the job from
        # here (close() does that), and the job's error is raised below, once.
        await asyncio.wait((head,))
        if self._jobs and self._jobs[0] is head:
            self._jobs.popleft()
        result = head.result()  # a failed job raises here, in the owner's receive
        await self._emit(result)
        self.emitted += 1

    def _job_done(self, _: asyncio.Task[T]) -> None:
        # Runs on the event loop, outside the owner's receive: it may only announce.
        self.announce_ready()
