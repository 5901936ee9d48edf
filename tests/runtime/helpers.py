"""Helpers shared by the runtime tests: bounded waiting, recording actors, held handlers.

Every wait here is bounded (``WAIT_S``) so a broken runtime fails a test instead of hanging the
suite; none of them asserts how fast something happened.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from runtime import Actor

WAIT_S = 5.0
"""Upper bound of every wait for something that should happen promptly."""


async def eventually(predicate: Callable[[], bool], *, timeout_s: float = WAIT_S) -> None:
    """Wait until ``predicate()`` holds; raises ``TimeoutError`` after ``timeout_s``."""
    async with asyncio.timeout(timeout_s):
        while not predicate():  # noqa: ASYNC110 - polling runtime state that has no event
            await asyncio.sleep(0.002)


async def settle(rounds: int = 50) -> None:
    """Let every ready task take a few steps (no wall-clock wait)."""
    for _ in range(rounds):
        await asyncio.sleep(0)


class Inbox:
    """A list of what an actor saw, plus a queue to await the next item."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self._queue: asyncio.Queue[Any] = asyncio.Queue()

    def put(self, item: Any) -> None:
        """Record ``item``."""
        self.items.append(item)
        self._queue.put_nowait(item)

    async def get(self, timeout_s: float = WAIT_S) -> Any:
        """The next recorded item, waiting for it up to ``timeout_s``."""
        async with asyncio.timeout(timeout_s):
            return await self._queue.get()

    def empty(self) -> bool:
        """True when every recorded item was taken with ``get``."""
        return self._queue.empty()


class Recorder(Actor[Any]):
    """Records every message in an ``Inbox`` and replies with the message itself."""

    def __init__(self, inbox: Inbox) -> None:
        self.inbox = inbox

    async def receive(self, message: Any) -> Any:
        self.inbox.put(message)
        return message


class Gate:
    """Holds handlers inside ``receive`` until the test opens it."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        """Set when a handler starts waiting at the gate."""
        self._open = asyncio.Event()

    async def pass_through(self) -> None:
        """Called by a handler: announce arrival, then wait until the gate is open."""
        self.entered.set()
        await self._open.wait()

    def open(self) -> None:
        """Let every waiting (and future) handler through."""
        self._open.set()


class GatedRecorder(Actor[Any]):
    """Records each message, then waits at the gate before finishing its handling."""

    def __init__(self, inbox: Inbox, gate: Gate) -> None:
        self.inbox = inbox
        self.gate = gate

    async def receive(self, message: Any) -> Any:
        self.inbox.put(message)
        await self.gate.pass_through()
        return message
