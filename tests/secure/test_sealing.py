"""HPKE sealing to a van's key: round trip, exact overhead, and every way it must not open."""

from __future__ import annotations

import pytest

from secure.sealing import SEAL_OVERHEAD_BYTES, EncryptionKeyPair, SealedOpenFailed

VAN = EncryptionKeyPair.generate()
INFO = b"lfr-edge/test/v1\x00header"


def test_a_sealed_message_opens_with_the_same_info_and_costs_1136_bytes() -> None:
    sealed = VAN.public_key.seal(b"x" * 20_000, INFO)
    assert len(sealed) == 20_000 + SEAL_OVERHEAD_BYTES == 20_000 + 1136
    assert VAN.open(sealed, INFO) == b"x" * 20_000


def test_sealing_twice_gives_unrelated_ciphertexts() -> None:
    assert VAN.public_key.seal(b"same", INFO) != VAN.public_key.seal(b"same", INFO)


@pytest.mark.parametrize("index", [0, 1119, 1120, -1])  # KEM part, AEAD body, tag
def test_a_flipped_byte_anywhere_does_not_open(index: int) -> None:
    sealed = bytearray(VAN.public_key.seal(b"alert body", INFO))
    sealed[index] ^= 0x01
    with pytest.raises(SealedOpenFailed):
        VAN.open(bytes(sealed), INFO)


def test_another_info_another_key_or_a_short_message_does_not_open() -> None:
    sealed = VAN.public_key.seal(b"alert body", INFO)
    with pytest.raises(SealedOpenFailed):
        VAN.open(sealed, INFO + b"!")
    with pytest.raises(SealedOpenFailed):
        EncryptionKeyPair.generate().open(sealed, INFO)
    with pytest.raises(SealedOpenFailed, match="shorter"):
        VAN.open(sealed[:SEAL_OVERHEAD_BYTES - 1], INFO)


def test_private_parts_rebuild_the_key_and_never_show_in_its_repr() -> None:
    again = EncryptionKeyPair(*VAN.private_parts())
    assert again.public_key == VAN.public_key
    assert again.open(VAN.public_key.seal(b"b", INFO), INFO) == b"b"
    for part in VAN.private_parts():
        assert part.hex() not in repr(VAN)
        assert part.hex() not in str(VAN)
    assert VAN.key_id.hex() in repr(VAN)
