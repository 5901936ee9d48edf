"""Sealing: HPKE (RFC 9180) single-shot encryption to a van's public key.

Suite: KEM ML-KEM-768 + X25519 (hybrid: the shared secret holds unless *both* are broken, so
events recorded today stay unreadable to a future quantum computer), KDF HKDF-SHA256, AEAD
ChaCha20-Poly1305 (fast without AES instructions, as on a unit's ARM cores). Base mode: the
sender is anonymous to HPKE; who sent an envelope is proved by its signature instead.

``info`` binds a ciphertext to its context (RFC 9180 section 8.1 says single-shot users put
their associated data there): the envelope passes its header, so a ciphertext moved under
another header does not open. Each seal makes a fresh ephemeral key: sealing the same bytes
twice gives unrelated ciphertexts.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519

from secure.key_id import format_key_id, key_id

SUITE = hpke.Suite(hpke.KEM.MLKEM768_X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305)
"""The one HPKE suite lfr-edge seals with."""
ENCAPSULATED_KEY_BYTES = hpke.KEM.MLKEM768_X25519.enc_length()
"""1120: the ML-KEM-768 ciphertext (1088) and the X25519 ephemeral key (32)."""
AEAD_TAG_BYTES = 16
SEAL_OVERHEAD_BYTES = ENCAPSULATED_KEY_BYTES + AEAD_TAG_BYTES
"""A sealed message is exactly this much longer than its plaintext (1136 bytes)."""
ML_KEM_768_SEED_BYTES = 64
ML_KEM_768_PUBLIC_BYTES = 1184
X25519_BYTES = 32
_KEY_ID_LABEL = b"lfr-edge/encryption-key/hpke-mlkem768-x25519"


class SealedOpenFailed(Exception):
    """A sealed message did not open: wrong key, wrong ``info`` or altered bytes."""


class EncryptionPublicKey:
    """A van's public encryption key: what units seal to."""

    __slots__ = ("_key", "key_id", "ml_kem_768_public", "x25519_public")

    def __init__(self, ml_kem_768_public: bytes, x25519_public: bytes) -> None:
        """Build from raw public bytes; ``ValueError`` if either has the wrong length."""
        self._key = hpke.MLKEM768X25519PublicKey(
            mlkem.MLKEM768PublicKey.from_public_bytes(ml_kem_768_public),
            x25519.X25519PublicKey.from_public_bytes(x25519_public))
        self.ml_kem_768_public = ml_kem_768_public
        """Raw ML-KEM-768 encapsulation key, 1184 bytes."""
        self.x25519_public = x25519_public
        """Raw X25519 public key, 32 bytes."""
        self.key_id: bytes = key_id(_KEY_ID_LABEL, ml_kem_768_public, x25519_public)
        """Short sha256 of both public keys (``secure.key_id``)."""

    def seal(self, plaintext: bytes, info: bytes) -> bytes:
        """HPKE-seal ``plaintext`` to this key, bound to ``info``."""
        return SUITE.encrypt(plaintext, self._key, info=info)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EncryptionPublicKey) and (
            self.ml_kem_768_public, self.x25519_public) == (
            other.ml_kem_768_public, other.x25519_public)

    def __hash__(self) -> int:
        return hash(self.key_id)

    def __repr__(self) -> str:
        return f"EncryptionPublicKey(key_id={format_key_id(self.key_id)})"


class EncryptionKeyPair:
    """A van's private encryption keys; ``repr`` and ``str`` show the key id only."""

    __slots__ = ("_key", "_ml_kem_768", "_x25519", "public_key")

    def __init__(self, ml_kem_768_seed: bytes, x25519_private: bytes) -> None:
        """Build from the ML-KEM-768 seed (64 bytes) and the X25519 private key (32 bytes)."""
        if len(ml_kem_768_seed) != ML_KEM_768_SEED_BYTES or len(x25519_private) != X25519_BYTES:
            raise ValueError(f"encryption keys are a {ML_KEM_768_SEED_BYTES}-byte ML-KEM-768 "
                             f"seed and a {X25519_BYTES}-byte X25519 key")
        self._ml_kem_768 = mlkem.MLKEM768PrivateKey.from_seed_bytes(ml_kem_768_seed)
        self._x25519 = x25519.X25519PrivateKey.from_private_bytes(x25519_private)
        self._key = hpke.MLKEM768X25519PrivateKey(self._ml_kem_768, self._x25519)
        self.public_key = EncryptionPublicKey(
            self._ml_kem_768.public_key().public_bytes_raw(),
            self._x25519.public_key().public_bytes_raw())
        """The public half, to give to units."""

    @classmethod
    def generate(cls) -> EncryptionKeyPair:
        """A new random key pair."""
        return cls(mlkem.MLKEM768PrivateKey.generate().private_bytes_raw(),
                   x25519.X25519PrivateKey.generate().private_bytes_raw())

    @property
    def key_id(self) -> bytes:
        """The key id of the public half."""
        return self.public_key.key_id

    def private_parts(self) -> tuple[bytes, bytes]:
        """(ML-KEM-768 seed, X25519 private key): for ``secure.key_files`` to write."""
        return self._ml_kem_768.private_bytes_raw(), self._x25519.private_bytes_raw()

    def open(self, sealed: bytes, info: bytes) -> bytes:
        """The plaintext of ``sealed``; ``SealedOpenFailed`` if it does not open with this key
        and ``info`` (too short, altered, sealed to another key or under another info)."""
        if len(sealed) < SEAL_OVERHEAD_BYTES:
            raise SealedOpenFailed(f"sealed message of {len(sealed)} bytes is shorter than the "
                                   f"{SEAL_OVERHEAD_BYTES}-byte HPKE overhead")
        try:
            return SUITE.decrypt(sealed, self._key, info=info)
        except (InvalidTag, ValueError):
            raise SealedOpenFailed("sealed message does not open with this key") from None

    def __repr__(self) -> str:
        return f"EncryptionKeyPair(key_id={format_key_id(self.key_id)})"

    def __reduce__(self) -> str | tuple[object, ...]:
        raise TypeError("private keys are never pickled or copied out of the process")
