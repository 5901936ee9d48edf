"""Hostile ``DeliverBatch`` frames: the link's codec decodes a mutated frame into a batch or
refuses it with a ``DecodeError``, nothing else; and whatever list of (mutated) envelopes a
batch holds, the receiver's bounds check and its per-envelope checks answer one outcome per
envelope (or refuse the batch whole) without raising, store only what the unit signed, and
lose nothing stored before."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.delivery_messages import (
    MAX_BATCH_BYTES,
    MAX_BATCH_ENVELOPES,
    DeliverBatch,
    Outcome,
)
from actors.van.receiver import Receiver, UnitStatistics, batch_refusal
from bench.byte_mutations import flip, splice, truncate
from runtime.codec import Codec, DecodeError
from tests.actors.van.delivery_support import OTHER_UNIT_ID, UNIT_ID, Van, alert, make_van
from tests.secure.envelope_support import signed_part

FUZZ = settings(max_examples=120, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])
CODEC = Codec()


@pytest.fixture(scope="module")
def van(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Van]:
    made = make_van(tmp_path_factory.mktemp("van"), UNIT_ID, OTHER_UNIT_ID)
    try:
        yield made
    finally:
        made.store.close()


class Envelopes(list[bytes]):
    """Envelopes, shown by their count (Hypothesis prints every argument of a failing test)."""

    def __repr__(self) -> str:
        return f"<{len(self)} envelopes>"


@pytest.fixture(scope="module")
def valid(van: Van) -> Envelopes:
    """Envelopes 1-6 of the unit, sealed right (small crops: the fuzz is about structure)."""
    return Envelopes(van.seal(alert(seq), seq) for seq in range(1, 7))


@FUZZ
@given(seed=st.integers(0, 2**32 - 1), count=st.integers(0, 6),
       mutations=st.integers(1, 6))
def test_a_mutated_batch_frame_decodes_to_a_batch_or_is_refused(
        valid: list[bytes], seed: int, count: int, mutations: int) -> None:
    rng = random.Random(seed)  # reproducible fuzz inputs
    frame = CODEC.encode(DeliverBatch(tuple(valid[:count]), 1))
    for _ in range(mutations):
        if len(frame) > 2:
            frame = rng.choice((flip, flip, truncate, splice))(rng, frame)
    try:
        decoded = CODEC.decode(frame)
    except DecodeError:
        return
    if isinstance(decoded, DeliverBatch):
        assert isinstance(decoded.envelopes, tuple)
        assert all(type(envelope) is bytes for envelope in decoded.envelopes)
        assert type(decoded.first_pending) is int


@FUZZ
@given(data=st.binary(max_size=512))
def test_arbitrary_bytes_never_decode_to_anything_but_a_checked_message(data: bytes) -> None:
    try:
        decoded = CODEC.decode(data)
    except DecodeError:
        return
    if isinstance(decoded, DeliverBatch):
        assert all(type(envelope) is bytes for envelope in decoded.envelopes)


@FUZZ
@given(choices=st.lists(st.tuples(st.integers(0, 5), st.sampled_from(
    ("as_is", "flip", "truncate", "splice", "junk", "huge"))), max_size=MAX_BATCH_ENVELOPES + 2),
    seed=st.integers(0, 2**32 - 1), first_pending=st.integers(-5, 2**64))
def test_any_batch_is_answered_envelope_by_envelope_and_stores_only_what_opens(
        van: Van, valid: list[bytes], choices: list[tuple[int, str]], seed: int,
        first_pending: int) -> None:
    rng = random.Random(seed)  # reproducible fuzz inputs
    envelopes: list[bytes] = []
    for index, how in choices:
        envelope = valid[index]
        if how == "flip":
            envelope = flip(rng, envelope)
        elif how == "truncate":
            envelope = truncate(rng, envelope)
        elif how == "splice":
            envelope = splice(rng, envelope)
        elif how == "junk":
            envelope = rng.randbytes(rng.randint(0, 300))
        elif how == "huge":
            envelope = bytes(MAX_BATCH_BYTES // 2)
        envelopes.append(envelope)
    receiver = Receiver(UNIT_ID, van.store, signers=van.enrolment.lookup,
                        van_key=van.encryption, statistics=UnitStatistics())
    before = {event.seq: event.sealed for event in van.store.by_unit(UNIT_ID)}
    refused = batch_refusal(envelopes)
    size = sum(map(len, envelopes))
    if refused is not None:
        assert not envelopes or len(envelopes) > MAX_BATCH_ENVELOPES or size > MAX_BATCH_BYTES
        assert refused.reason in {"empty_batch", "batch_too_large"}
        return
    done = receiver._process_batch(tuple(envelopes), first_pending)  # the pool's part
    assert len(done.results) == len(envelopes)
    after = {event.seq: event.sealed for event in van.store.by_unit(UNIT_ID)}
    signed_right = {signed_part(envelope) for envelope in valid}
    for envelope, result in zip(envelopes, done.results, strict=True):
        receipt = getattr(result, "receipt", None)
        if receipt is None:  # refused: it is not what the store holds
            if signed_part(envelope) not in signed_right:
                assert envelope not in after.values()
            continue
        assert receipt.outcome in {Outcome.STORED, Outcome.DUPLICATE}
        if receipt.outcome is Outcome.STORED:  # (a duplicate may be a number skipped before)
            assert signed_part(after[receipt.seq]) in signed_right  # what the unit signed
    assert {signed_part(sealed) for sealed in after.values()} <= signed_right
    assert after.keys() >= before.keys()  # nothing stored was lost
    assert done.mark == van.store.acknowledgeable(UNIT_ID)
