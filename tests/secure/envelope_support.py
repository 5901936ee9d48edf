"""Keys, a signer lookup and frame surgery shared by the envelope tests."""

from __future__ import annotations

import struct

from secure.envelope import SIGNATURE_CONTEXT, EventKind, seal_envelope
from secure.hybrid_signature import ED25519_SIGNATURE_BYTES, SigningKeyPair, VerifyKey
from secure.node_keys import NodeKeys, NodeRole

UNIT = NodeKeys.generate(NodeRole.UNIT, "unit-7")
VAN = NodeKeys.generate(NodeRole.VAN, "van-1")
OTHER_VAN = NodeKeys.generate(NodeRole.VAN, "van-2")
assert VAN.encryption is not None
assert OTHER_VAN.encryption is not None
VAN_KEY = VAN.encryption
OTHER_VAN_KEY = OTHER_VAN.encryption
PREFIX_BYTES = 7  # magic 4, version 1, header length 2


class Signers:
    """The van's enrolment: unit id -> verify key; counts lookups."""

    def __init__(self, *units: NodeKeys) -> None:
        self.keys = {unit.node_id: unit.signing.verify_key for unit in units}
        self.calls = 0

    def __call__(self, unit_id: str, key_id: bytes) -> VerifyKey | None:
        self.calls += 1
        key = self.keys.get(unit_id)
        return key if key is not None and key.key_id == key_id else None


def sealed(body: bytes = b"alert body", *, sequence: int = 1, unit: NodeKeys = UNIT,
           kind: EventKind = EventKind.ALERT, van: NodeKeys = VAN) -> bytes:
    assert van.encryption is not None
    return seal_envelope(body, kind=kind, unit_id=unit.node_id, sequence=sequence,
                         signing_key=unit.signing, van_key=van.encryption.public_key)


def signed_part(envelope: bytes) -> bytes:
    """The bytes the signature covers (everything before the signature length)."""
    return envelope[:len(envelope) - 2 - 3373]


def resign(signed: bytes, key: SigningKeyPair = UNIT.signing) -> bytes:
    """A frame from signed bytes, signed again (an insider holding a unit's key)."""
    signature = key.sign(signed, SIGNATURE_CONTEXT).to_bytes()
    return signed + struct.pack(">H", len(signature)) + signature


def sequence_offset(envelope: bytes) -> int:
    unit_len = envelope[PREFIX_BYTES + 1]
    return PREFIX_BYTES + 2 + unit_len


def flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1:]


def ed25519_half_offset(envelope: bytes) -> int:
    return len(envelope) - 3373


def ml_dsa_half_offset(envelope: bytes) -> int:
    return len(envelope) - 3373 + ED25519_SIGNATURE_BYTES
