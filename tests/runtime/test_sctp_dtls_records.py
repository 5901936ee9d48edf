"""The lighter DTLS record path (``runtime.sctp_dtls_records``) on real peer connections in this
process over loopback: frames of every size cross intact both ways, a relay's protocol is
still given what it sends, a close alert ends the transport, a datagram that is not DTLS is
dropped, and without the bindings it needs aiortc's path is kept. Every wait is bounded;
nothing asserts how fast anything happened."""

from __future__ import annotations

import asyncio
import logging
import os
import types
from typing import Any

import pytest
from aioice.ice import StunProtocol
from aiortc.rtcdtlstransport import RTCDtlsTransport

import runtime.sctp_dtls_records
from runtime.datachannel import DataOnlyPeerConnection
from runtime.sctp_dtls_records import LightDtlsTransport, lighten_records
from tests.runtime.helpers import WAIT_S, eventually
from tests.runtime.test_datachannel import Pair, PeerConnections, channel_pair, pcs

__all__ = ["pcs"]  # the fixture, used by name

pytestmark = pytest.mark.usefixtures("loopback_host_candidates")

SIZES = (1, 1199, 1200, 1201, 26_000, 200_000)
"""Frame sizes around one SCTP packet's data (1,200 bytes), an alert and a large frame."""


def dtls(pc: DataOnlyPeerConnection) -> RTCDtlsTransport:
    assert pc.sctp is not None
    return pc.sctp.transport


async def exchange(pair: Pair) -> None:
    """Every size both ways, read back equal and in order."""
    for sender, receiver in ((pair.offer_channel, pair.answer_channel),
                             (pair.answer_channel, pair.offer_channel)):
        frames = [os.urandom(size) for size in SIZES]
        for frame in frames:
            await sender.write_frame(frame)
        async with asyncio.timeout(WAIT_S):
            assert [await receiver.read_frame() for _ in frames] == frames


async def test_both_transports_take_the_lighter_path_and_frames_cross_intact(
        pcs: PeerConnections) -> None:
    async with channel_pair(pcs) as pair:
        for pc in (pair.offerer, pair.answerer):
            assert type(dtls(pc)) is LightDtlsTransport
        stats_before = [dtls(pc)._get_stats() for pc in (pair.offerer, pair.answerer)]
        await exchange(pair)
        for pc, before in zip((pair.offerer, pair.answerer), stats_before, strict=True):
            after = next(iter(dtls(pc)._get_stats().values()))
            first = next(iter(before.values()))
            # the counters getStats reads go on: 200 KB each way is over 170 datagrams
            assert after.bytesSent - first.bytesSent > sum(SIZES)
            assert after.packetsSent - first.packetsSent > 170
            assert after.packetsReceived - first.packetsReceived > 170


class CountingProtocol(StunProtocol):
    """A protocol that is not aioice's plain one (as a TURN relay's is not): counted."""

    sent = 0

    async def send_data(self, data: bytes, addr: tuple[str, int]) -> None:
        CountingProtocol.sent += 1
        await super().send_data(data, addr)


async def test_a_protocol_other_than_a_plain_socket_is_given_what_it_sends(
        pcs: PeerConnections) -> None:
    async with channel_pair(pcs) as pair:
        connection: Any = dtls(pair.offerer).transport._connection
        pair_in_use = connection._nominated[1]
        pair_in_use.protocol.__class__ = CountingProtocol
        CountingProtocol.sent = 0
        await exchange(pair)
        assert CountingProtocol.sent > 170  # every datagram of the offerer through it


async def test_a_datagram_that_is_not_dtls_is_dropped_and_the_link_goes_on(
        pcs: PeerConnections) -> None:
    async with channel_pair(pcs) as pair:
        connection: Any = dtls(pair.answerer).transport._connection
        received = next(iter(dtls(pair.answerer)._get_stats().values())).packetsReceived
        connection._queue.put_nowait((b"\x80" + bytes(40), 1))  # an RTP header's first byte
        await eventually(lambda: next(iter(dtls(pair.answerer)._get_stats().values()))
                         .packetsReceived > received)
        await exchange(pair)


async def test_a_close_alert_ends_the_transport_and_the_channel(pcs: PeerConnections) -> None:
    async with channel_pair(pcs) as pair:
        await exchange(pair)
        await pair.answerer.close()  # sends its DTLS close alert
        await eventually(lambda: dtls(pair.offerer).state == "closed")
        async with asyncio.timeout(WAIT_S):
            with pytest.raises((EOFError, ConnectionError)):
                await pair.offer_channel.read_frame()


async def test_without_the_bindings_it_needs_aiortcs_path_is_kept(
        pcs: PeerConnections, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(runtime.sctp_dtls_records, "_LIB", types.SimpleNamespace())
    monkeypatch.setattr(runtime.sctp_dtls_records, "_refused", [])
    caplog.set_level(logging.WARNING, logger="lfr.runtime.link")
    async with channel_pair(pcs) as pair:
        for pc in (pair.offerer, pair.answerer):
            assert type(dtls(pc)) is RTCDtlsTransport
        await exchange(pair)
    assert caplog.text.count("keeps aiortc's record path: SSL_write, SSL_read") == 1


def test_a_transport_already_light_or_of_another_class_is_left_as_it_is(
        caplog: pytest.LogCaptureFixture) -> None:
    class Other(RTCDtlsTransport):
        pass

    other = object.__new__(Other)
    light = object.__new__(LightDtlsTransport)
    assert lighten_records(light)
    assert type(light) is LightDtlsTransport
    assert not lighten_records(other)
    assert type(other) is Other
    assert not lighten_records(object())
    assert "record path" not in caplog.text  # not a missing binding: nothing to say
