"""``Link``: one authenticated connection between two actor systems, carrying tells and asks.

Semantics match local refs: ``tell`` is fire and forget (it waits only for socket buffer room),
``ask`` returns the reply or raises ``RemoteError``/``AskTimeout``. When the connection is lost
every pending ask fails with ``LinkLost`` at once (never a hang) and watchers are told
``LinkDown``. A frame that does not decode is logged and skipped; a frame over the size limit
closes the link, since the stream can no longer be trusted.

What a peer may do is bounded by ``LinkConfig``: it reaches only the exposed actors, with only
the message classes listed for each (never a runtime message); a message of its that makes an
actor raise fails alone (a tell is counted and logged, an ask answered with the error), never
the actor; and it has at most ``max_peer_asks`` asks being answered at once. Everything a peer
sent is logged through ``printable``: names and texts from a peer cannot forge log lines, and
every line a peer's message causes goes through the link's ``LogBudget`` (20 per 10 s, then a
summary): a peer cannot flood the log either, while the link's counters count every event.

Heartbeats: each side sends a ``LinkHeartbeat`` when it has sent nothing for
``heartbeat_interval_s`` and closes the link when nothing at all arrived for
``heartbeat_timeout_s``, so a peer that vanished without a word (power cut, cable, 4G cell)
ends the link in bounded time on both sides, like any other loss (``LinkLost``, ``LinkDown``).
Time the link spends waiting for room in a local actor's mailbox is not the peer's silence (it
is this node's backpressure), and neither a heartbeat stuck behind unsent data nor a channel
whose close waits for a peer that takes no data can hold the link up: the check never waits
on a send, and closing waits at most ``close_timeout_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from guards.log_text import printable
from runtime.codec import Codec, DecodeError, EncodeError
from runtime.errors import AskTimeout, LinkLost, RemoteError, RuntimeFault
from runtime.link_messages import (
    LinkHeartbeat,
    RemoteAsk,
    RemoteFailure,
    RemoteReply,
    RemoteTell,
)
from runtime.log_budget import LogBudget
from runtime.message import RESERVED_CODES

if TYPE_CHECKING:
    from runtime.framing import FrameChannel
    from runtime.link_config import LinkConfig
    from runtime.ref import ActorRef
    from runtime.system import ActorSystem

M = TypeVar("M")
log = logging.getLogger("lfr.runtime.link")
MAX_REMOTE_ERROR_CHARS = 1000
"""A peer's error text is cut here (and escaped) before it becomes a ``RemoteError``."""


class TooManyAsks(RuntimeFault):
    """This node already awaits ``LinkConfig.max_pending_asks`` replies over the link."""

    def __init__(self, peer: str, limit: int) -> None:
        self.peer = peer
        self.limit = limit
        super().__init__(f"too many pending asks to {peer}: {limit} await replies already")


class Link:
    """A live connection; created by ``LinkServer``/``LinkClient`` after the handshake."""

    def __init__(self, system: ActorSystem, channel: FrameChannel, codec: Codec,
                 peer: str, config: LinkConfig) -> None:
        self.system = system
        self.peer = peer
        """The peer's proven node name (valid and printable: checked by the handshake)."""
        self._channel = channel
        self._codec = codec
        self._config = config
        self._ids = itertools.count(1)
        # Asks sent and not yet answered, with the target actor's name (for RemoteError);
        # invariant: emptied (each failed with LinkLost) the moment the link closes, so no asker
        # waits on a dead link; at most config.max_pending_asks long.
        self._pending: dict[int, tuple[str, asyncio.Future[Any]]] = {}
        # Tasks answering asks from the peer; owned here, cancelled on close; at most
        # config.max_peer_asks of them.
        self._serving: set[asyncio.Task[None]] = set()
        self._closed_reason: str | None = None
        # Set by the heartbeat just before it cancels run()'s task: why the link ends.
        self._silence_reason: str | None = None
        # Monotonic times of the last frame received from and sent to the peer (heartbeats).
        self._last_received = self._last_sent = asyncio.get_running_loop().time()
        # True while run() waits for room in a local actor's mailbox; the peer is not read
        # meanwhile, so that time is never counted as its silence.
        self._waiting_on_actor = False
        self.heartbeats_received = 0
        """``LinkHeartbeat`` frames from the peer."""
        self.undecodable_frames = 0
        """Frames from the peer that did not decode and were skipped."""
        self.refused_messages = 0
        """Tells and asks from the peer refused: an actor not exposed, a class it does not
        accept, a runtime message, or a frame that is not a tell, ask or answer."""
        self.refused_asks = 0
        """Asks from the peer answered "too many pending asks" at once."""
        self.undelivered_tells = 0
        """Tells from the peer to an exposed actor whose mailbox refused them (full or
        closed)."""
        # Every per-message warning goes through here: the peer decides how many there are.
        self._log = LogBudget(log, f"link to {printable(peer)}")

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
            self._last_sent = asyncio.get_running_loop().time()
        except (ConnectionError, OSError) as exc:
            raise LinkLost(self.peer, str(exc) or type(exc).__name__) from exc

    async def ask(self, target: str, message: Any, timeout_s: float) -> Any:
        """Send an ask and wait for its answer; ``TooManyAsks`` if too many are pending."""
        if len(self._pending) >= self._config.max_pending_asks:
            raise TooManyAsks(self.peer, self._config.max_pending_asks)
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
        """Read and dispatch frames until the connection ends or the peer falls silent; returns
        why it ended. Must be awaited by a task of its own (a server's or a client's): the
        heartbeat wakes a silent link by cancelling that task."""
        runner = asyncio.current_task()
        if runner is None:
            raise RuntimeError("Link.run must be awaited by a task")
        reason = "closed"
        heartbeat = asyncio.create_task(self._heartbeat(runner), name=f"heartbeat {self.peer}")
        try:
            while True:
                frame = await self._channel.read_frame()
                self._last_received = asyncio.get_running_loop().time()
                await self._dispatch_frame(frame)
        except asyncio.CancelledError:
            # The heartbeat's cancel alone is a silent peer; any other is a stop (propagated).
            if self._silence_reason is None or runner.uncancel() > 0:
                reason = "link stopped"
                raise
            reason = self._silence_reason
        except (EOFError, ConnectionError, OSError) as exc:
            reason = str(exc) or type(exc).__name__
        except Exception as exc:
            # link (watchers hear LinkDown, pending asks fail), never the node.
            log.exception("link to %s: closing after an internal error", printable(self.peer))
            reason = f"internal error: {type(exc).__name__}: {printable(exc)}"
        finally:
            heartbeat.cancel()
            await asyncio.gather(heartbeat, return_exceptions=True)
            await self._close(reason)
        return reason

    async def _heartbeat(self, runner: asyncio.Task[Any]) -> None:
        """Send heartbeats while idle; when the peer has gone silent, cancel ``runner`` (the
        task in ``run``, which then ends with the reason set here: a channel's close may not
        wake its read while unsent data waits for the peer). Owned by ``run``, which cancels it.
        """
        config = self._config
        loop = asyncio.get_running_loop()
        tick = min(config.heartbeat_interval_s, config.heartbeat_timeout_s / 3)
        while True:
            await asyncio.sleep(tick)
            now = loop.time()
            if (not self._waiting_on_actor
                    and now - self._last_received >= config.heartbeat_timeout_s):
                self._silence_reason = (f"nothing received for {now - self._last_received:.1f} s "
                                        f"(heartbeat timeout {config.heartbeat_timeout_s:g} s)")
                runner.cancel()
                return
            if now - self._last_sent >= config.heartbeat_interval_s:
                # At most a tick: a peer that takes no data holds a send for ever, and the check
                # above must go on. The frame is in the channel's buffer either way.
                with contextlib.suppress(LinkLost, TimeoutError):
                    async with asyncio.timeout(tick):
                        await self.send(LinkHeartbeat())

    async def _dispatch_frame(self, frame: bytes) -> None:
        try:
            envelope = self._codec.decode(frame)
        except DecodeError as exc:
            self.undecodable_frames += 1
            self._log.warning("link to %s: skipped an undecodable frame: %s",
                              printable(self.peer), printable(exc))
            return
        if isinstance(envelope, RemoteTell):
            await self._deliver_tell(envelope)
        elif isinstance(envelope, RemoteAsk):
            await self._accept_ask(envelope)
        elif isinstance(envelope, RemoteReply | RemoteFailure):
            self._resolve(envelope)
        elif isinstance(envelope, LinkHeartbeat):
            self.heartbeats_received += 1
        else:
            # A Hello, a proof or a link event inside an established link: never delivered.
            self.refused_messages += 1
            self._log.warning("link to %s: unexpected %s frame refused", printable(self.peer),
                              type(envelope).__name__)

    def _refusal(self, target: str, payload: Any) -> tuple[str, str] | None:
        """Why the peer may not send ``payload`` to ``target`` (error type, text), or None."""
        spec = self._codec.registry.spec_for_class(type(payload))
        kind = type(payload).__name__
        if spec is None or spec.code in RESERVED_CODES:
            return "MessageRefused", f"{kind} is a runtime message; a peer cannot send it"
        accepts = self._config.exposed.get(target)
        if accepts is None or self._local(target) is None:
            # Unexposed and missing look the same: a peer learns nothing of what runs here.
            return ("ActorNotFound",
                    f"no actor named '{printable(target)}' on '{printable(self.system.name)}'")
        if type(payload) not in accepts:
            return ("MessageRefused",
                    f"actor '{printable(target)}' does not accept {kind} from peers")
        return None

    def _local(self, target: str) -> ActorRef[Any] | None:
        """The local actor a peer's ``target`` names (through ``LinkConfig.routes``)."""
        return self.system.lookup(self._config.local_name(target))

    async def _deliver_tell(self, envelope: RemoteTell) -> None:
        refusal = self._refusal(envelope.target, envelope.payload)
        ref = self._local(envelope.target)
        if refusal is not None or ref is None:
            self.refused_messages += 1
            self._log.warning("link to %s: tell dropped: %s", printable(self.peer),
                              refusal[1] if refusal else "no such actor")
            return
        self._waiting_on_actor = True
        try:
            # Awaiting a BLOCK mailbox here is deliberate: backpressure reaches the peer's socket.
            await ref.tell_from_peer(envelope.payload)
        except RuntimeFault as exc:
            self.undelivered_tells += 1
            self._log.warning("link to %s: tell to '%s' not delivered: %s", printable(self.peer),
                              printable(envelope.target), printable(exc))
        finally:
            # The peer's silence is counted again from now, not from before the wait.
            self._waiting_on_actor = False
            self._last_received = asyncio.get_running_loop().time()

    async def _accept_ask(self, envelope: RemoteAsk) -> None:
        if len(self._serving) >= self._config.max_peer_asks:
            self.refused_asks += 1
            await self._send_answer(RemoteFailure(
                envelope.ask_id, "TooManyAsks",
                f"too many pending asks: {len(self._serving)} from this peer are being answered"))
            return
        task = asyncio.create_task(self._answer(envelope))
        self._serving.add(task)
        task.add_done_callback(self._serving.discard)

    async def _answer(self, envelope: RemoteAsk) -> None:
        refusal = self._refusal(envelope.target, envelope.payload)
        ref = self._local(envelope.target)
        answer: RemoteReply | RemoteFailure
        if refusal is not None or ref is None:
            self.refused_messages += 1
            error_type, text = refusal or ("ActorNotFound", "no such actor")
            answer = RemoteFailure(envelope.ask_id, error_type, text)
        else:
            # A NaN, negative or huge timeout from the peer is not this node's to honour.
            timeout_s = (min(envelope.timeout_s, self._config.max_ask_timeout_s)
                         if envelope.timeout_s > 0 else 0.0)
            try:
                result = await ref.ask(envelope.payload, timeout=timeout_s, from_peer=True)
                answer = RemoteReply(envelope.ask_id, result)
            except Exception as exc:  # noqa: BLE001 - any handler error is the asker's answer
                answer = RemoteFailure(envelope.ask_id, type(exc).__name__, str(exc))
        await self._send_answer(answer)

    async def _send_answer(self, answer: RemoteReply | RemoteFailure) -> None:
        # LinkLost: the asker's side has already failed the ask with LinkLost.
        with contextlib.suppress(LinkLost):
            try:
                await self.send(answer)
            except EncodeError as exc:  # the reply cannot cross: tell the asker why instead
                await self.send(RemoteFailure(answer.ask_id, "EncodeError", str(exc)))

    def _resolve(self, envelope: RemoteReply | RemoteFailure) -> None:
        pending = self._pending.get(envelope.ask_id)
        if pending is None or pending[1].done():
            return  # the asker timed out already
        target, reply = pending
        if isinstance(envelope, RemoteReply):
            reply.set_result(envelope.payload)
        else:
            # Named like AskTimeout names a remote actor: "peer/actor". The peer's texts are
            # escaped and cut: whoever logs this error logs them.
            reply.set_exception(RemoteError(
                f"{self.peer}/{target}", printable(envelope.error_type, max_chars=100),
                printable(envelope.message, max_chars=MAX_REMOTE_ERROR_CHARS)))

    async def _close(self, reason: str) -> None:
        if self._closed_reason is not None:
            return
        self._closed_reason = reason
        self._log.flush()
        for _, reply in self._pending.values():
            if not reply.done():
                reply.set_exception(LinkLost(self.peer, reason))
        self._pending.clear()
        for task in list(self._serving):
            task.cancel()
        await asyncio.gather(*self._serving, return_exceptions=True)
        # Bounded: a stream's close waits for its unsent data, which a peer that stopped
        # reading never takes; the link is over either way.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._config.close_timeout_s):
                await self._channel.close()


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
