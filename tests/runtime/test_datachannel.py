"""The link over a WebRTC data channel: two peer connections in this process on 127.0.0.1 with
host candidates only (no STUN/TURN; the descriptions are exchanged directly), plus an in-memory
fake data channel for what a real one cannot be made to do on demand (a peer that stops reading
at the SCTP level, a close that never completes).

Every peer connection a test makes comes from the ``pcs`` fixture, which closes
each one and waits for its close after the test: a close left running would finish (or fail) on
the event loop of a later test.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiortc.rtcicetransport
import numpy as np
import pytest
import pytest_asyncio
from aiortc import RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.rtcsctptransport import DataChunk, RTCSctpTransport, SackChunk
from pyee.asyncio import AsyncIOEventEmitter

import runtime.sctp_delayed_ack
from runtime import ActorSystem, Codec, HandshakeRefused, LinkKeys, LinkLost, SystemConfig
from runtime.datachannel import (
    DATA_CHANNEL_MAX_MESSAGE_BYTES,
    FRAME_TRACE_LOG,
    DataChannelFrameChannel,
    DataChannelLimits,
    DataOnlyPeerConnection,
    FrameArrival,
    MediaRefused,
    ReceiveQueueFull,
    TextMessageRefused,
    WriteStalled,
    check_data_only_sdp,
    create_link_channel,
    open_link,
)
from runtime.framing import FrameTooLarge
from runtime.link import Link
from runtime.sctp_delayed_ack import DelayedAckSctpTransport
from tests.runtime.helpers import WAIT_S, eventually
from tests.runtime.link_support import (
    Add,
    Frame,
    FrameSum,
    GetTotal,
    Hold,
    Ping,
    Pong,
    Service,
    Total,
    service_link_config,
)

TEST_S = 30.0
"""Upper bound of one test: nothing here may hang the suite."""
LINKED_FRAME_BYTES = 4 * 1024 * 1024
"""What a link asks for; the data channel caps it at its 256 KiB message size."""


pytestmark = pytest.mark.usefixtures("loopback_host_candidates")


class PeerConnections:
    """Makes every peer connection of one test and owns it: ``close_all`` closes each."""

    def __init__(self) -> None:
        self.made: list[RTCPeerConnection] = []

    def data_only(self, ice_servers: Iterable[RTCIceServer] = ()) -> DataOnlyPeerConnection:
        """A new ``DataOnlyPeerConnection``, closed after the test."""
        pc = DataOnlyPeerConnection(ice_servers)
        self.made.append(pc)
        return pc

    def plain(self) -> RTCPeerConnection:
        """A new ordinary aiortc ``RTCPeerConnection`` (no data-only checks), closed after."""
        pc = RTCPeerConnection()
        self.made.append(pc)
        return pc

    async def close_all(self) -> None:
        """Close every one and wait for each close to end (a closed one returns at once)."""
        this = asyncio.current_task()
        assert this is not None
        async with asyncio.timeout(TEST_S):
            for pc in self.made:
                try:
                    await pc.close()
                except asyncio.CancelledError:
                    if this.cancelling():
                        raise
                    # Not this task's: a close's own future was cancelled under it.
                    pytest.fail(f"closing {pc} raised the cancellation of another close")
        assert [pc.connectionState for pc in self.made] == ["closed"] * len(self.made)


@pytest_asyncio.fixture
async def pcs() -> AsyncIterator[PeerConnections]:
    """The test's peer connections, each closed, and its close awaited, after the test."""
    owner = PeerConnections()
    try:
        yield owner
    finally:
        await owner.close_all()


@dataclass
class Pair:
    """Two connected peer connections and the link's data channel, wrapped on both sides."""

    offerer: DataOnlyPeerConnection
    answerer: DataOnlyPeerConnection
    offer_channel: DataChannelFrameChannel
    answer_channel: DataChannelFrameChannel


async def connect_pair(pcs: PeerConnections, *, offer_limits: DataChannelLimits | None = None,
                       answer_limits: DataChannelLimits | None = None,
                       max_frame_bytes: int = LINKED_FRAME_BYTES) -> Pair:
    """The offerer makes the channel; the descriptions are handed over directly."""
    offerer, answerer = pcs.data_only(), pcs.data_only()
    offer_channel = create_link_channel(offerer, max_frame_bytes, offer_limits)
    arrived: asyncio.Future[DataChannelFrameChannel] = asyncio.get_running_loop().create_future()

    @answerer.on("datachannel")
    def wrap(channel: Any) -> None:
        arrived.set_result(DataChannelFrameChannel(channel, answerer, max_frame_bytes,
                                                   answer_limits))

    await offerer.setLocalDescription(await offerer.createOffer())
    await answerer.setRemoteDescription(offerer.localDescription)
    await answerer.setLocalDescription(await answerer.createAnswer())
    await offerer.setRemoteDescription(answerer.localDescription)
    await offer_channel.wait_open(WAIT_S)
    async with asyncio.timeout(WAIT_S):
        answer_channel = await arrived
    return Pair(offerer, answerer, offer_channel, answer_channel)


@asynccontextmanager
async def channel_pair(pcs: PeerConnections, **kwargs: Any) -> AsyncIterator[Pair]:
    async with asyncio.timeout(TEST_S):
        pair = await connect_pair(pcs, **kwargs)
        try:
            yield pair
        finally:
            await pair.offer_channel.close()
            await pair.answer_channel.close()


@dataclass
class LinkedOverDataChannel:
    unit: ActorSystem
    van: ActorSystem
    unit_link: Link
    van_link: Link
    pair: Pair
    service: Service


@asynccontextmanager
async def linked(pcs: PeerConnections, **limits: Any) -> AsyncIterator[LinkedOverDataChannel]:
    """A "unit" (offerer, handshake initiator) and a "van" linked over the data channel, each
    with a ``Service`` exposed (``svc`` on the van, ``csvc`` on the unit)."""
    async with asyncio.timeout(TEST_S):
        unit = ActorSystem(SystemConfig(name="unit", shutdown_drain_s=0.2))
        van = ActorSystem(SystemConfig(name="van", shutdown_drain_s=0.2))
        service = Service()
        await van.spawn("svc", lambda: service)
        await unit.spawn("csvc", Service)
        pair = await connect_pair(pcs, **limits)
        codec = Codec()
        unit_link, van_link = await asyncio.gather(
            open_link(unit, pair.offer_channel, service_link_config(), codec, initiator=True),
            open_link(van, pair.answer_channel, service_link_config(), codec, initiator=False))
        runs = [asyncio.create_task(link.run()) for link in (unit_link, van_link)]
        try:
            yield LinkedOverDataChannel(unit, van, unit_link, van_link, pair, service)
        finally:
            for run in runs:
                run.cancel()
            await asyncio.gather(*runs, return_exceptions=True)
            await unit.stop()
            await van.stop()


def candidate_addresses(sdp: str) -> list[tuple[str, str]]:
    """(address, type) of every candidate line."""
    return [(m[1], m[2]) for m in re.finditer(
        r"^a=candidate:\S+ \d+ \S+ \d+ (\S+) \d+ typ (\S+)", sdp, re.MULTILINE)]


# --- a link over the channel ------------------------------------------------------------------


async def test_tells_and_asks_cross_both_ways_after_the_handshake(pcs: PeerConnections) -> None:
    async with linked(pcs) as net:
        assert (net.unit_link.peer, net.van_link.peer) == ("van", "unit")
        pong = await net.unit_link.ref("svc").ask(Ping("hi"), timeout=WAIT_S)
        assert isinstance(pong, Pong)
        assert pong.text == "hi"
        for amount in range(1, 11):
            await net.unit_link.ref("svc").tell(Add(amount))
        assert await net.unit_link.ref("svc").ask(GetTotal(), timeout=WAIT_S) == Total(55)
        assert isinstance(await net.van_link.ref("csvc").ask(Ping("back"), timeout=WAIT_S), Pong)


class SentChunks:
    """Counts what one association sends, by chunk type (wraps its ``_send_chunk``)."""

    def __init__(self, sctp: RTCSctpTransport) -> None:
        self.sacks = self.data = 0
        send = sctp._send_chunk

        async def counting(chunk: Any) -> None:
            if isinstance(chunk, SackChunk):
                self.sacks += 1
            elif isinstance(chunk, DataChunk):
                self.data += 1
            await send(chunk)

        sctp._send_chunk = counting  # type: ignore[method-assign]


async def test_both_associations_acknowledge_every_second_packet(
        pcs: PeerConnections, monkeypatch: pytest.MonkeyPatch) -> None:
    # a lone packet's SACK waits long here, so a slow machine cannot make the pairs lone ones
    monkeypatch.setattr(runtime.sctp_delayed_ack, "SACK_DELAY_S", 1.0)
    async with linked(pcs) as net:
        pair = net.pair
        offered, answered = pair.offerer.sctp, pair.answerer.sctp
        assert offered is not None
        assert answered is not None
        assert type(offered) is DelayedAckSctpTransport
        assert type(answered) is DelayedAckSctpTransport
        sent, acknowledged = SentChunks(offered), SentChunks(answered)
        pixels = np.arange(100 * 1024, dtype=np.uint8)  # ~100 KiB: about 90 DATA packets
        for seq in range(1, 4):
            answer = await net.unit_link.ref("svc").ask(Frame(seq, pixels), timeout=WAIT_S)
            assert answer == FrameSum(seq, int(pixels.sum()), pixels.shape)
        assert sent.data >= 3 * 85
        # about one SACK per two packets (plus a lone last packet's now and then), where
        # aiortc alone sends one per packet
        assert acknowledged.sacks < 0.6 * sent.data


async def test_frames_received_are_traced_with_the_peer_once_enabled(
        pcs: PeerConnections, caplog: pytest.LogCaptureFixture) -> None:
    async with linked(pcs) as net:
        await net.unit_link.ref("svc").ask(Ping("off"), timeout=WAIT_S)
        assert not [record for record in caplog.records if hasattr(record, "trace")]
        caplog.set_level(logging.DEBUG, logger=FRAME_TRACE_LOG.name)
        pixels = np.arange(20 * 1024, dtype=np.uint8)
        await net.unit_link.ref("svc").ask(Frame(1, pixels), timeout=WAIT_S)
    arrivals = [record.trace for record in caplog.records if hasattr(record, "trace")]
    assert all(isinstance(arrival, FrameArrival) for arrival in arrivals)
    assert {arrival.peer for arrival in arrivals} == {"unit", "van"}  # each side names the other
    assert any(arrival.peer == "unit" and arrival.size > 20 * 1024 for arrival in arrivals)


async def test_both_sides_use_only_host_candidates_on_loopback(pcs: PeerConnections) -> None:
    async with channel_pair(pcs) as pair:
        for pc in (pair.offerer, pair.answerer):
            found = candidate_addresses(pc.localDescription.sdp)
            assert found
            assert set(found) == {("127.0.0.1", "host")}


async def test_a_large_frame_crosses_and_the_limit_is_the_message_size(
        pcs: PeerConnections) -> None:
    async with linked(pcs) as net:
        assert net.pair.answer_channel.max_frame_bytes == DATA_CHANNEL_MAX_MESSAGE_BYTES
        pixels = np.arange(200 * 1024, dtype=np.uint8)  # ~200 KiB: one message, many chunks
        answer = await net.unit_link.ref("svc").ask(Frame(1, pixels), timeout=WAIT_S)
        assert answer == FrameSum(1, int(pixels.sum()), pixels.shape)
        too_big = np.zeros(DATA_CHANNEL_MAX_MESSAGE_BYTES, dtype=np.uint8)
        with pytest.raises(LinkLost, match="over the limit"):
            await net.unit_link.ref("svc").tell(Frame(2, too_big))


async def test_a_wrong_key_is_refused_and_the_channel_closed(pcs: PeerConnections) -> None:
    async with asyncio.timeout(TEST_S):
        unit = ActorSystem(SystemConfig(name="unit", shutdown_drain_s=0.2))
        van = ActorSystem(SystemConfig(name="van", shutdown_drain_s=0.2))
        try:
            pair = await connect_pair(pcs)
            codec = Codec()
            wrong = service_link_config(LinkKeys.shared(bytes(32)))
            results = await asyncio.gather(
                open_link(unit, pair.offer_channel, wrong, codec, initiator=True),
                open_link(van, pair.answer_channel, service_link_config(), codec,
                          initiator=False),
                return_exceptions=True)
            assert all(isinstance(result, HandshakeRefused) for result in results), results
            with pytest.raises((EOFError, ConnectionError)):
                await pair.answer_channel.read_frame()
        finally:
            await unit.stop()
            await van.stop()


async def test_a_peer_that_closes_its_connection_ends_the_link_and_fails_pending_asks(
        pcs: PeerConnections) -> None:
    async with linked(pcs) as net:
        pending = asyncio.create_task(net.unit_link.ref("svc").ask(Hold(), timeout=TEST_S))
        await asyncio.wait_for(net.service.entered.wait(), WAIT_S)
        await net.pair.answerer.close()  # the van goes away without a word
        with pytest.raises(LinkLost):
            await asyncio.wait_for(pending, WAIT_S)
        await eventually(lambda: net.unit_link.closed)
        net.service.release.set()


async def test_a_peer_that_closes_the_channel_is_an_end_of_file(pcs: PeerConnections) -> None:
    async with channel_pair(pcs) as pair:
        await pair.offer_channel.write_frame(b"last words")
        await pair.offer_channel.close()
        assert await pair.answer_channel.read_frame() == b"last words"  # read before the end
        with pytest.raises(EOFError):
            await pair.answer_channel.read_frame()
        with pytest.raises(ConnectionError):
            await pair.answer_channel.write_frame(b"too late")


# --- what the receiving side refuses ----------------------------------------------------------


async def test_a_flood_of_frames_closes_the_channel_at_the_frame_limit(
        pcs: PeerConnections) -> None:
    limits = DataChannelLimits(max_queued_frames=8)
    async with channel_pair(pcs, answer_limits=limits) as pair:
        for _ in range(40):  # nobody reads on the answering side
            await pair.offer_channel.write_frame(b"x" * 100)
        with pytest.raises(EOFError):  # the flooded side closed the channel
            await asyncio.wait_for(pair.offer_channel.read_frame(), WAIT_S)
        with pytest.raises(ReceiveQueueFull):
            await pair.answer_channel.read_frame()
        assert pair.answer_channel.peak_queued_frames == 8


async def test_a_flood_of_bytes_closes_the_channel_at_the_byte_limit(pcs: PeerConnections) -> None:
    limits = DataChannelLimits(max_queued_frames=1000,
                               max_queued_bytes=DATA_CHANNEL_MAX_MESSAGE_BYTES)
    async with channel_pair(pcs, answer_limits=limits) as pair:
        for _ in range(20):  # 20 x 20 KB = 400 KB, over 256 KiB; nobody reads
            await pair.offer_channel.write_frame(bytes(20_000))
        with pytest.raises(EOFError):  # the flooded side closed the channel
            await asyncio.wait_for(pair.offer_channel.read_frame(), WAIT_S)
        with pytest.raises(ReceiveQueueFull):
            await pair.answer_channel.read_frame()
        assert pair.answer_channel.peak_queued_frames == 13  # 13 x 20,000 <= 262,144 < 14 x


async def test_a_frame_over_the_limit_closes_the_channel(pcs: PeerConnections) -> None:
    async with channel_pair(pcs) as pair:
        pair.answer_channel.max_frame_bytes = 1024  # as during the handshake
        pair.offer_channel.max_frame_bytes = 4096
        await pair.offer_channel.write_frame(bytes(2000))
        with pytest.raises(FrameTooLarge, match="2000 bytes"):
            await asyncio.wait_for(pair.answer_channel.read_frame(), WAIT_S)
        await eventually(lambda: pair.offer_channel._ended is not None)


async def test_a_text_message_closes_the_channel(pcs: PeerConnections) -> None:
    async with channel_pair(pcs) as pair:
        pair.offer_channel._channel.send("a frame is never text")
        with pytest.raises(TextMessageRefused):
            await asyncio.wait_for(pair.answer_channel.read_frame(), WAIT_S)


def test_an_unreliable_or_unordered_channel_is_refused() -> None:
    for options in ({"ordered": False}, {"maxRetransmits": 0}, {"maxPacketLifeTime": 100}):
        channel = FakeChannel(**options)
        with pytest.raises(ValueError, match="reliable, ordered"):
            DataChannelFrameChannel(channel, FakePeerConnection(), 1024)  # type: ignore[arg-type]


# --- sending: backpressure and timeouts (fake channel) ----------------------------------------


class FakeChannel(AsyncIOEventEmitter):
    """Enough of ``RTCDataChannel`` for the sending side: the test decides when data leaves."""

    def __init__(self, *, ordered: bool = True, maxRetransmits: int | None = None,  # noqa: N803
                 maxPacketLifeTime: int | None = None) -> None:  # noqa: N803
        super().__init__()
        self.ordered, self.maxRetransmits = ordered, maxRetransmits
        self.maxPacketLifeTime = maxPacketLifeTime
        self.label = "fake"
        self.readyState = "open"
        self.bufferedAmount = 0
        self.bufferedAmountLowThreshold = 0
        self.sent: list[bytes] = []
        self.close_calls = 0

    def send(self, data: bytes) -> None:
        self.sent.append(data)
        self.bufferedAmount += len(data)

    def drain(self) -> None:
        """The peer took everything."""
        self.bufferedAmount = 0
        self.emit("bufferedamountlow")

    def close(self) -> None:
        self.close_calls += 1  # and never says it closed


class FakePeerConnection(AsyncIOEventEmitter):
    connectionState = "connected"  # noqa: N815

    def __init__(self) -> None:
        super().__init__()
        self.closed = False

    async def close(self) -> None:
        self.closed = True


def fake_channel(**limits: Any) -> tuple[DataChannelFrameChannel, FakeChannel, FakePeerConnection]:
    channel, pc = FakeChannel(), FakePeerConnection()
    limits = {"write_high_water_bytes": 3000, "write_low_water_bytes": 1000, **limits}
    wrapped = DataChannelFrameChannel(channel, pc, 10_000,  # type: ignore[arg-type]
                                      DataChannelLimits(**limits))
    return wrapped, channel, pc


async def test_a_write_waits_above_the_high_water_mark_until_the_buffer_drains() -> None:
    wrapped, channel, _ = fake_channel()
    assert channel.bufferedAmountLowThreshold == 1000
    async with asyncio.timeout(WAIT_S):
        await wrapped.write_frame(bytes(2000))  # under the mark: returns at once
        third = asyncio.create_task(wrapped.write_frame(bytes(2000)))  # 4000 buffered: waits
        await asyncio.sleep(0.05)
        assert not third.done()
        channel.drain()
        await third
    assert len(channel.sent) == 2


async def test_a_write_the_peer_never_takes_times_out_and_closes_the_channel() -> None:
    wrapped, channel, _ = fake_channel(write_timeout_s=0.1)
    async with asyncio.timeout(WAIT_S):
        with pytest.raises(WriteStalled):
            await wrapped.write_frame(bytes(4000))
        assert channel.close_calls == 1
        with pytest.raises(WriteStalled):
            await wrapped.read_frame()


async def test_close_gives_up_waiting_after_its_timeout_and_closes_the_connection() -> None:
    wrapped, channel, pc = fake_channel(close_timeout_s=0.1)
    async with asyncio.timeout(WAIT_S):
        await wrapped.close()
    assert channel.close_calls == 1
    assert pc.closed


async def test_a_failed_peer_connection_ends_the_channel() -> None:
    wrapped, _, pc = fake_channel()
    pc.connectionState = "failed"
    pc.emit("connectionstatechange")
    with pytest.raises(ConnectionResetError, match="failed"):
        await asyncio.wait_for(wrapped.read_frame(), WAIT_S)


# --- closing a peer connection: once, whoever asks ------------------------------------------


async def test_a_close_cancelled_beside_another_leaves_that_close_to_finish(
        pcs: PeerConnections) -> None:
    """aiortc's close shares one future among its callers: cancelling one waiter cancelled it,
    and the close running beside it (aiortc's own task when the peer closed first) then failed
    with InvalidStateError."""
    async with channel_pair(pcs) as pair:
        first = asyncio.create_task(pair.offerer.close())
        await asyncio.sleep(0)
        assert not first.done(), "the close ended at once: nothing ran beside it"
        second = asyncio.create_task(pair.offerer.close())
        await asyncio.sleep(0)
        second.cancel()
        await asyncio.gather(second, return_exceptions=True)
        await asyncio.wait_for(first, WAIT_S)
        assert pair.offerer.connectionState == "closed"


async def test_a_close_cut_short_anywhere_is_finished_and_a_later_close_returns(
        pcs: PeerConnections) -> None:
    """Cancelled halfway, aiortc's close left its future unset and every later close waited
    for it for ever. Cut after 1, 2, 3, ... loop steps until the close ends by itself first,
    so every point where it waits is tried (aiortc's own steps, not counted here)."""
    steps = 0
    while True:
        steps += 1
        assert steps < 100, "the close never ended by itself"
        pair = await connect_pair(pcs)
        first = asyncio.create_task(pair.offerer.close())
        for _ in range(steps):
            await asyncio.sleep(0)
        if first.done():
            break
        first.cancel()
        await asyncio.gather(first, return_exceptions=True)
        await asyncio.wait_for(pair.offerer.close(), WAIT_S)
        assert pair.offerer.connectionState == "closed"
    assert steps > 1, "the close ended at once: it cannot be cut short"


# --- data only: no track, no audio or video section -------------------------------------------


async def test_no_track_or_transceiver_can_be_added(pcs: PeerConnections) -> None:
    pc = pcs.data_only()
    with pytest.raises(MediaRefused):
        pc.addTransceiver("video")
    with pytest.raises(MediaRefused):
        pc.addTrack(object())
    assert pc.getTransceivers() == []


async def offer_with_media(pcs: PeerConnections, *kinds: str) -> RTCSessionDescription:
    """A real offer from an ordinary aiortc peer connection: a data channel plus ``kinds``."""
    plain = pcs.plain()
    plain.createDataChannel("lfr-link")
    for kind in kinds:
        plain.addTransceiver(kind)
    return await plain.createOffer()


@pytest.mark.parametrize("kind", ["video", "audio"])
async def test_a_remote_offer_with_audio_or_video_is_refused(pcs: PeerConnections,
                                                              kind: str) -> None:
    offer = await offer_with_media(pcs, kind)
    assert f"m={kind} " in offer.sdp
    pc = pcs.data_only()
    with pytest.raises(MediaRefused, match=kind):
        await pc.setRemoteDescription(offer)
    with pytest.raises(MediaRefused, match=kind):
        await pc.setLocalDescription(offer)
    assert pc.getTransceivers() == []


def test_only_one_application_section_passes_the_sdp_check() -> None:
    check_data_only_sdp("v=0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n")
    with pytest.raises(MediaRefused, match="0 application"):
        check_data_only_sdp("v=0\r\n")
    with pytest.raises(MediaRefused, match="2 application"):
        check_data_only_sdp("m=application 9 x y\nm=application 9 x y\n")
    with pytest.raises(MediaRefused, match="text"):
        check_data_only_sdp("m=application 9 x y\nm=text 9 x y\n")


async def test_the_ice_agent_is_given_no_stun_server_by_default(
        pcs: PeerConnections, monkeypatch: pytest.MonkeyPatch) -> None:
    given: list[Any] = []
    real = aiortc.rtcicetransport.connection_kwargs

    def record(servers: Any) -> Any:
        given.append(servers)
        return real(servers)

    monkeypatch.setattr(aiortc.rtcicetransport, "connection_kwargs", record)
    pc = pcs.data_only()
    pc.createDataChannel("lfr-link")
    await asyncio.wait_for(pc.setLocalDescription(await pc.createOffer()), WAIT_S)
    assert given == [[]]  # None would make aiortc use stun.l.google.com
