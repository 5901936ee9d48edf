"""Link heartbeats: an idle link stays up, a peer that falls silent is closed after
``heartbeat_timeout_s`` like any lost link (pending asks fail with ``LinkLost``, watchers hear
``LinkDown``), and a heartbeat is never a message an actor or a peer's tell can carry.

Intervals are small (0.05-0.2 s) so the tests are quick; every wait is bounded by a generous
timeout and nothing asserts how fast a link ended, only that it did and why.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from guards.config_checks import ConfigError
from runtime import (
    ActorSystem,
    LinkDown,
    LinkKeys,
    LinkLost,
    LinkUp,
    SystemConfig,
    connect_unix,
)
from runtime.framing import FrameChannel
from runtime.link_messages import LinkHeartbeat, RemoteAsk, RemoteFailure, RemoteTell
from tests.runtime.helpers import WAIT_S, Inbox, Recorder, eventually, settle
from tests.runtime.link_harness import FAST_REDIAL, RawPeer, linked, start_peer_node
from tests.runtime.link_support import (
    Add,
    GetTotal,
    Hold,
    Ping,
    Pong,
    Total,
    service_link_config,
)

INTERVAL_S = 0.05
TIMEOUT_S = 0.2
ENDS_WITHIN_S = 30.0
"""Generous bound for "the link ended": far above the timeout, on a loaded machine."""
SILENCE = "nothing received for "


def fast(**limits: Any) -> Any:
    """``service_link_config`` with heartbeats every 0.05 s and a 0.2 s timeout."""
    return service_link_config(heartbeat_interval_s=INTERVAL_S, heartbeat_timeout_s=TIMEOUT_S,
                               **limits)


@pytest.fixture(autouse=True)
def no_asyncio_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """A link closed for silence is normal operation: asyncio must not log errors about it."""
    yield
    errors = [r.getMessage() for r in caplog.get_records("call")
              if r.name == "asyncio" and r.levelno >= logging.ERROR]
    assert errors == []


async def next_down(events: Inbox) -> LinkDown:
    """The next event, which must be a ``LinkDown``, within ``ENDS_WITHIN_S``."""
    event = await events.get(timeout_s=ENDS_WITHIN_S)
    assert isinstance(event, LinkDown), event
    return event


# --- a live link ------------------------------------------------------------------------------


async def test_an_idle_link_stays_up_past_the_timeout(tmp_path: Path) -> None:
    async with linked("unix", tmp_path, server_config=fast(), client_config=fast()) as pair:
        client_link = await pair.client.wait_connected(WAIT_S)
        server_link = pair.server.links["client"]
        await asyncio.sleep(5 * TIMEOUT_S)  # idle: only heartbeats cross
        await eventually(lambda: min(client_link.heartbeats_received,
                                     server_link.heartbeats_received) >= 3,
                         timeout_s=ENDS_WITHIN_S)
        assert not client_link.closed
        assert not server_link.closed
        assert pair.client.link is client_link  # the same link all along: no redial
        assert pair.client_events.items == [LinkUp("server")]
        assert pair.server_events.items == [LinkUp("client")]
        assert await pair.client.ref("svc").ask(Ping("still here")) == Pong("still here",
                                                                             os.getpid())
        # Heartbeats are counted, never refused or taken for undecodable frames.
        assert (server_link.refused_messages, server_link.undecodable_frames) == (0, 0)


async def test_a_slow_local_actor_is_not_taken_for_a_silent_peer(tmp_path: Path) -> None:
    """The server's reading waits on ``svc``'s full mailbox (its backpressure) while the peer
    keeps sending. Before: that wait counted as the peer's silence, the server closed the
    channel after the timeout (the client saw a reset), and its own link stayed half-closed,
    with no ``LinkDown``, until the actor freed its mailbox."""
    async with linked("unix", tmp_path, server_config=fast(), client_config=fast()) as pair:
        remote = pair.client.ref("svc")
        await remote.tell(Hold())
        await asyncio.wait_for(pair.entered.wait(), WAIT_S)
        svc = pair.server_system.lookup("svc")
        assert svc is not None
        capacity = svc.statistics().capacity
        for _ in range(capacity + 5):  # the mailbox fills; the server's link waits on it
            await remote.tell(Add(1))
        await eventually(lambda: svc.statistics().waiting_senders == 1)
        await asyncio.sleep(5 * TIMEOUT_S)
        assert pair.client_events.items == [LinkUp("server")]
        assert pair.server_events.items == [LinkUp("client")]
        pair.release.set()
        assert await remote.ask(GetTotal(), timeout=ENDS_WITHIN_S) == Total(capacity + 5)
        assert pair.client.link is not None
        assert not pair.client.link.closed


# --- a peer that falls silent -----------------------------------------------------------------


async def test_a_silent_peer_is_closed_after_the_timeout(tmp_path: Path) -> None:
    """A peer that proved its key and then says nothing, not even a heartbeat."""
    async with linked("unix", tmp_path, server_config=fast(), client_config=fast()) as pair:
        raw = await RawPeer.connect(pair.path)
        assert await pair.server_events.get() == LinkUp("raw")
        pending = asyncio.create_task(pair.server.ref("raw", "x").ask(Ping("?"), timeout=600))
        # The server does heartbeat to it: bare frames, after the ask it sent.
        assert isinstance(await raw.receive(), RemoteAsk)
        assert await raw.receive() == LinkHeartbeat()
        down = await next_down(pair.server_events)
        assert down.peer == "raw"
        assert down.reason.startswith(SILENCE), down.reason
        with pytest.raises(LinkLost) as caught:
            await asyncio.wait_for(pending, WAIT_S)  # at once, not after the ask's 600 s
        assert caught.value.peer == "raw"
        assert "raw" not in pair.server.links
        with pytest.raises(LinkLost):
            await pair.server.ref("raw", "x").tell(Add(1))
        await raw.wait_closed_by_server()
        await raw.close()
        # The other link, whose peer heartbeats, is unharmed.
        assert sorted(pair.server.links) == ["client"]
        assert await pair.client.ref("svc").ask(GetTotal()) == Total(0)


class SwallowedWrites:
    """A ``FrameChannel`` that reads as the one it wraps but drops every frame written: to the
    other side, a peer that fell silent while its connection stayed open."""

    def __init__(self, inner: FrameChannel) -> None:
        self._inner = inner
        self.max_frame_bytes = inner.max_frame_bytes
        self.swallowed = 0

    async def read_frame(self) -> bytes:
        return await self._inner.read_frame()

    async def write_frame(self, frame: bytes) -> None:
        self.swallowed += 1

    async def close(self) -> None:
        await self._inner.close()

    @property
    def description(self) -> str:
        return self._inner.description


async def test_a_client_closes_a_server_gone_silent_and_redials(tmp_path: Path) -> None:
    async with linked("unix", tmp_path, server_config=fast(), client_config=fast()) as pair:
        client_link = await pair.client.wait_connected(WAIT_S)
        server_link = pair.server.links["client"]
        mute = SwallowedWrites(server_link._channel)
        server_link._channel = mute  # the server's frames stop reaching the client
        pending = asyncio.create_task(pair.client.ref("svc").ask(Hold(), timeout=600))
        down = await next_down(pair.client_events)
        assert down.peer == "server"
        assert down.reason.startswith(SILENCE), down.reason
        with pytest.raises(LinkLost):
            await asyncio.wait_for(pending, WAIT_S)
        assert client_link.closed
        assert mute.swallowed > 0  # the server did answer and heartbeat: nothing arrived
        # The server sees the client hang up; the client redials and all is well again.
        assert isinstance(await next_down(pair.server_events), LinkDown)
        assert await pair.client_events.get(timeout_s=ENDS_WITHIN_S) == LinkUp("server")
        pair.release.set()
        assert await pair.client.ref("svc").ask(GetTotal()) == Total(0)


async def test_a_peer_that_takes_no_data_is_closed_after_the_timeout(tmp_path: Path) -> None:
    """The peer stops reading and sending while a large tell to it is unsent. Before: the
    heartbeat's own send waited on the full socket for ever, so the silence was never checked
    and the link never ended (a frozen peer over TCP would hold it until the kernel gave up);
    then closing the channel waited for the unsent data for ever too."""
    server_config = fast(close_timeout_s=TIMEOUT_S)
    async with linked("unix", tmp_path, server_config=server_config,
                      client_config=fast()) as pair:
        raw = await RawPeer.connect(pair.path)  # never reads from here on
        assert await pair.server_events.get() == LinkUp("raw")
        remote = pair.server.ref("raw", "x")
        pending = asyncio.create_task(remote.ask(Ping("?"), timeout=600))
        assert isinstance(await raw.receive(), RemoteAsk)  # sent: it now awaits the reply
        stuck = asyncio.create_task(remote.tell(Ping("x" * 2_000_000)))  # fills the socket
        try:
            down = await next_down(pair.server_events)
            assert down.peer == "raw"
            assert down.reason.startswith(SILENCE), down.reason
            with pytest.raises(LinkLost):
                await asyncio.wait_for(pending, WAIT_S)
            assert "raw" not in pair.server.links
        finally:
            stuck.cancel()
            await asyncio.gather(stuck, return_exceptions=True)
            raw.writer.transport.abort()


async def test_a_send_stuck_on_a_peer_that_takes_no_data_ends_with_the_link(
        tmp_path: Path) -> None:
    server_config = fast(close_timeout_s=TIMEOUT_S)
    async with linked("unix", tmp_path, server_config=server_config,
                      client_config=fast()) as pair:
        raw = await RawPeer.connect(pair.path)  # never reads
        assert await pair.server_events.get() == LinkUp("raw")
        stuck = asyncio.create_task(pair.server.ref("raw", "x").tell(Ping("x" * 2_000_000)))
        try:
            down = await next_down(pair.server_events)
            assert down.reason.startswith(SILENCE), down.reason
            # Delivered or refused with LinkLost, but over once the link is.
            with contextlib.suppress(LinkLost):
                await asyncio.wait_for(stuck, WAIT_S)
        finally:
            stuck.cancel()
            await asyncio.gather(stuck, return_exceptions=True)
            raw.writer.transport.abort()


async def test_a_frozen_peer_process_is_closed_after_the_timeout(tmp_path: Path) -> None:
    """SIGSTOP: the peer's run loop stops whole (no heartbeat, no reply) and its socket stays
    open, as when its host hangs."""
    peer = await start_peer_node(tmp_path)
    proc, path, key_file = peer.process, peer.path, peer.key_file
    assert proc.stderr is not None
    try:
        events = Inbox()
        async with ActorSystem(SystemConfig(name="parent", shutdown_drain_s=0.2)) as system:
            watcher = await system.spawn("watcher", lambda: Recorder(events))
            config = service_link_config(LinkKeys.from_file(key_file),
                                         heartbeat_interval_s=INTERVAL_S,
                                         heartbeat_timeout_s=TIMEOUT_S)
            client = connect_unix(system, path, config, backoff=FAST_REDIAL)
            client.watch(watcher)
            try:
                await client.wait_connected(WAIT_S)
                assert await events.get() == LinkUp("peer")
                remote = client.ref("svc")
                assert await remote.ask(GetTotal()) == Total(0)
                proc.send_signal(signal.SIGSTOP)
                pending = asyncio.create_task(remote.ask(Ping("?"), timeout=600))
                down = await next_down(events)
                assert down.peer == "peer"
                assert down.reason.startswith(SILENCE), down.reason
                with pytest.raises(LinkLost):
                    await asyncio.wait_for(pending, WAIT_S)
                # Thawed, it answers the client's redial.
                proc.send_signal(signal.SIGCONT)
                assert await events.get(timeout_s=ENDS_WITHIN_S) == LinkUp("peer")
                assert await remote.ask(GetTotal(), timeout=WAIT_S) == Total(0)
            finally:
                await client.stop()
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGCONT)
            proc.terminate()
        await asyncio.wait_for(proc.wait(), 60)


# --- a heartbeat is not a message -------------------------------------------------------------


async def test_a_heartbeat_is_never_delivered_to_an_actor(tmp_path: Path) -> None:
    async with linked("unix", tmp_path) as pair:
        raw = await RawPeer.connect(pair.path)
        assert await pair.server_events.get() == LinkUp("raw")
        link = pair.server.links["raw"]
        for _ in range(5):
            await raw.send(LinkHeartbeat())  # a bare heartbeat: counted, nothing else
        # Inside a tell or an ask it is a runtime message a peer may not send.
        await raw.send(RemoteTell("svc", LinkHeartbeat()))
        await raw.send(RemoteTell("watcher", LinkHeartbeat()))
        await raw.send(RemoteAsk(1, "svc", LinkHeartbeat(), 5.0))
        assert await raw.receive() == RemoteFailure(
            1, "MessageRefused", "LinkHeartbeat is a runtime message; a peer cannot send it")
        assert link.heartbeats_received == 5
        assert link.refused_messages == 3
        await settle()
        svc = next(c for c in pair.server_system.cells() if c.name == "svc")
        assert svc.metrics.processed == 0
        # The watcher (a Recorder: it would take anything) heard only of the two links.
        assert pair.server_events.empty()
        assert pair.server_events.items == [LinkUp("client"), LinkUp("raw")]
        assert not link.closed
        await raw.close()


# --- configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize(("interval_s", "timeout_s"), [(1.0, 1.0), (2.0, 1.0), (5.0, 4.99)])
def test_the_timeout_must_exceed_the_interval(interval_s: float, timeout_s: float) -> None:
    with pytest.raises(ConfigError, match=r"heartbeat_timeout_s \(.*\) must exceed"):
        service_link_config(heartbeat_interval_s=interval_s, heartbeat_timeout_s=timeout_s)


@pytest.mark.parametrize("field", ["heartbeat_interval_s", "heartbeat_timeout_s",
                                   "close_timeout_s"])
@pytest.mark.parametrize("value", [0.0, -1.0, math.nan, math.inf])
def test_non_positive_or_infinite_heartbeat_times_are_refused(field: str, value: float) -> None:
    with pytest.raises(ConfigError, match=f"LinkConfig.{field} must be > 0"):
        service_link_config(None, **{field: value})
