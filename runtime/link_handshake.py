"""The link handshake: each side proves it knows the link's key before any message is accepted.

HMAC-SHA256 challenge-response with both sides' nonces::

    initiator -> responder  Hello(name_i, protocol, nonce_i)
    responder -> initiator  Hello(name_r, protocol, nonce_r)
    initiator -> responder  Proof(HMAC(K, "initiator" | name_i | nonce_i | name_r | nonce_r))
    responder -> initiator  Proof(HMAC(K, "responder" | name_r | nonce_r | name_i | nonce_i))

``K`` is the key of the claimed peer name (``LinkKeys.key_for``), so a name is bound to the key
that was proved. The role in the MAC keeps a proof from being reflected back as the other side's;
a peer claiming this node's own name is refused (the same trick with two connections); the
responder proves itself only after checking the initiator's proof, so an unauthenticated caller
never gets a MAC computed for it. A recorded handshake does not replay: the other side's nonce
is new each time. Every frame before the proof is limited to ``HANDSHAKE_FRAME_BYTES`` and the
whole exchange to a deadline. The link is authenticated, not encrypted: frames after the
handshake travel in clear (hence Unix sockets and loopback TCP only).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from guards.log_text import printable
from runtime.codec import Codec, DecodeError
from runtime.errors import RuntimeFault
from runtime.link_config import HANDSHAKE_FRAME_BYTES
from runtime.link_keys import valid_peer_name
from runtime.link_messages import PROTOCOL_VERSION, HandshakeProof, Hello

if TYPE_CHECKING:
    from runtime.framing import FrameChannel
    from runtime.link_keys import LinkKeys

T = TypeVar("T")
NONCE_BYTES = 32
_CONTEXT = b"lfr-link/2"
INITIATOR = b"initiator"
RESPONDER = b"responder"
_FIELD = struct.Struct(">H")


class HandshakeRefused(RuntimeFault, ConnectionError):
    """The handshake failed; the text says why, for the log (the peer is told nothing).

    Invariant: whatever the text quotes of the peer went through ``printable``, so the text
    is logged as it is.
    """


async def handshake(channel: FrameChannel, codec: Codec, own_name: str, keys: LinkKeys, *,
                    initiator: bool, timeout_s: float,
                    greeted: Callable[[str], None] | None = None,
                    admit: Callable[[str], None] | None = None) -> str:
    """Authenticate the peer on ``channel``; returns its proven name.

    ``greeted(peer)`` runs once the peer's ``Hello`` passed its checks and names a peer with a
    key (nothing is proven yet: the server uses it to tell a silent connection from one that
    is getting on). ``admit(peer)`` runs on the responder once the initiator's proof checked
    out and before the responder proves itself; it may raise ``HandshakeRefused`` (a name
    already linked). Raises ``HandshakeRefused`` with the reason on any failure.
    """
    channel.max_frame_bytes = HANDSHAKE_FRAME_BYTES
    try:
        async with asyncio.timeout(timeout_s):
            return await _exchange(channel, codec, own_name, keys, initiator=initiator,
                                   greeted=greeted, admit=admit)
    except TimeoutError:
        raise HandshakeRefused(f"no handshake within the deadline of {timeout_s:g} s") from None
    except EOFError:
        raise HandshakeRefused("connection closed during the handshake") from None
    except HandshakeRefused:
        raise
    except ConnectionError as exc:  # FrameTooLarge included: its text names the sizes
        raise HandshakeRefused(str(exc) or type(exc).__name__) from None


async def _exchange(channel: FrameChannel, codec: Codec, own_name: str, keys: LinkKeys, *,
                    initiator: bool, greeted: Callable[[str], None] | None,
                    admit: Callable[[str], None] | None) -> str:
    nonce = secrets.token_bytes(NONCE_BYTES)
    await channel.write_frame(codec.encode(Hello(own_name, PROTOCOL_VERSION, nonce)))
    hello = await _read(channel, codec, Hello)
    peer = hello.node
    _check_hello(hello, own_name)
    key = keys.key_for(peer)
    if key is None:
        raise HandshakeRefused(f"no key for a peer named {printable(peer)} in {keys.source}")
    if greeted is not None:
        greeted(peer)
    us, them = (own_name, nonce), (peer, hello.nonce)
    mine = proof(key, INITIATOR if initiator else RESPONDER, us, them)
    expected = proof(key, RESPONDER if initiator else INITIATOR, them, us)
    if initiator:
        await channel.write_frame(codec.encode(HandshakeProof(mine)))
        await _check_proof(channel, codec, expected, peer)
    else:
        await _check_proof(channel, codec, expected, peer)
        if admit is not None:
            admit(peer)
        await channel.write_frame(codec.encode(HandshakeProof(mine)))
    return peer


def _check_hello(hello: Hello, own_name: str) -> None:
    if hello.protocol != PROTOCOL_VERSION:
        raise HandshakeRefused(f"peer speaks link protocol {hello.protocol}, this node "
                               f"{PROTOCOL_VERSION}")
    if not valid_peer_name(hello.node):
        raise HandshakeRefused(f"peer claims an invalid name {printable(hello.node)} (1-64 "
                               "printable characters)")
    if hello.node == own_name:
        raise HandshakeRefused(f"peer claims this node's own name {printable(own_name)}")
    if len(hello.nonce) != NONCE_BYTES:
        raise HandshakeRefused(f"peer's nonce has {len(hello.nonce)} bytes, not {NONCE_BYTES}")


async def _check_proof(channel: FrameChannel, codec: Codec, expected: bytes, peer: str) -> None:
    proof = await _read(channel, codec, HandshakeProof)
    if not hmac.compare_digest(proof.mac, expected):
        raise HandshakeRefused(f"peer {printable(peer)} did not prove the key (wrong key, or a "
                               "replayed handshake)")


async def _read(channel: FrameChannel, codec: Codec, kind: type[T]) -> T:
    frame = await channel.read_frame()
    try:
        message: Any = codec.decode(frame)
    except DecodeError as exc:
        raise HandshakeRefused(f"expected {kind.__name__}, got an undecodable frame: "
                               f"{printable(exc)}") from None
    if not isinstance(message, kind):
        raise HandshakeRefused(f"expected {kind.__name__}, got {type(message).__name__}")
    return message


def proof(key: bytes, role: bytes, prover: tuple[str, bytes],
           verifier: tuple[str, bytes]) -> bytes:
    """The MAC a side in ``role`` sends: over its (name, nonce) and then the other side's."""
    parts = (_CONTEXT, role, prover[0].encode(), prover[1], verifier[0].encode(), verifier[1])
    # Length-prefixed, so no two different transcripts are the same bytes.
    transcript = b"".join(_FIELD.pack(len(part)) + part for part in parts)
    return hmac.new(key, transcript, hashlib.sha256).digest()
