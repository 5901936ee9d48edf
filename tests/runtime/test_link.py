"""Actor systems linked over Unix sockets and TCP: remote tell/ask, failures, reconnects."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import struct
from collections.abc import Iterator
from pathlib import Path

import msgpack
import numpy as np
import pytest

from runtime import (
    ActorSystem,
    AskTimeout,
    EncodeError,
    LinkDown,
    LinkKeys,
    LinkLost,
    LinkUp,
    RemoteError,
    SystemConfig,
    connect_unix,
    serve_unix,
)
from runtime.link_messages import RemoteAsk, RemoteReply, RemoteTell
from tests.runtime.helpers import WAIT_S, Inbox, Recorder, eventually
from tests.runtime.link_harness import FAST_REDIAL, RawPeer, linked, start_peer_node
from tests.runtime.link_support import (
    Add,
    Fail,
    Frame,
    FrameSum,
    GetTotal,
    Hold,
    Ping,
    Pong,
    Total,
    Unanswerable,
    service_link_config,
)


@pytest.fixture(autouse=True)
def no_asyncio_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Links going down are normal operation: asyncio must not log errors about it."""
    yield
    errors = [r.getMessage() for r in caplog.get_records("call")
              if r.name == "asyncio" and r.levelno >= logging.ERROR]
    assert errors == []


@pytest.fixture(params=["unix", "tcp"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_remote_tell_and_ask_by_actor_name(transport: str, tmp_path: Path) -> None:
    async with linked(transport, tmp_path) as pair:
        remote = pair.client.ref("svc")
        assert repr(remote) == "RemoteActorRef('svc')"
        pong = await remote.ask(Ping("hello"))
        assert pong == Pong("hello", os.getpid())
        for amount in range(1, 11):
            await remote.tell(Add(amount))
        assert await remote.ask(GetTotal()) == Total(55)  # tells arrive, in order, before it
        pixels = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
        assert await remote.ask(Frame(7, pixels)) == FrameSum(7, int(pixels.sum()), (4, 4, 3))
        # And the other way round: the server reaches the client's actors by peer name.
        back = pair.server.ref("client", "csvc")
        assert await back.ask(Ping("back")) == Pong("back", os.getpid())
        await back.tell(Add(3))
        assert await back.ask(GetTotal()) == Total(3)
        assert sorted(pair.server.links) == ["client"]


async def test_remote_handler_error_arrives_as_remote_error(transport: str,
                                                            tmp_path: Path) -> None:
    async with linked(transport, tmp_path) as pair:
        remote = pair.client.ref("svc")
        with pytest.raises(RemoteError) as caught:
            await remote.ask(Fail("bad input"))
        assert caught.value.error_type == "ValueError"
        assert caught.value.remote_message == "bad input"
        assert caught.value.actor == "server/svc"
        assert "remote actor 'server/svc' raised ValueError: bad input" in str(caught.value)
        assert await remote.ask(Ping("still fine")) == Pong("still fine", os.getpid())
        assert pair.server_system.failure is None


async def test_values_that_cannot_cross_fail_at_once(tmp_path: Path) -> None:
    async with linked("unix", tmp_path) as pair:
        remote = pair.client.ref("svc")
        # The handler's reply (a plain int) cannot be encoded: the asker hears so at once.
        with pytest.raises(RemoteError) as caught:
            await remote.ask(Unanswerable(), timeout=60)
        assert caught.value.error_type == "EncodeError"
        assert "RemoteReply.payload must be a registered message, got int" in str(caught.value)
        # Sending a value that is not a message fails at the sender, not silently at the peer.
        with pytest.raises(EncodeError, match=r"RemoteTell\.payload must be a registered message"):
            await remote.tell(5)
        with pytest.raises(EncodeError, match=r"RemoteAsk\.payload must be a registered message"):
            await remote.ask("text", timeout=60)
        assert await remote.ask(GetTotal()) == Total(0)
        assert pair.server.links["client"].undecodable_frames == 0


async def test_unknown_remote_actor(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async with linked("unix", tmp_path) as pair:
        ghost = pair.client.ref("ghost")
        with pytest.raises(RemoteError) as caught:
            await ghost.ask(Ping("anyone?"))
        assert caught.value.error_type == "ActorNotFound"
        assert "no actor named 'ghost' on 'server'" in caught.value.remote_message
        with caplog.at_level(logging.WARNING, logger="lfr.runtime.link"):
            await ghost.tell(Add(1))  # dropped by the receiver, with a warning
            remote = pair.client.ref("svc")
            assert await remote.ask(GetTotal()) == Total(0)
        assert any("tell dropped: no actor named 'ghost' on 'server'" in r.getMessage()
                   for r in caplog.records)


async def test_remote_ask_times_out(tmp_path: Path) -> None:
    async with linked("unix", tmp_path) as pair:
        with pytest.raises(AskTimeout) as caught:
            await pair.client.ref("svc").ask(Hold(), timeout=0.1)
        assert caught.value.actor == "server/svc"
        assert pair.entered.is_set()


async def test_lost_server_fails_pending_asks_and_the_client_reconnects(tmp_path: Path) -> None:
    async with linked("unix", tmp_path) as pair:
        remote = pair.client.ref("svc")
        pending = asyncio.create_task(remote.ask(Hold(), timeout=60))
        await asyncio.wait_for(pair.entered.wait(), WAIT_S)
        await pair.server.stop()
        # At once, not after the ask's 60 s.
        with pytest.raises(LinkLost) as caught:
            await asyncio.wait_for(pending, WAIT_S)
        assert caught.value.peer == "server"
        down = await pair.client_events.get()
        assert isinstance(down, LinkDown)
        assert down.peer == "server"
        with pytest.raises(LinkLost):
            await remote.tell(Add(1))
        with pytest.raises(LinkLost):
            await remote.ask(GetTotal())
        # Neither node died.
        pair.release.set()
        assert pair.server_system.failure is None
        assert pair.client_system.failure is None
        svc = pair.server_system.lookup("svc")
        assert svc is not None
        assert await svc.ask(GetTotal()) == Total(0)
        csvc = pair.client_system.lookup("csvc")
        assert csvc is not None
        assert await csvc.ask(GetTotal()) == Total(0)
        # The server comes back on the same path; the client redials by itself.
        pair.server = await serve_unix(pair.server_system, pair.path, service_link_config())
        assert await pair.client_events.get() == LinkUp("server")
        await remote.tell(Add(5))
        assert await remote.ask(GetTotal()) == Total(5)


async def test_lost_client_fails_the_servers_pending_asks(tmp_path: Path) -> None:
    async with linked("unix", tmp_path) as pair:
        back = pair.server.ref("client", "csvc")
        csvc = pair.client_system.lookup("csvc")
        assert csvc is not None
        pending = asyncio.create_task(back.ask(Hold(), timeout=60))
        await eventually(lambda: csvc.statistics().received == 1)  # the ask arrived
        await pair.client.stop()
        with pytest.raises(LinkLost):
            await asyncio.wait_for(pending, WAIT_S)
        down = await pair.server_events.get()
        assert isinstance(down, LinkDown)
        assert down.peer == "client"
        assert pair.server.links == {}
        with pytest.raises(LinkLost):
            await back.tell(Add(1))
        svc = pair.server_system.lookup("svc")
        assert svc is not None
        assert await svc.ask(GetTotal()) == Total(0)


async def test_oversize_frame_header_closes_the_link(tmp_path: Path) -> None:
    async with linked("unix", tmp_path,
                      server_config=service_link_config(max_frame_bytes=4096)) as pair:
        raw = await RawPeer.connect(pair.path)
        assert await pair.server_events.get() == LinkUp("raw")
        raw.writer.write(struct.pack(">I", 4097))  # one byte over the server's limit
        await raw.writer.drain()
        down = await pair.server_events.get()
        assert isinstance(down, LinkDown)
        assert down.peer == "raw"
        assert "over the limit of 4096" in down.reason
        with pytest.raises(EOFError):
            async with asyncio.timeout(WAIT_S):
                await raw.channel.read_frame()
        await raw.channel.close()
        # The server and its other link are unharmed.
        assert sorted(pair.server.links) == ["client"]
        assert await pair.client.ref("svc").ask(GetTotal()) == Total(0)


async def test_undecodable_frames_are_skipped_and_counted(tmp_path: Path,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    async with linked("unix", tmp_path) as pair:
        raw = await RawPeer.connect(pair.path)
        await eventually(lambda: "raw" in pair.server.links)
        link = pair.server.links["raw"]
        with caplog.at_level(logging.WARNING, logger="lfr.runtime.link"):
            await raw.channel.write_frame(b"\xc1\xc1\xc1")  # not msgpack
            await raw.channel.write_frame(msgpack.packb([31999, 1, {}]))  # unknown type code
            await raw.channel.write_frame(msgpack.packb([2, 1, {"target": "svc"}]))  # no payload
            await raw.send(RemoteTell("svc", Add(5)))
            await raw.send(RemoteAsk(1, "svc", GetTotal(), 5.0))
            assert await raw.receive() == RemoteReply(1, Total(5))
        assert link.undecodable_frames == 3
        assert not link.closed
        skipped = [r.getMessage() for r in caplog.records if "undecodable" in r.getMessage()]
        assert len(skipped) == 3
        assert "unknown message type code 31999" in skipped[1]
        assert "missing field 'payload'" in skipped[2]
        await raw.channel.close()


async def test_cross_process_tell_and_ask(tmp_path: Path) -> None:
    peer = await start_peer_node(tmp_path)
    proc, path, key_file = peer.process, peer.path, peer.key_file
    assert proc.stderr is not None
    try:
        events = Inbox()
        async with ActorSystem(SystemConfig(name="parent")) as system:
            watcher = await system.spawn("watcher", lambda: Recorder(events))
            config = service_link_config(LinkKeys.from_file(key_file))
            client = connect_unix(system, path, config, backoff=FAST_REDIAL)
            client.watch(watcher)
            try:
                await client.wait_connected(WAIT_S)
                assert await events.get() == LinkUp("peer")
                remote = client.ref("svc")
                pong = await remote.ask(Ping("across"))
                assert pong.text == "across"
                assert pong.pid == proc.pid != os.getpid()  # answered by the other process
                for amount in (1, 2, 3):
                    await remote.tell(Add(amount))
                assert await remote.ask(GetTotal()) == Total(6)
                pixels = np.full((2, 3), 9, dtype=np.uint8)
                assert await remote.ask(Frame(1, pixels)) == FrameSum(1, 54, (2, 3))
                with pytest.raises(RemoteError, match="ValueError: no"):
                    await remote.ask(Fail("no"))
                proc.send_signal(signal.SIGTERM)  # the peer node stops gracefully
                assert await asyncio.wait_for(proc.wait(), 30) == 143, await proc.stderr.read()
                down = await events.get()
                assert isinstance(down, LinkDown)
                assert down.peer == "peer"
            finally:
                await client.stop()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
