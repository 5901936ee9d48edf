"""Where links come from: ``LinkServer`` accepts them, ``LinkClient`` dials and redials.

Both own the tasks of their links and tell watchers ``LinkUp``/``LinkDown``. A dropped
connection never takes the node down: the server keeps listening; the client reconnects with
exponential backoff until it is stopped. No link exists before the handshake proved the peer's
key (``link_handshake``); a server holds at most ``LinkConfig.max_links`` links, at most one per
peer name, and apart from them at most ``LinkConfig.max_handshakes`` connections still in their
handshake, where a new connection evicts the oldest: connections that never speak cannot keep
a peer with the key from linking.

Addresses: a Unix socket is created with mode 0600 (only this user may connect) and removed when
the server stops; TCP listens and dials on loopback addresses only, since links are not
encrypted yet.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from guards.log_text import printable
from runtime.codec import Codec
from runtime.framing import StreamFrameChannel
from runtime.link import Link, RemoteActorRef
from runtime.link_addresses import bind_private_unix_socket, require_loopback
from runtime.link_handshake import HandshakeRefused, handshake
from runtime.link_messages import LinkDown, LinkEvent, LinkUp
from runtime.log_budget import LogBudget
from runtime.supervisor import Backoff

if TYPE_CHECKING:
    from runtime.link_config import LinkConfig
    from runtime.ref import ActorRef
    from runtime.system import ActorSystem

log = logging.getLogger("lfr.runtime.link")
Opener = Callable[[], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]
LISTEN_BACKLOG = 1024
"""Connections the kernel queues until the server accepts them (one per loop iteration), so a
burst of silent connections waits there instead of being refused or refusing a peer."""
ACCEPT_ERROR_PAUSE_S = 0.1
"""Pause after a failed accept (out of file descriptors, say) before trying again (s)."""


class _Watchers:
    """Actors told about link events; a full watcher mailbox loses the event, not the link."""

    def __init__(self) -> None:
        self._refs: list[ActorRef[LinkEvent]] = []

    def add(self, ref: ActorRef[LinkEvent]) -> None:
        self._refs.append(ref)

    def notify(self, event: LinkEvent) -> None:
        for ref in self._refs:
            try:
                ref.tell_nowait(event)
            except Exception as exc:  # noqa: BLE001 - one broken watcher must not stop the link
                log.warning("watcher %s missed %s: %s", printable(ref.name), event,
                            printable(exc))


class LinkServer:
    """Accepts links on a Unix socket or TCP port; see ``serve_unix``/``serve_tcp``."""

    def __init__(self, system: ActorSystem, config: LinkConfig, codec: Codec) -> None:
        config.check_registered(codec.registry)
        self.system = system
        self.config = config
        self.codec = codec
        self.links: dict[str, Link] = {}
        """Live links by peer name."""
        self.refused_connections = 0
        """Connections closed at once because ``max_links`` links were up."""
        self.evicted_handshakes = 0
        """Connections closed in their handshake to make room for a newer one
        (``max_handshakes``)."""
        self.failed_handshakes = 0
        """Connections whose handshake failed (the log says why)."""
        self._watchers = _Watchers()
        self._listener: socket.socket | None = None
        self._acceptor: asyncio.Task[None] | None = None
        # One task per open connection (handshaking or linked); an evicted one leaves on the
        # next loop iteration, its socket already closed.
        self._tasks: set[asyncio.Task[None]] = set()
        # Connections still in their handshake, oldest first, each with the task serving it:
        # those whose peer has not sent a valid Hello yet, then those whose peer has (see
        # _evict_oldest_handshake). Invariant: together at most config.max_handshakes; a
        # connection leaves when its handshake ends, however it ends, or when it is evicted.
        self._silent: dict[asyncio.StreamWriter, asyncio.Task[None]] = {}
        self._greeted: dict[asyncio.StreamWriter, asyncio.Task[None]] = {}
        # Peer names with a link, or past their proof and about to get one: a second
        # connection claiming one of them is refused. Invariant: at most config.max_links, so
        # its size is what max_links bounds.
        self._names: set[str] = set()
        self._unix_path: str | None = None
        self._unix_inode: tuple[int, int] | None = None
        # Refusals a peer can repeat at will are logged through this budget, counted in full.
        self._log_budget = LogBudget(log, "link server")

    def watch(self, ref: ActorRef[LinkEvent]) -> None:
        """Tell ``ref`` about every peer connecting and disconnecting."""
        self._watchers.add(ref)

    def ref(self, peer: str, name: str) -> RemoteActorRef[Any]:
        """The actor ``name`` on connected peer ``peer`` (``LinkLost`` while it is away)."""
        return RemoteActorRef(lambda: self.links.get(peer), name)

    async def start_unix(self, path: str) -> None:
        """Listen on a Unix socket at ``path`` with mode 0600 (replacing a stale socket)."""
        sock = bind_private_unix_socket(path)
        info = os.stat(path)
        self._unix_path, self._unix_inode = path, (info.st_dev, info.st_ino)
        self._listen(sock)

    async def start_tcp(self, host: str, port: int) -> int:
        """Listen on TCP at a loopback address; returns the bound port (useful with ``port=0``)."""
        require_loopback(host)
        family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
        sock = socket.create_server((host, port), family=family, backlog=LISTEN_BACKLOG)
        self._listen(sock)
        return int(sock.getsockname()[1])

    def _listen(self, sock: socket.socket) -> None:
        sock.listen(LISTEN_BACKLOG)
        sock.setblocking(False)  # noqa: FBT003 - the socket module's own signature
        self._listener = sock
        self._acceptor = asyncio.create_task(self._accept_loop(sock), name="link-server:listen")

    async def _accept_loop(self, listener: socket.socket) -> None:
        """Accept connections one per loop iteration, for as long as the server runs.

        One at a time on purpose (``asyncio.start_server`` accepts up to its backlog at once):
        between two accepts every handshake under way takes its next step, so a genuine peer
        reads as greeted (``_greet``) long before enough newcomers arrive to evict it.
        """
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, _ = await loop.sock_accept(listener)
            except OSError as exc:
                self._log_budget.warning("cannot accept a connection: %s", printable(exc))
                await asyncio.sleep(ACCEPT_ERROR_PAUSE_S)
                continue
            try:
                reader, writer = await self._streams(conn)
            except OSError:
                conn.close()  # gone before it could be set up: nothing to serve
                continue
            self._accept(reader, writer)
            await asyncio.sleep(0)

    async def _streams(self, conn: socket.socket) -> tuple[asyncio.StreamReader,
                                                           asyncio.StreamWriter]:
        """Reader and writer over an accepted socket, as ``asyncio.start_server`` makes them."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=self.config.read_ahead_bytes)
        protocol = asyncio.StreamReaderProtocol(reader)
        transport, _ = await loop.connect_accepted_socket(lambda: protocol, conn)
        return reader, asyncio.StreamWriter(transport, protocol, reader, loop)

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._names) >= self.config.max_links:
            self.refused_connections += 1
            self._log_budget.warning("refused a connection: %d links are up, the limit",
                                     len(self._names))
            writer.close()  # the transport closes on the loop; nothing to wait for here
            return
        if len(self._silent) + len(self._greeted) >= self.config.max_handshakes:
            self._evict_oldest_handshake()
        task = asyncio.create_task(self._serve(reader, writer), name="link-server:accept")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self._silent[writer] = task

    def _evict_oldest_handshake(self) -> None:
        """Close the connection that has been in its handshake the longest, preferring one
        whose peer has not yet sent a valid Hello.

        The oldest, not the newest: refusing newcomers would let connections that never speak
        hold every slot until their deadline, and the next genuine peer would be refused. Silent
        ones first: a genuine peer sends its Hello as soon as it connects, so once that is read
        (a few loop iterations) no number of silent connections can push it out.
        """
        handshaking = self._silent or self._greeted
        writer, task = next(iter(handshaking.items()))
        del handshaking[writer]
        self.evicted_handshakes += 1
        self._log_budget.warning("closed the oldest connection still in its handshake: %d are, "
                                 "the limit", self.config.max_handshakes)
        writer.transport.abort()  # the socket closes now, even if the task has not run yet
        task.cancel()

    def _greet(self, writer: asyncio.StreamWriter) -> None:
        task = self._silent.pop(writer, None)
        if task is not None:  # not evicted meanwhile
            self._greeted[writer] = task

    def _admit(self, peer: str) -> None:
        if peer in self._names:
            raise HandshakeRefused(f"{printable(peer)} is linked already; a second link "
                                   "claiming that name is refused")
        if len(self._names) >= self.config.max_links:
            raise HandshakeRefused(f"{len(self._names)} links are up, the limit")
        self._names.add(peer)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        config = self.config
        channel = StreamFrameChannel(reader, writer, config.max_frame_bytes,
                                     config.partial_frame_timeout_s)
        peer: str | None = None
        try:
            try:
                peer = await handshake(channel, self.codec, self.system.name, config.keys,
                                       initiator=False, timeout_s=config.handshake_timeout_s,
                                       greeted=lambda _: self._greet(writer),
                                       admit=self._admit)
            except asyncio.CancelledError:
                writer.transport.abort()  # evicted or stopped: nothing left to say to it
                raise
            except (HandshakeRefused, OSError) as exc:
                self.failed_handshakes += 1
                # A HandshakeRefused text escaped what it quotes of the peer already.
                reason = str(exc) if isinstance(exc, HandshakeRefused) else printable(exc)
                self._log_budget.warning("refused a link from %s: %s", channel.description,
                                         reason)
                await channel.close()
                return
            except Exception:
                # A bug in the handshake must cost this connection, not the server.
                self.failed_handshakes += 1
                log.exception("refused a link from %s after an internal error",
                              channel.description)
                await channel.close()
                return
            finally:
                self._silent.pop(writer, None)
                self._greeted.pop(writer, None)
            channel.max_frame_bytes = min(config.max_frame_bytes, self.codec.max_message_bytes)
            await self._run_link(Link(self.system, channel, self.codec, peer, config))
        finally:
            if peer is not None:
                self._names.discard(peer)

    async def _run_link(self, link: Link) -> None:
        peer = link.peer
        self.links[peer] = link
        self._watchers.notify(LinkUp(peer))
        log.info("link from %s up", printable(peer))
        try:
            reason = await link.run()
        finally:
            if self.links.get(peer) is link:
                del self.links[peer]
        log.warning("link from %s lost: %s", printable(peer), printable(reason))
        self._watchers.notify(LinkDown(peer, reason))

    async def stop(self) -> None:
        """Stop listening, close every link, wait for their tasks, remove the socket file."""
        if self._acceptor is not None:
            self._acceptor.cancel()
            await asyncio.gather(self._acceptor, return_exceptions=True)
        if self._listener is not None:
            self._listener.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._remove_socket_file()
        self._log_budget.flush()

    def _remove_socket_file(self) -> None:
        path, inode = self._unix_path, self._unix_inode
        self._unix_path = self._unix_inode = None
        if path is None:
            return
        with contextlib.suppress(FileNotFoundError):
            info = os.stat(path)
            if (info.st_dev, info.st_ino) == inode:  # ours, not a later node's
                os.unlink(path)


class LinkClient:
    """Dials a peer and keeps the link up, redialling with backoff after a loss."""

    def __init__(self, system: ActorSystem, config: LinkConfig, codec: Codec, *,
                 opener: Opener, address: str, backoff: Backoff) -> None:
        config.check_registered(codec.registry)
        self.system = system
        self.config = config
        self.codec = codec
        self.address = address
        self.link: Link | None = None
        """The live link, or None while disconnected."""
        self._opener = opener
        self._backoff = backoff
        self._watchers = _Watchers()
        self._connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def watch(self, ref: ActorRef[LinkEvent]) -> None:
        """Tell ``ref`` about every connect and disconnect."""
        self._watchers.add(ref)

    def ref(self, name: str) -> RemoteActorRef[Any]:
        """The actor ``name`` on the peer; raises ``LinkLost`` while disconnected."""
        return RemoteActorRef(lambda: self.link, name)

    def start(self) -> None:
        """Start dialling in the background."""
        self._task = asyncio.create_task(self._keep_connected(), name=f"link:{self.address}")

    async def wait_connected(self, timeout_s: float = 10.0) -> Link:
        """Wait until a link is up and return it."""
        async with asyncio.timeout(timeout_s):
            while self.link is None or self.link.closed:
                self._connected.clear()
                await self._connected.wait()
        return self.link

    async def stop(self) -> None:
        """Stop redialling, close the link and wait."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _connect(self) -> Link:
        config = self.config
        reader, writer = await self._opener()
        channel = StreamFrameChannel(reader, writer, config.max_frame_bytes,
                                     config.partial_frame_timeout_s)
        try:
            peer = await handshake(channel, self.codec, self.system.name, config.keys,
                                   initiator=True, timeout_s=config.handshake_timeout_s)
        except BaseException:
            await channel.close()
            raise
        channel.max_frame_bytes = min(config.max_frame_bytes, self.codec.max_message_bytes)
        return Link(self.system, channel, self.codec, peer, config)

    async def _keep_connected(self) -> None:
        attempt = 0
        while True:
            try:
                self.link = await self._connect()
            except (ConnectionError, EOFError, OSError) as exc:
                attempt += 1
                delay = self._backoff.delay(attempt)
                level = logging.WARNING if isinstance(exc, HandshakeRefused) else logging.INFO
                reason = str(exc) if isinstance(exc, HandshakeRefused) else printable(exc)
                log.log(level, "cannot link to %s (%s); retrying in %.2f s", self.address,
                        reason, delay)
                await asyncio.sleep(delay)
                continue
            attempt = 0
            peer = self.link.peer
            self._connected.set()
            self._watchers.notify(LinkUp(peer))
            reason = await self.link.run()
            log.warning("link to %s (%s) lost: %s", printable(peer), self.address,
                        printable(reason))
            self._watchers.notify(LinkDown(peer, reason))
            await asyncio.sleep(self._backoff.delay(1))


async def serve_unix(system: ActorSystem, path: str, config: LinkConfig, *,
                     codec: Codec | None = None) -> LinkServer:
    """Accept links from other systems on the Unix socket ``path`` (mode 0600)."""
    server = LinkServer(system, config, codec or Codec())
    await server.start_unix(path)
    return server


async def serve_tcp(system: ActorSystem, host: str, port: int, config: LinkConfig, *,
                    codec: Codec | None = None) -> tuple[LinkServer, int]:
    """Accept links on TCP ``host:port`` (loopback only); returns the server and its port."""
    server = LinkServer(system, config, codec or Codec())
    bound = await server.start_tcp(host, port)
    return server, bound


def connect_unix(system: ActorSystem, path: str, config: LinkConfig, *,
                 codec: Codec | None = None, backoff: Backoff | None = None) -> LinkClient:
    """A started client that keeps a link to the Unix socket ``path``."""
    client = LinkClient(
        system, config, codec or Codec(),
        opener=lambda: asyncio.open_unix_connection(path, limit=config.read_ahead_bytes),
        address=f"unix:{path}", backoff=backoff or Backoff(initial_s=0.05, max_s=2.0))
    client.start()
    return client


def connect_tcp(system: ActorSystem, host: str, port: int, config: LinkConfig, *,
                codec: Codec | None = None, backoff: Backoff | None = None) -> LinkClient:
    """A started client that keeps a link to TCP ``host:port`` (loopback only)."""
    require_loopback(host)
    client = LinkClient(
        system, config, codec or Codec(),
        opener=lambda: asyncio.open_connection(host, port, limit=config.read_ahead_bytes),
        address=f"tcp:{host}:{port}", backoff=backoff or Backoff(initial_s=0.05, max_s=2.0))
    client.start()
    return client
