"""The signed watchlist: sign and verify round trip, every refusal reason with its message, the
order of checks, each signature half broken alone, truncation at every length and fuzzing
(only ``WatchlistRefused`` may come out of reading and verifying)."""

from __future__ import annotations

import contextlib
import hashlib
import struct
from dataclasses import replace
from typing import Any
from unittest import mock

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import actors.signed_watchlist as signed_watchlist
from actors.signed_watchlist import (
    CLOCK_SKEW_S,
    FORMAT_VERSION,
    MAGIC,
    MAX_SIGNED_WATCHLIST_BYTES,
    SIGNED_WATCHLIST_RECORDS,
    ManifestFieldError,
    RefusalReason,
    SignedWatchlist,
    VerifiedWatchlist,
    WatchlistManifest,
    WatchlistRefused,
    WatchlistSigningError,
    assemble_signed_watchlist,
    read_signed_watchlist,
    sign_watchlist,
    verify_signed_watchlist,
)
from actors.unit.watchlist import HEADER_BYTES, Watchlist, encode_watchlist
from guards.user_input import UserInputError
from runtime.codec import Codec
from secure.hybrid_signature import ED25519_SIGNATURE_BYTES, HYBRID_SIGNATURE_BYTES
from secure.node_keys import NodeIdError, NodeKeys, NodeRole
from tests.actors.support import unit_rows

MODEL_ID = "mobilefacenet-192"
MODEL_SHA = hashlib.sha256(b"first model").hexdigest()
SECOND_ID = "dlib-resnet-v1-128"
SECOND_SHA = hashlib.sha256(b"second model").hexdigest()
NOW = 1_800_000_000.0
"""The tests' clock (2027-01-15), so every time below is exact."""
HOUR = 3600.0
AUTHORITY = NodeKeys.generate(NodeRole.AUTHORITY, "hq")
OTHER_AUTHORITY = NodeKeys.generate(NodeRole.AUTHORITY, "hq-2")
PREFIX = struct.Struct(">6sBI")
SLOW = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def make_watchlist(n: int = 3, *, seed: int = 0, second: bool = True, dim: int = 192,
                   model_id: str = MODEL_ID) -> Watchlist:
    """A valid watchlist of ``n`` subjects, with the second model's templates if ``second``."""
    rng = np.random.default_rng(seed)
    extra: dict[str, Any] = {}
    if second:
        extra = {"second_model_id": SECOND_ID, "second_model_sha256": SECOND_SHA,
                 "second_embeddings": (0.1 * rng.standard_normal((n, 128))).astype(np.float32),
                 "second_thresholds": np.full(n, 0.6, np.float32)}
    return Watchlist(model_id=model_id, model_sha256=MODEL_SHA, created_at=1_700_000_000.0,
                     subjects=tuple(f"subject_{i}" for i in range(n)),
                     embeddings=unit_rows(rng, n, dim),
                     thresholds=rng.uniform(0.5, 0.7, n).astype(np.float32),
                     photos=tuple(range(1, n + 1)), **extra)


def sign(watchlist: Watchlist | None = None, **overrides: Any) -> bytes:
    """``watchlist`` (default ``make_watchlist()``) signed by ``AUTHORITY``: deployment
    ``dep-1``, version 5, valid from NOW for a day."""
    arguments: dict[str, Any] = {"authority": AUTHORITY, "deployment_id": "dep-1",
                                 "version": 5, "not_after": NOW + 24 * HOUR, "now": NOW}
    arguments.update(overrides)
    return sign_watchlist(make_watchlist() if watchlist is None else watchlist, **arguments)


def verify(data: bytes | bytearray | memoryview, **overrides: Any) -> VerifiedWatchlist:
    """Read and verify ``data`` as a unit with the first and second model, holding version 4,
    at NOW, trusting ``AUTHORITY``."""
    arguments: dict[str, Any] = {"authority": AUTHORITY.public(), "model_id": MODEL_ID,
                                 "model_sha256": MODEL_SHA, "held_version": 4, "now": NOW}
    arguments.update(overrides)
    return verify_signed_watchlist(read_signed_watchlist(data), **arguments)


def refusal(data: bytes | bytearray, **overrides: Any) -> WatchlistRefused:
    """The refusal ``verify`` raises for ``data`` (fails the test if it accepts it)."""
    with pytest.raises(WatchlistRefused) as caught:
        verify(data, **overrides)
    assert isinstance(caught.value, UserInputError)
    return caught.value


def offsets(data: bytes) -> tuple[int, int, int]:
    """(manifest start, signature start, payload start) of a signed file."""
    _, _, manifest_len = PREFIX.unpack_from(data)
    signature_start = PREFIX.size + manifest_len + 2
    return PREFIX.size, signature_start, signature_start + HYBRID_SIGNATURE_BYTES


def manifest_of(data: bytes) -> WatchlistManifest:
    return read_signed_watchlist(data).manifest


def payload_of(watchlist: Watchlist) -> bytes:
    return Codec(max_message_bytes=MAX_SIGNED_WATCHLIST_BYTES).encode(watchlist)


def assert_same(a: Watchlist, b: Watchlist) -> None:
    assert (a.model_id, a.model_sha256, a.created_at, a.subjects, a.photos,
            a.second_model_id, a.second_model_sha256) == (
        b.model_id, b.model_sha256, b.created_at, b.subjects, b.photos, b.second_model_id,
        b.second_model_sha256)
    for left, right in ((a.embeddings, b.embeddings), (a.thresholds, b.thresholds),
                        (a.second_embeddings, b.second_embeddings),
                        (a.second_thresholds, b.second_thresholds)):
        assert np.array_equal(left, right)


VALID = sign(make_watchlist(2, seed=7))
"""A small signed file for the truncation and fuzz tests."""


# --- round trip --------------------------------------------------------------------------------


@pytest.mark.parametrize("second", [True, False])
def test_a_signed_watchlist_verifies_and_gives_back_the_same_watchlist(second: bool) -> None:
    watchlist = make_watchlist(4, second=second)
    data = sign(watchlist, not_before=NOW - HOUR)
    assert data.startswith(MAGIC + bytes([FORMAT_VERSION]))
    verified = verify(data)
    assert_same(watchlist, verified.watchlist)
    payload = encode_watchlist(watchlist)[HEADER_BYTES:]  # the LFRW file's payload, exactly
    assert data.endswith(payload)
    assert verified.payload_sha256 == hashlib.sha256(payload).hexdigest()
    manifest = verified.manifest
    assert (manifest.deployment_id, manifest.version, manifest.subject_count) == ("dep-1", 5, 4)
    assert (manifest.not_before, manifest.not_after, manifest.signed_at) == (
        NOW - HOUR, NOW + 24 * HOUR, NOW)
    assert (manifest.model_id, manifest.model_sha256) == (MODEL_ID, MODEL_SHA)
    assert (manifest.second_model_id, manifest.second_model_sha256) == (
        (SECOND_ID, SECOND_SHA) if second else ("", ""))
    assert (manifest.payload_bytes, manifest.payload_sha256) == (
        len(payload), hashlib.sha256(payload).digest())
    assert (manifest.authority_id, manifest.authority_key_id) == ("hq", AUTHORITY.signing.key_id)


def test_not_before_defaults_to_now_and_held_none_accepts_any_version() -> None:
    data = sign(version=1)
    assert manifest_of(data).not_before == NOW
    assert verify(data, held_version=None).manifest.version == 1


def test_the_second_model_is_checked_when_the_unit_names_one() -> None:
    data = sign()
    assert verify(data, second_model_id=SECOND_ID, second_model_sha256=SECOND_SHA)
    refused = refusal(data, second_model_id=SECOND_ID, second_model_sha256="0" * 64)
    assert refused.reason is RefusalReason.OTHER_MODEL
    assert "second model" in str(refused)
    assert SECOND_SHA in str(refused)
    # A watchlist without the second model's templates is the first model's alone: accepted.
    assert verify(sign(make_watchlist(second=False)), second_model_id=SECOND_ID,
                  second_model_sha256=SECOND_SHA)


def test_reading_a_bytearray_views_it_so_the_caller_can_wipe_it_after_verifying() -> None:
    watchlist = make_watchlist()
    buffer = bytearray(sign(watchlist))
    signed = read_signed_watchlist(buffer)
    assert signed.payload.obj is buffer  # a view, not a copy
    verified = verify_signed_watchlist(signed, authority=AUTHORITY.public(), model_id=MODEL_ID,
                                       model_sha256=MODEL_SHA, held_version=None, now=NOW)
    buffer[:] = bytes(len(buffer))
    assert_same(watchlist, verified.watchlist)  # decoded into memory of its own
    assert read_signed_watchlist(memoryview(sign(watchlist))).manifest.version == 5


def test_the_format_is_as_documented() -> None:
    data = sign()
    magic, version, manifest_len = PREFIX.unpack_from(data)
    assert (magic, version) == (b"LFRSWL", 1)
    _, signature_start, payload_start = offsets(data)
    assert struct.unpack_from(">H", data, signature_start - 2) == (HYBRID_SIGNATURE_BYTES,)
    manifest = Codec(SIGNED_WATCHLIST_RECORDS).decode(data[PREFIX.size:PREFIX.size
                                                           + manifest_len])
    assert manifest == manifest_of(data)
    signed = read_signed_watchlist(data)
    assert signed.signed == data[:signature_start - 2]
    assert signed.signature.to_bytes() == data[signature_start:payload_start]
    assert bytes(signed.payload) == data[payload_start:]
    # The signature is over the signed bytes under the watchlist's own context.
    AUTHORITY.public().verify_key.verify(signed.signature, signed.signed,
                                         b"lfr-edge/watchlist-manifest/v1")


# --- signing refusals --------------------------------------------------------------------------


@pytest.mark.parametrize("role", [NodeRole.UNIT, NodeRole.VAN])
def test_only_an_authority_key_signs(role: NodeRole) -> None:
    with pytest.raises(WatchlistSigningError, match=f"{role.value} u1 is not an authority key"):
        sign(authority=NodeKeys.generate(role, "u1"))


@pytest.mark.parametrize(("overrides", "problem"), [
    ({"not_after": NOW}, "has already passed"),
    ({"not_after": NOW - 1}, "has already passed"),
    ({"not_before": NOW + HOUR, "not_after": NOW + HOUR}, "must be later than not_before"),
    ({"not_before": NOW + 2 * HOUR, "not_after": NOW + HOUR}, "must be later than not_before"),
    ({"not_after": float("nan")}, "not_after must be a time"),
    ({"not_after": 1e12}, "not_after must be a time"),
    ({"version": 0}, "version must be a whole number"),
    ({"version": 2**63}, "version must be a whole number"),
    ({"version": True}, "version must be a whole number"),
])
def test_signing_refuses_a_bad_window_or_version(overrides: dict[str, Any], problem: str) -> None:
    with pytest.raises(WatchlistSigningError, match=problem):
        sign(**overrides)


@pytest.mark.parametrize("deployment", ["", "*", "a\nb", "x" * 65])
def test_signing_refuses_a_bad_deployment_id(deployment: str) -> None:
    with pytest.raises(NodeIdError, match="deployment id"):
        sign(deployment_id=deployment)


def test_signing_refuses_a_watchlist_over_the_payload_limit() -> None:
    with mock.patch.object(signed_watchlist, "MAX_PAYLOAD_BYTES", 100), pytest.raises(
            WatchlistSigningError, match=r"cannot be signed.*over the limit of 100"):
        sign()


@pytest.mark.parametrize(("change", "problem"), [
    ({"deployment_id": ""}, "deployment_id"),
    ({"authority_id": "a\x1bb"}, "authority_id"),
    ({"version": 0}, "version"),
    ({"subject_count": 0}, "subject_count"),
    ({"payload_bytes": 0}, "payload_bytes"),
    ({"not_after": 1.0}, "not_after"),
    ({"not_before": -1.0}, "not_before"),
    ({"signed_at": float("inf")}, "signed_at"),
    ({"model_id": ""}, "model_id"),
    ({"model_sha256": "ABC"}, "model_sha256"),
    ({"model_sha256": "A" * 64}, "model_sha256"),
    ({"second_model_id": "x"}, "second_model_sha256"),
    ({"second_model_sha256": SECOND_SHA}, "second_model_id"),
    ({"payload_sha256": b"x" * 31}, "payload_sha256"),
    ({"authority_key_id": b"x" * 9}, "authority_key_id"),
])
def test_the_manifest_checks_every_field(change: dict[str, Any], problem: str) -> None:
    manifest = manifest_of(sign(make_watchlist(second=False)))
    with pytest.raises(ManifestFieldError, match=problem):
        replace(manifest, **change)


# --- structure: oversize, malformed, unsupported format ---------------------------------------


def test_over_the_size_limit_is_refused_before_anything_is_read() -> None:
    with pytest.raises(WatchlistRefused) as caught:
        read_signed_watchlist(b"\x00" * 101, max_bytes=100)
    assert caught.value.reason is RefusalReason.OVERSIZE
    assert "101 bytes is over the limit of 100" in str(caught.value)
    assert refusal(VALID[:100] + bytes(MAX_SIGNED_WATCHLIST_BYTES)).reason is (
        RefusalReason.OVERSIZE)


def _with_manifest_length(data: bytes, length: int) -> bytes:
    return data[:7] + struct.pack(">I", length) + data[11:]


@pytest.mark.parametrize(("data", "problem"), [
    (b"", "no LFRSWL header"),
    (b"LFRSW", "no LFRSWL header"),
    (b"LFRE\x01" + VALID[5:], "no LFRSWL header"),
    (encode_watchlist(make_watchlist()), "an unsigned watchlist file (LFRW)"),
    (VALID[:9], "ends inside its header"),
    (_with_manifest_length(VALID, 0), "manifest length 0 is outside 1..4096"),
    (_with_manifest_length(VALID, 4097), "manifest length 4097 is outside 1..4096"),
    (_with_manifest_length(VALID, 2**32 - 1), "outside 1..4096"),
    (_with_manifest_length(VALID, len(VALID)), "outside 1..4096"),
    (VALID[:20], "ends inside its manifest"),
    (VALID[:offsets(VALID)[1] + 100], "ends inside its signature"),
])
def test_malformed_files_are_refused_naming_the_problem(data: bytes, problem: str) -> None:
    refused = refusal(data)
    assert refused.reason is RefusalReason.MALFORMED
    assert problem in str(refused)


def test_a_signature_of_another_length_is_malformed() -> None:
    _, signature_start, _ = offsets(VALID)
    data = bytearray(VALID)
    struct.pack_into(">H", data, signature_start - 2, HYBRID_SIGNATURE_BYTES - 1)
    refused = refusal(data)
    assert refused.reason is RefusalReason.MALFORMED
    assert f"signature of {HYBRID_SIGNATURE_BYTES - 1} bytes" in str(refused)


def test_a_manifest_that_does_not_decode_is_malformed_and_names_the_field() -> None:
    manifest = manifest_of(VALID)
    fields = {name: getattr(manifest, name) for name in WatchlistManifest.__dataclass_fields__}
    for bad, problem in (({**fields, "version": "5"}, "version: expected int"),
                         ({**fields, "version": 0}, "manifest field version"),
                         ({**fields, "extra": 1}, "no field(s) ['extra']"),
                         ({k: v for k, v in fields.items() if k != "payload_sha256"},
                          "missing field 'payload_sha256'")):
        raw = msgpack.packb([340, 1, bad], use_bin_type=True)
        data = PREFIX.pack(MAGIC, 1, len(raw)) + raw + VALID[offsets(VALID)[1] - 2:]
        refused = refusal(data)
        assert refused.reason is RefusalReason.MALFORMED
        assert "manifest is not valid" in str(refused)
        assert problem in str(refused)
    raw = msgpack.packb([341, 1, {}])
    data = PREFIX.pack(MAGIC, 1, len(raw)) + raw + VALID[offsets(VALID)[1] - 2:]
    assert "unknown message type code 341" in str(refusal(data))


def test_another_format_version_is_refused_as_unsupported() -> None:
    data = bytearray(VALID)
    data[6] = 2
    refused = refusal(data)
    assert refused.reason is RefusalReason.UNSUPPORTED_FORMAT
    assert "format version 2; this lfr reads version 1" in str(refused)


# --- authority and signature -------------------------------------------------------------------


def test_another_authoritys_file_is_refused_naming_both_keys() -> None:
    data = sign(authority=OTHER_AUTHORITY)
    refused = refusal(data)
    assert refused.reason is RefusalReason.OTHER_AUTHORITY
    text = str(refused)
    assert OTHER_AUTHORITY.signing.key_id.hex() in text
    assert AUTHORITY.signing.key_id.hex() in text
    assert "hq-2" in text
    # ... and it verifies for a unit that trusts that authority.
    assert verify(data, authority=OTHER_AUTHORITY.public())


def test_a_file_naming_our_authority_but_signed_by_another_fails_both_halves() -> None:
    genuine = read_signed_watchlist(VALID)
    forged = assemble_signed_watchlist(genuine.manifest, bytes(genuine.payload),
                                       OTHER_AUTHORITY.signing)
    refused = refusal(forged)
    assert refused.reason is RefusalReason.SIGNATURE_BOTH
    assert "neither half verifies" in str(refused)


def test_the_authoritys_id_must_match_too() -> None:
    renamed = NodeKeys(NodeRole.AUTHORITY, "someone-else", AUTHORITY.signing, None)
    refused = refusal(sign(authority=renamed))
    assert refused.reason is RefusalReason.OTHER_AUTHORITY
    assert "someone-else" in str(refused)


@pytest.mark.parametrize(("position", "reason", "half"), [
    (10, RefusalReason.SIGNATURE_ED25519, "the Ed25519 half does not verify"),
    (ED25519_SIGNATURE_BYTES + 1000, RefusalReason.SIGNATURE_ML_DSA,
     "the ML-DSA-65 half does not verify"),
])
def test_each_signature_half_broken_alone_is_named(position: int, reason: RefusalReason,
                                                   half: str) -> None:
    _, signature_start, _ = offsets(VALID)
    data = bytearray(VALID)
    data[signature_start + position] ^= 0x01
    refused = refusal(data)
    assert refused.reason is reason
    assert half in str(refused)


def test_both_halves_broken_are_named_both() -> None:
    _, signature_start, _ = offsets(VALID)
    data = bytearray(VALID)
    data[signature_start + 3] ^= 0x80
    data[signature_start + ED25519_SIGNATURE_BYTES + 3] ^= 0x80
    assert refusal(data).reason is RefusalReason.SIGNATURE_BOTH


def test_a_manifest_changed_under_the_original_signature_is_refused() -> None:
    signed = read_signed_watchlist(VALID)
    later = replace(signed.manifest, version=signed.manifest.version + 1)
    raw = Codec(SIGNED_WATCHLIST_RECORDS).encode(later)
    _, signature_start, _ = offsets(VALID)
    data = PREFIX.pack(MAGIC, 1, len(raw)) + raw + VALID[signature_start - 2:]
    assert refusal(data).reason is RefusalReason.SIGNATURE_BOTH


def test_no_payload_is_decoded_before_the_signature_holds() -> None:
    genuine = read_signed_watchlist(VALID)
    forged = assemble_signed_watchlist(genuine.manifest, bytes(genuine.payload),
                                       OTHER_AUTHORITY.signing)
    with mock.patch.object(signed_watchlist, "_decode_payload",
                           side_effect=AssertionError("payload decoded")) as decode:
        for data in (forged, sign(authority=OTHER_AUTHORITY)):
            refusal(data)
        decode.assert_not_called()


# --- payload ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("cut", "problem"), [
    (lambda d: d[:-1], "the signed manifest says"),
    (lambda d: d + b"\x00", "the signed manifest says"),
    (lambda d: d[:offsets(d)[2]], "payload has 0 bytes"),
    (lambda d: d[:-10] + bytes([d[-10] ^ 1]) + d[-9:], "is not the signed"),
])
def test_a_payload_changed_after_signing_is_corrupt(cut: Any, problem: str) -> None:
    refused = refusal(cut(VALID))
    assert refused.reason is RefusalReason.PAYLOAD_CORRUPT
    assert problem in str(refused)


def signed_payload(payload: bytes, **manifest_changes: Any) -> bytes:
    """``payload`` under a genuine authority signature, its manifest made to match it."""
    manifest = replace(manifest_of(VALID), payload_sha256=hashlib.sha256(payload).digest(),
                       payload_bytes=len(payload), **manifest_changes)
    return assemble_signed_watchlist(manifest, payload, AUTHORITY.signing)


@pytest.mark.parametrize(("payload", "changes", "problem"), [
    (b"\xc1" * 100, {}, "is not a valid watchlist: malformed message"),
    (Codec(SIGNED_WATCHLIST_RECORDS).encode(manifest_of(VALID)), {},
     "unknown message type code 340"),
    (payload_of(make_watchlist(3)), {"subject_count": 2}, "holds 3 subjects, the manifest says 2"),
    (payload_of(make_watchlist(2, model_id="other-model")), {},
     "has model_id other-model, the manifest says mobilefacenet-192"),
    (payload_of(make_watchlist(2, second=False)), {},
     "has second_model_id , the manifest says dlib-resnet-v1-128"),
    (payload_of(make_watchlist(2, dim=128)), {},
     "embeddings of 128 dimensions, model mobilefacenet-192 makes 192"),
])
def test_a_signed_payload_that_is_no_valid_watchlist_is_refused(
        payload: bytes, changes: dict[str, Any], problem: str) -> None:
    refused = refusal(signed_payload(payload, **changes))
    assert refused.reason is RefusalReason.PAYLOAD_INVALID
    assert problem in str(refused)


def test_a_payload_whose_watchlist_fails_its_own_checks_is_invalid() -> None:
    watchlist = make_watchlist(2, second=False)
    raw = msgpack.unpackb(payload_of(watchlist), raw=False, strict_map_key=False)
    raw[2]["subjects"] = ["same", "same"]
    refused = refusal(signed_payload(msgpack.packb(raw, use_bin_type=True),
                                     second_model_id="", second_model_sha256=""))
    assert refused.reason is RefusalReason.PAYLOAD_INVALID
    assert "subject ids must be unique" in str(refused)


# --- model, deployment, version, window --------------------------------------------------------


@pytest.mark.parametrize(("unit", "shown"), [
    ({"model_id": "arcface-512"}, "this unit uses arcface-512"),
    ({"model_sha256": "0" * 64}, "0" * 64),
])
def test_another_model_is_refused(unit: dict[str, str], shown: str) -> None:
    refused = refusal(VALID, **unit)
    assert refused.reason is RefusalReason.OTHER_MODEL
    assert shown in str(refused)
    assert f"made with model {MODEL_ID} (sha256 {MODEL_SHA})" in str(refused)


def test_another_deployment_is_refused_when_the_caller_names_one() -> None:
    assert verify(VALID, deployment_id="dep-1")
    refused = refusal(VALID, deployment_id="dep-2")
    assert refused.reason is RefusalReason.OTHER_DEPLOYMENT
    assert "for deployment dep-1, this one is dep-2" in str(refused)


@pytest.mark.parametrize("held", [5, 6, 2**63 - 1])
def test_a_version_not_newer_than_the_held_one_is_a_rollback(held: int) -> None:
    refused = refusal(VALID, held_version=held)
    assert refused.reason is RefusalReason.ROLLBACK
    assert f"version 5 is not newer than the version held, {held}" in str(refused)


def test_validity_window_with_the_clock_skew_allowance_before_it_only() -> None:
    data = sign(not_before=NOW + HOUR, not_after=NOW + 2 * HOUR)
    start, end = NOW + HOUR, NOW + 2 * HOUR
    assert verify(data, now=start - CLOCK_SKEW_S)  # a unit's clock a little behind: accepted
    assert verify(data, now=end - 0.001)
    early = refusal(data, now=start - CLOCK_SKEW_S - 0.5)
    assert early.reason is RefusalReason.NOT_YET_VALID
    assert "valid from 2027-01-15T09:00:00Z, now is 2027-01-15T08:57:59Z" in str(early)
    assert "clock skew of 120 s" in str(early)
    for now in (end, end + 1, end + 1e6):
        expired = refusal(data, now=now)
        assert expired.reason is RefusalReason.EXPIRED
        assert "expired at 2027-01-15T10:00:00Z" in str(expired)


@pytest.mark.parametrize(("data", "unit", "first"), [
    # other authority before a broken signature or anything after it
    (sign(authority=OTHER_AUTHORITY, version=1, not_after=NOW + 1), {"now": NOW + 5},
     RefusalReason.OTHER_AUTHORITY),
    # payload corrupt before the model, the version and the window
    (VALID[:-1], {"model_id": "x", "held_version": 9, "now": NOW + 1e6},
     RefusalReason.PAYLOAD_CORRUPT),
    # model before version and window
    (VALID, {"model_id": "x", "held_version": 9, "now": NOW + 1e6}, RefusalReason.OTHER_MODEL),
    # rollback before the window
    (VALID, {"held_version": 9, "now": NOW + 1e6}, RefusalReason.ROLLBACK),
])
def test_the_first_failing_check_in_the_documented_order_wins(
        data: bytes, unit: dict[str, Any], first: RefusalReason) -> None:
    assert refusal(data, **unit).reason is first


def test_verifying_with_keys_that_are_not_an_authoritys_is_the_callers_error() -> None:
    van = NodeKeys.generate(NodeRole.VAN, "van-1")
    with pytest.raises(ValueError, match="needs an authority's public keys"):
        verify(VALID, authority=van.public())
    with pytest.raises(ValueError, match="finite time"):
        verify(VALID, now=float("nan"))


# --- truncation and fuzzing -------------------------------------------------------------------


def read_and_verify_or_refuse(data: bytes | bytearray) -> VerifiedWatchlist | None:
    """Read and verify ``data``: a ``VerifiedWatchlist`` or None when refused; any other
    exception fails the test."""
    try:
        return verify(data)
    except WatchlistRefused:
        return None


def test_every_truncation_is_refused() -> None:
    for length in range(len(VALID)):
        assert read_and_verify_or_refuse(VALID[:length]) is None, length
    assert read_and_verify_or_refuse(VALID) is not None


@SLOW
@given(st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(1, 255)),
                min_size=1, max_size=8, unique_by=lambda flip: flip[0]))
def test_a_signed_file_with_bytes_changed_is_refused(flips: list[tuple[int, int]]) -> None:
    data = bytearray(VALID)
    for index, mask in flips:
        data[index] ^= mask
    with contextlib.suppress(WatchlistRefused):
        read_signed_watchlist(data)
    assert read_and_verify_or_refuse(data) is None, flips


@SLOW
@given(st.integers(0, len(VALID)), st.integers(0, len(VALID)), st.binary(max_size=64))
def test_a_signed_file_cut_or_spliced_is_refused(start: int, end: int, insert: bytes) -> None:
    start, end = min(start, end), max(start, end)
    data = VALID[:start] + insert + VALID[end:]
    if data != VALID:
        assert read_and_verify_or_refuse(data) is None


@SLOW
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_behind_the_magic_are_refused(tail: bytes) -> None:
    for data in (MAGIC + tail, MAGIC + b"\x01" + tail):
        with pytest.raises(WatchlistRefused):
            read_signed_watchlist(data)


_ANY_VALUE = st.one_of(st.none(), st.booleans(), st.integers(-2**64, 2**64 - 1),
                       st.floats(allow_nan=True), st.text(max_size=80), st.binary(max_size=80),
                       st.lists(st.integers(), max_size=3))


@SLOW
@given(st.sampled_from(sorted(WatchlistManifest.__dataclass_fields__)), _ANY_VALUE)
def test_a_manifest_with_any_value_in_any_field_reads_or_is_refused(field: str,
                                                                    value: Any) -> None:
    manifest = manifest_of(VALID)
    fields = {name: getattr(manifest, name) for name in WatchlistManifest.__dataclass_fields__}
    fields[field] = value
    try:
        raw = msgpack.packb([340, 1, fields], use_bin_type=True)
    except (OverflowError, TypeError):
        return
    data = PREFIX.pack(MAGIC, 1, len(raw)) + raw + VALID[offsets(VALID)[1] - 2:]
    with contextlib.suppress(WatchlistRefused):
        signed: SignedWatchlist = read_signed_watchlist(data)
        assert getattr(signed.manifest, field) == value
    assert read_and_verify_or_refuse(data) is None or getattr(manifest, field) == value
