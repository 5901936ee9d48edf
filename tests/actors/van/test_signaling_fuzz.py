"""Hostile signaling bodies into the van's ``SignalingService.answer`` and the unit's
``check_answer``: only ``SignalingRefused`` (``SignalingFailed``) with a known reason, nothing
accepted that the right key did not sign or that is not valid, in bounded memory.

The valid bodies come from ``bench.fuzz_signaling``'s factory (the real signing path), so a new
payload field is adapted to in one place. A real van's keys answer; the enrolment lookup knows
one unit. Examples are bounded so the module takes seconds; ``python -m bench.fuzz_signaling``
is the long run.
"""

from __future__ import annotations

import asyncio
import secrets
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass, fields
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.unit.signaling_client import SignalingFailed, check_answer
from actors.van.signaling import (
    ANSWER_CONTEXT,
    CODEC,
    MAX_BODY_BYTES,
    NONCE_BYTES,
    OFFER_CONTEXT,
    AnswerPayload,
    OfferPayload,
    SignalingConfig,
    SignalingRefused,
    SignalingService,
)
from bench.fuzz_signaling import (
    ANSWER_FAILURES,
    DATA_SDP,
    MEDIA_LINES,
    OFFER_REFUSALS,
    UNIT_ID,
    Connections,
    Parties,
    acceptable_answer,
    acceptable_offer,
    answer_payload,
    data_channel_offer,
    hostile_payload,
    offer_payload,
    signed_answer,
    signed_body,
    signed_offer,
)
from secure.node_keys import NodeKeys

FUZZ = settings(max_examples=150, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
FEW = settings(FUZZ, max_examples=60)
"""For examples that may be signed with a real key (about 2 ms each) or negotiated."""


@dataclass
class Van:
    """A van answering offers on its own event loop, and what the unit knows of it."""

    runner: asyncio.Runner
    parties: Parties
    service: SignalingService
    connections: Connections
    live_sdp: str
    spent: bytes
    """A valid offer answered once already: its nonce is spent."""

    def answer(self, body: bytes, url_unit: str = UNIT_ID) -> bytes | None:
        """The service's answer, or None when refused with a known reason (else it fails)."""
        reason = None
        try:
            return self.runner.run(self.service.answer(body, url_unit))
        except SignalingRefused as refused:
            reason = refused.reason
        assert reason in OFFER_REFUSALS, reason
        return None

    def check(self, body: bytes, nonce: bytes) -> AnswerPayload | None:
        """``check_answer``'s answer, or None when it failed with a known reason."""
        reason = None
        try:
            return check_answer(body, self.parties.client_config(), UNIT_ID, nonce,
                                self.parties.now_s)
        except SignalingFailed as failed:
            reason = failed.reason
        assert reason in ANSWER_FAILURES, reason
        return None


@pytest.fixture(scope="module")
def van() -> Iterator[Van]:
    with asyncio.Runner() as runner:
        parties = Parties.generate()
        connections = Connections()
        service = SignalingService(parties.van, parties.enrolled, connections,
                                   SignalingConfig(max_offers_per_unit=10_000),
                                   clock=lambda: parties.now_s)
        live_sdp = runner.run(data_channel_offer())
        spent = signed_offer(offer_payload(parties, live_sdp), parties.unit)
        van = Van(runner, parties, service, connections, live_sdp, spent)
        assert van.answer(spent) is not None  # the baseline: a valid offer is answered
        try:
            yield van
        finally:
            runner.run(connections.close())


# --- hostile values, keyed by field name (any other field gets the generic ones) --------------

MSGPACK_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats()
    | st.text(max_size=20) | st.binary(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner,
                                                                 max_size=4),
    max_leaves=12)
"""Any value msgpack carries: the wrong type for every field."""
HUGE = st.sampled_from([40, 4096, 20_000, MAX_BODY_BYTES])
TEXTS = (st.text(max_size=80) | st.sampled_from(
    ["", " ", "*", "unit\nforged", "\x00", "\x1b[31m", "\u202eevil", "\ud800", "u" * 65,
     "\U0001f600" * 64, UNIT_ID.upper(), UNIT_ID + " "]) | HUGE.map(lambda n: "x" * n))
TIMESTAMPS = st.integers(-(2**63), 2**64 - 1) | st.sampled_from(
    [0, -1, 2**63 - 1, -(2**63), 2**64 - 1]) | st.floats(allow_nan=True)
BYTES = st.binary(max_size=100) | HUGE.map(lambda n: b"\xff" * n)
SDPS = (st.lists(st.sampled_from([*MEDIA_LINES, DATA_SDP]), max_size=5).map("".join)
        | st.text(max_size=200) | HUGE.map(lambda n: "m=application\n" * (n // 14)))
FIELD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "unit_id": TEXTS, "van_id": TEXTS, "timestamp_ms": TIMESTAMPS, "nonce": BYTES,
    "offer_nonce": BYTES, "sdp": SDPS, "sealed_link_key": BYTES | st.binary(
        min_size=1168, max_size=1168)}


def replacements(kind: type[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Up to three of ``kind``'s fields with hostile values (or of any type); none at times,
    so that who signed is all that is wrong."""
    names = [field.name for field in fields(kind)]
    one = st.sampled_from(names).flatmap(
        lambda name: st.tuples(st.just(name), FIELD_VALUES.get(name, MSGPACK_VALUES)
                               | MSGPACK_VALUES))
    return st.lists(one, max_size=3, unique_by=lambda pair: pair[0]).map(dict)


SIGNERS = st.sampled_from(["key", "key", "stranger", "nobody"])
"""Who signs a hostile structure: the real key, a stranger under the same id, random bytes."""


def signer_of(who: str, real: NodeKeys, stranger: NodeKeys) -> NodeKeys | None:
    return {"key": real, "stranger": stranger, "nobody": None}[who]


def flipped(data: bytes, flips: list[tuple[int, int]]) -> bytes:
    out = bytearray(data)
    for index, mask in flips:
        out[index % len(out)] ^= mask
    return bytes(out)


FLIPS = st.lists(st.tuples(st.integers(0, 2**20), st.integers(1, 255)), min_size=1, max_size=8)


# --- offers into SignalingService.answer ------------------------------------------------------


@FUZZ
@given(st.binary(max_size=MAX_BODY_BYTES + 64))
def test_random_bytes_are_refused(van: Van, data: bytes) -> None:
    assert van.answer(data) is None


@FUZZ
@given(FLIPS)
def test_a_valid_offer_with_bytes_flipped_is_refused(van: Van, flips: list[tuple[int, int]],
                                                     ) -> None:
    assert van.answer(flipped(van.spent, flips)) is None


@FUZZ
@given(st.integers(0, 2**20), st.integers(0, 2**20), st.binary(max_size=64),
       st.binary(max_size=64) | HUGE.map(lambda n: b"\x00" * n))
def test_a_valid_offer_cut_spliced_or_extended_is_refused(van: Van, start: int, end: int,
                                                          insert: bytes, tail: bytes) -> None:
    size = len(van.spent)
    start, end = sorted((start % (size + 1), end % (size + 1)))
    assert van.answer(van.spent[:start] + insert + van.spent[end:] + tail) is None


def test_a_valid_offer_once_answered_is_refused_as_a_replay(van: Van) -> None:
    with pytest.raises(SignalingRefused) as caught:
        van.runner.run(van.service.answer(van.spent, UNIT_ID))
    assert caught.value.reason == "replayed"


@FEW
@given(replacements(OfferPayload), SIGNERS, st.sampled_from([None, 1, 3]),
       st.booleans())
def test_hostile_offer_fields_are_refused_unless_signed_and_valid(
        van: Van, replace: dict[str, Any], who: str, version: int | None,
        posted_where_claimed: bool) -> None:
    parties = van.parties
    payload = hostile_payload(offer_payload(parties, van.live_sdp), replace=replace,
                              version=version)
    signer = signer_of(who, parties.unit, parties.stranger)
    body = signed_body(payload, signer, OFFER_CONTEXT)
    claimed = replace.get("unit_id")
    url_unit = claimed if posted_where_claimed and isinstance(claimed, str) else UNIT_ID
    if van.answer(body, url_unit) is not None:
        # Only the enrolled unit's key gets an answer, and only for a valid offer.
        assert who == "key"
        assert version is None
        assert acceptable_offer(body, url_unit, parties.now_s,
                                van.service.config.freshness_window_s)


@FEW
@given(st.lists(st.sampled_from([field.name for field in fields(OfferPayload)]), min_size=1,
                max_size=2, unique=True), st.text(min_size=1, max_size=10), MSGPACK_VALUES)
def test_offers_with_fields_missing_or_added_are_malformed(
        van: Van, dropped: list[str], extra: str, value: Any) -> None:
    parties = van.parties
    valid = offer_payload(parties, van.live_sdp)
    for payload in (hostile_payload(valid, replace={}, drop=tuple(dropped)),
                    hostile_payload(valid, replace={f"extra {extra}": value})):
        with pytest.raises(SignalingRefused) as caught:
            van.runner.run(van.service.answer(signed_body(payload, parties.unit,
                                                          OFFER_CONTEXT), UNIT_ID))
        assert caught.value.reason == "malformed"


@FUZZ
@given(MSGPACK_VALUES)
def test_any_other_structure_is_malformed(van: Van, value: Any) -> None:
    body = bytes(msgpack.packb(value, use_bin_type=True))
    for data in (body, signed_body(body, van.parties.unit, OFFER_CONTEXT)):
        with pytest.raises(SignalingRefused) as caught:
            van.runner.run(van.service.answer(data, UNIT_ID))
        assert caught.value.reason == "malformed"


# --- answers into check_answer ----------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=MAX_BODY_BYTES + 64))
def test_random_bytes_are_not_an_answer(van: Van, data: bytes) -> None:
    assert van.check(data, secrets.token_bytes(NONCE_BYTES)) is None


@FUZZ
@given(FLIPS)
def test_a_valid_answer_with_bytes_flipped_fails(van: Van, flips: list[tuple[int, int]]) -> None:
    nonce = b"n" * NONCE_BYTES
    original = signed_answer(answer_payload(van.parties, nonce), van.parties.van)
    body = flipped(original, flips)
    answer = van.check(body, nonce)
    if answer is not None:  # a flip that changed nothing the van signed
        assert CODEC.decode(body).payload == CODEC.decode(original).payload


@FUZZ
@given(replacements(AnswerPayload), SIGNERS)
def test_hostile_answer_fields_fail_unless_the_van_signed_a_valid_one(
        van: Van, replace: dict[str, Any], who: str) -> None:
    parties = van.parties
    nonce = secrets.token_bytes(NONCE_BYTES)
    payload = hostile_payload(answer_payload(parties, nonce), replace=replace)
    body = signed_body(payload, signer_of(who, parties.van, parties.other_van),
                       ANSWER_CONTEXT)
    answer = van.check(body, nonce)
    if answer is not None:
        assert who == "key"
        assert acceptable_answer(answer, nonce, parties.now_s, 30.0)


# --- memory -----------------------------------------------------------------------------------


def nested_maps(size: int) -> bytes:
    """msgpack of maps nested in maps, ``size`` bytes: the codec's worst case per byte."""
    return b"\x81\xa1a" * (size // 3)


@pytest.mark.parametrize("body", [
    b"\xff" * (MAX_BODY_BYTES * 32),
    nested_maps(MAX_BODY_BYTES),
    b"\x91" * MAX_BODY_BYTES,
    bytes(msgpack.packb([312, 1, {"payload": b"\x80" * (MAX_BODY_BYTES - 64),
                                  "signature": b""}])),
    bytes(msgpack.packb([312, 1, {"payload": b"\xdd\xff\xff\xff\xff", "signature": b""}])),
    bytes(msgpack.packb([312, 1, {"payload": bytes(msgpack.packb(
        [310, 2, {"sdp": "m=audio\n" * 3000}])), "signature": b"\x00" * 3373}])),
], ids=["1 MiB", "nested maps", "nested lists", "payload of empty maps",
        "a 4-billion-item array header", "huge SDP"])
def test_a_hostile_body_costs_a_few_copies_of_itself(van: Van, body: bytes) -> None:
    tracemalloc.start()
    try:
        assert van.answer(body) is None
        assert van.check(body, b"n" * NONCE_BYTES) is None
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * MAX_BODY_BYTES  # measured: 12-142 KB


def test_the_replay_cache_stays_at_its_bound(van: Van) -> None:
    """An enrolled unit's signed offers are remembered even when refused later (here: a link key
    that does not open), so the cache has a bound: beyond it, offers are refused, not stored."""
    parties = van.parties
    service = SignalingService(parties.van, parties.enrolled, van.connections,
                               SignalingConfig(max_remembered_nonces=5,
                                               max_offers_per_unit=10),
                               clock=lambda: parties.now_s)
    reasons = []
    for _ in range(8):
        body = signed_offer(offer_payload(parties, van.live_sdp,
                                          sealed_link_key=b"\x00" * 1168), parties.unit)
        with pytest.raises(SignalingRefused) as caught:
            van.runner.run(service.answer(body, UNIT_ID))
        reasons.append(caught.value.reason)
    assert reasons == ["bad_link_key"] * 5 + ["replay_cache_full"] * 3
    assert len(service._replays) == 5
    # Forged offers never enter it.
    forged = signed_offer(offer_payload(parties, van.live_sdp), parties.stranger)
    with pytest.raises(SignalingRefused, match="neither half verifies"):
        van.runner.run(service.answer(forged, UNIT_ID))
    assert len(service._replays) == 5
