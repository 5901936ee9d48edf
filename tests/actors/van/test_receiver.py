"""The van's receiver for one unit: exactly-once storage with redeliveries and gaps, the resume
point, and every refusal answered as a receipt with its reason and counted, the actor running
on and what was stored untouched."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from actors.delivery_messages import (
    MAX_BATCH_BYTES,
    MAX_BATCH_ENVELOPES,
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
from actors.van import receiver as receiving_module
from actors.van.receiver import (
    AlertNotice,
    Receiver,
    ReceiverMessage,
    UnitStatistics,
    receiver_name,
)
from runtime import ActorRef, ActorSystem
from secure.envelope import MAX_ENVELOPE_BYTES, SIGNATURE_CONTEXT, EventKind
from secure.hybrid_signature import ED25519_SIGNATURE_BYTES
from secure.node_keys import NodeKeys, NodeRole
from tests.actors.support import WAIT_S
from tests.actors.van.delivery_support import (
    CROP,
    OTHER_UNIT_ID,
    UNIT_ID,
    Van,
    alert,
    health,
    make_van,
)

SIGNATURE_BYTES = 3373


@dataclass
class Receiving:
    van: Van
    ref: ActorRef[ReceiverMessage]
    statistics: UnitStatistics
    notices: list[AlertNotice]
    refusals: list[tuple[str, str]]

    async def deliver(self, envelope: bytes, first_pending: int = 1) -> Receipt:
        receipt = await self.ref.ask(Deliver(envelope, first_pending), timeout=WAIT_S)
        assert isinstance(receipt, Receipt)
        return receipt

    def stored(self) -> list[tuple[int, bytes]]:
        return [(event.seq, event.sealed)
                for event in self.van.store.by_unit(UNIT_ID)][::-1]


@pytest_asyncio.fixture
async def receiving(tmp_path: Path, system: ActorSystem) -> AsyncIterator[Receiving]:
    van = make_van(tmp_path, UNIT_ID, OTHER_UNIT_ID)
    statistics = UnitStatistics()
    notices: list[AlertNotice] = []
    refusals: list[tuple[str, str]] = []
    ref: ActorRef[ReceiverMessage] = await system.spawn(
        receiver_name(UNIT_ID),
        lambda: Receiver(UNIT_ID, van.store, signers=van.enrolment.lookup,
                         van_key=van.encryption, statistics=statistics,
                         notices=notices.append,
                         refusals=lambda reason, unit: refusals.append((reason, unit))))
    try:
        yield Receiving(van, ref, statistics, notices, refusals)
    finally:
        await ref.stop()
        van.store.close()


# -- exactly once ------------------------------------------------------------------------------


async def test_an_alert_is_stored_once_however_often_it_is_delivered(
        receiving: Receiving) -> None:
    envelope = receiving.van.seal(alert(1), 1)
    assert await receiving.deliver(envelope) == Receipt(1, Outcome.STORED, 1)
    for _ in range(3):  # receipts lost: the unit sends it again
        assert await receiving.deliver(envelope) == Receipt(1, Outcome.DUPLICATE, 1)
    assert receiving.stored() == [(1, envelope)]  # kept sealed, exactly as received
    assert (receiving.statistics.stored_alerts, receiving.statistics.duplicates) == (1, 3)


async def test_envelopes_above_a_gap_are_stored_and_the_mark_waits_for_the_gap(
        receiving: Receiving) -> None:
    van = receiving.van
    envelopes = {seq: van.seal(alert(seq), seq) for seq in (1, 2, 3, 4)}
    assert (await receiving.deliver(envelopes[1])).acknowledged_up_to == 1
    assert await receiving.deliver(envelopes[3]) == Receipt(3, Outcome.STORED, 1)
    assert await receiving.deliver(envelopes[4]) == Receipt(4, Outcome.STORED, 1)
    assert await receiving.deliver(envelopes[2]) == Receipt(2, Outcome.STORED, 4)
    assert await receiving.deliver(envelopes[3]) == Receipt(3, Outcome.DUPLICATE, 4)
    assert [seq for seq, _ in receiving.stored()] == [1, 2, 3, 4]


async def test_resume_skips_what_the_unit_gave_up_and_answers_the_mark(
        receiving: Receiving) -> None:
    van = receiving.van
    assert await receiving.ref.ask(Resume(1, 0), timeout=WAIT_S) == ResumePoint(0)
    await receiving.deliver(van.seal(alert(1), 1))
    # Numbers 2-4 were health reports the unit's full outbox dropped: it resumes at 5.
    assert await receiving.ref.ask(Resume(5, 6), timeout=WAIT_S) == ResumePoint(4)
    assert await receiving.deliver(van.seal(alert(6), 6), 5) == Receipt(6, Outcome.STORED, 4)
    assert await receiving.deliver(van.seal(alert(5), 5), 5) == Receipt(5, Outcome.STORED, 6)
    # A number at or below the mark is old: a replay, never stored again.
    assert await receiving.deliver(van.seal(alert(3), 3), 5) == Receipt(3, Outcome.DUPLICATE, 6)
    assert [seq for seq, _ in receiving.stored()] == [1, 5, 6]
    assert receiving.statistics.resumes == 2


async def test_deliver_passes_the_numbers_below_first_pending(receiving: Receiving) -> None:
    receipt = await receiving.deliver(receiving.van.seal(alert(5), 5), first_pending=5)
    assert receipt == Receipt(5, Outcome.STORED, 5)


async def test_a_first_pending_above_the_envelope_never_drops_the_envelope(
        receiving: Receiving) -> None:
    """A unit contradicting itself (seq 2 pending, yet "everything below 9 is gone") loses
    nothing: the number being delivered is never skipped."""
    receipt = await receiving.deliver(receiving.van.seal(alert(2), 2), first_pending=9)
    assert receipt.outcome is Outcome.STORED
    assert [seq for seq, _ in receiving.stored()] == [2]


async def test_a_resume_out_of_range_is_answered_with_an_error_and_counted(
        receiving: Receiving) -> None:
    with pytest.raises(ValueError, match="bad_first_pending"):
        await receiving.ref.ask(Resume(2**63, 0), timeout=WAIT_S)
    assert receiving.statistics.refused["bad_first_pending"] == 1
    assert await receiving.ref.ask(Resume(1, 0), timeout=WAIT_S) == ResumePoint(0)


async def test_a_stored_alert_is_logged_and_noticed_without_its_crop(
        receiving: Receiving, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    await receiving.deliver(receiving.van.seal(alert(1), 1))
    assert receiving.notices == [AlertNotice(UNIT_ID, 1, "cam0", "lin_manuel_miranda", 0.7312,
                                             0.6, 1_732_590_001.0)]
    line = next(r.getMessage() for r in caplog.records if "alert seq 1" in r.getMessage())
    assert "unit-1" in line
    assert "cam0" in line
    assert "lin_manuel_miranda" in line
    assert "0.731" in line
    assert CROP.hex()[:32] not in caplog.text
    await receiving.deliver(receiving.van.seal(alert(1), 1))  # a duplicate: no second notice
    assert len(receiving.notices) == 1


async def test_each_stored_or_duplicate_envelope_is_traced_and_a_refused_one_is_not(
        receiving: Receiving, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=TRACE_LOG.name)
    van = receiving.van
    await receiving.deliver(van.seal(alert(1), 1))
    await receiving.deliver(van.seal(alert(1), 1))  # again: a duplicate, traced too
    await receiving.deliver(b"not an envelope")
    marks = [record.trace for record in caplog.records if hasattr(record, "trace")]
    assert all(isinstance(mark, DeliveryMark) for mark in marks)
    assert [(mark.unit, mark.seq, mark.stage) for mark in marks] == [
        (UNIT_ID, 1, stage) for _ in range(2)
        for stage in (Stage.STARTED, Stage.VERIFIED, Stage.STORED)]
    for first in (0, 3):
        times = [mark.at for mark in marks[first:first + 3]]
        assert times == sorted(times)
    stored = van.store.by_unit(UNIT_ID)[0]
    assert marks[0].at <= stored.received_at <= marks[2].at


async def test_a_health_report_is_stored_and_kept_as_the_units_last(
        receiving: Receiving) -> None:
    body = health()
    receipt = await receiving.deliver(receiving.van.seal(body, 1))
    assert receipt == Receipt(1, Outcome.STORED, 1)
    stored = receiving.van.store.by_unit(UNIT_ID)
    assert (stored[0].kind, stored[0].captured_at) == ("health", body.unit_time)
    assert receiving.statistics.last_health == body
    assert receiving.statistics.stored_health == 1
    assert receiving.notices == []


# -- refusals ----------------------------------------------------------------------------------


def flip(data: bytes, offset: int) -> bytes:
    changed = bytearray(data)
    changed[offset] ^= 1
    return bytes(changed)


def tampered_ciphertext(van: Van) -> bytes:
    envelope = van.seal(alert(2), 2)
    return flip(envelope, len(envelope) - SIGNATURE_BYTES - 2 - 100)


def bad_ed25519_half(van: Van) -> bytes:
    envelope = van.seal(alert(2), 2)
    return flip(envelope, len(envelope) - SIGNATURE_BYTES)


def bad_ml_dsa_half(van: Van) -> bytes:
    envelope = van.seal(alert(2), 2)
    return flip(envelope, len(envelope) - SIGNATURE_BYTES + ED25519_SIGNATURE_BYTES + 7)


def undecryptable(van: Van) -> bytes:
    """Ciphertext altered and signed again with the unit's real key: only HPKE catches it."""
    envelope = van.seal(alert(2), 2)
    signed = flip(envelope[:-(SIGNATURE_BYTES + 2)], -40)
    signature = van.units[UNIT_ID].signing.sign(signed, SIGNATURE_CONTEXT).to_bytes()
    return signed + len(signature).to_bytes(2, "big") + signature


def unknown_keys(van: Van) -> bytes:
    """The unit's id, keys it was never enrolled with."""
    return van.seal(alert(2), 2, signer=NodeKeys.generate(NodeRole.UNIT, UNIT_ID))


def revoked(van: Van) -> bytes:
    envelope = van.seal(alert(2), 2)
    van.enrolment.revoke(UNIT_ID)
    return envelope


def another_units_envelope(van: Van) -> bytes:
    return van.seal(alert(2), 2, unit=OTHER_UNIT_ID)


def another_van(van: Van) -> bytes:
    other = NodeKeys.generate(NodeRole.VAN, "van-2").public().encryption_key
    return van.seal(alert(2), 2, van_key=other)


REFUSALS: dict[str, tuple[Callable[[Van], bytes], str]] = {
    "tampered ciphertext": (tampered_ciphertext, "bad_signature"),
    "ed25519 half": (bad_ed25519_half, "bad_signature"),
    "ml-dsa-65 half": (bad_ml_dsa_half, "bad_signature"),
    "altered and signed again": (undecryptable, "undecryptable"),
    "keys never enrolled": (unknown_keys, "unknown_signer"),
    "revoked unit": (revoked, "unknown_signer"),
    "another unit's envelope": (another_units_envelope, "wrong_unit"),
    "sealed to another van": (another_van, "wrong_van_key"),
    "malformed body": (lambda van: van.seal(b"\x93not a body", 2), "bad_body"),
    "alert under the health kind": (lambda van: van.seal(alert(2), 2, kind=EventKind.HEALTH),
                                    "kind_mismatch"),
    "health under the alert kind": (lambda van: van.seal(health(), 2, kind=EventKind.ALERT),
                                    "kind_mismatch"),
    "sequence 0": (lambda van: van.seal(alert(2), 0), "bad_sequence"),
    "sequence over 2**63-1": (lambda van: van.seal(alert(2), 2**63), "bad_sequence"),
    "not an envelope": (lambda van: b"LFRE" + bytes(200), "malformed"),
    "oversize": (lambda van: bytes(MAX_ENVELOPE_BYTES + 1), "oversize"),
    "cut short": (lambda van: van.seal(alert(2), 2)[:-1], "malformed"),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
async def test_each_refusal_is_a_receipt_with_its_reason_and_stores_nothing(
        receiving: Receiving, case: str, caplog: pytest.LogCaptureFixture) -> None:
    make, reason = REFUSALS[case]
    van = receiving.van
    first = van.seal(alert(1), 1)
    assert (await receiving.deliver(first)).outcome is Outcome.STORED
    bad = make(van)
    with caplog.at_level(logging.WARNING, "lfr.van.receiver"):
        receipt = await receiving.deliver(bad, first_pending=2)
    assert receipt.outcome is Outcome.REFUSED
    assert receipt.reason.startswith(f"{reason}: ")
    assert len(receipt.reason) <= 300
    assert receipt.acknowledged_up_to == 1
    assert receiving.statistics.refused == {reason: 1}
    assert receiving.refusals == [(reason, UNIT_ID)]  # for the van's audit trail
    assert f"refused: {reason}" in caplog.text
    assert receiving.stored() == [(1, first)]  # what was stored is intact
    assert van.store.by_unit(OTHER_UNIT_ID) == []
    # The receiver runs on: the next envelope is stored.
    if case != "revoked unit":
        assert (await receiving.deliver(van.seal(alert(3), 3))).outcome is Outcome.STORED


async def test_refusal_lines_are_bounded_while_every_refusal_is_counted(
        receiving: Receiving, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "lfr.van.receiver"):
        for _ in range(40):
            await receiving.deliver(b"junk")
    assert receiving.statistics.refused["malformed"] == 40
    assert caplog.text.count("refused: malformed") == 20


async def test_an_envelope_delivered_twice_under_a_new_number_is_two_events(
        receiving: Receiving) -> None:
    """Deduplication is by (unit, number), as the contract says: a unit that seals the same
    alert twice made two events (bench.van_events catches that by the event id)."""
    van = receiving.van
    assert (await receiving.deliver(van.seal(alert(1), 1))).outcome is Outcome.STORED
    assert (await receiving.deliver(van.seal(alert(1), 2))).outcome is Outcome.STORED
    assert receiving.statistics.stored_alerts == 2


# -- batches -----------------------------------------------------------------------------------


async def deliver_batch(receiving: Receiving, envelopes: list[bytes],
                        first_pending: int = 1) -> BatchReceipt:
    receipt = await receiving.ref.ask(DeliverBatch(tuple(envelopes), first_pending),
                                      timeout=WAIT_S)
    assert isinstance(receipt, BatchReceipt)
    return receipt


async def test_a_batch_is_checked_and_stored_in_one_transaction_with_one_receipt(
        receiving: Receiving, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=TRACE_LOG.name)
    van = receiving.van
    store = van.store
    transactions: list[int] = []
    store_all = store.store_all_and_mark

    def counted(unit: str, envelopes: Any, *, skip_below: int = 1) -> Any:
        transactions.append(len(envelopes))
        return store_all(unit, envelopes, skip_below=skip_below)

    monkeypatch.setattr(store, "store_all_and_mark", counted)
    envelopes = [van.seal(alert(seq), seq) for seq in (1, 2, 3)] + [van.seal(health(), 4)]
    receipt = await deliver_batch(receiving, envelopes)
    assert receipt == BatchReceipt(tuple(EnvelopeOutcome(seq, Outcome.STORED)
                                         for seq in (1, 2, 3, 4)), 4)
    assert transactions == [4]
    assert receiving.stored() == list(zip((1, 2, 3, 4), envelopes, strict=True))
    assert [notice.seq for notice in receiving.notices] == [1, 2, 3]
    assert (receiving.statistics.stored_alerts, receiving.statistics.stored_health) == (3, 1)
    assert receiving.statistics.acknowledged_up_to == 4
    marks = [record.trace for record in caplog.records if hasattr(record, "trace")]
    assert [(mark.seq, mark.stage) for mark in marks] == [
        (seq, stage) for seq in (1, 2, 3, 4)
        for stage in (Stage.STARTED, Stage.VERIFIED, Stage.STORED)]
    assert len({mark.at for mark in marks if mark.stage is Stage.STARTED}) == 1  # one batch


async def test_a_redelivered_batch_is_all_duplicates_and_stores_nothing_again(
        receiving: Receiving) -> None:
    van = receiving.van
    envelopes = [van.seal(alert(seq), seq) for seq in (1, 2, 3)]
    assert (await deliver_batch(receiving, envelopes)).acknowledged_up_to == 3
    for _ in range(2):  # its receipt lost: the unit sends the batch again
        receipt = await deliver_batch(receiving, envelopes)
        assert receipt == BatchReceipt(tuple(EnvelopeOutcome(seq, Outcome.DUPLICATE)
                                             for seq in (1, 2, 3)), 3)
    # and overlapping: two old ones and a new one
    receipt = await deliver_batch(receiving, [*envelopes[1:], van.seal(alert(4), 4)])
    assert [outcome.outcome for outcome in receipt.outcomes] == [
        Outcome.DUPLICATE, Outcome.DUPLICATE, Outcome.STORED]
    assert [seq for seq, _ in receiving.stored()] == [1, 2, 3, 4]
    assert (receiving.statistics.stored_alerts, receiving.statistics.duplicates) == (4, 8)
    assert len(receiving.notices) == 4


# (revoked: every later envelope is refused too; oversize: a batch holding it is over
# MAX_BATCH_BYTES and refused whole, below)
@pytest.mark.parametrize("case", sorted(set(REFUSALS) - {"revoked unit", "oversize"}))
async def test_a_bad_envelope_in_a_batch_is_refused_alone(
        receiving: Receiving, case: str) -> None:
    """Good, bad, good: the bad one is refused with its reason and the ones before and after it
    are stored, as if each had been delivered alone in the same order; the mark stays below the
    refused number (the unit keeps it and sends it again)."""
    make, reason = REFUSALS[case]
    van = receiving.van
    first, bad, third = van.seal(alert(1), 1), make(van), van.seal(alert(3), 3)
    receipt = await deliver_batch(receiving, [first, bad, third])
    assert [(outcome.seq, outcome.outcome) for outcome in receipt.outcomes] == [
        (1, Outcome.STORED), (receipt.outcomes[1].seq, Outcome.REFUSED), (3, Outcome.STORED)]
    assert receipt.outcomes[1].seq in (0, 2)
    assert receipt.outcomes[1].reason.startswith(f"{reason}: ")
    assert receipt.acknowledged_up_to == 1
    assert receiving.stored() == [(1, first), (3, third)]
    assert receiving.statistics.refused == {reason: 1}
    assert receiving.refusals == [(reason, UNIT_ID)]
    assert van.store.by_unit(OTHER_UNIT_ID) == []
    # the unit sends the number again, sealed right: the gap fills, the mark passes 3
    receipt = await deliver_batch(receiving, [van.seal(alert(2), 2), third], first_pending=2)
    assert receipt == BatchReceipt((EnvelopeOutcome(2, Outcome.STORED),
                                    EnvelopeOutcome(3, Outcome.DUPLICATE)), 3)


async def test_a_batch_of_only_bad_envelopes_stores_nothing_and_answers_each(
        receiving: Receiving) -> None:
    receipt = await deliver_batch(receiving, [b"junk", b"LFRE" + bytes(200)])
    assert [(outcome.seq, outcome.outcome) for outcome in receipt.outcomes] == [
        (0, Outcome.REFUSED), (0, Outcome.REFUSED)]
    assert receipt.acknowledged_up_to == 0
    assert receiving.statistics.refused == {"malformed": 2}


def too_many(van: Van) -> list[bytes]:
    return [van.seal(alert(seq), seq) for seq in range(1, MAX_BATCH_ENVELOPES + 2)]


def too_large(van: Van) -> list[bytes]:
    return [van.seal(alert(1), 1), bytes(MAX_BATCH_BYTES)]


BATCH_REFUSALS: dict[str, tuple[Callable[[Van], list[bytes]], str]] = {
    "more envelopes than allowed": (too_many, "batch_too_large"),
    "one oversize envelope": (lambda van: [bytes(MAX_BATCH_BYTES + 1)], "batch_too_large"),
    "more bytes than allowed": (too_large, "batch_too_large"),
    "no envelope": (lambda van: [], "empty_batch"),
}


@pytest.mark.parametrize("case", sorted(BATCH_REFUSALS))
async def test_a_batch_out_of_bounds_is_refused_whole_before_any_check(
        receiving: Receiving, case: str, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    make, reason = BATCH_REFUSALS[case]
    van = receiving.van
    first = van.seal(alert(1), 1)
    assert (await receiving.deliver(first)).outcome is Outcome.STORED
    envelopes = make(van)
    opened: list[bytes] = []
    monkeypatch.setattr(receiving_module, "open_envelope",
                        lambda envelope, **kw: opened.append(envelope))  # never called
    with caplog.at_level(logging.WARNING, "lfr.van.receiver"):
        receipt = await deliver_batch(receiving, envelopes)
    assert len(receipt.outcomes) == 1
    (outcome,) = receipt.outcomes
    assert (outcome.seq, outcome.outcome) == (0, Outcome.REFUSED)
    assert outcome.reason.startswith(f"{reason}: ")
    assert len(outcome.reason) <= 300
    assert receipt.acknowledged_up_to == 1
    assert opened == []
    assert receiving.statistics.refused == {reason: 1}
    assert receiving.refusals == [(reason, UNIT_ID)]
    assert f"refused: {reason}" in caplog.text
    assert receiving.stored() == [(1, first)]
    monkeypatch.undo()
    # the receiver runs on
    assert (await deliver_batch(receiving, [van.seal(alert(2), 2)])).acknowledged_up_to == 2


async def test_a_batch_passes_the_numbers_below_first_pending_but_never_its_own(
        receiving: Receiving) -> None:
    van = receiving.van
    receipt = await deliver_batch(receiving, [van.seal(alert(5), 5), van.seal(alert(6), 6)],
                                  first_pending=5)
    assert receipt.acknowledged_up_to == 6
    # a unit contradicting itself: 2 and 3 pending, "everything below 9 is gone"
    receipt = await deliver_batch(receiving, [van.seal(alert(8), 8), van.seal(alert(7), 7)],
                                  first_pending=9)
    assert [outcome.outcome for outcome in receipt.outcomes] == [Outcome.STORED] * 2
    assert receipt.acknowledged_up_to == 8
    assert [seq for seq, _ in receiving.stored()] == [5, 6, 7, 8]
