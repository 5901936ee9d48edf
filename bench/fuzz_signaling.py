"""A long fuzz run of the signaling decoders (not part of ``make test``).

Runs ``--inputs`` hostile inputs (default 100,000) through the van's ``SignalingService.answer``
(a real van's keys, one enrolled unit) and the unit's ``check_answer``: random bytes, valid
bodies with bytes flipped, truncated, spliced or extended, and valid structures with hostile
field values (extreme or mistyped timestamps, nonces of any length, SDPs with media sections,
unit ids with control characters, values of the wrong type, missing and extra fields), signed
by a stranger, by nobody (random signature bytes) or, as an insider would, with the enrolled
unit's (or, for answers, the van's) real key. The valid bodies are made by the real signing
path (``offer_payload``/``answer_payload``, the one place that knows the payload fields), and
each is answered once before the run, so a mutation that leaves its signed bytes unchanged is
a replay.

Every offer must be refused with a ``SignalingRefused`` of a known reason, or answered only
when the enrolled unit's key signed it and it is valid (fresh, for the URL's unit, a 32-byte
nonce, a sealed key of the right length, one data channel: checked here again, independently);
every answer must fail with a ``SignalingFailed`` of a known reason, or pass only when the van
signed it and it is valid for the offer (checked again likewise). Prints one JSON object:
inputs, refusals by reason, unexpected exceptions, inputs accepted although forged or invalid,
the replay cache's size, seconds, peak RSS and its growth. Exit 0 when nothing unexpected
happened.

    .venv/bin/python -m bench.fuzz_signaling [--inputs N] [--seed S]
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import resource
import secrets
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack

from actors.unit.signaling_client import SignalingClientConfig, SignalingFailed, check_answer
from actors.van.signaling import (
    ANSWER_CONTEXT,
    CODEC,
    LINK_KEY_BYTES,
    MAX_BODY_BYTES,
    NONCE_BYTES,
    OFFER_CONTEXT,
    SIGNALING,
    AnswerPayload,
    OfferPayload,
    SignalingConfig,
    SignalingRefused,
    SignalingService,
    Signed,
    seal_link_key,
    sign_payload,
)
from bench.byte_mutations import Mutation, flip, random_tail, splice, truncate
from bench.fuzz_command import fuzz_main
from runtime.datachannel import DataOnlyPeerConnection, create_link_channel
from secure.hybrid_signature import HYBRID_SIGNATURE_BYTES
from secure.node_keys import NodeKeys, NodeRole

OFFER_REFUSALS = frozenset({
    "malformed", "unit_mismatch", "unknown_unit", "stale", "bad_signature", "replayed",
    "replay_cache_full", "too_many_offers", "bad_link_key", "media_refused",
    "negotiation_failed", "too_many_units", "stopping"})
"""Every reason ``SignalingService.answer`` may refuse with (its module's table, 4-13)."""
ANSWER_FAILURES = frozenset({
    "malformed", "bad_signature", "wrong_van", "wrong_unit", "nonce_mismatch", "stale",
    "media_refused"})
"""Every reason ``check_answer`` may fail with."""
UNIT_ID = "unit-fuzz"
VAN_ID = "van-fuzz"
DATA_SDP = ("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
            "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\n"
            "a=mid:0\r\na=sctp-port:5000\r\n")
"""An SDP with one data channel section (what ``check_sdp`` accepts; not a live offer)."""
MEDIA_LINES = ("m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n", "m=video 9 UDP/TLS/RTP/SAVPF 96\r\n",
               "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n", "m=text 9 RTP/AVP 0\r\n",
               "m=\r\n")
MAX_RSS_GROWTH_MB = 200
"""The run fails if the peak RSS grows more than this after the valid bodies were answered:
refusals must not accumulate anything (the replay cache is bounded by its own limit)."""


@dataclass(frozen=True, slots=True)
class Parties:
    """The keys and clock of a fuzz run: one van, its one enrolled unit, a stranger claiming
    that unit's id (right id, keys never enrolled), and another van."""

    van: NodeKeys
    """The van whose ``SignalingService`` answers."""
    unit: NodeKeys
    """The enrolled unit."""
    stranger: NodeKeys
    """A unit key pair under ``unit``'s id that is not enrolled."""
    other_van: NodeKeys
    """A van the unit does not know (answers signed by it must fail)."""
    now_s: float
    """The fixed clock of both sides during the run."""

    @classmethod
    def generate(cls, now_s: float | None = None) -> Parties:
        return cls(NodeKeys.generate(NodeRole.VAN, VAN_ID),
                   NodeKeys.generate(NodeRole.UNIT, UNIT_ID),
                   NodeKeys.generate(NodeRole.UNIT, UNIT_ID),
                   NodeKeys.generate(NodeRole.VAN, VAN_ID),
                   time.time() if now_s is None else now_s)

    def enrolled(self, unit_id: str) -> Any:
        """The enrolment lookup: the unit's public keys under its id only."""
        return self.unit.public() if unit_id == UNIT_ID else None

    def client_config(self) -> SignalingClientConfig:
        """The unit's view of the van (the URL and fingerprint are never used: no network)."""
        return SignalingClientConfig("https://127.0.0.1:1", self.van.public(), bytes(32))


# --- the factory: the one place that knows the payloads' fields -------------------------------


def offer_payload(parties: Parties, sdp: str, **fields: Any) -> OfferPayload:
    """A valid offer of the enrolled unit (fresh nonce, a fresh link key sealed to the van for
    the unit and that nonce, timestamp now), with ``fields`` replacing any of its values."""
    nonce = fields.get("nonce", secrets.token_bytes(NONCE_BYTES))
    van_key = parties.van.public().encryption_key
    assert van_key is not None  # a van always has one
    valid = {"unit_id": UNIT_ID, "timestamp_ms": int(parties.now_s * 1000), "nonce": nonce,
             "sdp": sdp,
             "sealed_link_key": seal_link_key(secrets.token_bytes(LINK_KEY_BYTES), van_key,
                                              UNIT_ID, nonce)}
    payload: OfferPayload = _complete(OfferPayload, valid, fields)
    return payload


def answer_payload(parties: Parties, offer_nonce: bytes, **fields: Any) -> AnswerPayload:
    """A valid answer of the van to the offer with ``offer_nonce``, ``fields`` replaced."""
    valid = {"van_id": VAN_ID, "unit_id": UNIT_ID, "offer_nonce": offer_nonce,
             "timestamp_ms": int(parties.now_s * 1000), "sdp": DATA_SDP}
    payload: AnswerPayload = _complete(AnswerPayload, valid, fields)
    return payload


def _complete(kind: type[Any], valid: dict[str, Any], fields: dict[str, Any]) -> Any:
    """``kind`` from ``fields`` over ``valid``; a field of ``kind`` this factory has no valid
    value for fails here, naming it, so a change of the payloads is adapted to in one place."""
    names = [field.name for field in dataclasses.fields(kind)]
    missing = [name for name in names if name not in fields and name not in valid]
    unknown = sorted(set(fields) - set(names))
    if missing or unknown:
        raise TypeError(f"{kind.__name__}: no valid value for {missing}; unknown {unknown}")
    return kind(**{name: fields.get(name, valid.get(name)) for name in names})


def payload_fields(payload: OfferPayload | AnswerPayload) -> tuple[int, int, dict[str, Any]]:
    """(type code, version, fields) of ``payload`` as the codec puts them on the wire."""
    code, version, fields = msgpack.unpackb(CODEC.encode(payload), raw=False)
    return code, version, fields


def hostile_payload(payload: OfferPayload | AnswerPayload, *, replace: dict[str, Any],
                    drop: tuple[str, ...] = (), version: int | None = None) -> bytes:
    """``payload``'s wire bytes with fields replaced by any msgpack value (of any type),
    dropped, or a field added (a name not in the class), or another version."""
    code, wire_version, fields = payload_fields(payload)
    fields.update(replace)
    for name in drop:
        fields.pop(name, None)
    # surrogatepass: a lone surrogate goes out as the invalid UTF-8 a hostile sender can send.
    return bytes(msgpack.packb([code, wire_version if version is None else version, fields],
                               use_bin_type=True, unicode_errors="surrogatepass"))


def signed_body(payload_bytes: bytes, signer: NodeKeys | None, context: bytes,
                rng: random.Random | None = None) -> bytes:
    """A ``Signed`` body over ``payload_bytes``: signed by ``signer`` (really), or, with
    ``signer`` None, carrying random bytes of a signature's length."""
    if signer is None:
        signature = (rng or random.Random()).randbytes(HYBRID_SIGNATURE_BYTES)  # noqa: S311
    else:
        signature = signer.signing.sign(payload_bytes, context).to_bytes()
    # Packed here, not by the codec: a hostile payload may be over the limit a sender keeps to.
    spec = SIGNALING.spec_for_class(Signed)
    assert spec is not None  # registered by actors.van.signaling
    return bytes(msgpack.packb([spec.code, spec.version,
                                {"payload": payload_bytes, "signature": signature}],
                               use_bin_type=True))


def signed_offer(payload: OfferPayload, signer: NodeKeys) -> bytes:
    """The body a unit POSTs: ``payload`` signed by ``signer`` (the real path)."""
    return sign_payload(payload, signer.signing, OFFER_CONTEXT)


def signed_answer(payload: AnswerPayload, signer: NodeKeys) -> bytes:
    """The body a van answers with: ``payload`` signed by ``signer`` (the real path)."""
    return sign_payload(payload, signer.signing, ANSWER_CONTEXT)


async def data_channel_offer() -> str:
    """A live aiortc SDP offer with one data channel (what a unit sends)."""
    peer_connection = DataOnlyPeerConnection()
    try:
        create_link_channel(peer_connection, 1 << 16)
        await peer_connection.setLocalDescription(await peer_connection.createOffer())
        return str(peer_connection.localDescription.sdp)
    finally:
        await peer_connection.close()


class Connections:
    """The service's ``connected``: keeps every answered unit's peer connection to close."""

    def __init__(self) -> None:
        self.peer_connections: list[DataOnlyPeerConnection] = []

    def __call__(self, unit_id: str, peer_connection: DataOnlyPeerConnection,
                 link_key: bytes) -> None:
        self.peer_connections.append(peer_connection)

    async def close(self) -> None:
        """Close every connection handed over so far."""
        connections, self.peer_connections = self.peer_connections, []
        for peer_connection in connections:
            await peer_connection.close()


# --- hostile values and mutations -------------------------------------------------------------


def _generic_value(rng: random.Random) -> Any:
    return rng.choice([
        None, True, False, 0, -1, 2**63 - 1, -(2**63), 2**64 - 1, float("nan"), float("inf"),
        -0.0, 1e308, "", "x" * rng.randint(1, 40_000), rng.randbytes(rng.randint(0, 4096)),
        [], [1, 2], {}, {"a": 1}, {1: b"x"}, msgpack.ExtType(1, rng.randbytes(20)),
        msgpack.Timestamp(2**34 - 1, 999_999_999), [[[[[]]]]]])


def _hostile_text(rng: random.Random) -> str:
    return rng.choice([
        "", " ", "*", "unit\nforged", "unit\x00", "\x1b[31mred", "\u202eevil", "\ud800",
        UNIT_ID.upper(), UNIT_ID + " ", "u" * 65, "é" * 64, "\U0001f600" * 64,
        "".join(chr(rng.randrange(0x110000)) for _ in range(rng.randint(1, 80)))])


def _hostile_sdp(rng: random.Random) -> str:
    lines = [DATA_SDP] + [rng.choice(MEDIA_LINES) for _ in range(rng.randint(0, 4))]
    rng.shuffle(lines)
    return rng.choice(["".join(lines), "", "m=application\n" * 2, DATA_SDP + "\x00" * 10,
                       "x" * rng.choice([16 * 1024, 16 * 1024 + 1, 30_000]),
                       DATA_SDP.replace("\r\n", "\n"), rng.randbytes(200).decode("latin-1")])


def hostile_value(rng: random.Random, name: str, now_s: float) -> Any:
    """A value for the field ``name`` meant to break its checks (a generic one for a field this
    fuzz does not know, so a new field is fuzzed too); ``now_s`` is the checking clock."""
    by_name: dict[str, Callable[[], Any]] = {
        "unit_id": lambda: _hostile_text(rng),
        "van_id": lambda: _hostile_text(rng),
        "timestamp_ms": lambda: rng.choice([
            0, -1, 1, -(2**63), 2**63 - 1, 2**64 - 1, rng.randrange(-(2**63), 2**63),
            int((now_s + rng.choice([-30.001, 30.001, -1e6, 1e9])) * 1000)]),
        "nonce": lambda: rng.randbytes(rng.choice([0, 1, 31, NONCE_BYTES, 33, 30_000])),
        "offer_nonce": lambda: rng.randbytes(rng.choice([0, 1, 31, NONCE_BYTES, 33, 30_000])),
        "sdp": lambda: _hostile_sdp(rng),
        "sealed_link_key": lambda: rng.randbytes(rng.choice([0, 1, 32, 1167, 1168, 1169,
                                                             4096])),
    }
    make = by_name.get(name)
    return make() if make is not None and rng.random() >= 0.25 else _generic_value(rng)


def _extend(rng: random.Random, data: bytes) -> bytes:
    return data + rng.randbytes(rng.choice([1, 16, 4096, MAX_BODY_BYTES]))


def _random_prefix(rng: random.Random, data: bytes) -> bytes:
    return random_tail(rng, data, keep=(1, 40))


MUTATIONS: tuple[Mutation, ...] = (flip, flip, truncate, splice, _extend, _random_prefix)


# --- what may be accepted: checked again, independently of the code under test ---------------


def _data_only(sdp: str) -> bool:
    kinds = [line[2:].split(" ", 1)[0] for line in sdp.splitlines() if line.startswith("m=")]
    return kinds == ["application"]


def _fresh(timestamp_ms: int, now_s: float, window_s: float) -> bool:
    return abs(timestamp_ms - now_s * 1000) <= window_s * 1000


def acceptable_offer(body: bytes, url_unit: str, now_s: float, window_s: float) -> bool:
    """Whether an answered offer may be answered: an ``OfferPayload`` for ``url_unit`` (the
    enrolled one), fresh, with a 32-byte nonce, a sealed key of the right length and one data
    channel. Its signature and link key were checked by the service; a forged one is caught by
    the caller knowing who signed."""
    try:
        payload = CODEC.decode(CODEC.decode(body).payload)
    except Exception:  # noqa: BLE001 - it was answered, so it must decode
        return False
    return (isinstance(payload, OfferPayload) and payload.unit_id == url_unit == UNIT_ID
            and _fresh(payload.timestamp_ms, now_s, window_s)
            and len(payload.nonce) == NONCE_BYTES and _data_only(payload.sdp)
            and len(payload.sealed_link_key) == LINK_KEY_BYTES + 1136)


def acceptable_answer(answer: AnswerPayload, nonce: bytes, now_s: float,
                      window_s: float) -> bool:
    """Whether an accepted answer answers our offer: our van, our unit, our nonce, fresh, one
    data channel."""
    return (answer.van_id == VAN_ID and answer.unit_id == UNIT_ID
            and answer.offer_nonce == nonce and _fresh(answer.timestamp_ms, now_s, window_s)
            and _data_only(answer.sdp))


# --- the run ----------------------------------------------------------------------------------


@dataclass
class _Fuzz:
    """One run's parties, service, valid originals and tallies."""

    rng: random.Random
    parties: Parties
    service: SignalingService
    connections: Connections
    originals: list[bytes]
    """Valid offers answered once already (their nonces spent)."""
    live_sdp: str
    reasons: Counter[str] = dataclasses.field(default_factory=Counter)
    unexpected: Counter[str] = dataclasses.field(default_factory=Counter)
    accepted_although_forged: int = 0
    accepted_although_invalid: int = 0

    def _unexpected_exception(self, where: str, exc: BaseException) -> None:
        self.unexpected[f"{where}: {type(exc).__name__}: {exc}"[:200]] += 1

    def _accepted(self, kind: str, *, signed_by_the_key: bool, valid: bool) -> None:
        if not signed_by_the_key:
            self.accepted_although_forged += 1
        elif not valid:
            self.accepted_although_invalid += 1
        else:
            self.reasons[kind] += 1

    async def offer_input(self) -> None:
        """One hostile offer into ``SignalingService.answer``."""
        rng, parties = self.rng, self.parties
        choice = rng.random()
        insider = False
        url_unit = rng.choice([UNIT_ID] * 9 + ["unit-other"])
        if choice < 0.02:
            body = rng.choice(self.originals)  # a replay, byte for byte
        elif choice < 0.2:
            body = rng.randbytes(rng.choice([rng.randint(0, 64), rng.randint(0, 40_000)]))
        elif choice < 0.7:
            # Its nonce is spent: even with its signed bytes unchanged it must be refused.
            body = rng.choice(MUTATIONS)(rng, rng.choice(self.originals))
        else:
            valid = offer_payload(parties, rng.choice([self.live_sdp, DATA_SDP]))
            names = [field.name for field in dataclasses.fields(OfferPayload)]
            replace = {name: hostile_value(rng, name, parties.now_s)
                       for name in rng.sample(names, rng.randint(0, 2))}
            if rng.random() < 0.05:
                replace[f"extra_{rng.randint(0, 9)}"] = _generic_value(rng)
            drop = (rng.choice(names),) if rng.random() < 0.05 else ()
            version = rng.choice([None] * 18 + [1, 3])
            payload_bytes = hostile_payload(valid, replace=replace, drop=drop, version=version)
            signer = rng.choice([parties.unit, parties.unit, parties.stranger, None])
            body = signed_body(payload_bytes, signer, OFFER_CONTEXT, rng)
            insider = signer is parties.unit
            claimed = replace.get("unit_id")
            if isinstance(claimed, str) and rng.random() < 0.5:
                url_unit = claimed  # posted where it claims to be from: reaches enrolment
        try:
            await self.service.answer(body, url_unit)
        except SignalingRefused as refused:
            self.reasons[f"offer:{refused.reason}"] += 1
            if refused.reason not in OFFER_REFUSALS:
                self.unexpected[f"offer: unknown reason {refused.reason}"] += 1
        except Exception as exc:  # noqa: BLE001 - counting what must never happen is the point
            self._unexpected_exception("offer", exc)
        else:
            window_s = self.service.config.freshness_window_s
            self._accepted("offer:answered_insider_valid", signed_by_the_key=insider,
                           valid=acceptable_offer(body, url_unit, parties.now_s, window_s))

    def answer_input(self, config: SignalingClientConfig) -> None:
        """One hostile answer into ``check_answer``."""
        rng, parties = self.rng, self.parties
        nonce = rng.randbytes(NONCE_BYTES)
        valid = answer_payload(parties, nonce)
        original = signed_answer(valid, parties.van)
        choice = rng.random()
        van_signed = False
        if choice < 0.2:
            body = rng.randbytes(rng.choice([rng.randint(0, 64), rng.randint(0, 40_000)]))
        elif choice < 0.6:
            body = rng.choice(MUTATIONS)(rng, original)
            with contextlib.suppress(Exception):  # undecodable: not the van's, refused anyway
                van_signed = CODEC.decode(body).payload == CODEC.decode(original).payload
        else:
            names = [field.name for field in dataclasses.fields(AnswerPayload)]
            replace = {name: hostile_value(rng, name, parties.now_s)
                       for name in rng.sample(names, rng.randint(0, 2))}
            payload_bytes = hostile_payload(valid, replace=replace)
            signer = rng.choice([parties.van, parties.van, parties.other_van, None])
            body = signed_body(payload_bytes, signer, ANSWER_CONTEXT, rng)
            van_signed = signer is parties.van
        try:
            answer = check_answer(body, config, UNIT_ID, nonce, parties.now_s)
        except SignalingFailed as failed:
            self.reasons[f"answer:{failed.reason}"] += 1
            if failed.reason not in ANSWER_FAILURES:
                self.unexpected[f"answer: unknown reason {failed.reason}"] += 1
        except Exception as exc:  # noqa: BLE001 - counting what must never happen is the point
            self._unexpected_exception("answer", exc)
        else:
            self._accepted("answer:accepted_van_signed_valid", signed_by_the_key=van_signed,
                           valid=acceptable_answer(answer, nonce, parties.now_s,
                                                   config.freshness_window_s))


async def _run(inputs: int, seed: int) -> dict[str, object]:
    rng = random.Random(seed)  # noqa: S311 - reproducible fuzz inputs, not keys
    parties = Parties.generate()
    connections = Connections()
    # One unit sends every offer on a frozen clock: its per-unit share is the whole cache, or
    # it would hit the share after 64 offers and never reach the later checks.
    limits = SignalingConfig()
    limits = SignalingConfig(max_offers_per_unit=limits.max_remembered_nonces)
    service = SignalingService(parties.van, parties.enrolled, connections, limits,
                               clock=lambda: parties.now_s)
    config = parties.client_config()
    live_sdp = await data_channel_offer()
    # Each original is answered once: its nonce is spent, so its unchanged bytes are a replay.
    originals = [signed_offer(offer_payload(parties, live_sdp), parties.unit) for _ in range(4)]
    baseline_failures = 0
    for body in originals:
        try:
            check_answer(await service.answer(body, UNIT_ID), config, UNIT_ID,
                         CODEC.decode(CODEC.decode(body).payload).nonce, parties.now_s)
        except (SignalingRefused, SignalingFailed):
            baseline_failures += 1
    await connections.close()
    rss_before_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    fuzz = _Fuzz(rng, parties, service, connections, originals, live_sdp)
    started = time.perf_counter()
    for index in range(inputs):
        if rng.random() < 0.75:
            await fuzz.offer_input()
        else:
            fuzz.answer_input(config)
        if index % 256 == 0:
            await connections.close()
    await connections.close()
    seconds = time.perf_counter() - started
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    replay_cache = len(service._replays)
    limit = service.config.max_remembered_nonces
    return {
        "inputs": inputs,
        "seed": seed,
        "baseline_answered": len(originals) - baseline_failures,
        "refused_by_reason": dict(sorted(fuzz.reasons.items())),
        "unexpected_exceptions": sum(fuzz.unexpected.values()),
        "unexpected_examples": dict(fuzz.unexpected.most_common(5)),
        "accepted_although_forged": fuzz.accepted_although_forged,
        "accepted_although_invalid": fuzz.accepted_although_invalid,
        "replay_cache_nonces": replay_cache,
        "max_remembered_nonces": limit,
        "seconds": round(seconds, 2),
        "inputs_per_s": round(inputs / seconds) if seconds > 0 else None,
        "peak_rss_mb": round(peak_rss_mb, 1),
        "rss_growth_mb": round(peak_rss_mb - rss_before_mb, 1),
        "ok": (not fuzz.unexpected and fuzz.accepted_although_forged == 0
               and fuzz.accepted_although_invalid == 0 and baseline_failures == 0
               and replay_cache <= limit and peak_rss_mb - rss_before_mb <= MAX_RSS_GROWTH_MB),
    }


def run_fuzz(inputs: int, seed: int) -> dict[str, object]:
    """Fuzz ``inputs`` inputs; the summary as a JSON-ready dict."""
    return asyncio.run(_run(inputs, seed))


def main(argv: list[str] | None = None) -> int:
    """Run the fuzz and print its JSON summary; exit 1 when anything unexpected happened."""
    return fuzz_main(__doc__.split("\n\n")[0], run_fuzz, argv)


if __name__ == "__main__":
    sys.exit(main())
