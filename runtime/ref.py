"""``ActorRef``: the only handle other code holds on an actor.

A ref stays valid across restarts (it points at the actor's cell, not at an incarnation), so
nobody has to re-resolve an actor after its supervisor restarted it.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from runtime.envelope import Envelope
from runtime.errors import AskTimeout

if TYPE_CHECKING:
    from runtime.cell import ActorCell
    from runtime.mailbox import MailboxStatistics

# A ref accepting A | B serves where A is sent. Named M like the message type of Actor and
# ActorCell, which this ref is built from, rather than M_contra.
M = TypeVar("M", contravariant=True)  # noqa: PLC0105


class ActorRef(Generic[M]):
    """A typed address of a local actor that accepts messages of type ``M``.

    - ``await tell(m)``: fire and forget. Waits only for mailbox room under ``BLOCK``; raises
      ``MailboxFull`` under ``REJECT``; never waits under ``DROP_OLDEST``; raises
      ``ActorStopped`` if the actor is stopped.
    - ``tell_nowait(m)``: the same, but a full ``BLOCK`` mailbox raises ``MailboxFull``.
    - ``await ask(m, timeout=s)``: the reply, or the exception ``receive`` raised, or
      ``AskTimeout``; an ask still queued when the actor stops fails with ``ActorStopped``.
    """

    __slots__ = ("_cell", "_mailbox")

    def __init__(self, cell: ActorCell[M]) -> None:
        self._cell = cell
        self._mailbox = cell.mailbox  # the cell keeps one mailbox for life

    @property
    def name(self) -> str:
        """The actor's unique name in its system."""
        return self._cell.name

    @property
    def is_alive(self) -> bool:
        """True while the actor accepts messages (including during a restart)."""
        return not self._cell.mailbox.closed

    async def tell(self, message: M) -> None:
        """Send ``message`` without waiting for it to be handled."""
        envelope = Envelope(message, None)
        if not self._mailbox.offer(envelope):
            await self._mailbox.put(envelope)

    async def tell_from_peer(self, message: M) -> None:
        """``tell`` for a message that came over a link: if handling it raises, the error is
        counted (``remote_failures``) and logged, and the actor keeps running."""
        envelope = Envelope(message, None, from_peer=True)
        if not self._mailbox.offer(envelope):
            await self._mailbox.put(envelope)

    def tell_nowait(self, message: M) -> None:
        """Send ``message`` without ever waiting; a full mailbox raises ``MailboxFull``."""
        self._cell.mailbox.put_nowait(Envelope(message, None))

    async def ask(self, message: M, timeout: float = 5.0, *,  # noqa: ASYNC109
                  from_peer: bool = False) -> Any:
        """Send ``message`` and wait up to ``timeout`` seconds for the reply.

        ``from_peer``: the ask came over a link (its failure also counts as a remote failure).
        """
        reply: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(timeout):
                await self._cell.mailbox.put(Envelope(message, reply, from_peer=from_peer))
                return await reply
        except TimeoutError as exc:
            if reply.done() and not reply.cancelled() and reply.exception() is exc:
                raise  # the actor itself raised a TimeoutError: deliver it as is
            raise AskTimeout(self.name, timeout) from None
        finally:
            # The actor sees a cancelled reply as "nobody is waiting" and skips resolving it.
            reply.cancel()

    def statistics(self) -> MailboxStatistics:
        """The actor's mailbox statistics."""
        return self._cell.mailbox.statistics()

    async def stop(self, *, drain_s: float = 0.0) -> None:
        """Stop the actor (a normal exit), handling queued messages for up to ``drain_s`` s."""
        await self._cell.stop(drain_s)

    def __repr__(self) -> str:
        return f"ActorRef({self.name!r})"
