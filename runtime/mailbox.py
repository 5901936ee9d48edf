"""Bounded mailboxes: every actor's queue has a capacity and a policy for what happens when full.

There is no unbounded mailbox on purpose: an actor that falls behind must either slow its senders
(``BLOCK``), forget stale input (``DROP_OLDEST``) or refuse new input (``REJECT``), never grow
until the node runs out of memory.
"""

from __future__ import annotations

import asyncio
import enum
from collections import deque
from dataclasses import dataclass

from runtime.envelope import Envelope
from runtime.errors import ActorStopped, MailboxFull, MessageDropped


class MailboxPolicy(enum.Enum):
    """What ``put`` does when the mailbox is at capacity."""

    BLOCK = "block"
    """The sender waits until there is room: backpressure along the pipeline."""
    DROP_OLDEST = "drop_oldest"
    """The oldest queued message is discarded (a dropped ask fails with ``MessageDropped``).
    For live frames: the newest frame wins and stale frames are never processed."""
    REJECT = "reject"
    """The sender gets ``MailboxFull`` at once."""


@dataclass(frozen=True, slots=True)
class MailboxConfig:
    """Capacity and overflow policy of one actor's mailbox."""

    capacity: int = 64
    """Most messages queued at once (not counting the one being handled); at least 1."""
    policy: MailboxPolicy = MailboxPolicy.BLOCK
    """What happens to a message that arrives while ``capacity`` messages are queued."""

    def __post_init__(self) -> None:
        if self.capacity < 1:
            raise ValueError(f"mailbox capacity must be at least 1, got {self.capacity}")


@dataclass(frozen=True, slots=True)
class MailboxStatistics:
    """A snapshot of one mailbox's counters."""

    capacity: int
    """The configured capacity."""
    depth: int
    """Messages queued now."""
    peak_depth: int
    """Highest ``depth`` ever reached."""
    received: int
    """Messages accepted into the mailbox."""
    dropped: int
    """Messages discarded by ``DROP_OLDEST``."""
    rejected: int
    """Messages refused with ``MailboxFull``."""
    waiting_senders: int
    """Senders blocked now by a full ``BLOCK`` mailbox."""


class Mailbox:
    """A bounded FIFO of envelopes with one consumer (the actor's loop) and many senders."""

    def __init__(self, owner: str, config: MailboxConfig) -> None:
        self.owner = owner
        self.config = config
        # Invariant: len(_queue) <= config.capacity at every await point.
        self._queue: deque[Envelope] = deque()
        # The consumer waiting for a message, if any (there is at most one consumer).
        self._getter: asyncio.Future[None] | None = None
        # Senders waiting for room (BLOCK policy only), woken in FIFO order.
        self._putters: deque[asyncio.Future[None]] = deque()
        self._block = config.policy is MailboxPolicy.BLOCK
        # Once closed, no message is accepted; queued ones may still be taken (draining).
        self._closed = False
        self._peak = 0
        self._received = 0
        self._dropped = 0
        self._rejected = 0

    @property
    def closed(self) -> bool:
        """True once ``close`` was called: senders are refused with ``ActorStopped``."""
        return self._closed

    def __len__(self) -> int:
        return len(self._queue)

    def statistics(self) -> MailboxStatistics:
        """Return the current counters."""
        return MailboxStatistics(
            capacity=self.config.capacity,
            depth=len(self._queue),
            peak_depth=self._peak,
            received=self._received,
            dropped=self._dropped,
            rejected=self._rejected,
            waiting_senders=len(self._putters),
        )

    async def put(self, envelope: Envelope) -> None:
        """Queue ``envelope``, waiting for room if the policy is ``BLOCK``."""
        if self._block:
            while len(self._queue) >= self.config.capacity and not self._closed:
                await self._wait_for_room()
        self.put_nowait(envelope)

    def offer(self, envelope: Envelope) -> bool:
        """Queue ``envelope`` if that needs no waiting; False only for a full ``BLOCK`` mailbox.

        The synchronous fast path of ``put``: a sender calls ``put`` only when this says False.
        """
        if self._block and len(self._queue) >= self.config.capacity and not self._closed:
            return False
        self.put_nowait(envelope)
        return True

    def put_nowait(self, envelope: Envelope) -> None:
        """Queue ``envelope`` without waiting; a full ``BLOCK`` mailbox raises ``MailboxFull``."""
        if self._closed:
            raise ActorStopped(self.owner)
        queue = self._queue
        if len(queue) >= self.config.capacity:
            if self.config.policy is MailboxPolicy.DROP_OLDEST:
                queue.popleft().fail(MessageDropped(self.owner))
                self._dropped += 1
            else:
                self._rejected += 1
                raise MailboxFull(self.owner, self.config.capacity)
        queue.append(envelope)
        self._received += 1
        if len(queue) > self._peak:  # noqa: PLR1730 - hot path: cheaper than max()
            self._peak = len(queue)
        getter = self._getter
        if getter is not None and not getter.done():
            getter.set_result(None)

    async def get(self) -> Envelope | None:
        """Take the oldest envelope, waiting for one; ``None`` once closed and empty."""
        while not self._queue:
            if not await self.wait_nonempty():
                return None
        return self.get_nowait()

    def get_nowait(self) -> Envelope | None:
        """Take the oldest envelope if there is one, else None (the consumer's fast path)."""
        if not self._queue:
            return None
        envelope = self._queue.popleft()
        if self._putters:
            self._wake_one_putter()
        return envelope

    async def wait_nonempty(self) -> bool:
        """Wait until a message is queued (True) or the mailbox is closed and empty (False)."""
        while not self._queue:
            if self._closed:
                return False
            self._getter = asyncio.get_running_loop().create_future()
            try:
                await self._getter
            finally:
                self._getter = None
        return True

    def close(self) -> None:
        """Refuse new messages from now on; queued ones stay for draining."""
        self._closed = True
        if self._getter is not None and not self._getter.done():
            self._getter.set_result(None)
        while self._putters:
            putter = self._putters.popleft()
            if not putter.done():
                putter.set_result(None)

    def take_all(self) -> list[Envelope]:
        """Remove and return everything queued (used to fail what a stop could not drain)."""
        remaining = list(self._queue)
        self._queue.clear()
        while self._putters:
            self._wake_one_putter()
        return remaining

    async def _wait_for_room(self) -> None:
        putter = asyncio.get_running_loop().create_future()
        self._putters.append(putter)
        try:
            await putter
        except asyncio.CancelledError:
            # A cancelled sender must not keep a place in line, or it would swallow a wake-up.
            if putter in self._putters:
                self._putters.remove(putter)
            elif len(self._queue) < self.config.capacity:
                self._wake_one_putter()
            raise

    def _wake_one_putter(self) -> None:
        while self._putters:
            putter = self._putters.popleft()
            if not putter.done():
                putter.set_result(None)
                return
