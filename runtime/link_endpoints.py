"""Where links come from: ``LinkServer`` accepts them, ``LinkClient`` dials and redials.

Both own the tasks of their links and tell watchers ``LinkUp``/``LinkDown``. A dropped
connection never takes the node down: the server keeps listening; the client reconnects with
exponential backoff until it is stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from runtime.codec import Codec
from runtime.framing import StreamFrameChannel
from runtime.link import Link, RemoteActorRef, handshake
from runtime.link_messages import LinkDown, LinkEvent, LinkUp
from runtime.supervisor import Backoff

if TYPE_CHECKING:
    from runtime.ref import ActorRef
    from runtime.system import ActorSystem

log = logging.getLogger("lfr.runtime.link")
Opener = Callable[[], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


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
                log.warning("watcher %s missed %s: %s", ref.name, event, exc)


class LinkServer:
    """Accepts links on a Unix socket or TCP port; see ``serve_unix``/``serve_tcp``."""

    def __init__(self, system: ActorSystem, codec: Codec) -> None:
        self.system = system
        self.codec = codec
        self.links: dict[str, Link] = {}
        """Live links by peer name."""
        self._watchers = _Watchers()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def watch(self, ref: ActorRef[LinkEvent]) -> None:
        """Tell ``ref`` about every peer connecting and disconnecting."""
        self._watchers.add(ref)

    def ref(self, peer: str, name: str) -> RemoteActorRef[Any]:
        """The actor ``name`` on connected peer ``peer`` (``LinkLost`` while it is away)."""
        return RemoteActorRef(lambda: self.links.get(peer), name)

    async def start_unix(self, path: str) -> None:
        """Listen on a Unix socket at ``path`` (replacing a stale socket file)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # a socket file left by a previous run of this node
        self._server = await asyncio.start_unix_server(self._accept, path)

    async def start_tcp(self, host: str, port: int) -> int:
        """Listen on TCP; returns the bound port (useful with ``port=0``)."""
        self._server = await asyncio.start_server(self._accept, host, port)
        return int(self._server.sockets[0].getsockname()[1])

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # A plain callback that starts a task the server owns: had asyncio wrapped a coroutine
        # in its own task, cancelling that task in ``stop`` would make Python 3.11's stream
        # protocol log "Exception in callback" (it calls ``task.exception()`` on it).
        task = asyncio.create_task(self._serve(reader, writer), name="link-server:accept")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        channel = StreamFrameChannel(reader, writer, self.codec.max_message_bytes)
        try:
            peer = await handshake(self.system, channel, self.codec)
        except (ConnectionError, EOFError, OSError) as exc:
            log.warning("refused a connection: %s", exc)
            await channel.close()
            return
        link = Link(self.system, channel, self.codec, peer)
        self.links[peer] = link
        self._watchers.notify(LinkUp(peer))
        reason = await link.run()
        if self.links.get(peer) is link:
            del self.links[peer]
        log.warning("link from %s lost: %s", peer, reason)
        self._watchers.notify(LinkDown(peer, reason))

    async def stop(self) -> None:
        """Stop listening, close every link and wait for their tasks."""
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()


class LinkClient:
    """Dials a peer and keeps the link up, redialling with backoff after a loss."""

    def __init__(self, system: ActorSystem, codec: Codec, opener: Opener, address: str,
                 backoff: Backoff) -> None:
        self.system = system
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

    async def _keep_connected(self) -> None:
        attempt = 0
        while True:
            try:
                reader, writer = await self._opener()
                channel = StreamFrameChannel(reader, writer, self.codec.max_message_bytes)
                peer = await handshake(self.system, channel, self.codec)
            except (ConnectionError, EOFError, OSError) as exc:
                attempt += 1
                delay = self._backoff.delay(attempt)
                log.info("cannot reach %s (%s); retrying in %.2f s", self.address, exc, delay)
                await asyncio.sleep(delay)
                continue
            attempt = 0
            self.link = Link(self.system, channel, self.codec, peer)
            self._connected.set()
            self._watchers.notify(LinkUp(peer))
            reason = await self.link.run()
            log.warning("link to %s (%s) lost: %s", peer, self.address, reason)
            self._watchers.notify(LinkDown(peer, reason))
            await asyncio.sleep(self._backoff.delay(1))


async def serve_unix(system: ActorSystem, path: str, codec: Codec | None = None) -> LinkServer:
    """Accept links from other systems on the Unix socket ``path``."""
    server = LinkServer(system, codec or Codec())
    await server.start_unix(path)
    return server


async def serve_tcp(system: ActorSystem, host: str, port: int,
                    codec: Codec | None = None) -> tuple[LinkServer, int]:
    """Accept links on TCP ``host:port``; returns the server and the bound port."""
    server = LinkServer(system, codec or Codec())
    bound = await server.start_tcp(host, port)
    return server, bound


def connect_unix(system: ActorSystem, path: str, codec: Codec | None = None,
                 backoff: Backoff | None = None) -> LinkClient:
    """A started client that keeps a link to the Unix socket ``path``."""
    client = LinkClient(system, codec or Codec(), lambda: asyncio.open_unix_connection(path),
                        f"unix:{path}", backoff or Backoff(initial_s=0.05, max_s=2.0))
    client.start()
    return client


def connect_tcp(system: ActorSystem, host: str, port: int, codec: Codec | None = None,
                backoff: Backoff | None = None) -> LinkClient:
    """A started client that keeps a link to TCP ``host:port``."""
    client = LinkClient(system, codec or Codec(),
                        lambda: asyncio.open_connection(host, port),
                        f"tcp:{host}:{port}", backoff or Backoff(initial_s=0.05, max_s=2.0))
    client.start()
    return client
