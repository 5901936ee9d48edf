"""The link handshake, attacked: no key, a wrong key, a replay, a reflection, a name taken, silence,
garbage and oversized frames before authentication; and a node name that tries to forge a log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime import ActorSystem, LinkKeys, SystemConfig, connect_unix
from runtime.codec import Codec
from runtime.framing import StreamFrameChannel
from runtime.link_handshake import INITIATOR, NONCE_BYTES, RESPONDER, proof
from runtime.link_messages import HandshakeProof, Hello, RemoteTell
from tests.runtime.helpers import Inbox, Recorder, eventually, settle
from tests.runtime.link_harness import FAST_REDIAL, RawPeer, linked, socket_path
from tests.runtime.link_support import TEST_KEY, Add, GetTotal, Total, service_link_config

OTHER_KEY = bytes(range(100, 132))
LINK_LOG = "lfr.runtime.link"


@pytest.fixture(autouse=True)
def no_asyncio_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Refused connections are normal operation: asyncio must not log errors about them."""
    yield
    errors = [r.getMessage() for r in caplog.get_records("call")
              if r.name == "asyncio" and r.levelno >= logging.ERROR]
    assert errors == []


def _refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "refused a link" in r.getMessage()]


async def _hello(raw: RawPeer, name: str, nonce: bytes) -> Hello:
    """Send our Hello, return the server's."""
    await raw.send(Hello(name, 2, nonce))
    hello = await raw.receive()
    assert isinstance(hello, Hello)
    return hello


async def test_a_wrong_key_is_refused_with_the_reason(tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    async with linked("unix", tmp_path) as pair:
        with caplog.at_level(logging.WARNING, logger=LINK_LOG):
            raw = await RawPeer.open(pair.path)
            nonce = os.urandom(NONCE_BYTES)
            hello = await _hello(raw, "mallory", nonce)
            await raw.send(HandshakeProof(proof(OTHER_KEY, INITIATOR, ("mallory", nonce),
                                                (hello.node, hello.nonce))))
            await raw.wait_closed_by_server()
            await raw.close()
        assert "mallory" not in pair.server.links
        assert pair.server.failed_handshakes == 1
        assert pair.server_events.empty()  # no LinkUp: nothing was linked
        assert _refusals(caplog) == [
            ("refused a link from unix socket peer: peer mallory did not prove the key (wrong "
             "key, or a replayed handshake)")]


async def test_a_client_with_the_wrong_key_never_links(tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    async with linked("unix", tmp_path) as pair:
        events = Inbox()
        async with ActorSystem(SystemConfig(name="intruder")) as system:
            watcher = await system.spawn("watcher", lambda: Recorder(events))
            bad = service_link_config(LinkKeys.shared(OTHER_KEY))
            with caplog.at_level(logging.WARNING, logger=LINK_LOG):
                client = connect_unix(system, pair.path, bad, backoff=FAST_REDIAL)
                client.watch(watcher)
                await eventually(lambda: pair.server.failed_handshakes >= 2)
                await client.stop()
        assert events.items == []
        assert client.link is None
        assert sorted(pair.server.links) == ["client"]
        assert any("cannot link to unix:" in m and "closed during the handshake" in m
                   for m in (r.getMessage() for r in caplog.records))


async def test_no_message_is_accepted_before_the_handshake(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async with linked("unix", tmp_path) as pair:
        with caplog.at_level(logging.WARNING, logger=LINK_LOG):
            first = await RawPeer.open(pair.path)  # a tell instead of a Hello
            await first.send(RemoteTell("svc", Add(5)))
            await first.wait_closed_by_server()
            second = await RawPeer.open(pair.path)  # a Hello, then a tell instead of the proof
            await _hello(second, "mallory", os.urandom(NONCE_BYTES))
            await second.send(RemoteTell("svc", Add(7)))
            await second.wait_closed_by_server()
        for raw in (first, second):
            await raw.close()
        assert await pair.client.ref("svc").ask(GetTotal()) == Total(0)
        assert _refusals(caplog) == [
            "refused a link from unix socket peer: expected Hello, got RemoteTell",
            "refused a link from unix socket peer: expected HandshakeProof, got RemoteTell"]


async def test_a_replayed_handshake_is_refused(tmp_path: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    async with linked("unix", tmp_path) as pair:
        nonce = os.urandom(NONCE_BYTES)
        recorded = await RawPeer.open(pair.path)  # a genuine peer's handshake, recorded
        hello = await _hello(recorded, "alice", nonce)
        answer = HandshakeProof(proof(TEST_KEY, INITIATOR, ("alice", nonce),
                                      (hello.node, hello.nonce)))
        await recorded.send(answer)
        assert isinstance(await recorded.receive(), HandshakeProof)
        await eventually(lambda: "alice" in pair.server.links)
        await recorded.close()
        await eventually(lambda: "alice" not in pair.server.links)
        with caplog.at_level(logging.WARNING, logger=LINK_LOG):
            replay = await RawPeer.open(pair.path)
            fresh = await _hello(replay, "alice", nonce)  # the same frames, byte for byte
            assert fresh.nonce != hello.nonce
            await replay.send(answer)
            await replay.wait_closed_by_server()
            await replay.close()
        assert "alice" not in pair.server.links
        assert "did not prove the key (wrong key, or a replayed handshake)" in _refusals(caplog)[0]


async def test_a_peer_claiming_this_nodes_name_is_refused(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Two connections claiming the server's own name could reflect one's proof into the other."""
    async with linked("unix", tmp_path) as pair:
        with caplog.at_level(logging.WARNING, logger=LINK_LOG):
            raw = await RawPeer.open(pair.path)
            await _hello(raw, "server", os.urandom(NONCE_BYTES))
            await raw.wait_closed_by_server()
            await raw.close()
        assert _refusals(caplog) == [
            "refused a link from unix socket peer: peer claims this node's own name server"]


async def test_a_responders_proof_cannot_be_reflected_as_an_initiators() -> None:
    us, them = ("a", b"1" * NONCE_BYTES), ("b", b"2" * NONCE_BYTES)
    assert proof(TEST_KEY, INITIATOR, us, them) != proof(TEST_KEY, RESPONDER, us, them)
    assert proof(TEST_KEY, INITIATOR, us, them) != proof(TEST_KEY, INITIATOR, them, us)
    # Field boundaries count: ("ab", n) and ("a", "b" + n) are different transcripts.
    assert (proof(TEST_KEY, INITIATOR, ("ab", b"x"), them)
            != proof(TEST_KEY, INITIATOR, ("a", b"bx"), them))


async def test_a_second_link_claiming_a_linked_name_is_refused(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async with linked("unix", tmp_path) as pair:
        original = pair.server.links["client"]
        with caplog.at_level(logging.WARNING, logger=LINK_LOG):
            with pytest.raises(ConnectionError, match="closed during the handshake"):
                await RawPeer.connect(pair.path, name="client")
            await eventually(lambda: pair.server.failed_handshakes == 1)
        assert pair.server.links["client"] is original
        assert not original.closed
        assert pair.server_events.empty()
        assert await pair.client.ref("svc").ask(GetTotal()) == Total(0)
        assert _refusals(caplog) == [
            ("refused a link from unix socket peer: client is linked already; a second link "
             "claiming that name is refused")]


async def test_a_named_key_binds_the_name(tmp_path: Path,
                                          caplog: pytest.LogCaptureFixture) -> None:
    alice_key, bob_key = b"A" * 32, b"B" * 32
    keys = LinkKeys({"alice": alice_key, "bob": bob_key, "client": TEST_KEY}, None, "test keys")
    async with linked("unix", tmp_path, server_config=service_link_config(keys)) as pair:
        with caplog.at_level(logging.WARNING, logger=LINK_LOG):
            alice = await RawPeer.connect(pair.path, name="alice", key=alice_key)
            await eventually(lambda: "alice" in pair.server.links)
            # Alice's key does not make her bob, and a name with no key gets nowhere.
            for name in ("bob", "carol"):
                with pytest.raises(ConnectionError):
                    await RawPeer.connect(pair.path, name=name, key=alice_key)
        await alice.close()
        refusals = _refusals(caplog)
        assert len(refusals) == 2
        assert refusals[0].endswith("peer bob did not prove the key (wrong key, or a replayed "
                                    "handshake)")
        assert refusals[1].endswith("no key for a peer named carol in test keys")


async def test_the_client_refuses_a_server_that_cannot_prove_the_key(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = socket_path(tmp_path, "fake.sock")
    codec = Codec()

    async def impostor(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        channel = StreamFrameChannel(reader, writer, 1024)
        await channel.write_frame(codec.encode(Hello("server", 2, os.urandom(NONCE_BYTES))))
        await channel.read_frame()  # the client's Hello
        await channel.read_frame()  # the client's proof, which it cannot check
        await channel.write_frame(codec.encode(HandshakeProof(os.urandom(32))))
        with contextlib.suppress(EOFError):
            await channel.read_frame()  # until the client hangs up

    fake = await asyncio.start_unix_server(impostor, path)
    try:
        async with ActorSystem(SystemConfig(name="client")) as system:
            with caplog.at_level(logging.WARNING, logger=LINK_LOG):
                client = connect_unix(system, path, service_link_config(), backoff=FAST_REDIAL)
                await eventually(lambda: any("did not prove" in r.getMessage()
                                             for r in caplog.records))
                assert client.link is None
                await client.stop()
    finally:
        fake.close()
        await fake.wait_closed()
    assert any("cannot link to unix:" in r.getMessage() and "peer server did not prove the key"
               in r.getMessage() for r in caplog.records)


async def test_silence_ends_at_the_handshake_deadline_with_the_reason(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = service_link_config(handshake_timeout_s=0.2)
    async with linked("unix", tmp_path, server_config=config) as pair:
        with caplog.at_level(logging.WARNING, logger=LINK_LOG):
            silent = await RawPeer.open(pair.path)
            await silent.wait_closed_by_server()
            await silent.close()
        assert _refusals(caplog) == [
            "refused a link from unix socket peer: no handshake within the deadline of 0.2 s"]


async def test_frames_before_the_handshake_are_small(tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    async with linked("unix", tmp_path) as pair:
        with caplog.at_level(logging.WARNING, logger=LINK_LOG):
            huge = await RawPeer.open(pair.path)
            huge.writer.write(struct.pack(">I", 32 * 1024 * 1024))  # then never the 32 MiB
            await huge.wait_closed_by_server()
            garbage = await RawPeer.open(pair.path)
            garbage.writer.write(struct.pack(">I", 200) + os.urandom(200))
            await garbage.wait_closed_by_server()
        for raw in (huge, garbage):
            await raw.close()
        refusals = _refusals(caplog)
        assert refusals[0] == ("refused a link from unix socket peer: peer announced a frame "
                               "of 33554432 bytes, over the limit of 1024")
        assert "expected Hello, got an undecodable frame" in refusals[1]
        assert sorted(pair.server.links) == ["client"]


async def test_an_old_protocol_peer_is_told_apart(tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    async with linked("unix", tmp_path) as pair:
        with caplog.at_level(logging.WARNING, logger=LINK_LOG):
            raw = await RawPeer.open(pair.path)
            await raw.send(Hello("old", 1, os.urandom(NONCE_BYTES)))
            await raw.wait_closed_by_server()
            await raw.close()
        assert _refusals(caplog) == [
            "refused a link from unix socket peer: peer speaks link protocol 1, this node 2"]


async def test_a_peer_name_cannot_forge_a_log_line(tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    forged = "x\nCRITICAL fake \x1b[2Jline"
    async with linked("unix", tmp_path) as pair:
        with caplog.at_level(logging.DEBUG):
            raw = await RawPeer.open(pair.path)
            await _hello(raw, forged, os.urandom(NONCE_BYTES))
            await raw.wait_closed_by_server()
            await raw.close()
            await settle()
        messages = [r.getMessage() for r in caplog.records]
        assert ("refused a link from unix socket peer: peer claims an invalid name "
                "x\\nCRITICAL fake \\x1b[2Jline (1-64 printable characters)") in messages
        assert not any("\n" in m or "\x1b" in m for m in messages)
        assert pair.server_events.empty()
