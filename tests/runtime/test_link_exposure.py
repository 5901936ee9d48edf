"""What an authenticated peer can reach and break: only exposed actors and the classes listed for
them, never a runtime message, and never the node itself (failing messages fail alone)."""

from __future__ import annotations

import asyncio
import logging
import math
from pathlib import Path

import pytest

from guards.config_checks import ConfigError
from runtime import (
    ActorSystem,
    Codec,
    LinkConfig,
    LinkDown,
    LinkKeys,
    LinkServer,
    LinkUp,
    RemoteError,
    SystemConfig,
)
from runtime.link_handshake import NONCE_BYTES
from runtime.link_messages import (
    HandshakeProof,
    Hello,
    RemoteAsk,
    RemoteFailure,
    RemoteReply,
    RemoteTell,
)
from tests.runtime.helpers import eventually, settle
from tests.runtime.link_harness import RawPeer, linked
from tests.runtime.link_support import (
    TEST_KEY,
    Add,
    Fail,
    GetTotal,
    Hold,
    Ping,
    Pong,
    Total,
    service_link_config,
)


async def test_failing_tells_from_a_peer_do_not_take_the_node_down(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Before: 12 such tells spent the root supervisor's restarts and the node exited 70."""
    async with linked("unix", tmp_path) as pair:
        remote = pair.client.ref("svc")
        with caplog.at_level(logging.WARNING, logger="lfr.runtime"):
            for n in range(30):
                await remote.tell(Fail(f"bad {n}"))
            await remote.tell(Add(2))
            assert await remote.ask(GetTotal()) == Total(2)  # the same incarnation, all along
        svc = next(c for c in pair.server_system.cells() if c.name == "svc")
        assert svc.metrics.remote_failures == 30
        assert (svc.metrics.failures, svc.metrics.restarts) == (0, 0)
        assert pair.server_system.failure is None
        assert pair.server_system.root.statistics().restarts == 0
        dropped = [r.getMessage() for r in caplog.records if "from a peer failed" in r.getMessage()]
        assert len(dropped) == 20  # the rest counted, not logged: see test_link_log_flood
        assert dropped[0] == ("actor svc: a tell from a peer failed and was dropped (Fail, "
                              "ValueError: bad 0)")


async def test_failing_asks_from_a_peer_are_answered_and_counted(tmp_path: Path) -> None:
    async with linked("unix", tmp_path) as pair:
        for _ in range(10):
            with pytest.raises(RemoteError, match="ValueError: no"):
                await pair.client.ref("svc").ask(Fail("no"))
        svc = next(c for c in pair.server_system.cells() if c.name == "svc")
        assert (svc.metrics.remote_failures, svc.metrics.ask_errors) == (10, 10)
        assert svc.metrics.failures == 0


async def test_only_exposed_actors_are_reachable(tmp_path: Path) -> None:
    async with linked("unix", tmp_path) as pair:
        # "watcher" runs on the server but is not exposed: it looks exactly like a missing actor.
        hidden, missing = pair.client.ref("watcher"), pair.client.ref("ghost")
        answers = []
        for ref in (hidden, missing):
            with pytest.raises(RemoteError) as caught:
                await ref.ask(Ping("hello"))
            answers.append((caught.value.error_type, caught.value.remote_message.split("'")[2]))
        assert answers == [("ActorNotFound", " on "), ("ActorNotFound", " on ")]
        await hidden.tell(Ping("told"))
        await pair.client.ref("svc").ask(GetTotal())  # the tell was handled (dropped) before
        link = pair.server.links["client"]
        assert link.refused_messages == 3
        # The watcher (a Recorder: it would take any message) received its LinkUp, nothing else.
        assert pair.server_events.items == [LinkUp("client")]


async def test_an_exposed_actor_gets_only_the_classes_listed_for_it(tmp_path: Path) -> None:
    async with linked("unix", tmp_path) as pair:
        remote = pair.client.ref("svc")
        with pytest.raises(RemoteError) as caught:
            await remote.ask(Pong("not a request", 1))
        assert caught.value.error_type == "MessageRefused"
        assert caught.value.remote_message == "actor 'svc' does not accept Pong from peers"
        await remote.tell(Total(99))
        assert await remote.ask(GetTotal()) == Total(0)
        svc = next(c for c in pair.server_system.cells() if c.name == "svc")
        assert svc.metrics.processed == 1  # only the GetTotal reached the actor
        assert pair.server.links["client"].refused_messages == 2


async def test_runtime_messages_cannot_be_sent_by_a_peer(tmp_path: Path) -> None:
    async with linked("unix", tmp_path) as pair:
        raw = await RawPeer.connect(pair.path)
        assert await pair.server_events.get() == LinkUp("raw")
        link = pair.server.links["raw"]
        events = [LinkDown("client", "forged"), LinkUp("forged"),
                  Hello("x", 2, bytes(NONCE_BYTES)), HandshakeProof(bytes(32))]
        for event in events:
            await raw.send(RemoteTell("watcher", event))
            await raw.send(RemoteTell("svc", event))
            await raw.send(event)  # a bare runtime frame inside the link
        await raw.send(RemoteAsk(1, "svc", LinkDown("client", "forged"), 5.0))
        assert await raw.receive() == RemoteFailure(
            1, "MessageRefused", "LinkDown is a runtime message; a peer cannot send it")
        assert link.refused_messages == 3 * len(events) + 1
        await settle()
        assert pair.server_events.empty()  # the server's watcher heard of no LinkDown
        assert not link.closed
        await raw.close()


def test_a_runtime_message_cannot_be_exposed() -> None:
    config = LinkConfig(LinkKeys.shared(TEST_KEY), exposed={"watcher": (LinkDown,)})
    with pytest.raises(ConfigError, match="LinkDown is a runtime message"):
        config.check_registered(Codec().registry)


async def test_the_server_checks_the_allow_list_against_its_codec() -> None:
    class NotAMessage:
        pass

    config = LinkConfig(LinkKeys.shared(TEST_KEY), exposed={"svc": (NotAMessage,)})
    async with ActorSystem(SystemConfig(name="s")) as system:
        with pytest.raises(ConfigError, match="NotAMessage is not a registered message"):
            LinkServer(system, config, Codec())


@pytest.mark.parametrize("timeout_s", [math.nan, math.inf, -1.0, 1e300])
async def test_a_peers_ask_timeout_is_capped(tmp_path: Path, timeout_s: float) -> None:
    config = service_link_config(max_ask_timeout_s=0.1)
    async with linked("unix", tmp_path, server_config=config) as pair:
        raw = await RawPeer.connect(pair.path)
        await raw.send(RemoteAsk(7, "svc", Hold(), timeout_s))
        answer = await raw.receive()  # within WAIT_S: not after the peer's forever
        assert isinstance(answer, RemoteFailure)
        assert (answer.ask_id, answer.error_type) == (7, "AskTimeout")
        pair.release.set()
        await raw.close()


async def test_peer_texts_cannot_forge_log_lines(tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    async with linked("unix", tmp_path) as pair:
        raw = await RawPeer.connect(pair.path)
        with caplog.at_level(logging.DEBUG):
            await raw.send(RemoteTell("svc\nCRITICAL forged", Add(1)))
            await raw.send(RemoteTell("svc", Fail("oops\nCRITICAL forged \x1b[31m")))
            await raw.send(RemoteAsk(3, "svc", GetTotal(), 5.0))
            assert await raw.receive() == RemoteReply(3, Total(0))
            # And the other way: a peer's error text reaches the asker escaped.
            ask = asyncio.create_task(pair.server.ref("raw", "x").ask(Ping("?")))
            request = await raw.receive()
            assert isinstance(request, RemoteAsk)
            await raw.send(RemoteFailure(request.ask_id, "Evil\nCRITICAL", "a\nCRITICAL b"))
            with pytest.raises(RemoteError) as caught:
                await ask
            assert "\n" not in str(caught.value)
            assert caught.value.remote_message == "a\\nCRITICAL b"
            await raw.close()
            await eventually(lambda: "raw" not in pair.server.links)
        messages = [r.getMessage() for r in caplog.records]
        assert ("link to raw: tell dropped: no actor named 'svc\\nCRITICAL forged' on 'server'"
                in messages)
        assert ("actor svc: a tell from a peer failed and was dropped (Fail, ValueError: "
                "oops\\nCRITICAL forged \\x1b[31m)") in messages
        assert not any("\n" in m or "\x1b" in m for m in messages)
