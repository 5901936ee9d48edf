"""Every ``LinkConfig`` limit holds against a peer that pushes on it: links, connections in their
handshake, asks each way, frame bytes, read-ahead bytes and half-sent frames."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from runtime import LinkDown, LinkKeys, LinkUp, TooManyAsks
from runtime.link_handshake import INITIATOR, NONCE_BYTES, handshake, proof
from runtime.link_messages import (
    HandshakeProof,
    Hello,
    RemoteAsk,
    RemoteFailure,
    RemoteReply,
    RemoteTell,
)
from tests.runtime.helpers import WAIT_S, eventually, settle
from tests.runtime.link_harness import RawPeer, linked
from tests.runtime.link_support import (
    TEST_KEY,
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
            # Two more authenticated peers fill the limit with the client's link ...
            holders = [await RawPeer.connect(pair.path, name=f"peer{n}") for n in range(2)]
            await eventually(lambda: len(pair.server.links) == 3)
            # ... so 300 more connections are closed at once, long before any deadline.
            # One after the other: asyncio's client takes a Unix connect refused by a full
            # backlog for a connected socket, which would blur what this test counts.
            flood = [await RawPeer.open(pair.path) for _ in range(300)]
            async with asyncio.timeout(WAIT_S / 2):
                await asyncio.gather(*(raw.wait_closed_by_server() for raw in flood))
        assert pair.server.refused_connections == 300
        refused = [r.getMessage() for r in caplog.records
                   if "refused a connection" in r.getMessage()]
        assert refused[0] == "refused a connection: 3 links are up, the limit"
        assert len(refused) == 20  # the rest were counted, not logged one by one
        assert await pair.client.ref("svc").ask(GetTotal()) == Total(0)  # the link is unharmed
        for raw in (*holders, *flood):
            await raw.close()


async def test_a_handshake_that_would_exceed_max_links_is_refused(tmp_path: Path) -> None:
    """Two handshakes under way when one link slot is left: the second proof is refused."""
    config = service_link_config(max_links=2, handshake_timeout_s=WAIT_S)
    async with linked("unix", tmp_path, server_config=config) as pair:
        first, second = RawPeer.open(pair.path), RawPeer.open(pair.path)
        raws = [await first, await second]  # both accepted: one link is up, not two
        results = await asyncio.gather(
            *(handshake(raw.channel, raw.codec, f"peer{n}", LinkKeys.shared(TEST_KEY),
                        initiator=True, timeout_s=WAIT_S) for n, raw in enumerate(raws)),
            return_exceptions=True)
        assert sum(result in ("server",) for result in results) == 1
        await eventually(lambda: pair.server.failed_handshakes == 1)
        assert sorted(pair.server.links)[0] == "client"
        assert len(pair.server.links) == 2
        for raw in raws:
            await raw.close()


async def test_a_connection_beyond_max_handshakes_evicts_the_oldest(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = service_link_config(max_handshakes=4, handshake_timeout_s=60.0)
    async with linked("unix", tmp_path, server_config=config) as pair:
        with caplog.at_level(logging.WARNING, logger="lfr.runtime.link"):
            silent = [await RawPeer.open(pair.path) for _ in range(4)]
            await settle()
            newest = await RawPeer.open(pair.path)
            await silent[0].wait_closed_by_server()  # long before its deadline
        await settle()
        assert pair.server.evicted_handshakes == 1
        assert len(pair.server._silent) == 4
        assert [r.getMessage() for r in caplog.records if "oldest" in r.getMessage()] == [
            "closed the oldest connection still in its handshake: 4 are, the limit"]
        for raw in silent[1:]:  # the others are still there, waiting for their Hello
            assert not raw.reader.at_eof()
        for raw in (*silent, newest):
            await raw.close()


async def test_silent_connections_evict_each_other_before_a_greeted_one(
        tmp_path: Path) -> None:
    """A peer whose Hello was read keeps its slot while silent newcomers take turns."""
    config = service_link_config(max_handshakes=2, handshake_timeout_s=60.0)
    async with linked("unix", tmp_path, server_config=config) as pair:
        greeted = await RawPeer.open(pair.path)
        nonce = os.urandom(NONCE_BYTES)
        await greeted.send(Hello("peer", 2, nonce))
        hello = await greeted.receive()  # the server answers only once it read ours
        silent = [await RawPeer.open(pair.path) for _ in range(10)]
        await asyncio.gather(*(raw.wait_closed_by_server() for raw in silent[:-1]))
        assert pair.server.evicted_handshakes == 9
        await greeted.send(HandshakeProof(proof(TEST_KEY, INITIATOR, ("peer", nonce),
                                                (hello.node, hello.nonce))))
        assert isinstance(await greeted.receive(), HandshakeProof)
        await eventually(lambda: "peer" in pair.server.links)
        for raw in (greeted, *silent):
            await raw.close()


async def _hold_connections(path: str, reconnects: list[int]) -> None:
    """One attacker socket: connect, never speak, reconnect as soon as the server closes it."""
    while True:
        try:
            raw = await RawPeer.open(path)
        except OSError:
            await asyncio.sleep(0)  # a full listen backlog: try again at once
            continue
        with contextlib.suppress(OSError, TimeoutError):
            await raw.wait_closed_by_server()
        await raw.close()
        reconnects[0] += 1


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_silent_connections_cannot_lock_a_peer_out(tmp_path: Path) -> None:
    """Before: 12 sockets that never spoke and reconnected when closed held every one of
    max_links=8 slots, and every authenticated peer was refused for as long as they kept it up."""
    config = service_link_config(handshake_timeout_s=WAIT_S)  # default limits: 8 links, 16
    attackers = 40  # more than both limits together
    async with linked("unix", tmp_path, server_config=config) as pair:
        server = pair.server
        baseline_fds = _open_fds()
        reconnects = [0]
        attack = [asyncio.create_task(_hold_connections(pair.path, reconnects))
                  for _ in range(attackers)]
        peaks = {"handshaking": 0, "tasks": 0, "fds": 0}

        async def sample() -> None:
            while True:
                handshaking = len(server._silent) + len(server._greeted)
                peaks["handshaking"] = max(peaks["handshaking"], handshaking)
                peaks["tasks"] = max(peaks["tasks"], len(server._tasks))
                peaks["fds"] = max(peaks["fds"], _open_fds() - baseline_fds)
                await asyncio.sleep(0.001)

        sampler = asyncio.create_task(sample())
        try:
            await eventually(lambda: server.evicted_handshakes > 2 * attackers)  # under way
            async with asyncio.timeout(20):
                for n in range(10):
                    peer = await RawPeer.connect(pair.path, name=f"peer{n}")
                    await peer.send(RemoteTell("svc", Add(1)))
                    await peer.send(RemoteAsk(1, "svc", GetTotal(), WAIT_S))
                    assert await peer.receive() == RemoteReply(1, Total(n + 1))
                    await peer.close()
                    name = f"peer{n}"
                    await eventually(lambda: name not in server.links)  # noqa: B023 - awaited here
            assert await pair.client.ref("svc").ask(GetTotal()) == Total(10)
        finally:
            sampler.cancel()
            for task in attack:
                task.cancel()
            await asyncio.gather(sampler, *attack, return_exceptions=True)
        assert reconnects[0] > 2 * attackers  # the attack went on all along
        assert peaks["handshaking"] <= config.max_handshakes
        # Evicted connections leave within a loop iteration, at most one accept batch of them.
        assert peaks["tasks"] <= config.max_links + config.max_handshakes + attackers
        # Both ends of every socket are in this process: the attacker's and the server's.
        assert peaks["fds"] <= 2 * (attackers + config.max_handshakes + config.max_links)


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
