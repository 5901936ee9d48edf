"""``OrderedWindow``: let one actor keep up to N slow jobs in flight, emitting results in order.

An actor handles one message at a time, so an actor that awaits a 20 ms model call per message
keeps only one core busy. The window lets ``receive`` start a job and return: at most
``capacity`` jobs run at once (``submit`` waits for a free place, which is backpressure on the
actor's mailbox), and their results are passed to ``emit`` strictly in submission order, so a
downstream tracker still sees frame n before frame n+1.

The window owns its tasks: ``close()`` cancels them and waits. A job or ``emit`` raising is a
failure of the owning actor: the window calls ``on_failure`` with the error (the actor tells
itself a message that re-raises it, so its supervisor decides), emits nothing more, and every
later ``submit`` raises the same error.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from runtime.errors import RuntimeFault

if TYPE_CHECKING:
    from runtime.ref import ActorRef

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class WindowFailed:
    """Told to the owning actor when a job or ``emit`` raised; its ``receive`` re-raises
    ``error`` so that the failure is the actor's own and its supervisor decides."""

    error: BaseException
    """What the job raised."""


def tell_owner(owner: ActorRef[WindowFailed]) -> Callable[[BaseException], None]:
    """An ``on_failure`` callback that tells ``owner`` a ``WindowFailed``.

    If the owner's mailbox is full (or it is stopping) the tell is skipped: the owner's next
    ``submit`` raises the same error anyway.
    """

    def report(error: BaseException) -> None:
        with contextlib.suppress(RuntimeFault):
            owner.tell_nowait(WindowFailed(error))

    return report


class OrderedWindow(Generic[T]):
    """Bounded concurrent jobs with in-order delivery of their results."""

    def __init__(self, capacity: int, emit: Callable[[T], Awaitable[None]],
                 on_failure: Callable[[BaseException], None], name: str = "window") -> None:
        if capacity < 1:
            raise ValueError(f"window capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self._emit = emit
        self._on_failure = on_failure
        # Jobs in submission order; invariant: len <= capacity, bounded by the semaphore.
        self._jobs: asyncio.Queue[asyncio.Task[T]] = asyncio.Queue()
        self._places = asyncio.Semaphore(capacity)
        self._emitter = asyncio.create_task(self._emit_in_order(), name=f"{name}:emitter")
        self._error: BaseException | None = None
        # Set whenever nothing is in flight (or the window failed): what drain() waits for.
        self._idle = asyncio.Event()
        self._idle.set()
        self.submitted = 0
        """Jobs submitted so far."""
        self.emitted = 0
        """Results emitted so far."""

    @property
    def in_flight(self) -> int:
        """Jobs submitted and not yet emitted."""
        return self.submitted - self.emitted

    async def submit(self, job: Coroutine[Any, Any, T]) -> None:
        """Start ``job``, first waiting until fewer than ``capacity`` jobs are in flight."""
        try:
            await self._places.acquire()
        except BaseException:
            job.close()  # never awaited: close it so it does not warn
            raise
        if self._error is not None:
            job.close()
            raise self._error  # the window failed: the caller (the owning actor) fails too
        self.submitted += 1
        self._idle.clear()
        self._jobs.put_nowait(asyncio.create_task(job))

    async def drain(self) -> None:
        """Wait until every submitted job has been emitted (or the window failed)."""
        await self._idle.wait()

    async def close(self) -> None:
        """Cancel the emitter and every job, and wait for them."""
        tasks: list[asyncio.Task[Any]] = [self._emitter]
        while not self._jobs.empty():
            tasks.append(self._jobs.get_nowait())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _emit_in_order(self) -> None:
        while True:
            job = await self._jobs.get()
            try:
                result = await job
                await self._emit(result)
            except asyncio.CancelledError:
                job.cancel()
                raise
            except Exception as exc:  # noqa: BLE001 - supervision boundary: the owner decides
                self._error = exc
                self._idle.set()
                for _ in range(self.capacity):
                    self._places.release()  # wake waiting submitters: they raise the error
                self._on_failure(exc)
                return
            finally:
                self._places.release()
            self.emitted += 1
            if self.emitted == self.submitted:
                self._idle.set()
