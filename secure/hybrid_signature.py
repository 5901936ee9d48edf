"""Hybrid signatures: Ed25519 and ML-DSA-65 over the same bytes; both must verify.

Ed25519 is the well-studied classical half; ML-DSA-65 (FIPS 204) the half a quantum computer
cannot forge. A forger must break both. Each signature is bound to a *context* (a short label
such as ``b"lfr-edge/sealed-event/v1"``) so a signature made for one purpose is never valid
for another: both halves sign ``len(context) || context || data``, and ML-DSA also receives
the context through its own context parameter.

Private key material lives only inside ``SigningKeyPair``; its ``repr`` shows the key id.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519, mldsa

from secure.key_id import format_key_id, key_id

ED25519_SIGNATURE_BYTES = 64
ML_DSA_65_SIGNATURE_BYTES = 3309
HYBRID_SIGNATURE_BYTES = ED25519_SIGNATURE_BYTES + ML_DSA_65_SIGNATURE_BYTES
"""A hybrid signature on the wire: the Ed25519 half, then the ML-DSA-65 half."""
ED25519_PUBLIC_BYTES = 32
ML_DSA_65_PUBLIC_BYTES = 1952
SEED_BYTES = 32
"""Both private keys are stored as their 32-byte seeds (FIPS 204 seed form for ML-DSA)."""
MAX_CONTEXT_BYTES = 255
"""ML-DSA's limit on a context string."""
_KEY_ID_LABEL = b"lfr-edge/signing-key/ed25519+ml-dsa-65"

ED25519 = "ed25519"
"""``SignatureInvalid.half`` when the Ed25519 half failed."""
ML_DSA_65 = "ml-dsa-65"
"""``SignatureInvalid.half`` when the ML-DSA-65 half failed."""
BOTH = "both"
"""``SignatureInvalid.half`` when both halves failed."""


class SignatureInvalid(Exception):
    """A hybrid signature did not verify; ``half`` says which part failed (for counters)."""

    def __init__(self, half: str) -> None:
        self.half = half
        """``"ed25519"``, ``"ml-dsa-65"`` or ``"both"``."""
        super().__init__(f"signature invalid: the {half} half does not verify"
                         if half != BOTH else "signature invalid: neither half verifies")


@dataclass(frozen=True, slots=True)
class HybridSignature:
    """The two halves of one signature."""

    ed25519: bytes
    """Ed25519 signature, 64 bytes."""
    ml_dsa_65: bytes
    """ML-DSA-65 signature, 3309 bytes."""

    def to_bytes(self) -> bytes:
        """The wire form: Ed25519 half then ML-DSA-65 half (``HYBRID_SIGNATURE_BYTES``)."""
        return self.ed25519 + self.ml_dsa_65

    @classmethod
    def from_bytes(cls, data: bytes) -> HybridSignature:
        """Split the wire form; ``ValueError`` unless it has exactly the expected length."""
        if len(data) != HYBRID_SIGNATURE_BYTES:
            raise ValueError(f"a hybrid signature has {HYBRID_SIGNATURE_BYTES} bytes, "
                             f"got {len(data)}")
        return cls(data[:ED25519_SIGNATURE_BYTES], data[ED25519_SIGNATURE_BYTES:])


def _signed_bytes(context: bytes, data: bytes) -> bytes:
    if not 0 < len(context) <= MAX_CONTEXT_BYTES:
        raise ValueError(f"a signature context has 1 to {MAX_CONTEXT_BYTES} bytes, "
                         f"got {len(context)}")
    return bytes([len(context)]) + context + data


class VerifyKey:
    """The public half of a signing key pair: checks hybrid signatures."""

    __slots__ = ("_ed25519", "_ml_dsa_65", "key_id")

    def __init__(self, ed25519_public: bytes, ml_dsa_65_public: bytes) -> None:
        """Build from raw public bytes; ``ValueError`` if either has the wrong length."""
        self._ed25519 = ed25519.Ed25519PublicKey.from_public_bytes(ed25519_public)
        self._ml_dsa_65 = mldsa.MLDSA65PublicKey.from_public_bytes(ml_dsa_65_public)
        self.key_id: bytes = key_id(_KEY_ID_LABEL, ed25519_public, ml_dsa_65_public)
        """Short sha256 of both public keys (``secure.key_id``)."""

    @property
    def ed25519_public(self) -> bytes:
        """Raw Ed25519 public key, 32 bytes."""
        return self._ed25519.public_bytes_raw()

    @property
    def ml_dsa_65_public(self) -> bytes:
        """Raw ML-DSA-65 public key, 1952 bytes."""
        return self._ml_dsa_65.public_bytes_raw()

    def verify(self, signature: HybridSignature, data: bytes, context: bytes) -> None:
        """Return if both halves verify; else raise ``SignatureInvalid`` naming the half.

        Both halves are always checked, so the reason is exact and the time taken does not
        say which half failed."""
        message = _signed_bytes(context, data)
        failed: list[str] = []
        try:
            self._ed25519.verify(signature.ed25519, message)
        except InvalidSignature:
            failed.append(ED25519)
        try:
            self._ml_dsa_65.verify(signature.ml_dsa_65, message, context)
        except InvalidSignature:
            failed.append(ML_DSA_65)
        if failed:
            raise SignatureInvalid(failed[0] if len(failed) == 1 else BOTH)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, VerifyKey) and (
            self.ed25519_public, self.ml_dsa_65_public) == (
            other.ed25519_public, other.ml_dsa_65_public)

    def __hash__(self) -> int:
        return hash(self.key_id)

    def __repr__(self) -> str:
        return f"VerifyKey(key_id={format_key_id(self.key_id)})"


class Signer(Protocol):
    """What makes hybrid signatures: a ``SigningKeyPair``, or a ``SigningProcess`` signing
    with one in a child process (``secure.signing_process``)."""

    @property
    def key_id(self) -> bytes:
        """The key id of the key signed with."""
        ...

    def sign(self, data: bytes, context: bytes) -> HybridSignature:
        """Sign ``data`` under ``context`` with both halves."""
        ...


class SigningKeyPair:
    """A node's private signing keys (Ed25519 + ML-DSA-65) and their ``VerifyKey``.

    Never printed: ``repr`` and ``str`` show the key id only."""

    __slots__ = ("_ed25519", "_ml_dsa_65", "verify_key")

    def __init__(self, ed25519_seed: bytes, ml_dsa_65_seed: bytes) -> None:
        """Build from the two 32-byte seeds; ``ValueError`` (naming no value) otherwise."""
        if len(ed25519_seed) != SEED_BYTES or len(ml_dsa_65_seed) != SEED_BYTES:
            raise ValueError(f"signing key seeds have {SEED_BYTES} bytes each")
        self._ed25519 = ed25519.Ed25519PrivateKey.from_private_bytes(ed25519_seed)
        self._ml_dsa_65 = mldsa.MLDSA65PrivateKey.from_seed_bytes(ml_dsa_65_seed)
        self.verify_key = VerifyKey(self._ed25519.public_key().public_bytes_raw(),
                                    self._ml_dsa_65.public_key().public_bytes_raw())
        """The public half, to give to peers."""

    @classmethod
    def generate(cls) -> SigningKeyPair:
        """A new random key pair (from the operating system's CSPRNG, via OpenSSL)."""
        return cls(ed25519.Ed25519PrivateKey.generate().private_bytes_raw(),
                   mldsa.MLDSA65PrivateKey.generate().private_bytes_raw())

    @property
    def key_id(self) -> bytes:
        """The key id of the public half."""
        return self.verify_key.key_id

    def private_seeds(self) -> tuple[bytes, bytes]:
        """(Ed25519 seed, ML-DSA-65 seed): for ``secure.key_files`` to write and for
        ``secure.signing_process`` to hand to its child, nothing else."""
        return self._ed25519.private_bytes_raw(), self._ml_dsa_65.private_bytes_raw()

    def sign(self, data: bytes, context: bytes) -> HybridSignature:
        """Sign ``data`` under ``context`` with both keys."""
        message = _signed_bytes(context, data)
        return HybridSignature(self._ed25519.sign(message), self._ml_dsa_65.sign(message, context))

    def __repr__(self) -> str:
        return f"SigningKeyPair(key_id={format_key_id(self.key_id)})"

    def __reduce__(self) -> str | tuple[object, ...]:
        raise TypeError("private keys are never pickled or copied out of the process")
