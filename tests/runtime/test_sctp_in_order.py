"""The short path for in-order DATA (``runtime.sctp_in_order``) against aiortc's own association:
fed the same chunks (fragments of several messages on two streams, in order, shuffled,
duplicated, ordered and unordered), both deliver the same messages in the same order and end in
the same state (cumulative TSN, TSNs out of order, duplicates, advertised window, what waits
for reassembly). Chunks go straight to ``_receive_data_chunk``; no network."""

from __future__ import annotations

import asyncio
import random
import types
from typing import Any

from aiortc.rtcsctptransport import (
    SCTP_DATA_FIRST_FRAG,
    SCTP_DATA_LAST_FRAG,
    SCTP_DATA_UNORDERED,
    WEBRTC_BINARY,
    DataChunk,
    RTCSctpTransport,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.sctp_delayed_ack import DelayedAckSctpTransport
from runtime.sctp_in_order import InOrderSctpTransport

FIRST_TSN = 2**32 - 5
"""Near the wrap of the 32-bit TSN: the comparisons must wrap too."""


class Sink:
    """Where an association's messages go, instead of a data channel."""

    def __init__(self) -> None:
        self.messages: list[tuple[int, int, bytes]] = []

    async def receive(self, stream_id: int, pp_id: int, data: bytes) -> None:
        self.messages.append((stream_id, pp_id, data))


def association(cls: type[RTCSctpTransport]) -> tuple[Any, Sink]:
    dtls: Any = types.SimpleNamespace(state="connected")  # no DTLS: chunks are fed directly
    sctp: Any = cls(dtls)
    sctp._last_received_tsn = (FIRST_TSN - 1) % 2**32
    sink = Sink()
    sctp._receive = sink.receive
    return sctp, sink


def fragments(messages: list[tuple[int, int, bool]]) -> list[DataChunk]:
    """The chunks of ``messages`` (stream id, number of fragments, ordered), numbered in order;
    each fragment's data names its message and position."""
    chunks = []
    tsn = FIRST_TSN
    seqs: dict[int, int] = {}
    for index, (stream_id, count, ordered) in enumerate(messages):
        stream_seq = seqs.get(stream_id, 0) if ordered else 0
        if ordered:
            seqs[stream_id] = (stream_seq + 1) % 2**16
        for part in range(count):
            chunk = DataChunk()
            chunk.flags = (0 if ordered else SCTP_DATA_UNORDERED) \
                | (SCTP_DATA_FIRST_FRAG if part == 0 else 0) \
                | (SCTP_DATA_LAST_FRAG if part == count - 1 else 0)
            chunk.tsn = tsn % 2**32
            chunk.stream_id = stream_id
            chunk.stream_seq = stream_seq
            chunk.protocol = WEBRTC_BINARY
            chunk.user_data = f"{index}:{part};".encode() * 20
            chunks.append(chunk)
            tsn += 1
    return chunks


def state(sctp: Any) -> tuple[object, ...]:
    streams = {stream_id: ([chunk.tsn for chunk in stream.reassembly], stream.sequence_number)
               for stream_id, stream in sctp._inbound_streams.items()}
    return (sctp._last_received_tsn, sorted(sctp._sack_misordered), sctp._sack_duplicates,
            sctp._advertised_rwnd, streams, sctp._sack_needed)


async def feed_both(chunks: list[DataChunk]) -> tuple[Sink, Sink, Any, Any]:
    aiortc_sctp, aiortc_sink = association(RTCSctpTransport)
    ours, our_sink = association(InOrderSctpTransport)
    for chunk in chunks:
        await aiortc_sctp._receive_data_chunk(chunk)
        await ours._receive_data_chunk(chunk)
        assert state(ours) == state(aiortc_sctp)
    return aiortc_sink, our_sink, aiortc_sctp, ours


def test_the_delayed_ack_association_takes_the_short_path() -> None:
    assert issubclass(DelayedAckSctpTransport, InOrderSctpTransport)


async def test_messages_in_order_are_delivered_whole_once_each() -> None:
    chunks = fragments([(1, 23, True), (1, 1, True), (3, 5, True), (1, 2, False)])
    aiortc_sink, our_sink, _, ours = await feed_both(chunks)
    assert our_sink.messages == aiortc_sink.messages
    assert [data.split(b";")[0] for _, _, data in our_sink.messages] == [
        b"0:0", b"1:0", b"2:0", b"3:0"]
    assert len(our_sink.messages[0][2]) == len(b"0:0;" * 20) * 10 + len(b"0:10;" * 20) * 13
    assert not any(stream.reassembly for stream in ours._inbound_streams.values())


async def test_a_gap_and_a_duplicate_go_through_aiortcs_path_and_end_the_same() -> None:
    chunks = fragments([(1, 4, True), (1, 3, True)])
    reordered = [chunks[0], chunks[2], chunks[1], chunks[1], chunks[3], chunks[4], chunks[6],
                 chunks[5], chunks[5]]
    aiortc_sink, our_sink, _, _ = await feed_both(reordered)
    assert our_sink.messages == aiortc_sink.messages
    assert len(our_sink.messages) == 2


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_any_arrival_order_delivers_what_aiortc_delivers(data: st.DataObject) -> None:
    messages = data.draw(st.lists(st.tuples(st.sampled_from([1, 3]), st.integers(1, 6),
                                            st.booleans()), min_size=1, max_size=6))
    chunks = fragments(messages)
    arrival = list(chunks)
    order = data.draw(st.sampled_from(["in order", "a few swapped", "shuffled"]))
    rng = random.Random(data.draw(st.integers(0, 2**16)))
    if order == "shuffled":
        rng.shuffle(arrival)
    elif order == "a few swapped" and len(arrival) > 1:
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(len(arrival) - 1)
            arrival[i], arrival[i + 1] = arrival[i + 1], arrival[i]
    for chunk in data.draw(st.lists(st.sampled_from(chunks), max_size=4)):  # sent again
        arrival.insert(rng.randrange(len(arrival) + 1), chunk)
    aiortc_sink, our_sink, _, _ = asyncio.run(feed_both(arrival))
    assert our_sink.messages == aiortc_sink.messages
    if order == "in order":
        assert len(our_sink.messages) == len(messages)
