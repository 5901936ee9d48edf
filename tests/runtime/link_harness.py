"""Two linked actor systems in one process, and a hand-driven peer, for the transport tests."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime import (
    ActorSystem,
    Backoff,
    Codec,
    LinkClient,
    LinkConfig,
    LinkKeys,
    LinkServer,
    LinkUp,
    SystemConfig,
    connect_tcp,
    connect_unix,
    serve_tcp,
    serve_unix,
)
from runtime.framing import StreamFrameChannel
from runtime.link_handshake import handshake
from runtime.link_keys import write_shared_key_file
from tests.runtime.helpers import WAIT_S, Inbox, Recorder
from tests.runtime.link_support import TEST_KEY, Service, service_link_config

REPO_ROOT = Path(__file__).resolve().parents[2]
FAST_REDIAL = Backoff(initial_s=0.01, factor=2.0, max_s=0.05)


def socket_path(tmp_path: Path, name: str = "link.sock") -> str:
    path = str(tmp_path / name)
    assert len(path) < 100, f"Unix socket path too long: {path}"
    return path


@dataclass
class PeerProcess:
    """``tests.runtime.peer_node`` running as another process (the caller ends it)."""

    process: asyncio.subprocess.Process
    path: str
    """The Unix socket it serves on."""
    key_file: Path
    """The shared link key file both sides read."""


async def start_peer_node(tmp_path: Path) -> PeerProcess:
    """Start ``python -m tests.runtime.peer_node`` serving on a socket in ``tmp_path``; returns
    once it printed ``ready`` (at most 60 s)."""
    path = socket_path(tmp_path, "peer.sock")
    key_file = write_shared_key_file(tmp_path / "link.key")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.runtime.peer_node", path, str(key_file), cwd=REPO_ROOT,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    assert proc.stderr is not None
    try:
        ready = await asyncio.wait_for(proc.stdout.readline(), 60)
        assert ready == b"ready\n", await proc.stderr.read()
    except BaseException:
        proc.kill()
        await proc.wait()
        raise
    return PeerProcess(proc, path, key_file)


@dataclass
class Linked:
    """Two systems in this process, the client dialled into the server."""

    server_system: ActorSystem
    client_system: ActorSystem
    server: LinkServer
    client: LinkClient
    entered: asyncio.Event
    """Set when the server's ``svc`` starts handling ``Hold``."""
    release: asyncio.Event
    """Lets the server's ``svc`` finish ``Hold``."""
    client_events: Inbox
    """What the client's link watcher received."""
    server_events: Inbox
    """What the server's link watcher received."""
    path: str
    """The Unix socket (for the unix transport)."""


@asynccontextmanager
async def linked(transport: str, tmp_path: Path, *, server_config: LinkConfig | None = None,
                 client_config: LinkConfig | None = None,
                 server_codec: Codec | None = None) -> AsyncIterator[Linked]:
    server_system = ActorSystem(SystemConfig(name="server", shutdown_drain_s=0.2))
    client_system = ActorSystem(SystemConfig(name="client", shutdown_drain_s=0.2))
    entered, release = asyncio.Event(), asyncio.Event()
    client_events, server_events = Inbox(), Inbox()
    server: LinkServer | None = None
    client: LinkClient | None = None
    server_config = server_config or service_link_config()
    client_config = client_config or service_link_config()
    path = socket_path(tmp_path)
    try:
        await server_system.spawn("svc", lambda: Service(entered=entered, release=release))
        await client_system.spawn("csvc", Service)
        server_watcher = await server_system.spawn("watcher", lambda: Recorder(server_events))
        client_watcher = await client_system.spawn("watcher", lambda: Recorder(client_events))
        if transport == "unix":
            server = await serve_unix(server_system, path, server_config, codec=server_codec)
            server.watch(server_watcher)
            client = connect_unix(client_system, path, client_config, backoff=FAST_REDIAL)
        else:
            server, port = await serve_tcp(server_system, "127.0.0.1", 0, server_config,
                                           codec=server_codec)
            server.watch(server_watcher)
            client = connect_tcp(client_system, "127.0.0.1", port, client_config,
                                 backoff=FAST_REDIAL)
        client.watch(client_watcher)
        await client.wait_connected(WAIT_S)
        assert await client_events.get() == LinkUp("server")
        assert await server_events.get() == LinkUp("client")
        yield Linked(server_system, client_system, server, client, entered, release,
                     client_events, server_events, path)
    finally:
        release.set()
        if client is not None:
            await client.stop()
        if server is not None:
            await server.stop()
        await client_system.stop()
        await server_system.stop()


class RawPeer:
    """A hand-driven peer: writes whatever a test wants, with or without a real handshake."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.channel = StreamFrameChannel(reader, writer, max_frame_bytes=1 << 20)
        self.codec = Codec()

    @classmethod
    async def open(cls, path: str) -> RawPeer:
        """Connected, no handshake."""
        return cls(*await asyncio.open_unix_connection(path))

    @classmethod
    async def connect(cls, path: str, name: str = "raw", key: bytes = TEST_KEY,
                      server: str = "server") -> RawPeer:
        """Connected and authenticated as ``name`` with ``key`` to a node named ``server``."""
        peer = await cls.open(path)
        proven = await handshake(peer.channel, peer.codec, name, LinkKeys.shared(key),
                                 initiator=True, timeout_s=WAIT_S)
        assert proven == server
        peer.channel.max_frame_bytes = 1 << 20
        return peer

    async def send(self, message: Any) -> None:
        await self.channel.write_frame(self.codec.encode(message))

    async def receive(self) -> Any:
        async with asyncio.timeout(WAIT_S):
            return self.codec.decode(await self.channel.read_frame())

    async def wait_closed_by_server(self) -> None:
        """The server closes this connection (EOF or reset) within ``WAIT_S``."""
        async with asyncio.timeout(WAIT_S):
            # A connection closed before it was accepted may read as an error, not an EOF.
            with contextlib.suppress(OSError):
                while await self.reader.read(65536):
                    pass

    async def close(self) -> None:
        await self.channel.close()
