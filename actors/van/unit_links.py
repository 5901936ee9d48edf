"""``UnitLinks``: the van's links to its units, one per unit, each reaching that unit's receiver.

Signaling hands over each accepted unit (``connected(unit_id, peer_connection, link_key)``, the
``Connected`` of ``actors.van.signaling``). From then on this module owns the peer connection:

1. It waits for the unit's data channel (the unit creates it; at most ``channel_timeout_s`` for
   it to arrive and open). The first channel must be labelled ``lfr-link`` and be reliable and
   ordered, or the connection is closed; any later channel is closed at once (counted), the
   link keeps running.
2. It spawns the unit's ``Receiver`` the first time the unit connects (``receiver:<unit id>``,
   under the ``receivers`` supervisor) and keeps it for the van's life, across links, with its
   ``UnitStatistics``; with a ``WatchlistBoard``, the unit's ``WatchlistDesk`` too
   (``watchlist:<unit id>``, beside it).
3. It runs the link handshake as responder with the key from signaling, under the unit's name
   only (``LinkKeys({unit_id: key})``: a peer claiming another name has no key), exposing
   ``RECEIVER_ACTOR`` with ``Resume``, ``Deliver`` and ``DeliverBatch`` only, routing it to this
   unit's receiver (and ``WATCHLIST_ACTOR`` with the desk's asks only, routed to its desk),
   with heartbeats (a unit silent for ``heartbeat_timeout_s`` is dropped).
4. It runs the link until it ends, then closes the data channel and the peer connection.

**One link per unit.** A unit redials after a network change while its old link may still look
alive here; its new, signed offer is the proof that the old one is dead. So a new connection of
a unit that is connected replaces the old one: the old link, data channel and peer connection
are closed first (within ``replace_timeout_s``), then the new link is made. Units connected (or
connecting) at once are bounded by ``max_units``: one more is refused in signaling
(``too_many_units``, 503), and a replacement does not count twice.

Every connection runs in a task owned here; ``stop()`` cancels them all and waits at most
``stop_timeout_s`` (each close is bounded by the data channel's own timeouts). Each link's start
and end is logged and handed to ``on_event`` ("unit X connected", "unit X dropped: <reason>").
The link key is never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Final, Literal

from actors.delivery_messages import RECEIVER_ACTOR, Deliver, DeliverBatch, Resume
from actors.van.receiver import (
    NoticeSink,
    Receiver,
    ReceiverMessage,
    RefusalSink,
    UnitStatistics,
    receiver_name,
)
from actors.van.signaling import SignalingRefused
from actors.van.watchlist_desk import WatchlistDesk, desk_name
from actors.watchlist_messages import DESK_ASKS, WATCHLIST_ACTOR
from guards.config_checks import require_at_least, require_positive
from guards.log_text import printable
from runtime.codec import Codec
from runtime.datachannel import (
    DATA_CHANNEL_MAX_MESSAGE_BYTES,
    LINK_CHANNEL_LABEL,
    DataChannelFrameChannel,
    DataChannelLimits,
    DataOnlyPeerConnection,
    open_link,
)
from runtime.link_config import LinkConfig
from runtime.link_handshake import HandshakeRefused
from runtime.link_keys import LinkKeys
from runtime.log_budget import LogBudget
from runtime.mailbox import MailboxConfig, MailboxPolicy

if TYPE_CHECKING:
    from aiortc import RTCDataChannel

    from actors.van.event_store import EventStore
    from actors.van.watchlist_board import WatchlistBoard
    from runtime.link import Link
    from runtime.ref import ActorRef
    from runtime.supervisor import Supervisor
    from runtime.system import ActorSystem
    from secure.envelope import SignerLookup
    from secure.sealing import EncryptionKeyPair

log = logging.getLogger("lfr.van.units")
DESK_MAILBOX: Final = 16
"""A unit's watchlist asks waiting at once (a poll and a few chunks: the keeper asks at most
``chunks_in_flight`` chunks at a time)."""
MAX_UNITS_LIMIT: Final = 1024
"""No more units than the enrolment holds (``actors.van.enrolment.MAX_UNITS``)."""


@dataclass(frozen=True, slots=True)
class UnitLinksConfig:
    """Bounds and timeouts of the van's unit links."""

    max_units: int = 64
    """Units connected or connecting at once; one more is refused in signaling. At most
    1024 (the enrolment's limit)."""
    channel_timeout_s: float = 15.0
    """From signaling's answer until the unit's data channel is there and open (ICE, DTLS and
    SCTP included), in seconds; then the connection is dropped."""
    handshake_timeout_s: float = 5.0
    """The link handshake inside the channel, in seconds."""
    heartbeat_interval_s: float = 5.0
    """The van sends a heartbeat when it sent nothing for this long (s)."""
    heartbeat_timeout_s: float = 15.0
    """A unit from which nothing arrived for this long is dropped (s)."""
    max_peer_asks: int = 32
    """Asks of one unit answered at once (its uplink's window of unacknowledged envelopes
    stays below this)."""
    receiver_mailbox: int = 64
    """Capacity of each receiver's mailbox (blocking: asks wait for room within their timeout).
    Invariant: at least ``max_peer_asks``, so a unit's asks in flight always fit."""
    replace_timeout_s: float = 12.0
    """How long a new connection waits for the unit's old one to close before going on."""
    stop_timeout_s: float = 12.0
    """``stop()`` waits at most this long for every connection to close."""
    limits: DataChannelLimits = field(default_factory=DataChannelLimits)
    """Receive queue and write bounds of each unit's data channel."""

    def __post_init__(self) -> None:
        require_at_least("UnitLinksConfig.max_units", self.max_units, 1)
        if self.max_units > MAX_UNITS_LIMIT:
            raise ValueError(f"UnitLinksConfig.max_units must be at most {MAX_UNITS_LIMIT}, "
                             f"got {self.max_units}")
        require_at_least("UnitLinksConfig.max_peer_asks", self.max_peer_asks, 1)
        require_at_least("UnitLinksConfig.receiver_mailbox", self.receiver_mailbox,
                         self.max_peer_asks)
        for name in ("channel_timeout_s", "handshake_timeout_s", "heartbeat_interval_s",
                     "heartbeat_timeout_s", "replace_timeout_s", "stop_timeout_s"):
            require_positive(f"UnitLinksConfig.{name}", getattr(self, name))
        if self.heartbeat_timeout_s <= self.heartbeat_interval_s:
            raise ValueError("UnitLinksConfig.heartbeat_timeout_s must exceed "
                             "heartbeat_interval_s")


@dataclass(frozen=True, slots=True)
class UnitLinkEvent:
    """A unit's link came up, went down, or never came up."""

    unit_id: str
    """The unit."""
    kind: Literal["connected", "dropped", "failed"]
    """``connected``: its link is up; ``dropped``: a link that was up ended; ``failed``: the
    connection ended before its link was up."""
    reason: str = ""
    """Why it ended (printable); empty for ``connected``."""

    def line(self) -> str:
        """One printable line: ``unit X connected``, ``unit X dropped: <reason>``..."""
        unit = printable(self.unit_id)
        if self.kind == "connected":
            return f"unit {unit} connected"
        verb = "dropped" if self.kind == "dropped" else "failed to connect"
        return f"unit {unit} {verb}: {printable(self.reason, max_chars=300)}"


EventSink = Callable[[UnitLinkEvent], None]
"""Takes each link event; must not block."""


class _Connection:
    """One accepted connection of a unit, from signaling's answer to its close."""

    def __init__(self, unit_id: str, peer_connection: DataOnlyPeerConnection) -> None:
        self.unit_id = unit_id
        self.peer_connection = peer_connection
        # The link's data channel, wrapped in the datachannel event itself so no frame is
        # missed; None until it arrived.
        self.channel: DataChannelFrameChannel | None = None
        # Set when the channel arrived or the connection failed first (failure says why).
        self.arrived = asyncio.Event()
        self.failure: str | None = None
        self.link: Link | None = None
        self.task: asyncio.Task[None] | None = None
        # Why this connection was cancelled (replaced, the van stopping); None otherwise.
        self.cancelled_because: str | None = None
        # True once its channel or peer connection was closed. A task cancelled before it
        # ever ran never runs its own close: whoever waited for it closes it then.
        self.closed = False

    def fail(self, reason: str) -> None:
        if self.failure is None:
            self.failure = reason
        self.arrived.set()


class UnitLinks:
    """The van's unit links (module docstring); ``connected`` is signaling's ``Connected``."""

    def __init__(self, system: ActorSystem, receivers: Supervisor, store: EventStore, *,
                 signers: SignerLookup, van_key: EncryptionKeyPair,
                 config: UnitLinksConfig | None = None, on_event: EventSink | None = None,
                 notices: NoticeSink | None = None,
                 board: WatchlistBoard | None = None,
                 refusals: RefusalSink | None = None) -> None:
        self.system = system
        self.config = config or UnitLinksConfig()
        self._receivers = receivers
        self._store = store
        self._signers = signers
        self._van_key = van_key
        self._on_event = on_event
        self._notices = notices
        self._board = board
        self._refusals = refusals
        self._codec = Codec()
        # The connection of each unit that is connected or connecting (the newest one);
        # invariant: at most config.max_units entries.
        self._current: dict[str, _Connection] = {}
        # Every connection task not yet finished, replaced ones included; owned here.
        self._tasks: set[asyncio.Task[None]] = set()
        # Per unit, for the van's life (a unit's receiver keeps the same object).
        self._statistics: dict[str, UnitStatistics] = {}
        self._spawning = asyncio.Lock()
        self._stopping = False
        self._log = LogBudget(log, "unit links")
        self.refused_units = 0
        """Connections refused because ``max_units`` units were connected."""
        self.refused_channels = 0
        """Data channels refused: another label, unreliable, or a second channel."""
        self.replaced = 0
        """Connections closed because the same unit connected again."""

    # -- what signaling calls ------------------------------------------------------------------

    def connected(self, unit_id: str, peer_connection: DataOnlyPeerConnection,
                  link_key: bytes) -> None:
        """Take over an accepted unit's peer connection (before its answer is sent);
        ``SignalingRefused`` when the van is stopping or ``max_units`` units are connected."""
        if self._stopping:
            raise SignalingRefused("stopping", "the van is stopping", 503)
        old = self._current.get(unit_id)
        if old is None and len(self._current) >= self.config.max_units:
            self.refused_units += 1
            raise SignalingRefused("too_many_units", f"{len(self._current)} units are "
                                   "connected already", 503)
        connection = _Connection(unit_id, peer_connection)
        peer_connection.on("datachannel",
                           lambda channel: self._on_datachannel(connection, channel))
        peer_connection.on("connectionstatechange",
                           lambda: self._on_connection_state(connection))
        self._current[unit_id] = connection
        if old is not None:
            self.replaced += 1
            log.info("unit %s connected again: its old connection is closed first",
                     printable(unit_id))
            self._cancel(old, "replaced by a new connection of the unit")
        task = asyncio.create_task(self._run(connection, old, link_key),
                                   name=f"unit link {unit_id}")
        connection.task = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- what the van reads --------------------------------------------------------------------

    def linked_units(self) -> tuple[str, ...]:
        """Units whose link is up now, sorted."""
        return tuple(sorted(unit for unit, connection in self._current.items()
                            if connection.link is not None and not connection.link.closed))

    def statistics(self) -> Mapping[str, UnitStatistics]:
        """Each unit's receiver statistics since the van started (read-only view)."""
        return MappingProxyType(self._statistics)

    def close_revoked(self, enrolled: Callable[[str], object | None]) -> tuple[str, ...]:
        """Close the connection of every unit ``enrolled`` no longer knows (revoked since it
        connected: its envelopes are refused from the revocation on, and its link goes too);
        returns their ids. Signaling refuses their next offer as ``unknown_unit``."""
        revoked = tuple(sorted(unit for unit in self._current if enrolled(unit) is None))
        for unit in revoked:
            log.warning("unit %s is no longer enrolled: closing its link", printable(unit))
            self._cancel(self._current[unit], "revoked: no longer enrolled at this van")
        return revoked

    # -- stopping ------------------------------------------------------------------------------

    async def stop(self) -> None:
        """Refuse new units, close every link and peer connection; waits at most
        ``stop_timeout_s``."""
        self._stopping = True
        for connection in list(self._current.values()):
            self._cancel(connection, "the van is stopping")
        connections = list(self._current.values())
        tasks = set(self._tasks)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self.config.stop_timeout_s)
            if pending:
                log.warning("unit links: %d connections did not close within %g s",
                            len(pending), self.config.stop_timeout_s)
        for connection in connections:  # closed already, unless its task never ran
            await self._close(connection)
        self._log.flush()

    # -- one connection ------------------------------------------------------------------------

    def _cancel(self, connection: _Connection, because: str) -> None:
        if connection.cancelled_because is None:
            connection.cancelled_because = because
        if connection.task is not None:
            connection.task.cancel()

    async def _run(self, connection: _Connection, old: _Connection | None,
                   link_key: bytes) -> None:
        unit_id = connection.unit_id
        reason = "closed"
        try:
            if old is not None and old.task is not None:
                await asyncio.wait({old.task}, timeout=self.config.replace_timeout_s)
                await self._close(old)  # closed already, unless its task never ran
            await self._receiver(unit_id)
            channel = await self._channel(connection)
            link = await open_link(self.system, channel, self._link_config(unit_id, link_key),
                                   self._codec, initiator=False)
            connection.link = link
            log.info("unit %s connected", printable(unit_id))
            self._emit(UnitLinkEvent(unit_id, "connected"))
            reason = await link.run()
        except asyncio.CancelledError:
            reason = connection.cancelled_because or "cancelled"
            raise
        except HandshakeRefused as exc:
            reason = f"link handshake refused: {exc}"
        except (ConnectionError, OSError) as exc:
            reason = str(exc) or type(exc).__name__
        finally:
            await self._close(connection)
            if self._current.get(unit_id) is connection:
                del self._current[unit_id]
            self._ended(connection, reason)

    async def _channel(self, connection: _Connection) -> DataChannelFrameChannel:
        """The unit's link channel once open; ``ConnectionError`` when it does not come."""
        timeout_s = self.config.channel_timeout_s
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        try:
            async with asyncio.timeout(timeout_s):
                await connection.arrived.wait()
        except TimeoutError:
            raise ConnectionError(f"no data channel within {timeout_s:g} s") from None
        if connection.failure is not None:
            raise ConnectionError(connection.failure)
        channel = connection.channel
        assert channel is not None  # arrived is set with a channel or a failure
        await channel.wait_open(max(deadline - loop.time(), 0.001))
        return channel

    def _on_datachannel(self, connection: _Connection, channel: RTCDataChannel) -> None:
        """aiortc's ``datachannel`` event: the first channel of the link's label is wrapped at
        once; another label fails the connection; any later channel is closed."""
        unit = printable(connection.unit_id)
        label = printable(channel.label, max_chars=64)
        if connection.channel is not None or connection.failure is not None:
            self._refuse_channel(channel, f"unit {unit}: refused a second data channel "
                                          f"'{label}'")
            return
        if channel.label != LINK_CHANNEL_LABEL:
            self._refuse_channel(channel, f"unit {unit}: refused a data channel labelled "
                                          f"'{label}'")
            connection.fail(f"refused a data channel labelled '{label}' (only "
                            f"'{LINK_CHANNEL_LABEL}' is accepted)")
            return
        try:
            connection.channel = DataChannelFrameChannel(
                channel, connection.peer_connection, DATA_CHANNEL_MAX_MESSAGE_BYTES,
                self.config.limits)
        except ValueError as exc:  # unordered or unreliable
            self._refuse_channel(channel, f"unit {unit}: refused data channel '{label}': {exc}")
            connection.fail(f"refused its data channel: {exc}")
            return
        connection.arrived.set()

    def _refuse_channel(self, channel: RTCDataChannel, text: str) -> None:
        self.refused_channels += 1
        self._log.warning("%s", text)
        channel.close()

    def _on_connection_state(self, connection: _Connection) -> None:
        state = connection.peer_connection.connectionState
        if state in ("failed", "closed") and connection.channel is None:
            connection.fail(f"the peer connection is {state}")

    def _link_config(self, unit_id: str, link_key: bytes) -> LinkConfig:
        config = self.config
        return LinkConfig(
            keys=LinkKeys({unit_id: link_key}, None,
                          f"the link key of unit {printable(unit_id)} from signaling"),
            exposed={RECEIVER_ACTOR: (Resume, Deliver, DeliverBatch),
                     **({WATCHLIST_ACTOR: DESK_ASKS} if self._board is not None else {})},
            routes={RECEIVER_ACTOR: receiver_name(unit_id),
                    **({WATCHLIST_ACTOR: desk_name(unit_id)} if self._board is not None
                       else {})},
            max_links=1, max_peer_asks=config.max_peer_asks,
            handshake_timeout_s=config.handshake_timeout_s,
            heartbeat_interval_s=config.heartbeat_interval_s,
            heartbeat_timeout_s=config.heartbeat_timeout_s)

    async def _receiver(self, unit_id: str) -> ActorRef[ReceiverMessage]:
        """The unit's receiver, spawned the first time the unit connects."""
        async with self._spawning:
            existing = self.system.lookup(receiver_name(unit_id))
            if existing is not None:
                return existing
            board = self._board
            if board is not None and self.system.lookup(desk_name(unit_id)) is None:
                await self._receivers.spawn(desk_name(unit_id),
                                            lambda: WatchlistDesk(unit_id, board),
                                            MailboxConfig(DESK_MAILBOX, MailboxPolicy.BLOCK))
            statistics = self._statistics.setdefault(unit_id, UnitStatistics())
            store, signers, van_key, notices, refusals = (
                self._store, self._signers, self._van_key, self._notices, self._refusals)
            return await self._receivers.spawn(
                receiver_name(unit_id),
                lambda: Receiver(unit_id, store, signers=signers, van_key=van_key,
                                 statistics=statistics, notices=notices, refusals=refusals),
                MailboxConfig(self.config.receiver_mailbox, MailboxPolicy.BLOCK))

    async def _close(self, connection: _Connection) -> None:
        """Close the channel (and with it the peer connection), or the peer connection alone;
        each within the data channel's close timeout. Once only."""
        if connection.closed:
            return
        connection.closed = True
        if connection.channel is not None:
            await connection.channel.close()
            return
        timeout_s = self.config.limits.close_timeout_s
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await connection.peer_connection.close()

    def _ended(self, connection: _Connection, reason: str) -> None:
        unit = printable(connection.unit_id)
        if connection.link is not None:
            log.info("unit %s dropped: %s", unit, printable(reason, max_chars=300))
            self._emit(UnitLinkEvent(connection.unit_id, "dropped", reason))
        else:
            self._log.warning("unit %s failed to connect: %s", unit,
                              printable(reason, max_chars=300))
            self._emit(UnitLinkEvent(connection.unit_id, "failed", reason))

    def _emit(self, event: UnitLinkEvent) -> None:
        if self._on_event is not None:
            self._on_event(event)

