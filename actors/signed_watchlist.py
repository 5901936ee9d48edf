"""The signed watchlist: a ``Watchlist`` wrapped in a manifest the watchlist authority signed.

The van keeps and pushes these files; a unit accepts one only through
``verify_signed_watchlist``. Both import this module. Wire format (docs/WATCHLIST_SIGNING.md has
it byte by byte; integers big-endian)::

    file    = "LFRSWL" | format version u8 (1) | manifest_len u32 | manifest
              | signature_len u16 (3373) | signature | payload        (the payload runs to the end)
    signed  = every byte before signature_len, under context SIGNATURE_CONTEXT
    payload = the codec bytes of the ``Watchlist`` message (what follows the LFRW file header)

The manifest (``WatchlistManifest``, at most ``MAX_MANIFEST_BYTES``, a registry of its own:
type code 340) holds the payload's sha256 and length, so the hybrid signature (Ed25519 +
ML-DSA-65, ``secure.hybrid_signature``) covers the payload without signing megabytes.

Guarantees:

- ``read_signed_watchlist`` reads structure only: the size limit first, then every length is
  checked against its bound and against what remains before anything is sliced, then the small
  manifest is decoded by the strict codec. The payload is not touched.
- ``verify_signed_watchlist`` checks, in this order: the authority's key id, both signature
  halves, the payload's length and sha256, the payload's decode and its agreement with the
  manifest, the unit's model, the deployment (when given), the version (rollback) and the
  validity window. Nothing in the payload is decoded before the signature and the hash hold, so
  without the authority's private key nobody reaches the msgpack decoder of a payload of up to
  64 MiB: a stranger's bytes cost one decode of at most 4 KiB and one signature check.
- Every refusal, of either function, is one exception type, ``WatchlistRefused`` (a
  ``UserInputError``), whose ``reason`` is a stable ``RefusalReason`` (counters, the van's view)
  and whose text names what was wrong. Nothing else escapes (fuzzed). Peer text in messages goes
  through ``guards.log_text.printable``.
- ``sign_watchlist`` refuses a key that is not an authority's, an empty or inverted validity
  window and one that has already ended: it never makes a file a unit would refuse for those.

The payload is biometric data: ``SignedWatchlist`` and ``VerifiedWatchlist`` keep it in memory
only (``SignedWatchlist.payload`` is a view on the caller's buffer, not a copy); writing a file
is the caller's (``lfr watchlist sign`` writes it 0600 and never over another file).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import math
import string
import struct
import time
from dataclasses import dataclass

from actors.unit.watchlist import Watchlist
from guards.log_text import printable
from guards.user_input import UserInputError
from models.face_embedder import EMBEDDING_DIM
from runtime.codec import Codec, DecodeError, EncodeError
from runtime.message import MessageRegistry, message
from secure.hybrid_signature import (
    BOTH,
    ED25519,
    HYBRID_SIGNATURE_BYTES,
    ML_DSA_65,
    HybridSignature,
    SignatureInvalid,
    SigningKeyPair,
)
from secure.key_id import KEY_ID_BYTES, format_key_id
from secure.node_keys import NodeIdError, NodeKeys, NodePublicKeys, NodeRole, check_node_id

SIGNED_WATCHLIST_RECORDS = MessageRegistry()
"""The registry of the signed watchlist's records (type codes 340-349), never used by a link."""
MAGIC = b"LFRSWL"
"""First six bytes of every signed watchlist."""
FORMAT_VERSION = 1
"""The layout above; another version is refused as ``unsupported_format``."""
SIGNATURE_CONTEXT = b"lfr-edge/watchlist-manifest/v1"
"""Domain separation: a manifest signature is valid for nothing else (not an envelope, not an
offer)."""
MAX_SIGNED_WATCHLIST_BYTES = 64 * 1024 * 1024
"""Largest signed watchlist read. A subject with both models costs (192 + 128) float32 and two
float32 thresholds, 1,288 bytes, plus its id and codec framing: 10,000 subjects make about
13 MB, so 64 MiB holds about 50,000 (measured sizes in docs/WATCHLIST_SIGNING.md)."""
MAX_MANIFEST_BYTES = 4096
"""A manifest is about 400 bytes (ids of at most 64 and 128 characters, 4 UTF-8 bytes each at
worst, stay under 2 KiB)."""
CLOCK_SKEW_S = 120.0
"""A unit accepts a watchlist up to this long before its ``not_before``: the authority's and
the unit's clocks differ by seconds to a minute, and a list signed to start "now" must work at
once. Expiry gets no such allowance: ``not_after`` is never extended."""
MAX_VERSION = 2**63 - 1
"""Versions are 1..2**63-1."""
MAX_EPOCH_S = 4_102_444_800.0
"""2100-01-01 UTC: times (s since the Unix epoch) lie in 0..this."""
MAX_MODEL_ID_CHARS = 128
"""As ``actors.unit.event_body.MAX_MODEL_ID_CHARS``."""
SHA256_HEX_CHARS = 64
_PREFIX = struct.Struct(">6sBI")  # magic, format version, manifest length
_SIGNATURE_LEN = struct.Struct(">H")
MAX_PAYLOAD_BYTES = (MAX_SIGNED_WATCHLIST_BYTES - _PREFIX.size - MAX_MANIFEST_BYTES
                     - _SIGNATURE_LEN.size - HYBRID_SIGNATURE_BYTES)
"""Largest payload: what remains of ``MAX_SIGNED_WATCHLIST_BYTES`` after the rest."""
_HEX_DIGITS = frozenset(string.hexdigits.lower())


class RefusalReason(enum.StrEnum):
    """Why a signed watchlist was refused: stable names for counters, logs and the van's view."""

    OVERSIZE = "oversize"
    """Over the size limit; refused before anything is read."""
    MALFORMED = "malformed"
    """Not a signed watchlist: magic, a length, the signature's size or the manifest."""
    UNSUPPORTED_FORMAT = "unsupported_format"
    """A format version this lfr does not read."""
    OTHER_AUTHORITY = "other_authority"
    """Signed (or claiming to be) by another authority key than the configured one."""
    SIGNATURE_ED25519 = "signature_ed25519"
    """The Ed25519 half of the signature does not verify."""
    SIGNATURE_ML_DSA = "signature_ml_dsa"
    """The ML-DSA-65 half of the signature does not verify."""
    SIGNATURE_BOTH = "signature_both"
    """Neither half verifies."""
    PAYLOAD_CORRUPT = "payload_corrupt"
    """The payload's length or sha256 is not the signed one (truncated, extended, altered)."""
    PAYLOAD_INVALID = "payload_invalid"
    """The signed payload is not a valid ``Watchlist``, or disagrees with its manifest."""
    OTHER_MODEL = "other_model"
    """Made with another embedding model than this unit's."""
    OTHER_DEPLOYMENT = "other_deployment"
    """For another deployment than the one the caller named."""
    ROLLBACK = "rollback"
    """Not newer than the version held."""
    EXPIRED = "expired"
    """Its ``not_after`` has passed."""
    NOT_YET_VALID = "not_yet_valid"
    """Its ``not_before`` is more than ``CLOCK_SKEW_S`` away."""


_SIGNATURE_REASONS = {ED25519: RefusalReason.SIGNATURE_ED25519,
                      ML_DSA_65: RefusalReason.SIGNATURE_ML_DSA,
                      BOTH: RefusalReason.SIGNATURE_BOTH}


class WatchlistRefused(UserInputError):
    """A signed watchlist was refused; ``reason`` says why (stable), the text what was wrong."""

    def __init__(self, reason: RefusalReason, problem: str) -> None:
        self.reason = reason
        """The stable reason, for counters and the van's view."""
        super().__init__(problem)


class WatchlistSigningError(UserInputError):
    """``sign_watchlist`` refused: not an authority key, a bad validity window or version."""


class ManifestFieldError(UserInputError):
    """A manifest field out of range; the text names the field. Inside a decode it becomes a
    ``DecodeError`` (the codec wraps ``ValueError``), hence ``malformed``."""


@message(340, registry=SIGNED_WATCHLIST_RECORDS)
@dataclass(frozen=True, slots=True)
class WatchlistManifest:
    """What the authority signs about one watchlist. Construction checks every field."""

    deployment_id: str
    """The deployment the watchlist is compiled for: 1-64 printable characters
    (``secure.node_keys.check_node_id``)."""
    version: int
    """1..2**63-1; a unit accepts only a version greater than the one it holds."""
    not_before: float
    """Start of validity, s since the Unix epoch (accepted ``CLOCK_SKEW_S`` early)."""
    not_after: float
    """End of validity (s since the epoch), later than ``not_before``; the unit drops it then."""
    subject_count: int
    """Subjects in the payload (1..``payload_bytes``)."""
    model_id: str
    """The first embedding model's id (the ``Watchlist``'s ``model_id``)."""
    model_sha256: str
    """That model file's sha256, 64 lower-case hex digits."""
    second_model_id: str
    """The second face model's id, or empty when the watchlist has none."""
    second_model_sha256: str
    """Its sha256 (64 lower-case hex digits); empty exactly when ``second_model_id`` is."""
    payload_sha256: bytes
    """sha256 of the payload (32 bytes): the signature covers the payload through it."""
    payload_bytes: int
    """The payload's length (1..``MAX_PAYLOAD_BYTES``)."""
    authority_id: str
    """The signing authority's node id."""
    authority_key_id: bytes
    """Key id of the authority's signing key (8 bytes): the verifier's first check."""
    signed_at: float
    """When it was signed, s since the epoch (for people; no check depends on it)."""

    def __post_init__(self) -> None:
        _check_id(self.deployment_id, "deployment_id")
        _check_id(self.authority_id, "authority_id")
        _check_int(self.version, "version", 1, MAX_VERSION)
        _check_int(self.payload_bytes, "payload_bytes", 1, MAX_PAYLOAD_BYTES)
        _check_int(self.subject_count, "subject_count", 1, self.payload_bytes)
        for name in ("not_before", "not_after", "signed_at"):
            _check_time(getattr(self, name), name)
        if not self.not_after > self.not_before:
            raise ManifestFieldError(
                f"manifest field not_after ({_utc(self.not_after)}) must be later than "
                f"not_before ({_utc(self.not_before)})")
        _check_model_fields(self.model_id, self.model_sha256, "model_id", "model_sha256")
        if self.second_model_id or self.second_model_sha256:
            _check_model_fields(self.second_model_id, self.second_model_sha256,
                                "second_model_id", "second_model_sha256")
        _check_bytes(self.payload_sha256, "payload_sha256", hashlib.sha256().digest_size)
        _check_bytes(self.authority_key_id, "authority_key_id", KEY_ID_BYTES)


@dataclass(frozen=True, slots=True, eq=False)
class SignedWatchlist:
    """A signed watchlist's parts, structurally sound; nothing in it is verified yet."""

    manifest: WatchlistManifest
    """The decoded manifest (not yet trusted)."""
    signed: bytes
    """The bytes the signature covers: magic, format version, manifest length, manifest."""
    signature: HybridSignature
    """The hybrid signature (Ed25519, ML-DSA-65)."""
    payload: memoryview
    """The payload: a view on the bytes given to ``read_signed_watchlist`` (not a copy), so
    the caller can wipe that buffer once it has verified and decoded it."""


@dataclass(frozen=True, slots=True, eq=False)
class VerifiedWatchlist:
    """A signed watchlist that passed every check of ``verify_signed_watchlist``."""

    manifest: WatchlistManifest
    """The verified manifest."""
    watchlist: Watchlist
    """The decoded payload, consistent with the manifest."""
    payload_sha256: str
    """The payload's sha256 as hex (for audit records and the van's view)."""


# -- signing -----------------------------------------------------------------------------------


def sign_watchlist(watchlist: Watchlist, *, authority: NodeKeys, deployment_id: str,
                   version: int, not_after: float, not_before: float | None = None,
                   now: float | None = None) -> bytes:
    """The signed file's bytes for ``watchlist``, valid from ``not_before`` (default ``now``,
    itself the current time by default) until ``not_after``.

    ``WatchlistSigningError`` for a key of another role than authority, a version out of
    1..2**63-1, ``not_after`` not later than ``not_before`` or not in the future;
    ``NodeIdError`` for a bad deployment id (both ``UserInputError``)."""
    if authority.role is not NodeRole.AUTHORITY:
        raise WatchlistSigningError(
            f"the key of {authority.role.value} {printable(authority.node_id)} is not an "
            "authority key; only an authority signs watchlists (make one with "
            "`lfr keys init --role authority`)")
    check_node_id(deployment_id, "deployment id")
    if isinstance(version, bool) or not isinstance(version, int) or not (
            1 <= version <= MAX_VERSION):
        raise WatchlistSigningError(f"version must be a whole number in 1..{MAX_VERSION}, got "
                                    f"{printable(repr(version))}")
    signed_at = time.time() if now is None else now
    start = signed_at if not_before is None else not_before
    for name, value in (("now", signed_at), ("not_before", start), ("not_after", not_after)):
        if not (isinstance(value, int | float) and math.isfinite(value)
                and 0 <= value <= MAX_EPOCH_S):
            raise WatchlistSigningError(f"{name} must be a time between 1970 and 2100, got "
                                        f"{printable(repr(value))}")
    if not_after <= signed_at:
        raise WatchlistSigningError(f"not_after ({_utc(not_after)}) has already passed (now "
                                    f"{_utc(signed_at)}): a unit would refuse it as expired")
    if not_after <= start:
        raise WatchlistSigningError(f"not_after ({_utc(not_after)}) must be later than "
                                    f"not_before ({_utc(start)})")
    try:
        payload = Codec(max_message_bytes=MAX_PAYLOAD_BYTES).encode(watchlist)
    except EncodeError as exc:
        raise WatchlistSigningError(f"the watchlist cannot be signed: {exc}") from None
    manifest = WatchlistManifest(
        deployment_id=deployment_id, version=version, not_before=float(start),
        not_after=float(not_after), subject_count=len(watchlist.subjects),
        model_id=watchlist.model_id, model_sha256=watchlist.model_sha256,
        second_model_id=watchlist.second_model_id,
        second_model_sha256=watchlist.second_model_sha256,
        payload_sha256=hashlib.sha256(payload).digest(), payload_bytes=len(payload),
        authority_id=authority.node_id, authority_key_id=authority.signing.key_id,
        signed_at=float(signed_at))
    return assemble_signed_watchlist(manifest, payload, authority.signing)


def assemble_signed_watchlist(manifest: WatchlistManifest, payload: bytes,
                              signing: SigningKeyPair) -> bytes:
    """The file's bytes: ``manifest`` signed with ``signing``, then ``payload``.

    The low-level half of ``sign_watchlist``, which makes the manifest from the payload; this
    checks neither that they agree nor that ``signing`` is the manifest's key (tests use it to
    make files that are signed yet wrong)."""
    encoded = Codec(SIGNED_WATCHLIST_RECORDS, max_message_bytes=MAX_MANIFEST_BYTES).encode(
        manifest)
    signed = _PREFIX.pack(MAGIC, FORMAT_VERSION, len(encoded)) + encoded
    signature = signing.sign(signed, SIGNATURE_CONTEXT).to_bytes()
    return b"".join((signed, _SIGNATURE_LEN.pack(len(signature)), signature, payload))


# -- reading -----------------------------------------------------------------------------------


def read_signed_watchlist(data: bytes | bytearray | memoryview, *,
                          max_bytes: int = MAX_SIGNED_WATCHLIST_BYTES) -> SignedWatchlist:
    """Split ``data`` into manifest, signature and payload, checking structure only; raises
    ``WatchlistRefused`` (``oversize``, ``malformed``, ``unsupported_format``) and nothing else.

    ``payload`` is a view on ``data``: keep ``data`` unchanged until it is verified."""
    view = memoryview(data)
    if view.nbytes > max_bytes:
        raise WatchlistRefused(RefusalReason.OVERSIZE, f"signed watchlist of {view.nbytes} "
                               f"bytes is over the limit of {max_bytes}")
    view = view.cast("B")
    size = len(view)
    if bytes(view[:len(MAGIC)]) != MAGIC:
        raise WatchlistRefused(RefusalReason.MALFORMED, _not_signed(view))
    if size < _PREFIX.size:
        raise _malformed("it ends inside its header")
    _, version, manifest_len = _PREFIX.unpack_from(view)
    if version != FORMAT_VERSION:
        raise WatchlistRefused(RefusalReason.UNSUPPORTED_FORMAT,
                               f"signed watchlist format version {version}; this lfr reads "
                               f"version {FORMAT_VERSION}")
    if not 0 < manifest_len <= MAX_MANIFEST_BYTES:
        raise _malformed(f"manifest length {manifest_len} is outside 1..{MAX_MANIFEST_BYTES}")
    manifest_end = _PREFIX.size + manifest_len
    signature_start = manifest_end + _SIGNATURE_LEN.size
    if size < signature_start:
        raise _malformed("it ends inside its manifest")
    (signature_len,) = _SIGNATURE_LEN.unpack_from(view, manifest_end)
    if signature_len != HYBRID_SIGNATURE_BYTES:
        raise _malformed(f"signature of {signature_len} bytes; format version "
                         f"{FORMAT_VERSION} has {HYBRID_SIGNATURE_BYTES}")
    payload_start = signature_start + signature_len
    if size < payload_start:
        raise _malformed("it ends inside its signature")
    manifest = _decode_manifest(view[_PREFIX.size:manifest_end])
    return SignedWatchlist(manifest=manifest, signed=bytes(view[:manifest_end]),
                           signature=HybridSignature.from_bytes(
                               bytes(view[signature_start:payload_start])),
                           payload=view[payload_start:])


def _decode_manifest(raw: memoryview) -> WatchlistManifest:
    try:
        manifest = Codec(SIGNED_WATCHLIST_RECORDS, max_message_bytes=MAX_MANIFEST_BYTES
                         ).decode(raw)
    except DecodeError as exc:  # names fields and types; values only through printable
        raise _malformed(f"its manifest is not valid: {printable(exc, max_chars=400)}"
                         ) from None
    if not isinstance(manifest, WatchlistManifest):  # the registry holds nothing else today
        raise _malformed(f"its manifest is a {type(manifest).__name__}")
    return manifest


# -- verifying ---------------------------------------------------------------------------------


def verify_signed_watchlist(signed: SignedWatchlist, *, authority: NodePublicKeys,
                            model_id: str, model_sha256: str, held_version: int | None,
                            now: float, second_model_id: str | None = None,
                            second_model_sha256: str | None = None,
                            deployment_id: str | None = None,
                            embedding_dim: int = EMBEDDING_DIM) -> VerifiedWatchlist:
    """Check ``signed`` for a unit whose embedder is ``model_id``/``model_sha256`` and which
    holds ``held_version`` (None: no watchlist), at time ``now``; raise ``WatchlistRefused``
    (and nothing else) at the first failing check, in the documented order.

    ``second_model_id``/``second_model_sha256``: the unit's second face model; when given, a
    watchlist holding templates of another second model is refused (``other_model``).
    ``deployment_id``: when given, a watchlist of another deployment is refused.
    ``embedding_dim``: the dimension of ``model_id``'s embeddings.
    ``ValueError`` (the caller's fault, not the file's) if ``authority`` is not an authority's
    keys or ``now`` is not a finite time."""
    if authority.role is not NodeRole.AUTHORITY:
        raise ValueError(f"verify_signed_watchlist needs an authority's public keys, got a "
                         f"{authority.role.value}'s")
    if not math.isfinite(now):
        raise ValueError(f"now must be a finite time, got {now!r}")
    manifest = signed.manifest
    _check_authority(manifest, authority)
    try:
        authority.verify_key.verify(signed.signature, signed.signed, SIGNATURE_CONTEXT)
    except SignatureInvalid as exc:
        raise WatchlistRefused(_SIGNATURE_REASONS[exc.half],
                               f"signature invalid: {_which_half(exc.half)} (authority "
                               f"{printable(authority.node_id)}, key "
                               f"{format_key_id(authority.verify_key.key_id)})") from None
    digest = _check_payload(signed.payload, manifest)
    watchlist = _decode_payload(signed.payload, manifest)
    _check_model(watchlist, manifest, model_id=model_id, model_sha256=model_sha256,
                 embedding_dim=embedding_dim, second=(second_model_id, second_model_sha256))
    if deployment_id is not None and manifest.deployment_id != deployment_id:
        raise WatchlistRefused(RefusalReason.OTHER_DEPLOYMENT,
                               f"watchlist is for deployment "
                               f"{printable(manifest.deployment_id)}, this one is "
                               f"{printable(deployment_id)}")
    if held_version is not None and manifest.version <= held_version:
        raise WatchlistRefused(RefusalReason.ROLLBACK,
                               f"watchlist version {manifest.version} is not newer than the "
                               f"version held, {held_version}: an older or the same list is "
                               "never loaded again")
    _check_window(manifest, now)
    return VerifiedWatchlist(manifest, watchlist, digest.hex())


def _check_authority(manifest: WatchlistManifest, authority: NodePublicKeys) -> None:
    expected = authority.verify_key.key_id
    if not hmac.compare_digest(manifest.authority_key_id, expected) or (
            manifest.authority_id != authority.node_id):
        raise WatchlistRefused(
            RefusalReason.OTHER_AUTHORITY,
            f"signed by authority {printable(manifest.authority_id)} with key "
            f"{format_key_id(manifest.authority_key_id)}; this node trusts authority "
            f"{printable(authority.node_id)} with key {format_key_id(expected)}")


def _which_half(half: str) -> str:
    return {ED25519: "the Ed25519 half does not verify",
            ML_DSA_65: "the ML-DSA-65 half does not verify"}.get(half, "neither half verifies")


def _check_payload(payload: memoryview, manifest: WatchlistManifest) -> bytes:
    if len(payload) != manifest.payload_bytes:
        raise WatchlistRefused(RefusalReason.PAYLOAD_CORRUPT,
                               f"payload has {len(payload)} bytes, the signed manifest says "
                               f"{manifest.payload_bytes} (truncated or extended)")
    digest = hashlib.sha256(payload).digest()
    if not hmac.compare_digest(digest, manifest.payload_sha256):
        raise WatchlistRefused(RefusalReason.PAYLOAD_CORRUPT,
                               f"payload sha256 {digest.hex()} is not the signed "
                               f"{manifest.payload_sha256.hex()} (altered or damaged)")
    return digest


def _decode_payload(payload: memoryview, manifest: WatchlistManifest) -> Watchlist:
    def invalid(problem: str) -> WatchlistRefused:
        return WatchlistRefused(RefusalReason.PAYLOAD_INVALID, f"signed payload {problem}")

    try:
        watchlist = Codec(max_message_bytes=MAX_PAYLOAD_BYTES).decode(payload)
    except DecodeError as exc:
        raise invalid(f"is not a valid watchlist: {printable(exc, max_chars=400)}") from None
    if not isinstance(watchlist, Watchlist):
        raise invalid(f"holds a {type(watchlist).__name__}, not a Watchlist")
    if len(watchlist.subjects) != manifest.subject_count:
        raise invalid(f"holds {len(watchlist.subjects)} subjects, the manifest says "
                      f"{manifest.subject_count}")
    for name in ("model_id", "model_sha256", "second_model_id", "second_model_sha256"):
        held, signed = getattr(watchlist, name), getattr(manifest, name)
        if held != signed:
            raise invalid(f"has {name} {printable(held, max_chars=80)}, the manifest says "
                          f"{printable(signed, max_chars=80)}")
    return watchlist


def _check_model(watchlist: Watchlist, manifest: WatchlistManifest, *, model_id: str,
                 model_sha256: str, embedding_dim: int,
                 second: tuple[str | None, str | None]) -> None:
    if (manifest.model_id, manifest.model_sha256) != (model_id, model_sha256):
        raise WatchlistRefused(
            RefusalReason.OTHER_MODEL,
            f"watchlist was made with model {printable(manifest.model_id)} (sha256 "
            f"{printable(manifest.model_sha256)}), this unit uses {printable(model_id)} "
            f"(sha256 {printable(model_sha256)})")
    second_id, second_sha = second
    if manifest.second_model_id and second_id is not None and (
            (manifest.second_model_id, manifest.second_model_sha256) != (second_id,
                                                                           second_sha)):
        raise WatchlistRefused(
            RefusalReason.OTHER_MODEL,
            f"watchlist holds templates of second model "
            f"{printable(manifest.second_model_id)} (sha256 "
            f"{printable(manifest.second_model_sha256)}), this unit uses "
            f"{printable(second_id)} (sha256 {printable(second_sha)})")
    if watchlist.dimension != embedding_dim:
        raise WatchlistRefused(
            RefusalReason.PAYLOAD_INVALID,
            f"signed payload has embeddings of {watchlist.dimension} dimensions, model "
            f"{printable(model_id)} makes {embedding_dim}")


def _check_window(manifest: WatchlistManifest, now: float) -> None:
    if now >= manifest.not_after:
        raise WatchlistRefused(RefusalReason.EXPIRED,
                               f"watchlist expired at {_utc(manifest.not_after)} (now "
                               f"{_utc(now)})")
    if now < manifest.not_before - CLOCK_SKEW_S:
        raise WatchlistRefused(RefusalReason.NOT_YET_VALID,
                               f"watchlist is valid from {_utc(manifest.not_before)}, now is "
                               f"{_utc(now)} (more than the allowed clock skew of "
                               f"{CLOCK_SKEW_S:.0f} s earlier)")


# -- helpers -----------------------------------------------------------------------------------


def _malformed(problem: str) -> WatchlistRefused:
    return WatchlistRefused(RefusalReason.MALFORMED, f"not a valid signed watchlist: {problem}")


def _not_signed(view: memoryview) -> str:
    if bytes(view[:4]) == b"LFRW":
        return ("an unsigned watchlist file (LFRW), not a signed one: sign it with "
                "`lfr watchlist sign`")
    return f"not a signed watchlist (no {MAGIC.decode()} header)"


def _check_id(value: str, name: str) -> None:
    try:
        check_node_id(value, f"manifest field {name}")
    except NodeIdError as exc:
        raise ManifestFieldError(str(exc)) from None


def _check_int(value: int, name: str, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ManifestFieldError(f"manifest field {name} must be a whole number in "
                                 f"{low}..{high}, got {printable(repr(value), max_chars=40)}")


def _check_time(value: float, name: str) -> None:
    if not (isinstance(value, float) and math.isfinite(value) and 0 <= value <= MAX_EPOCH_S):
        raise ManifestFieldError(f"manifest field {name} must be a time between 1970 and "
                                 f"2100, got {printable(repr(value), max_chars=40)}")


def _check_model_fields(model_id: str, sha256: str, id_name: str, sha_name: str) -> None:
    if not (isinstance(model_id, str) and 0 < len(model_id) <= MAX_MODEL_ID_CHARS
            and model_id.isprintable()):
        raise ManifestFieldError(f"manifest field {id_name} must be 1 to {MAX_MODEL_ID_CHARS} "
                                 "printable characters, got "
                                 f"{printable(repr(model_id), max_chars=80)}")
    if not (isinstance(sha256, str) and len(sha256) == SHA256_HEX_CHARS
            and set(sha256) <= _HEX_DIGITS):
        raise ManifestFieldError(f"manifest field {sha_name} must be {SHA256_HEX_CHARS} "
                                 "lower-case hex digits, got "
                                 f"{printable(repr(sha256), max_chars=80)}")


def _check_bytes(value: bytes, name: str, size: int) -> None:
    if not (isinstance(value, bytes) and len(value) == size):
        raise ManifestFieldError(f"manifest field {name} must be {size} bytes")


def _utc(epoch_s: float) -> str:
    """ISO 8601 in UTC, to the second (``2026-12-01T18:00:00Z``); a time outside 1970-2100
    as its number."""
    if not (math.isfinite(epoch_s) and 0 <= epoch_s <= MAX_EPOCH_S):
        return repr(epoch_s)
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch_s))
