"""Hybrid signatures: both halves must verify, the failed half is named, contexts separate."""

from __future__ import annotations

import pickle

import pytest

from secure.hybrid_signature import (
    ED25519_SIGNATURE_BYTES,
    HYBRID_SIGNATURE_BYTES,
    ML_DSA_65_SIGNATURE_BYTES,
    HybridSignature,
    SignatureInvalid,
    SigningKeyPair,
)

CONTEXT = b"lfr-edge/test/v1"
KEYS = SigningKeyPair.generate()


def flipped(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1:]


def test_a_signature_verifies_and_round_trips_through_its_wire_form() -> None:
    signature = KEYS.sign(b"event", CONTEXT)
    wire = signature.to_bytes()
    assert len(wire) == HYBRID_SIGNATURE_BYTES
    assert len(signature.ed25519) == ED25519_SIGNATURE_BYTES
    assert len(signature.ml_dsa_65) == ML_DSA_65_SIGNATURE_BYTES
    KEYS.verify_key.verify(HybridSignature.from_bytes(wire), b"event", CONTEXT)


def test_a_flipped_byte_in_the_ed25519_half_is_refused_naming_it() -> None:
    signature = KEYS.sign(b"event", CONTEXT)
    bad = HybridSignature(flipped(signature.ed25519, 10), signature.ml_dsa_65)
    with pytest.raises(SignatureInvalid) as caught:
        KEYS.verify_key.verify(bad, b"event", CONTEXT)
    assert caught.value.half == "ed25519"


def test_a_flipped_byte_in_the_ml_dsa_half_is_refused_naming_it() -> None:
    signature = KEYS.sign(b"event", CONTEXT)
    bad = HybridSignature(signature.ed25519, flipped(signature.ml_dsa_65, 1000))
    with pytest.raises(SignatureInvalid) as caught:
        KEYS.verify_key.verify(bad, b"event", CONTEXT)
    assert caught.value.half == "ml-dsa-65"


def test_other_data_another_context_or_another_key_fail_both_halves() -> None:
    signature = KEYS.sign(b"event", CONTEXT)
    for data, context, key in ((b"event!", CONTEXT, KEYS.verify_key),
                               (b"event", b"lfr-edge/other/v1", KEYS.verify_key),
                               (b"event", CONTEXT, SigningKeyPair.generate().verify_key)):
        with pytest.raises(SignatureInvalid) as caught:
            key.verify(signature, data, context)
        assert caught.value.half == "both"


def test_a_wire_signature_of_the_wrong_length_is_refused() -> None:
    with pytest.raises(ValueError, match="3373"):
        HybridSignature.from_bytes(b"\x00" * (HYBRID_SIGNATURE_BYTES - 1))


def test_seeds_rebuild_the_same_keys() -> None:
    again = SigningKeyPair(*KEYS.private_seeds())
    assert again.verify_key == KEYS.verify_key
    assert again.key_id == KEYS.key_id


def test_private_keys_show_only_their_key_id_and_are_never_pickled() -> None:
    seeds = KEYS.private_seeds()
    for text in (repr(KEYS), str(KEYS), repr(KEYS.verify_key)):
        assert KEYS.key_id.hex() in text
        for seed in seeds:
            assert seed.hex() not in text
            assert repr(seed) not in text
    with pytest.raises(TypeError, match="never pickled"):
        pickle.dumps(KEYS)
