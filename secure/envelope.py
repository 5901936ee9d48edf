"""The sealed event envelope: what a unit sends its van, signed by the unit, sealed to the van.

Wire format (docs/SECURITY.md has it byte by byte; integers big-endian)::

    frame   = "LFRE" | version u8 | header_len u16 | header | body_len u32 | sealed body
              | signature_len u16 | signature                      (nothing after it)
    header  = kind u8 | unit_id_len u8 | unit id (UTF-8) | sequence u64
              | signing key id (8) | van encryption key id (8)
    sealed  = HPKE(van key, info = INFO_LABEL || frame bytes up to the end of the header)
    signed  = every frame byte before signature_len, under context SIGNATURE_CONTEXT

``open_envelope`` checks, in this order, and refuses with its own error type at the first
failure: size limit, frame decode, format version, header decode, enrolled signer, both
signature halves, van key id, decryption. Nothing is decrypted before the signature of an
enrolled unit holds, so a stranger's bytes cost one lookup and at most one signature check.
Replays are not refused here: the van's store deduplicates by (unit, sequence).
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable
from dataclasses import dataclass

from guards.log_text import printable
from secure.hybrid_signature import (
    HYBRID_SIGNATURE_BYTES,
    HybridSignature,
    SignatureInvalid,
    Signer,
    VerifyKey,
)
from secure.key_id import KEY_ID_BYTES
from secure.node_keys import NodeIdError, check_node_id
from secure.sealing import (
    SEAL_OVERHEAD_BYTES,
    EncryptionKeyPair,
    EncryptionPublicKey,
    SealedOpenFailed,
)

MAGIC = b"LFRE"
"""First four bytes of every envelope."""
FORMAT_VERSION = 1
"""The layout described above; another version is refused as unsupported."""
SIGNATURE_CONTEXT = b"lfr-edge/sealed-event/v1"
"""Domain separation: an envelope signature is valid for nothing else."""
INFO_LABEL = b"lfr-edge/sealed-event/v1\x00"
"""HPKE ``info`` prefix; the frame bytes up to the end of the header follow it."""
MAX_BODY_BYTES = 240 * 1024
"""Largest plaintext body: an alert with a 20 KB face crop is about 21 KB. Chosen so that the
largest envelope, inside a link message, still fits one WebRTC data-channel message (256 KiB,
``runtime.datachannel.DATA_CHANNEL_MAX_MESSAGE_BYTES``)."""
_PREFIX = struct.Struct(">4sBH")       # magic, version, header length
_BODY_LEN = struct.Struct(">I")
_SIGNATURE_LEN = struct.Struct(">H")
_HEADER_TAIL = struct.Struct(f">Q{KEY_ID_BYTES}s{KEY_ID_BYTES}s")  # sequence, key ids
MAX_HEADER_BYTES = 2 + 255 + _HEADER_TAIL.size
"""Kind, unit id length, a unit id of at most 255 UTF-8 bytes, sequence and key ids."""
MAX_ENVELOPE_BYTES = (_PREFIX.size + MAX_HEADER_BYTES + _BODY_LEN.size + SEAL_OVERHEAD_BYTES
                      + MAX_BODY_BYTES + _SIGNATURE_LEN.size + HYBRID_SIGNATURE_BYTES)
"""Largest envelope ``open_envelope`` reads (about 245 KiB)."""
MAX_SEQUENCE = 2**64 - 1
_MAX_SEALED_BYTES = SEAL_OVERHEAD_BYTES + MAX_BODY_BYTES


class EventKind(enum.IntEnum):
    """What the sealed body is."""

    ALERT = 1
    HEALTH = 2


# -- refusals: one type and one reason string each, for the van's log and counters ----------


class EnvelopeRefused(Exception):
    """``open_envelope`` refused the bytes; ``reason`` is a short stable counter name."""

    reason = "refused"


class EnvelopeTooLarge(EnvelopeRefused):
    """Over ``max_bytes``: refused before anything is read."""

    reason = "oversize"


class EnvelopeMalformed(EnvelopeRefused):
    """Not an envelope: bad magic, lengths, kind, unit id or trailing bytes."""

    reason = "malformed"


class EnvelopeVersionUnsupported(EnvelopeRefused):
    """A format version this node does not read."""

    reason = "unsupported_version"


class UnknownSigner(EnvelopeRefused):
    """No enrolled unit has this id and signing key id."""

    reason = "unknown_signer"


class EnvelopeSignatureInvalid(EnvelopeRefused):
    """The signature does not verify; ``half`` names the failed half."""

    reason = "bad_signature"

    def __init__(self, half: str) -> None:
        self.half = half
        """``"ed25519"``, ``"ml-dsa-65"`` or ``"both"``."""
        super().__init__(f"signature invalid: {half}")


class WrongRecipient(EnvelopeRefused):
    """Sealed to another van key than this van's."""

    reason = "wrong_van_key"


class EnvelopeUndecryptable(EnvelopeRefused):
    """Signed and addressed to this van, yet the sealed body does not open."""

    reason = "undecryptable"


@dataclass(frozen=True, slots=True)
class EnvelopeHeader:
    """The clear part of an envelope: who sent what to whom (signed, and bound to the body)."""

    kind: EventKind
    """Alert or health report."""
    unit_id: str
    """The sending unit's node id."""
    sequence: int
    """Per-unit sequence number, 0 to 2**64-1; the van deduplicates by (unit, sequence)."""
    signing_key_id: bytes
    """Key id of the unit's signing key (8 bytes)."""
    van_key_id: bytes
    """Key id of the van encryption key the body is sealed to (8 bytes)."""

    def to_bytes(self) -> bytes:
        """The header's wire form."""
        unit = self.unit_id.encode("utf-8")
        return (bytes([self.kind, len(unit)]) + unit
                + _HEADER_TAIL.pack(self.sequence, self.signing_key_id, self.van_key_id))


@dataclass(frozen=True, slots=True)
class OpenedEnvelope:
    """An envelope that passed every check."""

    header: EnvelopeHeader
    """Its header."""
    body: bytes
    """The decrypted body (its schema belongs to the caller)."""


SignerLookup = Callable[[str, bytes], VerifyKey | None]
"""(unit id, signing key id) -> the enrolled unit's verify key, or None if not enrolled."""


def seal_envelope(body: bytes, *, kind: EventKind, unit_id: str, sequence: int,
                  signing_key: Signer, van_key: EncryptionPublicKey) -> bytes:
    """Seal ``body`` to ``van_key`` and sign the result (with a ``SigningKeyPair``, or a
    ``SigningProcess`` signing with one: the process is given the header and ciphertext only);
    ``ValueError`` on a body over ``MAX_BODY_BYTES``, a sequence out of range or an invalid
    unit id."""
    if len(body) > MAX_BODY_BYTES:
        raise ValueError(f"envelope body of {len(body)} bytes is over {MAX_BODY_BYTES}")
    if not 0 <= sequence <= MAX_SEQUENCE:
        raise ValueError(f"sequence {sequence} is outside 0..2**64-1")
    check_node_id(unit_id, "unit id")
    header = EnvelopeHeader(kind, unit_id, sequence, signing_key.key_id,
                            van_key.key_id).to_bytes()
    bound = _PREFIX.pack(MAGIC, FORMAT_VERSION, len(header)) + header
    sealed = van_key.seal(body, INFO_LABEL + bound)
    signed = bound + _BODY_LEN.pack(len(sealed)) + sealed
    signature = signing_key.sign(signed, SIGNATURE_CONTEXT).to_bytes()
    return signed + _SIGNATURE_LEN.pack(len(signature)) + signature


def open_envelope(data: bytes, *, signers: SignerLookup, van_key: EncryptionKeyPair,
                  max_bytes: int = MAX_ENVELOPE_BYTES) -> OpenedEnvelope:
    """Check ``data`` in the documented order and return its header and body, or raise an
    ``EnvelopeRefused`` subclass (and nothing else) at the first check that fails."""
    if len(data) > max_bytes:
        raise EnvelopeTooLarge(f"envelope of {len(data)} bytes is over {max_bytes}")
    frame = _Frame.decode(bytes(data))
    if frame.version != FORMAT_VERSION:
        raise EnvelopeVersionUnsupported(f"envelope format version {frame.version}; this node "
                                         f"reads {FORMAT_VERSION}")
    header = _decode_header(frame.header)
    verify_key = signers(header.unit_id, header.signing_key_id)
    if verify_key is None or verify_key.key_id != header.signing_key_id:
        raise UnknownSigner(f"no enrolled unit {printable(header.unit_id)} with signing key "
                            f"{header.signing_key_id.hex()}")
    if len(frame.signature) != HYBRID_SIGNATURE_BYTES:
        raise EnvelopeMalformed(f"signature of {len(frame.signature)} bytes; version "
                                f"{FORMAT_VERSION} has {HYBRID_SIGNATURE_BYTES}")
    try:
        verify_key.verify(HybridSignature.from_bytes(frame.signature), frame.signed,
                          SIGNATURE_CONTEXT)
    except SignatureInvalid as exc:
        raise EnvelopeSignatureInvalid(exc.half) from None
    if header.van_key_id != van_key.key_id:
        raise WrongRecipient(f"sealed to van key {header.van_key_id.hex()}, this van has "
                             f"{van_key.key_id.hex()}")
    try:
        body = van_key.open(frame.sealed, INFO_LABEL + frame.bound)
    except SealedOpenFailed as exc:
        raise EnvelopeUndecryptable(str(exc)) from None
    return OpenedEnvelope(header, body)


@dataclass(frozen=True, slots=True)
class _Frame:
    version: int
    header: bytes
    sealed: bytes
    signature: bytes
    bound: bytes
    """Frame bytes up to the end of the header (HPKE info)."""
    signed: bytes
    """Frame bytes before the signature length (what the signature covers)."""

    @classmethod
    def decode(cls, data: bytes) -> _Frame:
        """Split the frame; every length is checked against its limit and what remains."""
        if len(data) < _PREFIX.size:
            raise EnvelopeMalformed(f"envelope of {len(data)} bytes is too short")
        magic, version, header_len = _PREFIX.unpack_from(data)
        if magic != MAGIC:
            raise EnvelopeMalformed("not an envelope (bad magic)")
        offset = _PREFIX.size
        if header_len > MAX_HEADER_BYTES:
            raise EnvelopeMalformed(f"header of {header_len} bytes is over {MAX_HEADER_BYTES}")
        header, offset = _take(data, offset, header_len, "header")
        bound = data[:offset]
        body_len = _BODY_LEN.unpack(_take(data, offset, _BODY_LEN.size, "body length")[0])[0]
        offset += _BODY_LEN.size
        if not SEAL_OVERHEAD_BYTES <= body_len <= _MAX_SEALED_BYTES:
            raise EnvelopeMalformed(f"sealed body of {body_len} bytes is outside "
                                    f"{SEAL_OVERHEAD_BYTES}..{_MAX_SEALED_BYTES}")
        sealed, offset = _take(data, offset, body_len, "sealed body")
        signed = data[:offset]
        raw_len, offset = _take(data, offset, _SIGNATURE_LEN.size, "signature length")
        signature, offset = _take(data, offset, _SIGNATURE_LEN.unpack(raw_len)[0], "signature")
        if offset != len(data):
            raise EnvelopeMalformed(f"{len(data) - offset} bytes after the signature")
        return cls(version, header, sealed, signature, bound, signed)


def _take(data: bytes, offset: int, size: int, what: str) -> tuple[bytes, int]:
    end = offset + size
    if end > len(data):
        raise EnvelopeMalformed(f"envelope ends inside its {what}")
    return data[offset:end], end


def _decode_header(raw: bytes) -> EnvelopeHeader:
    if len(raw) < 2:
        raise EnvelopeMalformed("header is too short")
    kind_code, unit_len = raw[0], raw[1]
    if len(raw) != 2 + unit_len + _HEADER_TAIL.size:
        raise EnvelopeMalformed(f"header of {len(raw)} bytes does not fit a unit id of "
                                f"{unit_len} bytes")
    try:
        kind = EventKind(kind_code)
    except ValueError:
        raise EnvelopeMalformed(f"unknown event kind {kind_code}") from None
    try:
        unit_id = check_node_id(raw[2:2 + unit_len].decode("utf-8"), "unit id")
    except (UnicodeDecodeError, NodeIdError):
        raise EnvelopeMalformed("unit id is not 1-64 printable UTF-8 characters") from None
    sequence, signing_key_id, van_key_id = _HEADER_TAIL.unpack_from(raw, 2 + unit_len)
    return EnvelopeHeader(kind, unit_id, sequence, signing_key_id, van_key_id)
