"""Delayed SACKs (``runtime.sctp_delayed_ack``) on aiortc's own association, fed crafted packets:
one SACK for every two in-order DATA packets, a lone packet acknowledged by the timer, and a
gap, a duplicate or a FORWARD TSN acknowledged at once. The real peer connections' use of it is
in ``test_datachannel.py``. Every wait is bounded; nothing asserts how fast anything happened.
"""

from __future__ import annotations

import asyncio

from aiortc.rtcsctptransport import (
    SCTP_DATA_FIRST_FRAG,
    SCTP_DATA_LAST_FRAG,
    WEBRTC_BINARY,
    Chunk,
    DataChunk,
    ForwardTsnChunk,
    RTCSctpTransport,
    SackChunk,
    parse_packet,
    serialize_packet,
)

from runtime.sctp_delayed_ack import SACK_DELAY_S, DelayedAckSctpTransport, delay_acks
from tests.actors.support import WAIT_S, eventually

FIRST_TSN = 1000
PORT = 5000


class RecordingDtls:
    """Stands in for the association's DTLS transport: keeps every packet it is given."""

    state = "connected"

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    async def _send_data(self, data: bytes) -> None:
        self.sent.append(data)

    def sacks(self) -> list[SackChunk]:
        return [chunk for packet in self.sent for chunk in parse_packet(packet)[3]
                if isinstance(chunk, SackChunk)]


def association() -> tuple[RTCSctpTransport, RecordingDtls]:
    """An established association expecting ``FIRST_TSN`` next, acknowledging with delay."""
    dtls = RecordingDtls()
    sctp = RTCSctpTransport(dtls)  # type: ignore[arg-type]  # the DTLS side is the recorder
    delay_acks(sctp)
    sctp._association_state = RTCSctpTransport.State.ESTABLISHED
    sctp._remote_port = PORT
    sctp._last_received_tsn = FIRST_TSN - 1
    return sctp, dtls


def packet(sctp: RTCSctpTransport, chunk: Chunk) -> bytes:
    return serialize_packet(PORT, PORT, sctp._local_verification_tag, chunk)


def data(sctp: RTCSctpTransport, tsn: int) -> bytes:
    """A packet of one whole binary message on stream 1 (no channel: dropped after the SACK
    bookkeeping, which is what is tested)."""
    chunk = DataChunk(flags=SCTP_DATA_FIRST_FRAG | SCTP_DATA_LAST_FRAG)
    chunk.tsn = tsn
    chunk.stream_id = 1
    chunk.stream_seq = tsn - FIRST_TSN
    chunk.protocol = WEBRTC_BINARY
    chunk.user_data = b"x" * 100
    return packet(sctp, chunk)


async def test_delay_acks_turns_an_association_of_aiortc_into_one_and_only_once() -> None:
    sctp, _ = association()
    assert type(sctp) is DelayedAckSctpTransport
    delay_acks(sctp)
    assert type(sctp) is DelayedAckSctpTransport


async def test_every_second_in_order_packet_is_acknowledged_and_covers_both() -> None:
    sctp, dtls = association()
    for tsn in range(FIRST_TSN, FIRST_TSN + 6):
        await sctp._handle_data(data(sctp, tsn))
    assert [sack.cumulative_tsn for sack in dtls.sacks()] == [FIRST_TSN + 1, FIRST_TSN + 3,
                                                             FIRST_TSN + 5]
    assert all(not sack.gaps and not sack.duplicates for sack in dtls.sacks())
    await asyncio.sleep(SACK_DELAY_S * 3)
    assert len(dtls.sacks()) == 3  # nothing was left to acknowledge


async def test_a_lone_packet_is_acknowledged_by_the_timer() -> None:
    sctp, dtls = association()
    await sctp._handle_data(data(sctp, FIRST_TSN))
    assert dtls.sacks() == []  # held for a second packet
    await eventually(lambda: len(dtls.sacks()) == 1, timeout_s=WAIT_S)
    assert dtls.sacks()[0].cumulative_tsn == FIRST_TSN
    await sctp._handle_data(data(sctp, FIRST_TSN + 1))  # a new pair starts
    assert len(dtls.sacks()) == 1


async def test_a_gap_is_acknowledged_at_once_with_its_gap_block() -> None:
    sctp, dtls = association()
    await sctp._handle_data(data(sctp, FIRST_TSN + 1))  # FIRST_TSN is missing
    sacks = dtls.sacks()
    assert len(sacks) == 1
    assert sacks[0].cumulative_tsn == FIRST_TSN - 1
    assert sacks[0].gaps == [(2, 2)]


async def test_a_duplicate_is_acknowledged_at_once_and_reported() -> None:
    sctp, dtls = association()
    await sctp._handle_data(data(sctp, FIRST_TSN))
    await sctp._handle_data(data(sctp, FIRST_TSN))  # sent again: the SACK was late or lost
    sacks = dtls.sacks()
    assert len(sacks) == 1
    assert sacks[0].duplicates == [FIRST_TSN]


async def test_a_forward_tsn_is_acknowledged_at_once() -> None:
    sctp, dtls = association()
    forward = ForwardTsnChunk()
    forward.cumulative_tsn = FIRST_TSN + 2
    await sctp._handle_data(packet(sctp, forward))
    assert [sack.cumulative_tsn for sack in dtls.sacks()] == [FIRST_TSN + 2]


async def test_nothing_is_sent_once_the_association_has_ended() -> None:
    sctp, dtls = association()
    await sctp._handle_data(data(sctp, FIRST_TSN))
    sctp._association_state = RTCSctpTransport.State.CLOSED
    await asyncio.sleep(SACK_DELAY_S * 3)
    assert dtls.sacks() == []
