"""The uplink against an in-process van: a receiver-like actor on a second actor system, reached
over real links on real WebRTC data channels (two aiortc peer connections on 127.0.0.1) that the
real ``VanDialer`` dials; only signaling is replaced (``FakeVan.negotiate`` hands the
descriptions over directly and returns the link key). Envelopes are opened with the van's key.

Every wait is bounded; nothing asserts how fast anything happened.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import io
import logging
import random
import secrets
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from actors.delivery_messages import (
    MAX_BATCH_BYTES,
    RECEIVER_ACTOR,
    BatchReceipt,
    Deliver,
    DeliverBatch,
    EnvelopeOutcome,
    Outcome,
    Receipt,
    Resume,
    ResumePoint,
)
from actors.delivery_trace import TRACE_LOG, DeliveryMark, Stage
from actors.unit.detector import StreamEnded
from actors.unit.event_body import (
    AlertBody,
    CameraHealth,
    EventBody,
    HealthBody,
    alert_body,
    decode_body,
)
from actors.unit.match_alert import MatchAlert
from actors.unit.outbox import Outbox, OutboxConfig, PendingEnvelope
from actors.unit.signaling_client import SignalingClientConfig, SignalingFailed
from actors.unit.uplink import (
    Uplink,
    UplinkConfig,
    UplinkStatistics,
    VanAnswerRefused,
    batch_answers,
)
from actors.unit.van_dialer import DialerConfig, VanDialer
from guards.config_checks import ConfigError
from runtime import ActorSystem, Codec, HandshakeRefused, LinkConfig, LinkKeys, SystemConfig
from runtime.actor import Actor
from runtime.cell import ActorCell
from runtime.datachannel import DataChannelFrameChannel, DataOnlyPeerConnection, open_link
from runtime.link import Link
from runtime.mailbox import MailboxConfig
from runtime.ref import ActorRef
from secure.envelope import EventKind, open_envelope
from secure.hybrid_signature import VerifyKey
from secure.node_keys import NodeKeys, NodeRole
from tests.actors.conftest import FAST_ROOT
from tests.actors.support import WAIT_S, eventually
from tests.runtime.helpers import Inbox, Recorder
from tests.secure.test_signing_process import children_of_this_process

TEST_S = 90.0
"""Upper bound of one test."""
UNIT_ID = "unit-1"
VAN_ID = "van-1"
UNIT_KEYS = NodeKeys.generate(NodeRole.UNIT, UNIT_ID)
VAN_KEYS = NodeKeys.generate(NodeRole.VAN, VAN_ID)
SIGNALING = SignalingClientConfig("https://127.0.0.1:9", VAN_KEYS.public(), bytes(32))
"""Never contacted: ``FakeVan.negotiate`` replaces signaling."""
FAST_DIAL = DialerConfig(initial_backoff_s=0.01, max_backoff_s=0.05, open_timeout_s=WAIT_S)
VAN_LINKS = {RECEIVER_ACTOR: [Resume, DeliverBatch]}


pytestmark = pytest.mark.usefixtures("loopback_host_candidates")


def jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (32, 40), (120, 90, 60)).save(out, format="JPEG", quality=80)
    return out.getvalue()


CROP = jpeg()


def match_alert(index: int, crop: bytes = CROP) -> MatchAlert:
    return MatchAlert(alert_id=f"{UNIT_ID}/cam0/{index}", subject=f"subject-{index % 3}",
                      score=0.71, threshold=0.6, track=index, camera="cam0", t_s=index / 25,
                      captured_at=1_700_000_000.0 + index, frame_index=index,
                      box=(10.0, 20.0, 42.0, 60.0), hits=3, crop_jpeg=crop)


def health(unit_time: float = 1_700_000_100.0, **changes: Any) -> HealthBody:
    report = HealthBody(unit_time=unit_time, uptime_s=100.0,
                        cameras=(CameraHealth("cam0", 25.0, 2500),), faces_seen=40,
                        faces_rejected=4, alerts=3, outbox_depth=0, outbox_oldest_age_s=None,
                        outbox_full=False, watchlist_version=0, model_ids=("blazeface",))
    return dataclasses.replace(report, **changes)


def unit_signer(unit_id: str, key_id: bytes) -> VerifyKey | None:
    key = UNIT_KEYS.signing.verify_key
    return key if unit_id == UNIT_ID and key_id == key.key_id else None


def opened(sealed: bytes) -> tuple[int, EventKind, EventBody]:
    """Open an envelope with the van's key: its number, kind and body."""
    assert VAN_KEYS.encryption is not None
    envelope = open_envelope(sealed, signers=unit_signer, van_key=VAN_KEYS.encryption)
    return (envelope.header.sequence, envelope.header.kind, decode_body(envelope.body))


# --- the van: a receiver-like actor and the links to it ---------------------------------------

Answer = Callable[[Resume | DeliverBatch, Any], Any]
"""Replaces the receiver's answer (message, the real answer) -> what it answers instead."""


@dataclass
class VanBook:
    """What the fake van stored and how it behaves; outlives links and receiver restarts."""

    stored: dict[int, EventBody] = field(default_factory=dict)
    """Bodies by sequence number, each stored once."""
    kinds: dict[int, EventKind] = field(default_factory=dict)
    arrivals: list[tuple[int, int]] = field(default_factory=list)
    """(link number, sequence number) of every envelope that arrived, in arrival order."""
    mark: int = 0
    """The highest contiguous number stored or skipped."""
    resumes: list[Resume] = field(default_factory=list)
    resume_marks: list[int] = field(default_factory=list)
    """The mark each ``Resume`` was answered with."""
    deliveries: int = 0
    """Envelopes that arrived (in every batch)."""
    batches: list[list[int]] = field(default_factory=list)
    """The sequence numbers of each batch that arrived, in arrival order."""
    refuse: set[int] = field(default_factory=set)
    """Numbers refused once each."""
    hold_from: int | None = None
    """Deliveries from this count on wait for ``gate``."""
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    holding: int = 0
    answers: collections.deque[Answer] = field(default_factory=collections.deque)
    """Each replaces one answer, first come first used."""
    link_number: int = 0
    envelopes: dict[int, bytes] = field(default_factory=dict)
    """Every envelope that arrived, as it arrived, by sequence number."""

    def skip_below(self, first_pending: int) -> None:
        self.mark = max(self.mark, first_pending - 1)
        while self.mark + 1 in self.stored:
            self.mark += 1

    def deliver(self, envelope: bytes, first_pending: int) -> Receipt:
        seq, kind, body = opened(envelope)
        self.arrivals.append((self.link_number, seq))
        self.envelopes[seq] = envelope
        if seq in self.refuse:
            self.refuse.discard(seq)
            return Receipt(seq, Outcome.REFUSED, self.mark, "bad_body: refused by the test")
        self.skip_below(min(first_pending, seq))
        if seq <= self.mark or seq in self.stored:
            return Receipt(seq, Outcome.DUPLICATE, self.mark)
        self.stored[seq] = body
        self.kinds[seq] = kind
        self.skip_below(self.mark + 1)
        return Receipt(seq, Outcome.STORED, self.mark)

    def alerts(self) -> list[AlertBody]:
        """Stored alerts in sequence order."""
        return [body for _, body in sorted(self.stored.items()) if isinstance(body, AlertBody)]


class VanReceiver(Actor[Resume | DeliverBatch]):
    """Answers like the van's receiver, by the book."""

    def __init__(self, book: VanBook) -> None:
        self.book = book

    async def receive(self, message: Resume | DeliverBatch) -> Any:
        book = self.book
        answer: Any
        if isinstance(message, Resume):
            book.resumes.append(message)
            book.skip_below(message.first_pending)
            book.resume_marks.append(book.mark)
            answer = ResumePoint(book.mark)
        else:
            receipts: list[Receipt] = []
            book.batches.append([opened(envelope)[0] for envelope in message.envelopes])
            held = False
            for envelope in message.envelopes:
                if not held and book.hold_from is not None and book.deliveries >= book.hold_from:
                    held = True
                    book.holding += 1
                    await book.gate.wait()
                book.deliveries += 1
                receipts.append(book.deliver(envelope, message.first_pending))
            answer = BatchReceipt(tuple(EnvelopeOutcome(receipt.seq, receipt.outcome,
                                                        receipt.reason)
                                        for receipt in receipts), book.mark)
        if book.answers:
            answer = book.answers.popleft()(message, answer)
        return answer


class FakeVan:
    """The van's end of each connection: an answering peer connection and a link to
    ``receiver``. ``negotiate`` stands in for signaling (``VanDialer(negotiate=...)``);
    ``accept`` is the real signaling service's ``Connected``."""

    def __init__(self, system: ActorSystem, book: VanBook) -> None:
        self.system = system
        self.book = book
        self.accepting = True
        """False: signaling fails as if the van were unreachable."""
        self.wrong_key = False
        """True: the van proves another key than the one signaling returned."""
        self.unit_peer_connections: list[DataOnlyPeerConnection] = []
        """Every peer connection the dialer signalled with."""
        self.peer_connections: list[DataOnlyPeerConnection] = []
        self.channels: list[DataChannelFrameChannel] = []
        self.links: list[Link] = []
        self.refused: list[Exception] = []
        """Connections whose channel never opened or whose handshake failed, why."""
        self._tasks: set[asyncio.Task[None]] = set()

    async def negotiate(self, unit: NodeKeys, config: SignalingClientConfig,
                        peer_connection: DataOnlyPeerConnection) -> bytes:
        assert unit.node_id == UNIT_ID
        assert config.van.node_id == VAN_ID
        self.unit_peer_connections.append(peer_connection)
        if not self.accepting:
            raise SignalingFailed("unreachable", "the test van is away")
        key = secrets.token_bytes(32)
        answerer = DataOnlyPeerConnection()
        self.accept(unit.node_id, answerer, secrets.token_bytes(32) if self.wrong_key else key)
        await peer_connection.setLocalDescription(await peer_connection.createOffer())
        await answerer.setRemoteDescription(peer_connection.localDescription)
        await answerer.setLocalDescription(await answerer.createAnswer())
        await peer_connection.setRemoteDescription(answerer.localDescription)
        return key

    def accept(self, unit_id: str, answerer: DataOnlyPeerConnection, key: bytes) -> None:
        """Serve ``answerer``'s link channel, once it comes, with ``key``."""
        assert unit_id == UNIT_ID
        self.peer_connections.append(answerer)

        @answerer.on("datachannel")
        def wrap(channel: Any) -> None:
            wrapped = DataChannelFrameChannel(channel, answerer, 1 << 20)
            self.channels.append(wrapped)
            task = asyncio.create_task(self._serve(wrapped, key))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _serve(self, channel: DataChannelFrameChannel, key: bytes) -> None:
        config = LinkConfig(keys=LinkKeys({UNIT_ID: key}, None, "test"), exposed=VAN_LINKS)
        try:
            await channel.wait_open(WAIT_S)
            link = await open_link(self.system, channel, config, Codec(), initiator=False)
        except (ConnectionError, HandshakeRefused) as exc:  # the unit went, or proved no key
            self.refused.append(exc)
            return
        self.links.append(link)
        self.book.link_number = len(self.links)
        await link.run()

    async def cut(self) -> None:
        """The newest connection is lost (the van side closes it)."""
        await self.channels[-1].close()

    async def close(self) -> None:
        """Close every connection first (the links end by themselves), then the tasks: a
        cancelled aiortc close would make every later close of it fail."""
        for channel in self.channels:
            await channel.close()
        for peer_connection in self.peer_connections:
            await peer_connection.close()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=WAIT_S)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


@dataclass
class Net:
    unit: ActorSystem
    van: ActorSystem
    book: VanBook
    fake: FakeVan
    dialer: VanDialer
    outbox: Outbox
    uplink: ActorRef[Any]
    statistics: UplinkStatistics
    copies: Inbox
    """What ``local_copy`` received."""

    def cell(self) -> ActorCell[Any]:
        return next(cell for cell in self.unit.cells() if cell.name == "uplink")

    def depth(self) -> int:
        return self.outbox.depth()

    def waiting(self) -> list[tuple[int, EventKind, EventBody]]:
        """The outbox's envelopes, opened with the van's key."""
        return [opened(envelope.sealed) for envelope in self.outbox.pending()]


@asynccontextmanager
async def running(tmp_path: Path, *, config: UplinkConfig | None = None,
                  outbox: OutboxConfig | None = None, accepting: bool = True,
                  book: VanBook | None = None) -> AsyncIterator[Net]:
    async with asyncio.timeout(TEST_S):
        unit = ActorSystem(SystemConfig(name=UNIT_ID, root=FAST_ROOT, blocking_workers=2,
                                        shutdown_drain_s=0.5))
        van = ActorSystem(SystemConfig(name=VAN_ID, shutdown_drain_s=0.5))
        book = book or VanBook()
        await van.spawn(RECEIVER_ACTOR, lambda: VanReceiver(book))
        fake = FakeVan(van, book)
        fake.accepting = accepting
        dialer = VanDialer(unit, UNIT_KEYS, SIGNALING, Codec(), FAST_DIAL,
                           rng=random.Random(7), negotiate=fake.negotiate)
        opened_outbox = Outbox.open(tmp_path / "outbox.db", outbox)
        copies = Inbox()
        copy = await unit.spawn("copy", lambda: Recorder(copies))
        statistics = UplinkStatistics()
        uplink = await unit.spawn("uplink", lambda: Uplink(
            UNIT_KEYS, VAN_KEYS.public(), opened_outbox, dialer, config, local_copy=copy,
            statistics=statistics), MailboxConfig(capacity=64))
        dialer.start()
        try:
            yield Net(unit, van, book, fake, dialer, opened_outbox, uplink, statistics, copies)
        finally:
            await uplink.stop()
            await dialer.stop()
            await fake.close()
            await unit.stop()
            await van.stop()
            opened_outbox.close()


def alert_ids(bodies: list[AlertBody]) -> list[str]:
    return [body.event_id for body in bodies]


# --- delivery ---------------------------------------------------------------------------------


async def test_every_alert_is_delivered_once_in_order_and_acknowledged_rows_are_deleted(
        tmp_path: Path) -> None:
    async with running(tmp_path) as net:
        alerts = [match_alert(i) for i in range(30)]
        await net.uplink.tell(health(unit_time=1_700_000_000.0))
        for alert in alerts:
            await net.uplink.tell(alert)
        await net.uplink.tell(health())
        await eventually(lambda: len(net.book.stored) == 32 and net.depth() == 0
                         and net.statistics.delivered == 32)
        book = net.book
        assert alert_ids(book.alerts()) == [alert.alert_id for alert in alerts]
        assert book.alerts() == [alert_body(alert, 0) for alert in alerts]
        seqs = sorted(book.stored)
        assert seqs == list(range(seqs[0], seqs[0] + 32))  # increasing, no gap, once each
        assert [seq for _, seq in book.arrivals] == seqs  # one link, sent in order, no resend
        healths = [seq for seq in seqs if isinstance(book.stored[seq], HealthBody)]
        assert healths == [seqs[0], seqs[-1]]
        assert {book.kinds[seq] for seq in healths} == {EventKind.HEALTH}
        assert {book.kinds[seq] for seq in seqs if seq not in healths} == {EventKind.ALERT}
        # local_copy got exactly what was sealed, in order, and nothing else
        await eventually(lambda: len(net.copies.items) >= 30)
        assert net.copies.items == book.alerts()
        statistics = net.statistics
        assert (statistics.alerts_sealed, statistics.health_sealed) == (30, 2)
        assert (statistics.delivered, statistics.duplicates, statistics.refused) == (32, 0, 0)
        assert statistics.acknowledged_up_to == seqs[-1]
        assert statistics.connected
        assert [resume.first_pending for resume in book.resumes] == [seqs[0]]
        assert net.cell().metrics.failures == 0


async def test_alerts_sealed_before_any_link_are_delivered_when_it_comes(tmp_path: Path) -> None:
    async with running(tmp_path, accepting=False) as net:
        alerts = [match_alert(i) for i in range(5)]
        for alert in alerts:
            await net.uplink.tell(alert)
        await eventually(lambda: net.statistics.alerts_sealed == 5 and len(net.copies.items) == 5)
        assert not net.statistics.connected
        waiting = net.waiting()
        assert [body for _, _, body in waiting] == [alert_body(a, 0) for a in alerts]
        assert [seq for seq, _, _ in waiting] == sorted(seq for seq, _, _ in waiting)
        assert net.copies.items == [body for _, _, body in waiting]
        net.fake.accepting = True
        await eventually(lambda: net.depth() == 0 and len(net.book.stored) == 5)
        assert alert_ids(net.book.alerts()) == [alert.alert_id for alert in alerts]


async def test_a_link_lost_mid_burst_resumes_from_the_outbox_and_loses_nothing(
        tmp_path: Path) -> None:
    book = VanBook(hold_from=10)
    async with running(tmp_path, book=book) as net:
        alerts = [match_alert(i) for i in range(40)]
        for alert in alerts:
            await net.uplink.tell(alert)
        await eventually(lambda: book.holding == 1)  # the 11th delivery waits at the van
        assert len(book.stored) == 10
        await net.fake.cut()
        book.gate.set()
        await eventually(lambda: net.depth() == 0 and len(book.stored) == 40)
        assert alert_ids(book.alerts()) == [alert.alert_id for alert in alerts]
        assert len(net.fake.links) >= 2
        assert len(book.resumes) >= 2
        for link_number in {number for number, _ in book.arrivals}:
            sent = [seq for number, seq in book.arrivals if number == link_number]
            assert sent == sorted(sent)  # in order on each link
        # the second link started with the lowest number the van had not acknowledged
        second = [seq for number, seq in book.arrivals if number == 2]
        assert second[0] == max(book.resumes[1].first_pending, book.resume_marks[1] + 1)
        # receipts lost with the link are made up for by the van's mark
        await eventually(lambda: net.statistics.acknowledged_up_to == max(book.stored))
        assert net.cell().metrics.failures == 0


async def test_a_refused_envelope_stays_and_is_sent_again_after_the_next_reconnect(
        tmp_path: Path) -> None:
    async with running(tmp_path) as net:
        first = net.outbox.first_pending()
        net.book.refuse = {first + 1}
        for index in range(3):
            await net.uplink.tell(match_alert(index))
        await eventually(lambda: net.statistics.refused == 1 and len(net.book.stored) == 2)
        await eventually(lambda: net.depth() == 1)  # only the refused one is kept
        assert [seq for seq, _, _ in net.waiting()] == [first + 1]
        assert net.statistics.last_refusal == "bad_body: refused by the test"
        await net.uplink.tell(match_alert(3))
        await eventually(lambda: len(net.book.stored) == 3 and net.depth() == 1)
        # not sent again on the same link: it arrived once, the later alert after it
        assert [seq for _, seq in net.book.arrivals] == [first, first + 1, first + 2, first + 3]
        await net.fake.cut()
        await eventually(lambda: len(net.book.stored) == 4 and net.depth() == 0)
        assert alert_ids(net.book.alerts()) == [match_alert(i).alert_id for i in range(4)]
        assert [seq for number, seq in net.book.arrivals if number == 2] == [first + 1]


# --- batches ----------------------------------------------------------------------------------


async def test_the_first_envelope_goes_alone_and_what_queued_meanwhile_goes_as_one_batch(
        tmp_path: Path) -> None:
    book = VanBook(hold_from=0)  # the first batch waits at the van until the gate opens
    config = UplinkConfig(batches_in_flight=1)
    async with running(tmp_path, book=book, config=config) as net:
        first = net.outbox.first_pending()
        await net.uplink.tell(match_alert(0))
        await eventually(lambda: book.holding == 1)
        assert book.batches == [[first]]  # sent at once, alone: no wait to form a batch
        for index in range(1, 6):
            await net.uplink.tell(match_alert(index))
        await eventually(lambda: net.statistics.alerts_sealed == 6)
        book.gate.set()
        await eventually(lambda: net.depth() == 0 and len(book.stored) == 6)
        assert book.batches == [[first], list(range(first + 1, first + 6))]
        assert alert_ids(book.alerts()) == [match_alert(i).alert_id for i in range(6)]
        assert net.statistics.delivered == 6


@pytest.mark.parametrize(("changes", "sizes"), [
    ({"batches_in_flight": 1, "batch_envelopes": 3}, [1, 3, 3, 1]),
    ({"batches_in_flight": 1, "batch_bytes": 1}, [1] * 8),  # larger than batch_bytes: alone
    ({"batches_in_flight": 2}, [1, 1, 6]),
    ({"batches_in_flight": 2, "batch_envelopes": 4}, [1, 1, 4, 2]),
    ({"batches_in_flight": 3, "batch_envelopes": 2}, [1, 1, 1, 2, 2, 1]),
])
async def test_batches_keep_to_their_bounds(tmp_path: Path, changes: dict[str, Any],
                                            sizes: list[int]) -> None:
    book = VanBook(hold_from=0)
    config = UplinkConfig(**changes)
    async with running(tmp_path, book=book, config=config) as net:
        first = net.outbox.first_pending()
        receiver = net.van.lookup(RECEIVER_ACTOR)
        assert receiver is not None
        held = config.batches_in_flight
        # each of the first `held` alerts goes at once, alone: the first waits at the van,
        # the next ones in its mailbox
        for index in range(held):
            await net.uplink.tell(match_alert(index))
            await eventually(_held_with_queued(book, receiver, index))
        for index in range(held, 8):
            await net.uplink.tell(match_alert(index))
        await eventually(lambda: net.statistics.alerts_sealed == 8)
        book.gate.set()
        await eventually(lambda: net.depth() == 0 and len(book.stored) == 8)
        assert [len(batch) for batch in book.batches] == sizes
        assert [seq for batch in book.batches for seq in batch] == list(range(first, first + 8))


def _held_with_queued(book: VanBook, receiver: ActorRef[Any], queued: int
                      ) -> Callable[[], bool]:
    """The van holds one batch and has ``queued`` more in its receiver's mailbox."""
    return lambda: book.holding == 1 and receiver.statistics().depth == queued


async def test_a_batch_the_van_refuses_whole_stays_and_goes_again_after_a_reconnect(
        tmp_path: Path) -> None:
    book = VanBook(hold_from=0)
    config = UplinkConfig(batches_in_flight=1)
    async with running(tmp_path, book=book, config=config) as net:
        first = net.outbox.first_pending()
        await net.uplink.tell(match_alert(0))
        await eventually(lambda: book.holding == 1)
        for index in range(1, 4):
            await net.uplink.tell(match_alert(index))
        await eventually(lambda: net.statistics.alerts_sealed == 4)
        book.answers.append(lambda message, answer: answer)  # the first batch: as it is

        def refused_whole(message: Any, answer: Any) -> Any:
            for seq in message_seqs(message):
                book.stored.pop(seq, None)  # (the fake stored them: undone)
            book.mark = first
            return BatchReceipt((EnvelopeOutcome(0, Outcome.REFUSED,
                                                 "batch_too_large: refused by the test"),),
                                first)

        book.answers.append(refused_whole)
        book.gate.set()
        await eventually(lambda: net.statistics.refused == 3)
        assert sorted(book.stored) == [first]
        await eventually(lambda: net.depth() == 3)  # each of the batch kept
        assert net.statistics.last_refusal == "batch_too_large: refused by the test"
        assert net.statistics.bad_answers == 0
        await net.fake.cut()
        await eventually(lambda: len(book.stored) == 4 and net.depth() == 0)
        assert alert_ids(book.alerts()) == [match_alert(i).alert_id for i in range(4)]


def message_seqs(message: DeliverBatch) -> list[int]:
    return [opened(envelope)[0] for envelope in message.envelopes]


def test_a_batch_receipt_is_read_as_one_receipt_per_envelope() -> None:
    batch = [PendingEnvelope(seq, "alert", b"x") for seq in (4, 5, 6)]
    answer = BatchReceipt((EnvelopeOutcome(4, Outcome.STORED), EnvelopeOutcome(0, Outcome.REFUSED,
                                                                                "malformed: x"),
                           EnvelopeOutcome(6, Outcome.DUPLICATE)), 4)
    assert batch_answers(batch, answer) == [
        (4, Receipt(4, Outcome.STORED, 4)), (5, Receipt(0, Outcome.REFUSED, 4, "malformed: x")),
        (6, Receipt(6, Outcome.DUPLICATE, 4))]
    whole = BatchReceipt((EnvelopeOutcome(0, Outcome.REFUSED, "batch_too_large: x"),), 3)
    assert batch_answers(batch, whole) == [
        (seq, Receipt(0, Outcome.REFUSED, 3, "batch_too_large: x")) for seq in (4, 5, 6)]
    for wrong in (Receipt(4, Outcome.STORED, 4), BatchReceipt(answer.outcomes[:2], 4),
                  BatchReceipt((), 4), BatchReceipt((EnvelopeOutcome(0, Outcome.STORED),), 4)):
        with pytest.raises(VanAnswerRefused):
            batch_answers(batch, wrong)


async def test_a_van_that_stops_answering_is_redialled_and_the_envelope_sent_again(
        tmp_path: Path) -> None:
    book = VanBook(hold_from=1)
    config = UplinkConfig(receipt_timeout_s=0.5)
    async with running(tmp_path, config=config, book=book) as net:
        for index in range(3):
            await net.uplink.tell(match_alert(index))
        await eventually(lambda: len(net.fake.links) >= 2)  # no receipt: dropped, redialled
        book.hold_from = None
        book.gate.set()
        await eventually(lambda: net.depth() == 0 and len(book.stored) == 3)
        assert alert_ids(book.alerts()) == [match_alert(i).alert_id for i in range(3)]
        assert net.cell().metrics.failures == 0


class OutboxCalls:
    """Wraps an outbox's methods to see what the uplink asks of it (the calls go through)."""

    def __init__(self, outbox: Outbox, monkeypatch: pytest.MonkeyPatch) -> None:
        self.stored: dict[int, bytes] = {}
        """What each append stored, by sequence number."""
        self.pages = 0
        self.acknowledgements = 0
        self.stores: list[int] = []
        """How many envelopes sealed ahead each ``append_sealed`` stored."""
        append, pending, acknowledge = outbox.append, outbox.pending, outbox.acknowledge
        append_sealed = outbox.append_sealed

        def appending(kind: Any, seal: Callable[[int], bytes]) -> int:
            def sealing(seq: int) -> bytes:
                self.stored[seq] = seal(seq)
                return self.stored[seq]
            return append(kind, sealing)

        def storing(envelopes: list[PendingEnvelope]) -> None:
            append_sealed(envelopes)
            self.stores.append(len(envelopes))
            self.stored.update((envelope.seq, envelope.sealed) for envelope in envelopes)

        def paging(*args: Any) -> Any:
            self.pages += 1
            return pending(*args)

        def acknowledging(up_to_seq: int) -> int:
            self.acknowledgements += 1
            return acknowledge(up_to_seq)

        monkeypatch.setattr(outbox, "append", appending)
        monkeypatch.setattr(outbox, "append_sealed", storing)
        monkeypatch.setattr(outbox, "pending", paging)
        monkeypatch.setattr(outbox, "acknowledge", acknowledging)


async def test_envelopes_sealed_on_a_link_go_from_memory_exactly_as_stored(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with running(tmp_path) as net:
        await eventually(lambda: net.statistics.connected)
        calls = OutboxCalls(net.outbox, monkeypatch)
        pages = calls.pages
        for index in range(12):
            await net.uplink.tell(match_alert(index))
        await eventually(lambda: len(net.book.stored) == 12 and net.depth() == 0)
        assert calls.pages == pages  # none of them was read back from the outbox
        assert net.book.envelopes == calls.stored  # each went exactly as it was stored
        assert alert_ids(net.book.alerts()) == [match_alert(i).alert_id for i in range(12)]


async def test_envelopes_the_sender_did_not_take_from_memory_are_read_from_the_outbox(
        tmp_path: Path) -> None:
    book = VanBook(hold_from=0)  # nothing is answered until the gate opens
    config = UplinkConfig(window=2)
    async with running(tmp_path, config=config, book=book) as net:
        alerts = [match_alert(i) for i in range(8)]  # more than the window keeps in memory
        for alert in alerts:
            await net.uplink.tell(alert)
        await eventually(lambda: net.statistics.alerts_sealed == 8 and book.holding >= 1)
        book.gate.set()
        await eventually(lambda: len(book.stored) == 8 and net.depth() == 0)
        assert alert_ids(book.alerts()) == [alert.alert_id for alert in alerts]
        assert [seq for _, seq in book.arrivals] == sorted(book.stored)  # in order, once


async def test_a_bursts_receipts_are_applied_to_the_outbox_together_after_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = UplinkConfig(ack_delay_s=60.0)  # only "nothing in flight, nothing sealing" counts
    async with running(tmp_path, config=config) as net:
        await eventually(lambda: net.statistics.connected)  # its Resume acknowledged already
        calls = OutboxCalls(net.outbox, monkeypatch)
        for index in range(10):
            await net.uplink.tell(match_alert(index))
        await eventually(lambda: net.statistics.delivered == 10 and net.depth() == 0)
        assert calls.acknowledgements == 1  # ten receipts, one transaction
        assert net.statistics.acknowledged_up_to == max(net.book.stored)


async def test_receipts_are_applied_within_the_ack_delay_while_others_stay_in_flight(
        tmp_path: Path) -> None:
    book = VanBook(hold_from=2)  # the third delivery is never answered
    # one envelope per batch, three batches in flight: the third's ask stays unanswered
    config = UplinkConfig(ack_delay_s=0.2, batch_envelopes=1, batches_in_flight=3)
    async with running(tmp_path, config=config, book=book) as net:
        for index in range(3):
            await net.uplink.tell(match_alert(index))
        await eventually(lambda: len(book.stored) == 2 and book.holding == 1)
        await eventually(lambda: net.depth() == 1)  # the two answered are deleted meanwhile
        assert [seq for seq, _, _ in net.waiting()] == [max(book.stored) + 1]
        book.gate.set()
        await eventually(lambda: net.depth() == 0 and len(book.stored) == 3)


async def test_each_envelope_is_marked_sealed_sent_and_receipted_in_order(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=TRACE_LOG.name)
    async with running(tmp_path) as net:
        for index in range(4):
            await net.uplink.tell(match_alert(index))
        await eventually(lambda: net.statistics.delivered == 4)
    marks = [record.trace for record in caplog.records if hasattr(record, "trace")]
    assert all(isinstance(mark, DeliveryMark) and mark.unit == UNIT_ID for mark in marks)
    for seq in net.book.stored:
        stages = [mark.stage for mark in marks if mark.seq == seq]
        assert stages == [Stage.SEALED, Stage.SENT, Stage.RECEIPT]
        times = [mark.at for mark in marks if mark.seq == seq]
        assert times == sorted(times)


# --- sealing ahead ----------------------------------------------------------------------------


class HeldStore:
    """Holds the outbox's first store of envelopes sealed ahead until ``release`` (bounded), so
    the uplink seals the next ones meanwhile; every store goes through."""

    def __init__(self, outbox: Outbox, monkeypatch: pytest.MonkeyPatch) -> None:
        self.stores: list[list[int]] = []
        """The numbers each store was given, in order."""
        self._released = threading.Event()
        append_sealed = outbox.append_sealed

        def storing(envelopes: list[PendingEnvelope]) -> None:
            if not self.stores:
                self._released.wait(WAIT_S)  # on a pool thread
            self.stores.append([envelope.seq for envelope in envelopes])
            append_sealed(envelopes)

        monkeypatch.setattr(outbox, "append_sealed", storing)

    def release(self) -> None:
        self._released.set()


async def test_alerts_are_sealed_while_the_outbox_stores_and_stored_together_in_order(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with running(tmp_path) as net:
        await eventually(lambda: net.statistics.connected)
        held = HeldStore(net.outbox, monkeypatch)
        for index in range(5):
            await net.uplink.tell(match_alert(index))
        # every alert was taken: the first is being stored, the next three were sealed
        # meanwhile, the fifth waits for room (MAX_SEALED_AHEAD)
        await eventually(lambda: net.uplink.statistics().depth == 0 and len(held.stores) == 0)
        assert net.statistics.alerts_sealed == 0  # nothing counts as sealed before it is stored
        assert net.copies.items == []
        held.release()
        await eventually(lambda: len(net.book.stored) == 5 and net.depth() == 0)
        assert held.stores[:2] == [[held.stores[0][0]], [held.stores[0][0] + i for i in (1, 2, 3)]]
        numbers = [seq for store in held.stores for seq in store]
        assert numbers == sorted(net.book.stored)  # stored once each, in order, no gap
        assert alert_ids(net.book.alerts()) == [match_alert(i).alert_id for i in range(5)]
        await eventually(lambda: len(net.copies.items) == 5)
        assert net.copies.items == net.book.alerts()
        assert net.statistics.alerts_sealed == 5


async def test_a_store_the_outbox_refuses_is_appended_again_one_by_one_in_order(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = UplinkConfig(held_alerts=8, held_retry_s=0.2)
    async with running(tmp_path, config=config, outbox=FOUR_ALERTS, accepting=False) as net:
        for index in range(3):
            await net.uplink.tell(match_alert(index))
        await eventually(lambda: net.statistics.alerts_sealed == 3)
        held = HeldStore(net.outbox, monkeypatch)
        # the fourth alert fills the outbox while the fifth and a report are sealed ahead:
        # their store is refused (the fifth does not fit), the report is sealed again under
        # the next number and stored, the fifth held
        for message in (match_alert(3), match_alert(4), health()):
            await net.uplink.tell(message)
        await eventually(lambda: net.uplink.statistics().depth == 0)
        held.release()
        await eventually(lambda: net.statistics.held_alerts == 1
                         and net.statistics.health_sealed == 1)
        assert net.statistics.alerts_sealed == 4
        assert net.statistics.outbox_full
        waiting = net.waiting()
        assert [kind for _, kind, _ in waiting] == [EventKind.ALERT] * 4 + [EventKind.HEALTH]
        numbers = [seq for seq, _, _ in waiting]
        assert numbers == list(range(numbers[0], numbers[0] + 5))  # no number lost or reused
        net.fake.accepting = True
        await eventually(lambda: len(net.book.alerts()) == 5 and net.depth() == 0)
        assert alert_ids(net.book.alerts()) == [match_alert(i).alert_id for i in range(5)]
        await eventually(lambda: len(net.copies.items) == 5)
        assert net.copies.items == net.book.alerts()
        assert net.cell().metrics.failures == 0


async def test_what_was_sealed_ahead_is_stored_before_the_uplink_stops(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with running(tmp_path, accepting=False) as net:
        held = HeldStore(net.outbox, monkeypatch)
        for index in range(4):
            await net.uplink.tell(match_alert(index))
        await eventually(lambda: net.uplink.statistics().depth == 0)
        stopping = asyncio.create_task(net.uplink.stop(drain_s=WAIT_S))
        await asyncio.sleep(0.1)
        assert not stopping.done()  # it waits for the store
        held.release()
        await asyncio.wait_for(stopping, WAIT_S)
        assert [body for _, _, body in net.waiting()] == [alert_body(match_alert(i), 0)
                                                         for i in range(4)]
        assert net.statistics.alerts_sealed == 4


@pytest.mark.parametrize("in_process", [False, True])
async def test_the_uplink_signs_in_a_child_it_starts_and_ends_unless_told_not_to(
        tmp_path: Path, in_process: bool) -> None:
    config = UplinkConfig(signing_process=not in_process)
    async with running(tmp_path, config=config) as net:
        await eventually(lambda: net.statistics.connected)
        assert len(children_of_this_process()) == (0 if in_process else 1)
        for index in range(3):
            await net.uplink.tell(match_alert(index))
        await eventually(lambda: len(net.book.stored) == 3)  # each envelope's signature held
    assert children_of_this_process() == []


# --- a full outbox ----------------------------------------------------------------------------

FOUR_ALERTS = OutboxConfig(max_envelopes=6, max_bytes=1 << 20, health_reserve_envelopes=2,
                           health_reserve_bytes=64 * 1024)
"""Alerts fill it at 4; two more places for health reports."""


async def test_a_full_outbox_holds_alerts_raises_the_alarm_and_drains_in_order(
        tmp_path: Path) -> None:
    config = UplinkConfig(held_alerts=8, held_retry_s=0.2)
    async with running(tmp_path, config=config, outbox=FOUR_ALERTS, accepting=False) as net:
        alerts = [match_alert(i) for i in range(7)]
        for alert in alerts:
            await net.uplink.tell(alert)
        await eventually(lambda: net.statistics.held_alerts == 3)
        assert net.statistics.outbox_full
        assert net.statistics.alerts_sealed == 4
        await eventually(lambda: len(net.copies.items) >= 4)
        assert net.copies.items == [alert_body(a, 0) for a in alerts[:4]]  # only those sealed
        await net.uplink.tell(health())  # made before the reporter saw the alarm
        await eventually(lambda: net.statistics.health_sealed == 1)
        reports = [body for _, kind, body in net.waiting() if kind is EventKind.HEALTH]
        assert len(reports) == 1
        assert isinstance(reports[0], HealthBody)
        assert reports[0].outbox_full  # the uplink raised the alarm in it
        net.fake.accepting = True
        await eventually(lambda: len(net.book.alerts()) == 7 and net.depth() == 0)
        assert alert_ids(net.book.alerts()) == [alert.alert_id for alert in alerts]
        seqs = [seq for seq, body in sorted(net.book.stored.items())
                if isinstance(body, AlertBody)]
        assert seqs == sorted(seqs)
        assert (net.statistics.outbox_full, net.statistics.held_alerts) == (False, 0)
        await eventually(lambda: len(net.copies.items) >= 7)
        assert net.copies.items == [alert_body(a, 0) for a in alerts]


async def test_a_full_held_list_holds_the_matcher_back_and_the_alarm_still_goes_out(
        tmp_path: Path) -> None:
    config = UplinkConfig(held_alerts=2, held_retry_s=0.2, blocked_health_s=0.2)
    async with running(tmp_path, config=config, outbox=FOUR_ALERTS, accepting=False) as net:
        await net.uplink.tell(health())
        alerts = [match_alert(i) for i in range(9)]
        for alert in alerts:
            await net.uplink.tell(alert)  # 4 sealed, 2 held, the 7th waits for room
        await net.uplink.tell(health(unit_time=1_700_000_200.0))  # queued behind the alerts
        await eventually(lambda: net.statistics.blocked and net.statistics.alarm_reports >= 2)
        assert net.statistics.held_alerts == 2
        assert net.uplink.statistics().depth >= 3  # the rest waits in the mailbox
        reports = [body for _, kind, body in net.waiting() if kind is EventKind.HEALTH]
        newest = reports[-1]
        assert isinstance(newest, HealthBody)
        assert newest.outbox_full
        assert newest.outbox_depth >= 4
        assert newest.unit_time > 1_700_000_100.0  # the unit's clock now
        assert newest.cameras == health().cameras  # the counts of the last report received
        net.fake.accepting = True
        await eventually(lambda: len(net.book.alerts()) == 9 and net.depth() == 0)
        assert alert_ids(net.book.alerts()) == [alert.alert_id for alert in alerts]
        assert not net.statistics.blocked
        assert not net.statistics.outbox_full
        stored_reports = [body for body in net.book.stored.values()
                          if isinstance(body, HealthBody)]
        assert stored_reports[-1].unit_time == 1_700_000_200.0  # the queued report went too
        assert net.cell().metrics.failures == 0


# --- what the van answers ---------------------------------------------------------------------


def _receipt_for_another(message: Any, answer: Any) -> Any:
    first = answer.outcomes[0]
    return dataclasses.replace(answer, outcomes=(dataclasses.replace(first, seq=first.seq + 1),
                                                 *answer.outcomes[1:]))


def _mark_above_every_number(message: Any, answer: Any) -> Any:
    return dataclasses.replace(answer, acknowledged_up_to=answer.outcomes[-1].seq + 1000)


def _one_outcome_short(message: Any, answer: Any) -> Any:
    return dataclasses.replace(answer, outcomes=answer.outcomes[:-1])


def _one_outcome_too_many(message: Any, answer: Any) -> Any:
    return dataclasses.replace(answer, outcomes=(*answer.outcomes, answer.outcomes[-1]))


def _single_receipt(message: Any, answer: Any) -> Any:
    first = answer.outcomes[0]
    return Receipt(first.seq, first.outcome, answer.acknowledged_up_to)


def _mark_gone_back(message: Any, answer: Any) -> Any:
    return dataclasses.replace(answer, acknowledged_up_to=0)


NONSENSE: dict[str, tuple[bool, Answer]] = {
    # (answers a Resume?, the answer)
    "a receipt for Resume": (True, lambda message, answer: Receipt(1, Outcome.STORED, 0)),
    "a message of its own for Resume": (True, lambda message, answer: Deliver(b"x", 1)),
    "a mark that is no number": (True, lambda message, answer: ResumePoint(-5)),
    "a resume point for a batch": (False, lambda message, answer: ResumePoint(0)),
    "a single receipt for a batch": (False, _single_receipt),
    "a batch receipt one outcome short": (False, _one_outcome_short),
    "a batch receipt one outcome too many": (False, _one_outcome_too_many),
    "a receipt for another envelope": (False, _receipt_for_another),
    "a mark above every number assigned": (False, _mark_above_every_number),
    "a mark below the resume point": (False, _mark_gone_back),
}


@pytest.mark.parametrize("case", list(NONSENSE))
async def test_a_van_answering_nonsense_does_not_crash_the_uplink_and_deletes_nothing(
        tmp_path: Path, case: str) -> None:
    on_resume, answer = NONSENSE[case]
    book = VanBook()
    async with running(tmp_path, book=book, accepting=False) as net:
        for index in range(3):
            await net.uplink.tell(match_alert(index))
        await eventually(lambda: net.depth() == 3)
        if not on_resume:
            book.answers.append(lambda message, real: real)  # the Resume is answered right
        book.answers.append(answer)
        net.fake.accepting = True
        await eventually(lambda: net.statistics.bad_answers == 1)
        await eventually(lambda: net.depth() == 0 and len(book.stored) == 3)
        assert alert_ids(book.alerts()) == [match_alert(i).alert_id for i in range(3)]
        assert len(net.fake.links) >= 2  # the bad link was dropped and the van redialled
        cell = net.cell()
        assert (cell.metrics.failures, cell.metrics.restarts) == (0, 0)


async def test_a_van_mark_above_a_new_outbox_moves_numbering_above_it(tmp_path: Path) -> None:
    book = VanBook()
    async with running(tmp_path, book=book, accepting=False) as net:
        first = net.outbox.first_pending()
        book.mark = first + 1000  # the van holds numbers of a lost outbox above this one's
        net.fake.accepting = True
        await eventually(lambda: net.statistics.resumes == 1)
        assert net.outbox.first_pending() == first + 1001
        for index in range(3):
            await net.uplink.tell(match_alert(index))
        await eventually(lambda: len(book.stored) == 3 and net.statistics.delivered == 3)
        assert sorted(book.stored) == [first + 1001, first + 1002, first + 1003]
        assert net.statistics.duplicates == 0  # stored, not taken for duplicates
        assert net.statistics.lost_below_van_mark == 0


async def test_envelopes_numbered_below_a_van_mark_from_a_lost_outbox_are_counted_as_lost(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    book = VanBook()
    async with running(tmp_path, book=book, accepting=False) as net:
        for index in range(2):
            await net.uplink.tell(match_alert(index))
        await eventually(lambda: net.depth() == 2)
        last = net.outbox.statistics().last_seq
        book.mark = last + 50
        net.fake.accepting = True
        await eventually(lambda: net.statistics.lost_below_van_mark == 2)
        assert net.depth() == 0
        await net.uplink.tell(match_alert(2))
        await eventually(lambda: len(book.stored) == 1 and net.depth() == 0)
        assert list(book.stored) == [last + 51]
    assert "2 envelopes numbered below its mark cannot be delivered" in caplog.text


# --- what the uplink is told ------------------------------------------------------------------


async def test_an_alert_that_can_never_be_sealed_is_dropped_counted_and_the_rest_go_on(
        tmp_path: Path) -> None:
    async with running(tmp_path) as net:
        await net.uplink.tell(match_alert(0, crop=b"not a jpeg"))
        await net.uplink.tell(match_alert(1))
        await net.uplink.tell(StreamEnded("cam0", 100))
        await eventually(lambda: len(net.book.stored) == 1 and net.depth() == 0)
        assert alert_ids(net.book.alerts()) == [match_alert(1).alert_id]
        assert net.statistics.unsealable == 1
        await eventually(lambda: net.statistics.streams_ended == 1)
        assert net.cell().metrics.failures == 0


@pytest.mark.parametrize(("field_name", "value"), [
    ("window", 0), ("window", 33), ("held_alerts", 0), ("receipt_timeout_s", 0.0),
    ("resume_timeout_s", -1.0), ("held_retry_s", float("nan")), ("blocked_health_s", 0.0),
    ("link_wait_s", 0.0), ("idle_check_s", float("inf")), ("ack_delay_s", 0.0),
    ("batches_in_flight", 0), ("batches_in_flight", 17), ("batch_envelopes", 0),
    ("batch_envelopes", 17), ("batch_bytes", 0), ("batch_bytes", MAX_BATCH_BYTES + 1)])
def test_config_refuses_bad_values_naming_the_field(field_name: str, value: float) -> None:
    changes: dict[str, Any] = {field_name: value}
    with pytest.raises(ConfigError, match=f"UplinkConfig.{field_name}"):
        UplinkConfig(**changes)


def test_the_uplink_seals_as_a_unit_to_a_van(tmp_path: Path) -> None:
    with Outbox.open(tmp_path / "outbox.db") as outbox:
        other_unit = NodeKeys.generate(NodeRole.UNIT, "unit-2").public()
        with pytest.raises(ValueError, match="van's public keys"):
            Uplink(UNIT_KEYS, other_unit, outbox, _NoLinks())
        with pytest.raises(ValueError, match="as a unit"):
            Uplink(VAN_KEYS, VAN_KEYS.public(), outbox, _NoLinks())


class _NoLinks:
    def current(self) -> Link | None:
        return None

    async def wait_link(self, timeout_s: float) -> Link:
        raise TimeoutError

    def drop(self, link: Link, reason: str) -> None:
        pass


class _BrokenOnce(_NoLinks):
    """A link source whose first wait fails in a way no link source should."""

    def __init__(self) -> None:
        self.waits = 0

    async def wait_link(self, timeout_s: float) -> Link:
        self.waits += 1
        if self.waits == 1:
            raise RuntimeError("a broken link source")
        return await super().wait_link(timeout_s)


async def test_a_failed_task_fails_the_actor_at_its_next_message_and_it_is_restarted(
        tmp_path: Path) -> None:
    async with asyncio.timeout(TEST_S):
        system = ActorSystem(SystemConfig(name=UNIT_ID, root=FAST_ROOT, blocking_workers=2))
        links = _BrokenOnce()
        statistics = UplinkStatistics()
        with Outbox.open(tmp_path / "outbox.db") as outbox:
            try:
                uplink = await system.spawn("uplink", lambda: Uplink(
                    UNIT_KEYS, VAN_KEYS.public(), outbox, links, statistics=statistics))
                cell = next(cell for cell in system.cells() if cell.name == "uplink")
                await eventually(lambda: links.waits >= 1)
                await uplink.tell(health())  # the failure surfaces here
                await eventually(lambda: cell.metrics.restarts == 1)
                assert cell.metrics.failures == 1
                await uplink.tell(match_alert(0))  # the new incarnation seals it
                await eventually(lambda: statistics.alerts_sealed == 1)
                assert outbox.depth() == 1
            finally:
                await system.stop()
