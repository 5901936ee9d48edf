"""``key_id``: the short name of a public key, for headers, enrolment lists and logs.

A key id is the first ``KEY_ID_BYTES`` bytes of sha256 over a label naming the key's kind and
the raw public key bytes. It selects a key; it never proves anything: every envelope is still
checked against the full public key (a signature or a decryption), so a collision can only
make a check fail, never pass.
"""

from __future__ import annotations

import hashlib

KEY_ID_BYTES = 8
"""64 bits: unique among a deployment's few hundred keys; shown as 16 hex digits."""


def key_id(label: bytes, *public_parts: bytes) -> bytes:
    """sha256(label || 0x00 || part lengths and parts)[:KEY_ID_BYTES]."""
    digest = hashlib.sha256(label + b"\x00")
    for part in public_parts:
        digest.update(len(part).to_bytes(4, "big"))
        digest.update(part)
    return digest.digest()[:KEY_ID_BYTES]


def format_key_id(value: bytes) -> str:
    """A key id as the hex digits people compare (``lfr keys init`` prints them)."""
    return value.hex()
