"""``Timer``: an actor's own periodic message, told to itself every interval.

An actor that works on a clock (health reports, polls) starts a ``Timer`` in ``on_start`` and
stops it in ``on_stop``; the timer's task is owned by the timer, which the actor owns. Each tick
is a plain ``tell`` to the actor's own ref, so it waits for mailbox room: with a mailbox of one,
a tick still being handled holds the timer back instead of queueing more (the next tick finds
whatever changed). A tell that fails because the actor stopped ends the timer quietly.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, TypeVar

from guards.config_checks import require_positive
from runtime.errors import ActorStopped
from runtime.ref import ActorRef

M = TypeVar("M")


class Timer(Generic[M]):
    """Tells ``ref`` a new ``message()`` every ``interval_s`` seconds until stopped."""

    def __init__(self, ref: ActorRef[M], message: Callable[[], M], interval_s: float, *,
                 name: str) -> None:
        require_positive("Timer interval_s", interval_s)
        self._ref = ref
        self._message = message
        self._interval_s = interval_s
        self._name = name
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start ticking (the first tick comes after one interval)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=self._name)

    async def stop(self) -> None:
        """Stop ticking and wait until the task has ended."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            # Cancelled, or ended by the mailbox closing under its tell: either way it is over.
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await self._ref.tell(self._message())
            except ActorStopped:
                return
