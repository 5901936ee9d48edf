"""The sealed envelope: round trips, and each refusal with its own reason, in the stated order."""

from __future__ import annotations

import struct

import pytest

from runtime.datachannel import DATA_CHANNEL_MAX_MESSAGE_BYTES
from secure.envelope import (
    MAX_BODY_BYTES,
    MAX_ENVELOPE_BYTES,
    EnvelopeMalformed,
    EnvelopeRefused,
    EnvelopeSignatureInvalid,
    EnvelopeTooLarge,
    EnvelopeUndecryptable,
    EnvelopeVersionUnsupported,
    EventKind,
    UnknownSigner,
    WrongRecipient,
    open_envelope,
    seal_envelope,
)
from secure.node_keys import NodeKeys, NodeRole
from tests.secure.envelope_support import (
    OTHER_VAN,
    OTHER_VAN_KEY,
    PREFIX_BYTES,
    UNIT,
    VAN_KEY,
    Signers,
    ed25519_half_offset,
    flip,
    ml_dsa_half_offset,
    resign,
    sealed,
    sequence_offset,
    signed_part,
)


def refusal(data: bytes, signers: Signers | None = None, **kwargs: object) -> EnvelopeRefused:
    with pytest.raises(EnvelopeRefused) as caught:
        open_envelope(data, signers=signers or Signers(UNIT), van_key=VAN_KEY,
                      **kwargs)  # type: ignore[arg-type]
    return caught.value


@pytest.mark.parametrize("kind", list(EventKind))
def test_an_envelope_opens_to_its_header_and_body(kind: EventKind) -> None:
    body = bytes(range(256)) * 80  # a 20 KB crop's worth
    opened = open_envelope(sealed(body, sequence=2**64 - 1, kind=kind), signers=Signers(UNIT),
                           van_key=VAN_KEY)
    assert opened.body == body
    assert opened.header.kind is kind
    assert opened.header.unit_id == "unit-7"
    assert opened.header.sequence == 2**64 - 1
    assert opened.header.signing_key_id == UNIT.signing.key_id
    assert opened.header.van_key_id == VAN_KEY.key_id


def test_an_empty_body_and_the_largest_body_both_open() -> None:
    for body in (b"", b"\x00" * MAX_BODY_BYTES):
        assert open_envelope(sealed(body), signers=Signers(UNIT), van_key=VAN_KEY).body == body


def test_seal_refuses_a_body_over_the_limit_a_bad_sequence_or_unit_id() -> None:
    assert VAN_KEY is not None
    common = {"kind": EventKind.ALERT, "signing_key": UNIT.signing,
              "van_key": VAN_KEY.public_key}
    with pytest.raises(ValueError, match="over"):
        seal_envelope(b"\x00" * (MAX_BODY_BYTES + 1), unit_id="u", sequence=0,
                      **common)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sequence"):
        seal_envelope(b"", unit_id="u", sequence=-1, **common)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unit id"):
        seal_envelope(b"", unit_id="bad\nid", sequence=0, **common)  # type: ignore[arg-type]


# -- each refusal -------------------------------------------------------------------------


def test_oversize_is_refused_before_anything_else() -> None:
    signers = Signers(UNIT)
    error = refusal(b"\x00" * (MAX_ENVELOPE_BYTES + 1), signers)
    assert isinstance(error, EnvelopeTooLarge)
    assert error.reason == "oversize"
    error = refusal(sealed(b"x" * 2000), signers, max_bytes=1000)
    assert isinstance(error, EnvelopeTooLarge)
    assert signers.calls == 0


@pytest.mark.parametrize("surgery", [
    lambda e: b"XXXX" + e[4:],                       # magic
    lambda e: e[:-1],                                # truncated signature
    lambda e: e + b"\x00",                           # trailing byte
    lambda e: e[:5],                                 # ends in the prefix
    lambda e: e[:PREFIX_BYTES + 3],                  # ends in the header
])
def test_a_broken_frame_is_malformed(surgery: object) -> None:
    signers = Signers(UNIT)
    error = refusal(surgery(sealed()), signers)  # type: ignore[operator]
    assert isinstance(error, EnvelopeMalformed)
    assert error.reason == "malformed"
    assert signers.calls == 0


def test_a_header_length_over_its_limit_is_malformed() -> None:
    envelope = sealed()
    error = refusal(envelope[:5] + struct.pack(">H", 0xFFFF) + envelope[7:])
    assert isinstance(error, EnvelopeMalformed)
    assert "header of 65535" in str(error)


def test_a_sealed_body_length_outside_its_bounds_is_malformed() -> None:
    envelope = sealed()
    at = sequence_offset(envelope) + 8 + 16
    for claim in (0, 2**32 - 1):
        error = refusal(envelope[:at] + struct.pack(">I", claim) + envelope[at + 4:])
        assert isinstance(error, EnvelopeMalformed)
        assert "sealed body" in str(error)


@pytest.mark.parametrize(("offset", "value"), [(0, 9), (1, 0), (2, 0x0A)])
def test_a_bad_kind_unit_id_length_or_unit_id_is_malformed(offset: int, value: int) -> None:
    envelope = bytearray(sealed())
    envelope[PREFIX_BYTES + offset] = value
    signers = Signers(UNIT)
    error = refusal(bytes(envelope), signers)
    assert isinstance(error, EnvelopeMalformed)
    assert signers.calls == 0


def test_another_format_version_is_refused_as_unsupported() -> None:
    signers = Signers(UNIT)
    error = refusal(resign(flip(signed_part(sealed()), 4)), signers)  # version 1 -> 0
    assert isinstance(error, EnvelopeVersionUnsupported)
    assert error.reason == "unsupported_version"
    assert signers.calls == 0


def test_an_unknown_unit_or_signing_key_is_refused_before_the_signature() -> None:
    stranger = NodeKeys.generate(NodeRole.UNIT, "unit-7")  # the right name, another key
    error = refusal(sealed(unit=stranger))
    assert isinstance(error, UnknownSigner)
    assert error.reason == "unknown_signer"
    assert isinstance(refusal(sealed(), Signers()), UnknownSigner)


def test_a_lookup_answering_another_key_than_the_header_names_is_unknown_signer() -> None:
    error = refusal(sealed(), lambda unit, key: OTHER_VAN.signing.verify_key)  # type: ignore[arg-type]
    assert isinstance(error, UnknownSigner)


def test_a_flipped_byte_of_the_ed25519_half_is_refused_naming_it() -> None:
    envelope = sealed()
    error = refusal(flip(envelope, ed25519_half_offset(envelope) + 5))
    assert isinstance(error, EnvelopeSignatureInvalid)
    assert (error.reason, error.half) == ("bad_signature", "ed25519")


def test_a_flipped_byte_of_the_ml_dsa_half_is_refused_naming_it() -> None:
    envelope = sealed()
    error = refusal(flip(envelope, ml_dsa_half_offset(envelope) + 100))
    assert isinstance(error, EnvelopeSignatureInvalid)
    assert error.half == "ml-dsa-65"


def test_a_header_changed_after_signing_fails_the_signature() -> None:
    envelope = sealed(sequence=41)
    changed = flip(envelope, sequence_offset(envelope) + 7)  # sequence 41 -> 40: a "new" event
    error = refusal(changed)
    assert isinstance(error, EnvelopeSignatureInvalid)
    assert error.half == "both"


def test_a_tampered_ciphertext_fails_the_signature() -> None:
    envelope = sealed()
    error = refusal(flip(envelope, len(signed_part(envelope)) - 20))
    assert isinstance(error, EnvelopeSignatureInvalid)
    assert error.half == "both"


def test_an_envelope_sealed_to_another_van_is_refused_by_key_id() -> None:
    error = refusal(sealed(van=OTHER_VAN))
    assert isinstance(error, WrongRecipient)
    assert error.reason == "wrong_van_key"


def test_a_ciphertext_altered_and_signed_again_does_not_decrypt() -> None:
    """An insider with the unit's signing key still cannot make the van accept altered
    bytes: the AEAD refuses them."""
    signed = signed_part(sealed())
    error = refusal(resign(flip(signed, len(signed) - 20)))
    assert isinstance(error, EnvelopeUndecryptable)
    assert error.reason == "undecryptable"


def test_a_ciphertext_moved_under_another_header_does_not_decrypt() -> None:
    """The header is the HPKE info: a body sealed for sequence 1 cannot be replayed as
    sequence 2 even by someone who can sign (the van dedups by (unit, sequence))."""
    signed = signed_part(sealed(sequence=1))
    moved = resign(flip(signed, sequence_offset(signed) + 7))  # 1 -> 0
    error = refusal(moved)
    assert isinstance(error, EnvelopeUndecryptable)


def test_a_ciphertext_to_another_van_with_this_vans_key_id_does_not_decrypt() -> None:
    assert OTHER_VAN_KEY is not None
    assert VAN_KEY is not None
    envelope = sealed(van=OTHER_VAN)
    at = sequence_offset(envelope) + 8 + 8
    signed = signed_part(envelope)
    forged = resign(signed[:at] + VAN_KEY.key_id + signed[at + 8:])
    assert isinstance(refusal(forged), EnvelopeUndecryptable)


# -- order -----------------------------------------------------------------------------------


def test_checks_run_in_the_documented_order() -> None:
    """Each envelope fails two checks; the earlier one names it."""
    envelope = sealed(van=OTHER_VAN)  # also wrong recipient
    bad_signature = flip(envelope, ed25519_half_offset(envelope))
    assert isinstance(refusal(bad_signature), EnvelopeSignatureInvalid)
    assert isinstance(refusal(bad_signature, Signers()), UnknownSigner)
    old = resign(flip(signed_part(bad_signature), 4))
    assert isinstance(refusal(old, Signers()), EnvelopeVersionUnsupported)
    assert isinstance(refusal(old + b"\x00", Signers()), EnvelopeMalformed)
    assert isinstance(refusal(old + b"\x00", Signers(), max_bytes=len(old)), EnvelopeTooLarge)


def test_the_largest_envelope_fits_one_data_channel_message_with_room_for_the_link() -> None:
    # A link message adds its envelope (target name, type codes, msgpack lengths): 4 KiB is
    # far more than it needs.
    assert MAX_ENVELOPE_BYTES + 4096 <= DATA_CHANNEL_MAX_MESSAGE_BYTES
