"""The release manifest: what a bundle holds, signed by a release key.

The manifest is a JSON object (``release.json`` in the bundle and in each installed release):
format version, release version (PEP 440, compared with ``packaging.version``), architecture,
Python tag, build time, the signer's id and key id, the project wheel's path, every file of the
bundle with its sha256 and size, and every model file inside the project wheel with its sha256
and size. ``release.sig`` is a hybrid signature (Ed25519 + ML-DSA-65,
``secure.hybrid_signature``) over the manifest's exact bytes under ``SIGNATURE_CONTEXT``, so a
manifest signature is valid for nothing else (not a watchlist, not an envelope).

Guarantees:

- ``decode_manifest`` parses untrusted bytes strictly: size limit first, UTF-8, no duplicate
  keys, no NaN, exactly the known keys with the right types, every value checked
  (``ReleaseManifest.__post_init__``): file names match ``FILE_NAME`` (no ``..``, no absolute
  path, no link can be named), unique, at most ``MAX_FILES``, each at most ``MAX_FILE_BYTES``
  and all together at most ``MAX_BUNDLE_BYTES``. Every failure is ``UpdateRefused``.
- ``verify_manifest_signature`` checks the signer's id and key id against the trusted key
  first, then both halves of the signature; it says which failed.
- ``sign_manifest`` refuses a key that is not a release key.
"""

from __future__ import annotations

import hmac
import json
import re
from dataclasses import dataclass
from typing import Any

from packaging.version import InvalidVersion, Version

from guards.log_text import printable
from lfr.release.refusal import RefusalReason, UpdateRefused
from lfr.release.target import Arch
from secure.hybrid_signature import (
    HYBRID_SIGNATURE_BYTES,
    HybridSignature,
    SignatureInvalid,
)
from secure.key_id import KEY_ID_BYTES, format_key_id
from secure.node_keys import NodeIdError, NodeKeys, NodePublicKeys, NodeRole, check_node_id

FORMAT_VERSION = 1
"""The manifest's layout; another is refused as ``unsupported_format``."""
SIGNATURE_CONTEXT = b"lfr-edge/release-manifest/v1"
"""Domain separation of the release signature."""
MANIFEST_NAME = "release.json"
"""The manifest's name in a bundle and in an installed release."""
SIGNATURE_NAME = "release.sig"
"""The signature's name in a bundle."""
MAX_MANIFEST_BYTES = 1024 * 1024
"""A manifest of 40 wheels, a unit file and five models is about 10 KB."""
MAX_FILES = 256
"""Files in a bundle: the lock has 43 packages today."""
MAX_MODELS = 64
"""Model files listed (five today)."""
MAX_FILE_BYTES = 512 * 1024 * 1024
"""Largest file in a bundle (the biggest wheel, opencv, is about 60 MB)."""
MAX_BUNDLE_BYTES = 2 * 1024 * 1024 * 1024
"""All files together (an x86_64 bundle is about 200 MB)."""
MAX_NAME_CHARS = 200
"""Longest file or model name."""
FILE_NAME = re.compile(
    r"(wheels/[A-Za-z0-9][A-Za-z0-9._+-]*\.whl|firmware/[A-Za-z0-9][A-Za-z0-9._-]*)")
"""The only file names a bundle may hold: a wheel, or a firmware file (one level, no dot
first, so never ``..``)."""
MODEL_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*(/[A-Za-z0-9_][A-Za-z0-9_.-]*)*")
"""A model's path inside the project wheel: relative, no component starting with a dot."""
_SHA256 = re.compile(r"[0-9a-f]{64}")
_PYTHON_TAG = re.compile(r"cp3[0-9]{1,2}")
_BUILT_AT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")
_KEYS = frozenset({"format", "version", "arch", "python_tag", "built_at", "signer_id",
                   "signer_key_id", "project_wheel", "files", "models"})
_FILE_KEYS = frozenset({"path", "sha256", "size"})


def _malformed(problem: str) -> UpdateRefused:
    return UpdateRefused(RefusalReason.MALFORMED, f"release manifest: {problem}")


@dataclass(frozen=True, slots=True)
class BundleFile:
    """One file of a bundle (or one model inside the project wheel)."""

    path: str
    """Its name: ``FILE_NAME`` for a bundle file, ``MODEL_NAME`` for a model."""
    sha256: str
    """Its sha256, 64 lower-case hex digits."""
    size: int
    """Its length in bytes, 0..``MAX_FILE_BYTES``."""

    def __post_init__(self) -> None:
        if not (isinstance(self.path, str) and 0 < len(self.path) <= MAX_NAME_CHARS):
            raise _malformed(f"a file name must be 1 to {MAX_NAME_CHARS} characters, got "
                             f"{printable(repr(self.path), max_chars=80)}")
        if not (isinstance(self.sha256, str) and _SHA256.fullmatch(self.sha256)):
            raise _malformed(f"file {printable(self.path)}: sha256 must be 64 lower-case hex "
                             "digits")
        if isinstance(self.size, bool) or not isinstance(self.size, int) or not (
                0 <= self.size <= MAX_FILE_BYTES):
            if isinstance(self.size, int) and self.size > MAX_FILE_BYTES:
                raise UpdateRefused(RefusalReason.OVERSIZE,
                                    f"release manifest: file {printable(self.path)} has "
                                    f"{self.size} bytes, over the limit of {MAX_FILE_BYTES}")
            raise _malformed(f"file {printable(self.path)}: size must be a whole number in "
                             f"0..{MAX_FILE_BYTES}")


@dataclass(frozen=True, slots=True)
class ReleaseManifest:
    """What a release key signs about one bundle. Construction checks every field."""

    version: str
    """The release's version (PEP 440); a unit installs only a newer one."""
    arch: Arch
    """The architecture its wheels are for."""
    python_tag: str
    """The interpreter its wheels are for (``cp311``)."""
    built_at: str
    """When it was built, ``YYYY-MM-DDTHH:MM:SSZ`` (for people; no check depends on it)."""
    signer_id: str
    """The release key's node id."""
    signer_key_id: bytes
    """The release key's key id (8 bytes): the verifier's first check."""
    project_wheel: str
    """The path of the project's own wheel among ``files``."""
    files: tuple[BundleFile, ...]
    """Every file of the bundle after the manifest and the signature, in bundle order; names
    match ``FILE_NAME`` and are unique; total size at most ``MAX_BUNDLE_BYTES``."""
    models: tuple[BundleFile, ...]
    """Every model file inside the project wheel (path relative to site-packages)."""
    format: int = FORMAT_VERSION
    """The manifest's format version."""

    def __post_init__(self) -> None:
        if self.format != FORMAT_VERSION:
            raise UpdateRefused(RefusalReason.UNSUPPORTED_FORMAT,
                                f"release manifest format {printable(repr(self.format))}; this "
                                f"lfr reads format {FORMAT_VERSION}")
        parse_version(self.version)
        if not isinstance(self.arch, Arch):
            raise _malformed("arch must be one of " + ", ".join(arch.value for arch in Arch))
        if not (isinstance(self.python_tag, str) and _PYTHON_TAG.fullmatch(self.python_tag)):
            raise _malformed(f"python_tag {printable(repr(self.python_tag))} is not cp3N")
        if not (isinstance(self.built_at, str) and _BUILT_AT.fullmatch(self.built_at)):
            raise _malformed("built_at must be YYYY-MM-DDTHH:MM:SSZ")
        try:
            check_node_id(self.signer_id, "signer_id")
        except NodeIdError as exc:
            raise _malformed(str(exc)) from None
        if not (isinstance(self.signer_key_id, bytes) and len(self.signer_key_id)
                == KEY_ID_BYTES):
            raise _malformed(f"signer_key_id must be {KEY_ID_BYTES} bytes")
        self._check_files()

    def _check_files(self) -> None:
        if not 0 < len(self.files) <= MAX_FILES:
            raise _malformed(f"a bundle holds 1 to {MAX_FILES} files, this lists "
                             f"{len(self.files)}")
        if len(self.models) > MAX_MODELS:
            raise _malformed(f"at most {MAX_MODELS} models, this lists {len(self.models)}")
        for entry in self.files:
            if not FILE_NAME.fullmatch(entry.path) or ".." in entry.path:
                raise _malformed(f"file name {printable(repr(entry.path), max_chars=80)} is "
                                 "not allowed (only wheels/NAME.whl and firmware/NAME)")
        for entry in self.models:
            if not MODEL_NAME.fullmatch(entry.path):
                raise _malformed(f"model name {printable(repr(entry.path), max_chars=80)} is "
                                 "not a relative path")
        for kind, entries in (("file", self.files), ("model", self.models)):
            names = [entry.path for entry in entries]
            if len(set(names)) != len(names):
                raise _malformed(f"a {kind} is listed twice")
        total = sum(entry.size for entry in self.files)
        if total > MAX_BUNDLE_BYTES:
            raise UpdateRefused(RefusalReason.OVERSIZE,
                                f"release manifest lists {total} bytes of files, over the "
                                f"limit of {MAX_BUNDLE_BYTES}")
        if self.project_wheel not in {entry.path for entry in self.files} or not (
                self.project_wheel.startswith("wheels/")):
            raise _malformed(f"project_wheel {printable(repr(self.project_wheel))} is not one "
                             "of its wheels")

    @property
    def parsed_version(self) -> Version:
        """``version`` as a ``packaging`` version, for comparisons."""
        return parse_version(self.version)

    @property
    def wheels(self) -> tuple[BundleFile, ...]:
        """The bundle's wheels, in bundle order."""
        return tuple(entry for entry in self.files if entry.path.startswith("wheels/"))

    @property
    def total_bytes(self) -> int:
        """The files' total size."""
        return sum(entry.size for entry in self.files)

    def describe(self) -> str:
        """One printable line: version, arch, Python, signer."""
        return (f"release {printable(self.version)} ({self.arch.value}, {self.python_tag}, "
                f"built {self.built_at}) signed by {printable(self.signer_id)} key "
                f"{format_key_id(self.signer_key_id)}")


def parse_version(text: str) -> Version:
    """``text`` as a PEP 440 version in its normalized form; ``UpdateRefused`` otherwise."""
    try:
        version = Version(text)
    except (InvalidVersion, TypeError):
        raise _malformed(f"version {printable(repr(text), max_chars=80)} is not a PEP 440 "
                         "version") from None
    if str(version) != text or "/" in text:
        raise _malformed(f"version {printable(repr(text), max_chars=80)} is not in its "
                         f"normal form ({printable(str(version))})")
    return version


def encode_manifest(manifest: ReleaseManifest) -> bytes:
    """The manifest's JSON bytes (sorted keys, one trailing newline)."""
    def files(entries: tuple[BundleFile, ...]) -> list[dict[str, Any]]:
        return [{"path": e.path, "sha256": e.sha256, "size": e.size} for e in entries]

    document = {"format": manifest.format, "version": manifest.version,
                "arch": manifest.arch.value, "python_tag": manifest.python_tag,
                "built_at": manifest.built_at, "signer_id": manifest.signer_id,
                "signer_key_id": manifest.signer_key_id.hex(),
                "project_wheel": manifest.project_wheel, "files": files(manifest.files),
                "models": files(manifest.models)}
    return (json.dumps(document, indent=1, sort_keys=True, ensure_ascii=True) + "\n").encode()


def decode_manifest(data: bytes) -> ReleaseManifest:
    """Parse an untrusted manifest; ``UpdateRefused`` (and nothing else) when it is not one."""
    if len(data) > MAX_MANIFEST_BYTES:
        raise UpdateRefused(RefusalReason.OVERSIZE, f"release manifest of {len(data)} bytes is "
                            f"over the limit of {MAX_MANIFEST_BYTES}")
    try:
        document = json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicates,
                              parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise _malformed(f"not JSON: {printable(exc, max_chars=200)}") from None
    fields = _object(document, _KEYS, "the manifest")
    if fields["format"] != FORMAT_VERSION:
        raise UpdateRefused(RefusalReason.UNSUPPORTED_FORMAT,
                            f"release manifest format {printable(repr(fields['format']))}; "
                            f"this lfr reads format {FORMAT_VERSION}")
    try:
        arch = Arch(fields["arch"])
    except ValueError:
        raise UpdateRefused(RefusalReason.OTHER_ARCH,
                            f"release manifest: arch {printable(repr(fields['arch']))} is "
                            "none this lfr knows") from None
    key_id = fields["signer_key_id"]
    if not (isinstance(key_id, str) and re.fullmatch(r"[0-9a-f]{16}", key_id)):
        raise _malformed(f"signer_key_id must be {KEY_ID_BYTES * 2} lower-case hex digits")
    return ReleaseManifest(
        format=fields["format"], version=_text(fields["version"], "version"), arch=arch,
        python_tag=_text(fields["python_tag"], "python_tag"),
        built_at=_text(fields["built_at"], "built_at"),
        signer_id=_text(fields["signer_id"], "signer_id"),
        signer_key_id=bytes.fromhex(key_id),
        project_wheel=_text(fields["project_wheel"], "project_wheel"),
        files=_files(fields["files"], "files", MAX_FILES),
        models=_files(fields["models"], "models", MAX_MODELS))


def sign_manifest(manifest_bytes: bytes, release: NodeKeys) -> bytes:
    """The signature file's bytes over ``manifest_bytes`` by ``release``'s signing key;
    ``UpdateRefused`` if the key is not a release key."""
    if release.role is not NodeRole.RELEASE:
        raise UpdateRefused(RefusalReason.OTHER_KEY,
                            f"the key of {release.role.value} {printable(release.node_id)} is "
                            "not a release key; make one with `lfr keys init --role release`")
    return release.signing.sign(manifest_bytes, SIGNATURE_CONTEXT).to_bytes()


def verify_manifest_signature(manifest: ReleaseManifest, manifest_bytes: bytes,
                              signature: bytes, trusted: NodePublicKeys) -> None:
    """Return when ``signature`` over ``manifest_bytes`` is ``trusted``'s; else
    ``UpdateRefused`` (``other_key`` or ``signature``) naming the key and the half."""
    if trusted.role is not NodeRole.RELEASE:
        raise ValueError(f"verify_manifest_signature needs a release key, got a "
                         f"{trusted.role.value}'s")
    expected = trusted.verify_key.key_id
    if not hmac.compare_digest(manifest.signer_key_id, expected) or (
            manifest.signer_id != trusted.node_id):
        raise UpdateRefused(RefusalReason.OTHER_KEY,
                            f"bundle signed by {printable(manifest.signer_id)} with key "
                            f"{format_key_id(manifest.signer_key_id)}; this unit trusts "
                            f"release key {printable(trusted.node_id)} "
                            f"{format_key_id(expected)}")
    if len(signature) != HYBRID_SIGNATURE_BYTES:
        raise _malformed(f"{SIGNATURE_NAME} has {len(signature)} bytes, a hybrid signature "
                         f"{HYBRID_SIGNATURE_BYTES}")
    try:
        trusted.verify_key.verify(HybridSignature.from_bytes(signature), manifest_bytes,
                                  SIGNATURE_CONTEXT)
    except SignatureInvalid as exc:
        raise UpdateRefused(RefusalReason.SIGNATURE,
                            f"bundle signature invalid: {exc} (release key "
                            f"{printable(trusted.node_id)} {format_key_id(expected)})"
                            ) from None


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document: dict[str, Any] = {}
    for key, value in pairs:
        if key in document:
            raise ValueError(f"key {printable(key, max_chars=40)} appears twice")
        document[key] = value
    return document


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not allowed")


def _object(value: object, keys: frozenset[str], what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _malformed(f"{what} is not a JSON object")
    if set(value) != keys:
        missing = sorted(keys - set(value))
        unknown = sorted(set(value) - keys)
        raise _malformed(f"{what}: missing keys {missing}, unknown keys "
                         f"{printable(unknown, max_chars=120)}")
    return value


def _text(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise _malformed(f"{name} must be a string")
    return value


def _files(value: object, name: str, most: int) -> tuple[BundleFile, ...]:
    if not isinstance(value, list) or len(value) > most:
        raise _malformed(f"{name} must be a list of at most {most} entries")
    entries = []
    for item in value:
        fields = _object(item, _FILE_KEYS, f"an entry of {name}")
        entries.append(BundleFile(path=_text(fields["path"], "path"),
                                  sha256=_text(fields["sha256"], "sha256"),
                                  size=fields["size"]))
    return tuple(entries)
