"""Every ``LinkConfig`` limit holds against a peer that pushes on it: connections, asks each way,
frame bytes, read-ahead bytes and half-sent frames."""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from runtime import LinkDown, LinkUp, TooManyAsks
from runtime.link_messages import RemoteAsk, RemoteFailure, RemoteReply, RemoteTell
from tests.runtime.helpers import WAIT_S, eventually, settle
from tests.runtime.link_harness import RawPeer, linked
from tests.runtime.link_support import (
    Add,
    Frame,
    FrameSum,
    GetTotal,
    Hold,
    Total,
    service_link_config,
)


@pytest.fixture(autouse=True)
def no_asyncio_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Refused connections are normal operation: asyncio must not log errors about them."""
    yield
    errors = [r.getMessage() for r in caplog.get_records("call")
              if r.name == "asyncio" and r.levelno >= logging.ERROR]
    assert errors == []


async def test_connections_beyond_max_links_are_closed_at_once(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = service_link_config(max_links=3, handshake_timeout_s=WAIT_S)
    async with linked("unix", tmp_path, server_config=config) as pair:
        with caplog.at_level(logging.WARNING, logger="lfr.runtime.link"):
            # Two silent connections fill the limit with the client's link ...
            holders = [await RawPeer.open(pair.path) for _ in range(2)]
            await settle()
            # ... so 300 more are closed at once, long before any handshake deadline.
            # One after the other: asyncio's client takes a Unix connect refused by a full
            # backlog for a connected socket, which would blur what this test counts.
            flood = [await RawPeer.open(pair.path) for _ in range(300)]
            async with asyncio.timeout(WAIT_S / 2):
                await asyncio.gather(*(raw.wait_closed_by_server() for raw in flood))
        assert pair.server.refused_connections == 300
        refused = [r.getMessage() for r in caplog.records
                   if "refused a connection" in r.getMessage()]
        assert refused[0] == "refused a connection: 3 are open, the limit"
        assert len(refused) == 20  # the rest were counted, not logged one by one
        assert await pair.client.ref("svc").ask(GetTotal()) == Total(0)  # the link is unharmed
        for raw in (*holders, *flood):
            await raw.close()


async def test_asks_from_a_peer_beyond_max_peer_asks_fail_at_once(tmp_path: Path) -> None:
    config = service_link_config(max_peer_asks=4)
    async with linked("unix", tmp_path, server_config=config) as pair:
        raw = await RawPeer.connect(pair.path)
        asks = 5000
        for ask_id in range(1, asks + 1):
            await raw.send(RemoteAsk(ask_id, "svc", Hold(), 60.0))
        refused = [await raw.receive() for _ in range(asks - 4)]
        assert {answer.error_type for answer in refused} == {"TooManyAsks"}
        assert refused[0].message == "too many pending asks: 4 from this peer are being answered"
        assert sorted(answer.ask_id for answer in refused) == list(range(5, asks + 1))
        link = pair.server.links["raw"]
        assert link.refused_asks == asks - 4
        assert len(link._serving) == 4
        pair.release.set()
        answered = [await raw.receive() for _ in range(4)]
        assert sorted(a.ask_id for a in answered) == [1, 2, 3, 4]
        assert all(isinstance(a, RemoteReply) for a in answered)
        await raw.close()


async def test_asks_to_a_peer_beyond_max_pending_asks_raise_at_once(tmp_path: Path) -> None:
    config = service_link_config(max_pending_asks=2)
    async with linked("unix", tmp_path, client_config=config) as pair:
        remote = pair.client.ref("svc")
        held = [asyncio.create_task(remote.ask(Hold(), timeout=60)) for _ in range(2)]
        await eventually(pair.entered.is_set)
        with pytest.raises(TooManyAsks, match="too many pending asks to server: 2 await"):
            await remote.ask(GetTotal())
        pair.release.set()
        assert await asyncio.gather(*held) == [None, None]
        assert await remote.ask(GetTotal()) == Total(0)


async def test_max_frame_bytes_applies_once_linked(tmp_path: Path) -> None:
    config = service_link_config(max_frame_bytes=64 * 1024)
    async with linked("unix", tmp_path, server_config=config) as pair:
        remote = pair.client.ref("svc")
        pixels = np.ones((100, 100, 3), dtype=np.uint8)  # 30 KB: far over the handshake limit
        assert await remote.ask(Frame(1, pixels)) == FrameSum(1, 30000, (100, 100, 3))
        raw = await RawPeer.connect(pair.path)  # handshake limit, under the link's
        assert await pair.server_events.get() == LinkUp("raw")
        raw.writer.write(struct.pack(">I", 64 * 1024 + 1))
        down = await pair.server_events.get()
        assert isinstance(down, LinkDown)
        assert down.reason == ("peer announced a frame of 65537 bytes, over the limit of 65536")
        await raw.close()


async def test_a_half_sent_frame_closes_the_link_after_its_timeout(tmp_path: Path) -> None:
    config = service_link_config(partial_frame_timeout_s=0.2)
    async with linked("unix", tmp_path, server_config=config) as pair:
        raw = await RawPeer.connect(pair.path)
        assert await pair.server_events.get() == LinkUp("raw")
        raw.writer.write(struct.pack(">I", 10_000) + b"\x00" * 5000)  # half a frame, then silence
        down = await pair.server_events.get()
        assert isinstance(down, LinkDown)
        assert down.reason == "the peer sent 10000 bytes' length but not the frame within 0.2 s"
        await raw.close()


async def test_a_link_buffers_no_more_than_its_read_ahead(tmp_path: Path) -> None:
    """A peer writing faster than an actor handles: the socket is paused, not buffered."""
    read_ahead = 4096
    config = service_link_config(read_ahead_bytes=read_ahead)
    async with linked("unix", tmp_path, server_config=config) as pair:
        raw = await RawPeer.connect(pair.path)
        await eventually(lambda: "raw" in pair.server.links)
        reader = pair.server.links["raw"]._channel._reader  # type: ignore[attr-defined]
        assert reader._limit == read_ahead
        await raw.send(RemoteTell("svc", Hold()))  # the actor is stuck from now on
        await eventually(pair.entered.is_set)
        frame = raw.codec.encode(RemoteTell("svc", Add(1)))
        tells = 100_000
        raw.writer.write((struct.pack(">I", len(frame)) + frame) * tells)  # 4 MB, not drained
        await asyncio.sleep(0.3)
        # Paused beyond 2 x read-ahead; one socket read (asyncio's max_size) may overshoot it.
        one_read = 256 * 1024  # asyncio.selector_events._SelectorSocketTransport.max_size
        assert 0 < len(reader._buffer) <= 2 * read_ahead + one_read
        assert raw.writer.transport.get_write_buffer_size() > 1_000_000  # the rest waits there
        pair.release.set()
        await raw.send(RemoteAsk(1, "svc", GetTotal(), 60.0))
        async with asyncio.timeout(60):
            assert await raw.receive() == RemoteReply(1, Total(tells))
        await raw.close()


async def test_a_failed_ask_reply_is_not_left_pending(tmp_path: Path) -> None:
    """A ``RemoteFailure`` for an ask never made, or answered twice, changes nothing."""
    async with linked("unix", tmp_path) as pair:
        raw = await RawPeer.connect(pair.path)
        await eventually(lambda: "raw" in pair.server.links)
        await raw.send(RemoteFailure(123456789, "X", "nobody asked"))
        await raw.send(RemoteReply(2**63, None))
        await raw.send(RemoteAsk(1, "svc", GetTotal(), 5.0))
        assert await raw.receive() == RemoteReply(1, Total(0))
        assert not pair.server.links["raw"].closed
        await raw.close()
