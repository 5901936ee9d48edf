"""What travels through a mailbox: the message plus, for an ask, where the reply goes."""

from __future__ import annotations

import asyncio
from typing import Any


class Envelope:
    """One queued message. ``__slots__`` because one is allocated per ``tell``."""

    __slots__ = ("from_peer", "message", "reply")

    def __init__(self, message: Any, reply: asyncio.Future[Any] | None, *,
                 from_peer: bool = False) -> None:
        self.message = message
        # None for a tell. For an ask, the future the asker awaits; invariant: it is resolved
        # exactly once (result, exception, ActorStopped or MessageDropped), unless the asker
        # cancelled it first, which every resolver checks with ``done()``.
        self.reply = reply
        # True when the message came from another process over a link: its failure is that
        # message's failure (counted, logged, answered), never the actor's.
        self.from_peer = from_peer

    def fail(self, error: BaseException) -> None:
        """Resolve an ask's reply with ``error``; a no-op for tells and already-resolved asks."""
        if self.reply is not None and not self.reply.done():
            self.reply.set_exception(error)
