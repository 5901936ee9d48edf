"""``Link``: one connection between two actor systems, carrying tells and asks by actor name.

Semantics match local refs: ``tell`` is fire and forget (it waits only for socket buffer room),
``ask`` returns the reply or raises ``RemoteError``/``AskTimeout``. When the connection is lost
every pending ask fails with ``LinkLost`` at once (never a hang) and watchers are told
``LinkDown``. A frame that does not decode is logged and skipped; a frame over the size limit
closes the link, since the stream can no longer be trusted.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from runtime.codec import Codec, DecodeError, EncodeError
from runtime.errors import AskTimeout, LinkLost, RemoteError, RuntimeFault
from runtime.link_messages import (
    PROTOCOL_VERSION,
    Hello,
    RemoteAsk,
    RemoteFailure,
    RemoteReply,
    RemoteTell,
)

if TYPE_CHECKING:
    from runtime.framing import FrameChannel
    from runtime.system import ActorSystem

M = TypeVar("M")
log = logging.getLogger("lfr.runtime.link")
HANDSHAKE_TIMEOUT_S = 10.0


class Link:
    """A live connection; created by ``LinkServer``/``LinkClient`` after the handshake."""

    def __init__(self, system: ActorSystem, channel: FrameChannel, codec: Codec,
                 peer: str) -> None:
        self.system = system
        self.peer = peer
        self._channel = channel
        self._codec = codec
        self._ids = itertools.count(1)
        # Asks sent and not yet answered, with the target actor's name (for RemoteError);
        # invariant: emptied (each failed with LinkLost) the moment the link closes, so no asker
        # waits on a dead link.
        self._pending: dict[int, tuple[str, asyncio.Future[Any]]] = {}
        # Tasks answering asks from the peer; owned here, cancelled on close.
        self._serving: set[asyncio.Task[None]] = set()
        self._closed_reason: str | None = None
        self.undecodable_frames = 0
        """Frames from the peer that did not decode and were skipped."""

    @property
    def closed(self) -> bool:
        """True once the connection is gone."""
        return self._closed_reason is not None

    def ref(self, name: str) -> RemoteActorRef[Any]:
        """A reference to the actor called ``name`` on the peer."""
        return RemoteActorRef(lambda: self, name)

    # --- sending ------------------------------------------------------------------------------

    async def send(self, message: Any) -> None:
        """Encode and write one runtime envelope; raises ``LinkLost`` if the link is down."""
        if self._closed_reason is not None:
            raise LinkLost(self.peer, self._closed_reason)
        frame = self._codec.encode(message)
        try:
            await self._channel.write_frame(frame)
        except (ConnectionError, OSError) as exc:
            raise LinkLost(self.peer, str(exc) or type(exc).__name__) from exc

    async def ask(self, target: str, message: Any, timeout_s: float) -> Any:
        """Send an ask and wait for its answer."""
        ask_id = next(self._ids)
        reply: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[ask_id] = (target, reply)
        try:
            async with asyncio.timeout(timeout_s):
                await self.send(RemoteAsk(ask_id, target, message, timeout_s))
                return await reply
        except TimeoutError:
            raise AskTimeout(f"{self.peer}/{target}", timeout_s) from None
        finally:
            self._pending.pop(ask_id, None)

    # --- receiving ----------------------------------------------------------------------------

    async def run(self) -> str:
        """Read and dispatch frames until the connection ends; returns why it ended."""
        reason = "closed"
        try:
            while True:
                frame = await self._channel.read_frame()
                await self._dispatch_frame(frame)
        except asyncio.CancelledError:
            reason = "link stopped"
            raise
        except (EOFError, ConnectionError, OSError) as exc:
            reason = str(exc) or type(exc).__name__
        except Exception as exc:
            # link (watchers hear LinkDown, pending asks fail), never the node.
            log.exception("link to %s: closing after an internal error", self.peer)
            reason = f"internal error: {type(exc).__name__}: {exc}"
        finally:
            await self._close(reason)
        return reason

    async def _dispatch_frame(self, frame: bytes) -> None:
        try:
            envelope = self._codec.decode(frame)
        except DecodeError as exc:
            self.undecodable_frames += 1
            log.warning("link to %s: skipped an undecodable frame: %s", self.peer, exc)
            return
        if isinstance(envelope, RemoteTell):
            await self._deliver_tell(envelope)
        elif isinstance(envelope, RemoteAsk):
            task = asyncio.create_task(self._answer(envelope))
            self._serving.add(task)
            task.add_done_callback(self._serving.discard)
        elif isinstance(envelope, RemoteReply | RemoteFailure):
            self._resolve(envelope)
        else:
            log.warning("link to %s: unexpected %s frame ignored", self.peer,
                        type(envelope).__name__)

    async def _deliver_tell(self, envelope: RemoteTell) -> None:
        ref = self.system.lookup(envelope.target)
        if ref is None:
            log.warning("link to %s: tell to unknown actor %r dropped", self.peer, envelope.target)
            return
        try:
            # Awaiting a BLOCK mailbox here is deliberate: backpressure reaches the peer's socket.
            await ref.tell(envelope.payload)
        except RuntimeFault as exc:
            log.warning("link to %s: tell to %r not delivered: %s", self.peer, envelope.target,
                        exc)

    async def _answer(self, envelope: RemoteAsk) -> None:
        ref = self.system.lookup(envelope.target)
        answer: RemoteReply | RemoteFailure
        if ref is None:
            answer = RemoteFailure(envelope.ask_id, "ActorNotFound",
                                   f"no actor named {envelope.target!r} on {self.system.name!r}")
        else:
            try:
                result = await ref.ask(envelope.payload, timeout=envelope.timeout_s)
                answer = RemoteReply(envelope.ask_id, result)
            except Exception as exc:  # noqa: BLE001 - any handler error is the asker's answer
                answer = RemoteFailure(envelope.ask_id, type(exc).__name__, str(exc))
        # LinkLost: the asker's side has already failed the ask with LinkLost.
        with contextlib.suppress(LinkLost):
            try:
                await self.send(answer)
            except EncodeError as exc:  # the reply cannot cross: tell the asker why instead
                await self.send(RemoteFailure(envelope.ask_id, "EncodeError", str(exc)))

    def _resolve(self, envelope: RemoteReply | RemoteFailure) -> None:
        pending = self._pending.get(envelope.ask_id)
        if pending is None or pending[1].done():
            return  # the asker timed out already
        target, reply = pending
        if isinstance(envelope, RemoteReply):
            reply.set_result(envelope.payload)
        else:
            # Named like AskTimeout names a remote actor: "peer/actor".
            reply.set_exception(RemoteError(f"{self.peer}/{target}", envelope.error_type,
                                            envelope.message))

    async def _close(self, reason: str) -> None:
        if self._closed_reason is not None:
            return
        self._closed_reason = reason
        for _, reply in self._pending.values():
            if not reply.done():
                reply.set_exception(LinkLost(self.peer, reason))
        self._pending.clear()
        for task in list(self._serving):
            task.cancel()
        await asyncio.gather(*self._serving, return_exceptions=True)
        await self._channel.close()


async def handshake(system: ActorSystem, channel: FrameChannel, codec: Codec) -> str:
    """Exchange ``Hello`` frames; returns the peer's node name or raises ``ConnectionError``."""
    await channel.write_frame(codec.encode(Hello(system.name, PROTOCOL_VERSION)))
    try:
        async with asyncio.timeout(HANDSHAKE_TIMEOUT_S):
            frame = await channel.read_frame()
        hello = codec.decode(frame)
    except (DecodeError, TimeoutError) as exc:
        raise ConnectionError(f"handshake with {channel.description} failed: {exc}") from exc
    if not isinstance(hello, Hello) or hello.protocol != PROTOCOL_VERSION:
        raise ConnectionError(f"handshake with {channel.description} failed: expected Hello "
                              f"protocol {PROTOCOL_VERSION}, got {hello!r}")
    return hello.node


class RemoteActorRef(Generic[M]):
    """An actor on another system, reached over whichever link currently connects to it."""

    __slots__ = ("_current_link", "name")

    def __init__(self, current_link: Callable[[], Link | None], name: str) -> None:
        self._current_link = current_link
        self.name = name

    def _link(self) -> Link:
        link = self._current_link()
        if link is None or link.closed:
            raise LinkLost(self.name, "not connected")
        return link

    async def tell(self, message: M) -> None:
        """Send without waiting for handling; raises ``LinkLost`` while disconnected."""
        await self._link().send(RemoteTell(self.name, message))

    async def ask(self, message: M, timeout: float = 5.0) -> Any:  # noqa: ASYNC109
        """Send and wait up to ``timeout`` s for the reply (``RemoteError`` if it raised)."""
        return await self._link().ask(self.name, message, timeout)

    def __repr__(self) -> str:
        return f"RemoteActorRef({self.name!r})"
