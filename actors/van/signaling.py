"""The van's signaling endpoint: WHIP-style (RFC 9725) offer/answer over HTTPS, signed both ways.

A unit POSTs ``/units/{unit_id}/offer`` with a signed offer; the van answers ``201 Created`` with
its signed answer. Both bodies are one ``Signed`` message of the strict codec (registry
``SIGNALING``, type codes 310-312): the payload's codec bytes and a hybrid signature over them
(Ed25519 + ML-DSA-65, contexts ``OFFER_CONTEXT`` and ``ANSWER_CONTEXT``). The DTLS fingerprints
sit inside the signed SDPs, so a man in the middle who swaps either SDP breaks a signature, and
one who relays them unchanged cannot complete DTLS with either side: it cannot splice the
connection. docs/TRANSPORT.md gives the format field by field.

**The link key.** The runtime link over the data channel proves a shared key with its HMAC
handshake. The unit draws a fresh 32-byte key for every offer and seals it to the van's
encryption key (``secure.sealing``: HPKE, ML-KEM-768 + X25519) with an ``info`` binding
``LINK_KEY_LABEL``, the unit id and the offer's nonce, so a sealed key opens only in the offer it
was made for; the offer's signature covers it. Only the van opens it, so only the van and that
unit know the key of that one connection. It is never logged and never leaves memory.

The checks, in order (cheap ones first; the nonce is remembered only once the signature
verified, so forged offers cannot fill the replay cache or burn a unit's nonce); each refusal
has a status, a stable ``reason`` counted in ``SignalingService.refusals`` and a log line
through ``printable`` (through a ``LogBudget``: at most 20 lines per 10 s, then a count of
the lines left out, since a peer decides how many refusals there are):

==  ===============================================  ======  ===================
 1  fewer than ``max_concurrent_offers`` in flight     503     busy
 2  body at most ``max_body_bytes``                    413     oversize
 3  body read within ``read_timeout_s``                408     read_timeout
 4  strict decode of ``Signed`` and ``OfferPayload``   400     malformed
 5  the URL's unit id is the payload's                 400     unit_mismatch
 6  the unit is enrolled (a unit's public keys)        403     unknown_unit
 7  timestamp within +-``freshness_window_s``          403     stale
 8  both signature halves verify                       403     bad_signature
 9  the nonce is new within the window                 409     replayed
    the unit holds under ``max_offers_per_unit``       429     too_many_offers
    nonces in the window (its share of the cache)
    (the cache is full of unexpired nonces)            503     replay_cache_full
10  the sealed link key opens with the van's key       403     bad_link_key
11  the SDP offers one data channel, no media          400     media_refused
12  the answer is made within the timeout              504/400 negotiation_failed
13  ``connected`` takes the unit (``unit_links``)       503     too_many_units,
                                                                stopping
==  ===============================================  ======  ===================
"""

from __future__ import annotations

import asyncio
import collections
import heapq
import logging
import math
import ssl
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from aiohttp import web
from aiortc import RTCIceServer, RTCSessionDescription

from guards.config_checks import require_at_least, require_positive
from guards.log_text import printable
from guards.user_input import UserInputError
from runtime.codec import Codec, DecodeError
from runtime.datachannel import DataOnlyPeerConnection, MediaRefused, check_data_only_sdp
from runtime.log_budget import LogBudget
from runtime.message import MessageRegistry, message
from secure.hybrid_signature import HybridSignature, SignatureInvalid, SigningKeyPair, VerifyKey
from secure.node_keys import NodeKeys, NodePublicKeys, NodeRole, check_node_id
from secure.sealing import (
    SEAL_OVERHEAD_BYTES,
    EncryptionKeyPair,
    EncryptionPublicKey,
    SealedOpenFailed,
)

T = TypeVar("T")
log = logging.getLogger("lfr.van.signaling")
SIGNALING = MessageRegistry()
"""The registry of signaling messages (type codes 310-319), never used by a link."""
OFFER_CONTEXT = b"lfr-edge/signaling-offer/v1"
ANSWER_CONTEXT = b"lfr-edge/signaling-answer/v1"
CONTENT_TYPE = "application/x-lfr-signed-sdp"
NONCE_BYTES = 32
MAX_SDP_CHARS = 16 * 1024
"""An aiortc data-channel SDP is about 1 KB with a few candidates."""
MAX_BODY_BYTES = 32 * 1024
"""A signed offer is the SDP, 3,373 bytes of signature and ~100 bytes of fields."""
CODEC = Codec(SIGNALING, max_message_bytes=MAX_BODY_BYTES)
"""The strict codec of signaling bodies."""
LINK_KEY_BYTES = 32
"""The link key a unit draws per offer (the link's HMAC handshake needs at least 32 bytes)."""
SEALED_LINK_KEY_BYTES = LINK_KEY_BYTES + SEAL_OVERHEAD_BYTES
"""A sealed link key: the key plus HPKE's 1,136 bytes (1,168)."""
LINK_KEY_LABEL = b"lfr-edge/signaling-link-key/v1\x00"
"""HPKE ``info`` prefix of a sealed link key; the unit id and the offer's nonce follow it."""
_UNIT_ID_LENGTH = struct.Struct(">B")


@message(310, version=2, registry=SIGNALING)
@dataclass(frozen=True, slots=True)
class OfferPayload:
    """What a unit signs: who it is, when, a fresh nonce, its SDP offer and its sealed link
    key. Version 2 added ``sealed_link_key`` (a version 1 offer is refused as malformed)."""

    unit_id: str
    """The unit's node id; must match the URL."""
    timestamp_ms: int
    """When the offer was made, ms since the Unix epoch (UTC)."""
    nonce: bytes
    """32 random bytes, never reused; the answer repeats it."""
    sdp: str
    """The SDP offer (one data channel section, DTLS fingerprint and candidates inside)."""
    sealed_link_key: bytes
    """The link key of this connection, sealed to the van (``seal_link_key``): 1,168 bytes."""


@message(311, registry=SIGNALING)
@dataclass(frozen=True, slots=True)
class AnswerPayload:
    """What the van signs: who it is, for which unit and offer, when, and its SDP answer."""

    van_id: str
    """The van's node id."""
    unit_id: str
    """The unit the answer is for."""
    offer_nonce: bytes
    """The nonce of the offer answered."""
    timestamp_ms: int
    """When the answer was made, ms since the Unix epoch (UTC)."""
    sdp: str
    """The SDP answer."""


@message(312, registry=SIGNALING)
@dataclass(frozen=True, slots=True)
class Signed:
    """A request or response body: a payload's codec bytes and its hybrid signature."""

    payload: bytes
    """``OfferPayload`` or ``AnswerPayload``, encoded with the ``SIGNALING`` codec."""
    signature: bytes
    """Ed25519 then ML-DSA-65 signature over ``payload`` (3,373 bytes)."""


class SignalingRefused(Exception):
    """A signaling message was refused; ``reason`` is stable (for counters), the text says
    why (anything quoted from the peer went through ``printable``)."""

    def __init__(self, reason: str, text: str, status: int = 400) -> None:
        self.reason = reason
        self.status = status
        super().__init__(text)


def sign_payload(payload: OfferPayload | AnswerPayload, signing: SigningKeyPair,
                 context: bytes) -> bytes:
    """The body carrying ``payload`` signed under ``context``."""
    data = CODEC.encode(payload)
    return CODEC.encode(Signed(data, signing.sign(data, context).to_bytes()))


def _decode(data: bytes, kind: type[T]) -> T:
    try:
        decoded = CODEC.decode(data)
    except DecodeError as exc:
        raise SignalingRefused("malformed", f"malformed body: {printable(exc)}") from None
    if not isinstance(decoded, kind):
        raise SignalingRefused("malformed", f"malformed body: expected {kind.__name__}, got "
                                            f"{type(decoded).__name__}")
    return decoded


def open_signed(body: bytes, kind: type[T]) -> tuple[T, bytes, HybridSignature]:
    """Decode a body strictly: (payload, its signed bytes, signature); ``SignalingRefused``
    (``malformed``) otherwise. The signature is not checked here."""
    signed = _decode(body, Signed)
    payload = _decode(signed.payload, kind)
    try:
        signature = HybridSignature.from_bytes(signed.signature)
    except ValueError as exc:
        raise SignalingRefused("malformed", f"malformed signature: {printable(exc)}") from None
    return payload, signed.payload, signature


def check_fields(node_ids: tuple[str, ...], nonce: bytes, sdp: str) -> None:
    """Ids valid, the nonce 32 bytes, the SDP at most ``MAX_SDP_CHARS``; else ``malformed``."""
    try:
        for node_id in node_ids:
            check_node_id(node_id)
    except UserInputError as exc:
        raise SignalingRefused("malformed", str(exc)) from None
    if len(nonce) != NONCE_BYTES:
        raise SignalingRefused("malformed", f"the nonce has {len(nonce)} bytes, not "
                                            f"{NONCE_BYTES}")
    if len(sdp) > MAX_SDP_CHARS:
        raise SignalingRefused("malformed", f"the SDP has {len(sdp)} characters, over "
                                            f"{MAX_SDP_CHARS}")


def _link_key_info(unit_id: str, nonce: bytes) -> bytes:
    unit = unit_id.encode("utf-8")
    return LINK_KEY_LABEL + _UNIT_ID_LENGTH.pack(len(unit)) + unit + nonce


def seal_link_key(link_key: bytes, van_key: EncryptionPublicKey, unit_id: str,
                  nonce: bytes) -> bytes:
    """``link_key`` sealed to ``van_key`` for the offer of ``unit_id`` with ``nonce``."""
    if len(link_key) != LINK_KEY_BYTES:
        raise ValueError(f"a link key has {LINK_KEY_BYTES} bytes")
    check_node_id(unit_id, "unit id")
    return van_key.seal(link_key, _link_key_info(unit_id, nonce))


def open_link_key(sealed: bytes, van_key: EncryptionKeyPair, unit_id: str,
                  nonce: bytes) -> bytes:
    """The link key sealed in an offer of ``unit_id`` with ``nonce``; ``SignalingRefused``
    (``bad_link_key``) unless it opens with ``van_key`` under exactly that unit and nonce. The
    caller checked the length first (``check_sealed_link_key``), so the key has 32 bytes."""
    try:
        return van_key.open(sealed, _link_key_info(unit_id, nonce))
    except SealedOpenFailed:
        raise SignalingRefused("bad_link_key", "the sealed link key does not open with this "
                               "van's key for this unit and offer", 403) from None


def check_sealed_link_key(sealed: bytes) -> None:
    """``malformed`` unless ``sealed`` has the length of a sealed link key."""
    if len(sealed) != SEALED_LINK_KEY_BYTES:
        raise SignalingRefused("malformed", f"the sealed link key has {len(sealed)} bytes, not "
                                            f"{SEALED_LINK_KEY_BYTES}")


def check_fresh(timestamp_ms: int, now_s: float, window_s: float) -> None:
    """``stale`` unless the timestamp lies within ``window_s`` of ``now_s`` either way."""
    skew_s = timestamp_ms / 1000 - now_s
    if not math.isfinite(skew_s) or abs(skew_s) > window_s:
        raise SignalingRefused("stale", f"timestamp {skew_s:+.1f} s from this clock, outside "
                                        f"the window of {window_s:g} s", 403)


def check_signature(key: VerifyKey, signature: HybridSignature, data: bytes,
                    context: bytes) -> None:
    """``bad_signature`` (naming the half) unless both halves verify."""
    try:
        key.verify(signature, data, context)
    except SignatureInvalid as exc:
        raise SignalingRefused("bad_signature", str(exc), 403) from None


def check_sdp(sdp: str) -> None:
    """``media_refused`` unless the SDP negotiates one data channel and nothing else."""
    try:
        check_data_only_sdp(sdp)
    except MediaRefused as exc:
        raise SignalingRefused("media_refused", str(exc)) from None


class ReplayCache:
    """Nonces seen in the last window, bounded twice: per unit and in all.

    When full of unexpired nonces, new offers are refused (``replay_cache_full``) rather than an
    old nonce forgotten (which would let it replay). Each unit may hold at most ``max_per_unit``
    of them: one more of its offers is refused (``too_many_offers``) and not remembered, so an
    enrolled unit that floods offers (a hostile one, or one stuck redialling) spends only its own
    share and locks out only itself, never the units that share the cache. A nonce is kept until
    its offer's timestamp leaves the window; after that the freshness check refuses the offer
    anyway, and its unit's share frees up."""

    def __init__(self, window_s: float, max_nonces: int, max_per_unit: int) -> None:
        self._window_s = window_s
        self._max_nonces = max_nonces
        self._max_per_unit = max_per_unit
        # Invariant: the heap and the set hold the same nonces, each once.
        self._expiry: list[tuple[float, bytes, str]] = []
        self._seen: set[bytes] = set()
        # Invariant: _per_unit[unit] is how many of those nonces came from unit, 1 to
        # max_per_unit (a unit with none has no entry), so it has at most max_nonces entries.
        self._per_unit: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._seen)

    def held_by(self, unit_id: str, now_s: float) -> int:
        """How many unexpired nonces ``unit_id`` holds at ``now_s``."""
        self._expire(now_s)
        return self._per_unit.get(unit_id, 0)

    def remember(self, unit_id: str, nonce: bytes, timestamp_s: float, now_s: float) -> None:
        """Record ``nonce`` for ``unit_id``; ``SignalingRefused`` if it was seen, the unit holds
        its share already or the cache is full (in that order); nothing is recorded then."""
        self._expire(now_s)
        if nonce in self._seen:
            raise SignalingRefused("replayed", "this nonce was used already (a replayed "
                                               "offer)", 409)
        held = self._per_unit.get(unit_id, 0)
        if held >= self._max_per_unit:
            raise SignalingRefused("too_many_offers", f"this unit made {held} offers within "
                                   f"the window already, its limit", 429)
        if len(self._seen) >= self._max_nonces:
            raise SignalingRefused("replay_cache_full", f"{self._max_nonces} offers within "
                                                        "the window already", 503)
        self._seen.add(nonce)
        self._per_unit[unit_id] = held + 1
        heapq.heappush(self._expiry, (timestamp_s + self._window_s, nonce, unit_id))

    def _expire(self, now_s: float) -> None:
        while self._expiry and self._expiry[0][0] < now_s:
            _, nonce, unit_id = heapq.heappop(self._expiry)
            self._seen.discard(nonce)
            left = self._per_unit[unit_id] - 1
            if left:
                self._per_unit[unit_id] = left
            else:
                del self._per_unit[unit_id]


@dataclass(frozen=True, slots=True)
class SignalingConfig:
    """Limits and timeouts of the van's signaling endpoint."""

    freshness_window_s: float = 30.0
    """An offer's timestamp may differ from the van's clock by this much either way (s)."""
    max_body_bytes: int = MAX_BODY_BYTES
    """Largest request body read (aiohttp's ``client_max_size``); more is refused with 413."""
    max_concurrent_offers: int = 4
    """Offers being handled at once; one more is refused at once with 503."""
    read_timeout_s: float = 10.0
    """Seconds the request body may take to arrive."""
    negotiation_timeout_s: float = 10.0
    """Seconds to apply the offer and make the answer (ICE gathering included)."""
    max_remembered_nonces: int = 10_000
    """Offers remembered within the window (the replay cache's bound)."""
    max_offers_per_unit: int = 64
    """Offers of one unit remembered within the window, its share of the replay cache; one
    more is refused (429 ``too_many_offers``) until the oldest leaves the window (up to twice
    ``freshness_window_s``: a timestamp may be that far ahead). A unit redialling with its
    backoff (0.5 s doubling to 30 s, full jitter) makes about ten in a minute. With the
    defaults, 157 enrolled units flooding together are needed to fill the whole cache; at or
    above ``max_remembered_nonces`` this bound has no effect."""
    ice_servers: tuple[RTCIceServer, ...] = ()
    """STUN/TURN servers of the van's peer connections; none: host candidates only."""

    def __post_init__(self) -> None:
        for name in ("freshness_window_s", "read_timeout_s", "negotiation_timeout_s"):
            require_positive(f"SignalingConfig.{name}", getattr(self, name))
        require_at_least("SignalingConfig.max_body_bytes", self.max_body_bytes, 4096)
        require_at_least("SignalingConfig.max_concurrent_offers", self.max_concurrent_offers, 1)
        require_at_least("SignalingConfig.max_remembered_nonces", self.max_remembered_nonces, 1)
        require_at_least("SignalingConfig.max_offers_per_unit", self.max_offers_per_unit, 1)


EnrolledUnits = Callable[[str], NodePublicKeys | None]
"""The public keys of an enrolled unit by id, or None."""
Connected = Callable[[str, DataOnlyPeerConnection, bytes], None]
"""Told each accepted unit's id, its peer connection (answered, not yet connected) and the
link key from its offer; owns the connection from then on. Called before the answer is sent,
so no ``datachannel`` event is missed. It may refuse the unit by raising ``SignalingRefused``
(the service then closes the connection and answers the refusal instead)."""


class SignalingService:
    """Checks signed offers and answers them; serve ``app()`` over HTTPS."""

    def __init__(self, van: NodeKeys, enrolled: EnrolledUnits, connected: Connected,
                 config: SignalingConfig | None = None,
                 clock: Callable[[], float] = time.time, *,
                 on_refused: Callable[[str, str], None] | None = None) -> None:
        """``on_refused(reason, peer)``: told of every refused offer (the audit trail)."""
        if van.role is not NodeRole.VAN or van.encryption is None:
            raise UserInputError(f"signaling answers with a van's keys, not a {van.role.value}'s")
        self.van = van
        self._van_encryption: EncryptionKeyPair = van.encryption
        self.config = config or SignalingConfig()
        self._enrolled = enrolled
        self._connected = connected
        self._clock = clock
        self._replays = ReplayCache(self.config.freshness_window_s,
                                    self.config.max_remembered_nonces,
                                    self.config.max_offers_per_unit)
        self._log = LogBudget(log, "signaling refusals")
        self._on_refused = on_refused
        self._in_flight = 0
        self.refusals: collections.Counter[str] = collections.Counter()
        """Refused offers by reason."""
        self.answered = 0
        """Offers answered."""

    def app(self) -> web.Application:
        """The aiohttp application: ``POST /units/{unit_id}/offer``."""
        app = web.Application(client_max_size=self.config.max_body_bytes)
        app.router.add_post("/units/{unit_id}/offer", self._handle_offer)
        return app

    async def _handle_offer(self, request: web.Request) -> web.Response:
        url_unit = request.match_info["unit_id"]
        if self._in_flight >= self.config.max_concurrent_offers:
            return self._refuse(request, url_unit, SignalingRefused(
                "busy", f"{self._in_flight} offers are being answered already", 503))
        self._in_flight += 1
        try:
            body = await self._read_body(request)
            answer = await self.answer(body, url_unit)
        except SignalingRefused as exc:
            return self._refuse(request, url_unit, exc)
        finally:
            self._in_flight -= 1
        return web.Response(status=201, body=answer, content_type=CONTENT_TYPE)

    async def _read_body(self, request: web.Request) -> bytes:
        limit = self.config.max_body_bytes  # aiohttp's client_max_size: read() stops there
        try:
            async with asyncio.timeout(self.config.read_timeout_s):
                return await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise SignalingRefused("oversize", f"the body is over the limit of {limit} bytes",
                                   413) from None
        except TimeoutError:
            raise SignalingRefused("read_timeout", "the body did not arrive within "
                                   f"{self.config.read_timeout_s:g} s", 408) from None

    def _refuse(self, request: web.Request, url_unit: str,
                exc: SignalingRefused) -> web.Response:
        self.refusals[exc.reason] += 1
        if self._on_refused is not None:
            self._on_refused(exc.reason, f"{request.remote} unit {url_unit}")
        self._log.warning("signaling: refused an offer from %s for unit %s: %s: %s",
                          printable(request.remote), printable(url_unit, max_chars=80),
                          exc.reason, printable(exc))
        return web.Response(status=exc.status, text=f"{exc.reason}: {printable(exc)}\n")

    async def answer(self, body: bytes, url_unit: str) -> bytes:
        """Check a signed offer (checks 4-13 of the module's table) and return the signed
        answer; ``SignalingRefused`` otherwise."""
        config = self.config
        offer, signed_bytes, signature = open_signed(body, OfferPayload)
        check_fields((offer.unit_id,), offer.nonce, offer.sdp)
        check_sealed_link_key(offer.sealed_link_key)
        if offer.unit_id != url_unit:
            raise SignalingRefused("unit_mismatch", f"the offer is signed for unit "
                                   f"{printable(offer.unit_id)}, posted for another")
        unit = self._enrolled(offer.unit_id)
        if unit is None or unit.role is not NodeRole.UNIT:
            raise SignalingRefused("unknown_unit", f"no unit {printable(offer.unit_id)} is "
                                                   "enrolled", 403)
        now_s = self._clock()
        check_fresh(offer.timestamp_ms, now_s, config.freshness_window_s)
        check_signature(unit.verify_key, signature, signed_bytes, OFFER_CONTEXT)
        self._replays.remember(offer.unit_id, offer.nonce, offer.timestamp_ms / 1000, now_s)
        link_key = open_link_key(offer.sealed_link_key, self._van_encryption, offer.unit_id,
                                 offer.nonce)
        check_sdp(offer.sdp)
        sdp = await self._negotiate(offer.unit_id, offer.sdp, link_key)
        self.answered += 1
        log.info("signaling: answered unit %s", printable(offer.unit_id))
        return sign_payload(AnswerPayload(self.van.node_id, offer.unit_id, offer.nonce,
                                          int(self._clock() * 1000), sdp),
                            self.van.signing, ANSWER_CONTEXT)

    async def _negotiate(self, unit_id: str, offer_sdp: str, link_key: bytes) -> str:
        peer_connection = DataOnlyPeerConnection(self.config.ice_servers)
        try:
            async with asyncio.timeout(self.config.negotiation_timeout_s):
                await peer_connection.setRemoteDescription(
                    RTCSessionDescription(offer_sdp, "offer"))
                await peer_connection.setLocalDescription(await peer_connection.createAnswer())
        except TimeoutError:
            await peer_connection.close()
            raise SignalingRefused("negotiation_failed", "no answer within "
                                   f"{self.config.negotiation_timeout_s:g} s", 504) from None
        except Exception as exc:  # noqa: BLE001 - aiortc raises many kinds on a bad SDP
            await peer_connection.close()
            raise SignalingRefused("negotiation_failed", "the offer could not be answered: "
                                   f"{type(exc).__name__}: {printable(exc)}", 400) from None
        try:
            self._connected(unit_id, peer_connection, link_key)
        except SignalingRefused:
            await peer_connection.close()
            raise
        return str(peer_connection.localDescription.sdp)


SHUTDOWN_TIMEOUT_S = 2.0
"""``cleanup()`` of the runner waits this long for requests still being handled (aiohttp's own
default is 60 s, longer than a stop may take)."""


async def serve_signaling(service: SignalingService, host: str, port: int,
                          ssl_context: ssl.SSLContext) -> tuple[web.AppRunner, int]:
    """Serve ``service`` over HTTPS on ``host:port``; returns the runner (``cleanup()`` stops
    it within ``SHUTDOWN_TIMEOUT_S``) and the bound port (useful with ``port=0``). An address
    that cannot be bound raises ``OSError`` (the runner is cleaned up first)."""
    runner = web.AppRunner(service.app(), access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound = runner.addresses[0][1]
    return runner, int(bound)
