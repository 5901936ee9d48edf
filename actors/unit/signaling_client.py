"""The unit's side of signaling: sign an offer, POST it to the pinned van, check the answer.

``negotiate`` makes the SDP offer on a ``DataOnlyPeerConnection``, draws a fresh 32-byte link key
and seals it to the van's encryption key (``seal_link_key``), signs the offer with the unit's
key (``actors.van.signaling`` holds the format), POSTs it over HTTPS to
``{van_url}/units/{unit_id}/offer`` and trusts the server only if its certificate's sha256 is
the pinned one (no certificate authority is consulted: ``aiohttp.Fingerprint``). The answer is
applied only after these checks, in order: strict decode (``malformed``), the van's signature,
both halves (``bad_signature``), the van's id (``wrong_van``), our unit id (``wrong_unit``), our
nonce (``nonce_mismatch``), a fresh timestamp (``stale``), one data channel and no media
(``media_refused``). Every step has a timeout. It returns the link key: the key of this
connection's link handshake (``LinkKeys({van_id: key}, None, ...)``), known only to this unit
and the van, never logged.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
from aiortc import RTCIceServer, RTCSessionDescription

from actors.van.signaling import (
    ANSWER_CONTEXT,
    CONTENT_TYPE,
    LINK_KEY_BYTES,
    MAX_BODY_BYTES,
    NONCE_BYTES,
    OFFER_CONTEXT,
    AnswerPayload,
    OfferPayload,
    SignalingRefused,
    check_fields,
    check_fresh,
    check_sdp,
    check_signature,
    open_signed,
    seal_link_key,
    sign_payload,
)
from guards.config_checks import ConfigError, require_positive
from guards.log_text import printable
from runtime.datachannel import DataOnlyPeerConnection
from secure.node_keys import NodeKeys, NodePublicKeys, NodeRole


class SignalingFailed(ConnectionError):
    """Signaling did not succeed; ``reason`` is stable, the text says why."""

    def __init__(self, reason: str, text: str) -> None:
        self.reason = reason
        super().__init__(text)


@dataclass(frozen=True, slots=True)
class SignalingClientConfig:
    """Where the unit's van is and how it is recognised."""

    van_url: str
    """``https://host:port`` of the van's signaling endpoint."""
    van: NodePublicKeys
    """The van's public keys (its signing key checks the answers)."""
    tls_fingerprint: bytes
    """sha256 of the van's TLS certificate (DER): the only certificate accepted."""
    freshness_window_s: float = 30.0
    """An answer's timestamp may differ from this clock by this much either way (s)."""
    connect_timeout_s: float = 5.0
    """Seconds to connect to the van (TCP and TLS)."""
    request_timeout_s: float = 15.0
    """Seconds for the whole request, answer included."""
    negotiation_timeout_s: float = 10.0
    """Seconds to make the offer (ICE gathering) and then to apply the answer."""
    ice_servers: tuple[RTCIceServer, ...] = ()
    """STUN/TURN servers; none: host candidates only."""

    def __post_init__(self) -> None:
        if not self.van_url.startswith("https://"):
            raise ConfigError(f"SignalingClientConfig.van_url must be https://, got "
                              f"{printable(self.van_url)}")
        if self.van.role is not NodeRole.VAN or self.van.encryption_key is None:
            raise ConfigError("SignalingClientConfig.van must be a van's public keys")
        if len(self.tls_fingerprint) != 32:
            raise ConfigError("SignalingClientConfig.tls_fingerprint must be a sha256 (32 bytes)")
        for name in ("freshness_window_s", "connect_timeout_s", "request_timeout_s",
                     "negotiation_timeout_s"):
            require_positive(f"SignalingClientConfig.{name}", getattr(self, name))


async def negotiate(unit: NodeKeys, config: SignalingClientConfig,
                    peer_connection: DataOnlyPeerConnection, *,
                    clock: Callable[[], float] = time.time) -> bytes:
    """Offer, sign, POST, check and apply the answer; returns the connection's link key (32
    bytes, sealed to the van in the offer). ``SignalingFailed`` otherwise. Create the data
    channel on ``peer_connection`` first."""
    van_key = config.van.encryption_key
    assert van_key is not None  # SignalingClientConfig checked it
    try:
        async with asyncio.timeout(config.negotiation_timeout_s):
            await peer_connection.setLocalDescription(await peer_connection.createOffer())
    except TimeoutError:
        raise SignalingFailed("offer_timeout", "no offer within "
                              f"{config.negotiation_timeout_s:g} s") from None
    nonce = secrets.token_bytes(NONCE_BYTES)
    link_key = secrets.token_bytes(LINK_KEY_BYTES)
    body = sign_payload(OfferPayload(unit.node_id, int(clock() * 1000), nonce,
                                     peer_connection.localDescription.sdp,
                                     seal_link_key(link_key, van_key, unit.node_id, nonce)),
                        unit.signing, OFFER_CONTEXT)
    answer = check_answer(await post_offer(config, unit.node_id, body), config, unit.node_id,
                          nonce, clock())
    try:
        async with asyncio.timeout(config.negotiation_timeout_s):
            await peer_connection.setRemoteDescription(RTCSessionDescription(answer.sdp,
                                                                             "answer"))
    except TimeoutError:
        raise SignalingFailed("answer_timeout", "the answer was not applied within "
                              f"{config.negotiation_timeout_s:g} s") from None
    return link_key


async def post_offer(config: SignalingClientConfig, unit_id: str, body: bytes) -> bytes:
    """POST ``body`` to the van (pinned certificate); the answer's body, at most
    ``MAX_BODY_BYTES``."""
    url = f"{config.van_url.rstrip('/')}/units/{unit_id}/offer"
    timeout = aiohttp.ClientTimeout(total=config.request_timeout_s,
                                    sock_connect=config.connect_timeout_s)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session, session.post(
                url, data=body, headers={"Content-Type": CONTENT_TYPE},
                ssl=aiohttp.Fingerprint(config.tls_fingerprint)) as response:
            answer = await response.content.read(MAX_BODY_BYTES + 1)
            if response.status != 201:
                raise SignalingFailed("refused", f"the van answered {response.status}: "
                                      f"{printable(answer[:300].decode('utf-8', 'replace'))}")
    except aiohttp.ServerFingerprintMismatch:
        raise SignalingFailed("wrong_certificate", "the server's TLS certificate is not the "
                              "pinned one (someone else answers at that address)") from None
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise SignalingFailed("unreachable", f"cannot reach the van at {printable(url)}: "
                              f"{type(exc).__name__}: {printable(exc)}") from None
    if len(answer) > MAX_BODY_BYTES:
        raise SignalingFailed("malformed", f"the answer is over {MAX_BODY_BYTES} bytes")
    return answer


def check_answer(body: bytes, config: SignalingClientConfig, unit_id: str, nonce: bytes,
                 now_s: float) -> AnswerPayload:
    """The van's answer if every check passes (module docstring order); ``SignalingFailed``."""
    try:
        return _checked_answer(body, config, unit_id, nonce, now_s)
    except SignalingRefused as exc:
        raise SignalingFailed(exc.reason, f"the van's answer was refused: {exc}") from None


def _checked_answer(body: bytes, config: SignalingClientConfig, unit_id: str, nonce: bytes,
                    now_s: float) -> AnswerPayload:
    answer, signed_bytes, signature = open_signed(body, AnswerPayload)
    check_fields((answer.van_id, answer.unit_id), answer.offer_nonce, answer.sdp)
    check_signature(config.van.verify_key, signature, signed_bytes, ANSWER_CONTEXT)
    if answer.van_id != config.van.node_id:
        raise SignalingRefused("wrong_van", f"the answer comes from van "
                               f"{printable(answer.van_id)}, not {config.van.node_id}")
    if answer.unit_id != unit_id:
        raise SignalingRefused("wrong_unit", f"the answer is for unit {printable(answer.unit_id)}")
    if answer.offer_nonce != nonce:
        raise SignalingRefused("nonce_mismatch", "the answer is for another offer")
    check_fresh(answer.timestamp_ms, now_s, config.freshness_window_s)
    check_sdp(answer.sdp)
    return answer
