"""Key files: a node's private key files and its public-keys file, written and read strictly.

Every file is ``MAGIC`` (8 bytes) followed by one message of the strict codec from the
``KEY_FILES`` registry (type code and schema version inside; docs/SECURITY.md). That registry
is separate from the default one, so no key record can ever be encoded onto a link.

- ``signing.key``    (0600) the Ed25519 and ML-DSA-65 seeds, role, id, key id
- ``encryption.key`` (0600, vans only) the ML-KEM-768 seed and the X25519 private key
- ``public.keys``    (0644) role, id, key ids and public keys: what ``lfr van enroll-unit``
  and a unit's config take

Writing never replaces a file (``O_EXCL``, and every target is checked before the first is
written). Reading a private file refuses a symbolic link, anything but a regular file, a file
of another user and any group or other permission bit, all from one open descriptor. Every
error names the file and the field, never a key's value.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from guards.files import (
    UserFileError,
    file_kind,
    read_private_file,
    read_user_file,
    write_new_file,
)
from guards.log_text import printable
from runtime.codec import Codec, DecodeError
from runtime.message import MessageRegistry, message
from secure.hybrid_signature import SigningKeyPair, VerifyKey
from secure.node_keys import NodeKeys, NodePublicKeys, NodeRole, check_node_id
from secure.sealing import EncryptionKeyPair, EncryptionPublicKey

KEY_FILES = MessageRegistry()
"""The registry of key file records (type codes 300-309), never used by a link."""
MAGIC = b"LFR-KEY\n"
"""First bytes of every key file."""
MAX_PUBLIC_KEYS_FILE_BYTES = 16 * 1024
"""A public-keys file is about 3.4 KB (a van's)."""
MAX_PRIVATE_KEY_FILE_BYTES = 4 * 1024
"""A private key file is under 200 bytes."""
SIGNING_KEY_FILE = "signing.key"
ENCRYPTION_KEY_FILE = "encryption.key"
PUBLIC_KEYS_FILE = "public.keys"
_PRIVATE_MODE = 0o600
_PUBLIC_MODE = 0o644
_CODEC = Codec(KEY_FILES, max_message_bytes=MAX_PUBLIC_KEYS_FILE_BYTES)


class KeyFileError(UserFileError):
    """A key file is missing, exposed, not a key file, or inconsistent; names file and field."""


@message(300, registry=KEY_FILES)
@dataclass(frozen=True, slots=True)
class PublicKeysRecord:
    """``public.keys``: a node's role, id and public keys."""

    role: NodeRole
    """unit, van or authority."""
    node_id: str
    """The node's id."""
    signing_key_id: bytes
    """Key id of the signing key; must match the keys below."""
    ed25519_public: bytes
    """Raw Ed25519 public key (32 bytes)."""
    ml_dsa_65_public: bytes
    """Raw ML-DSA-65 public key (1952 bytes)."""
    encryption_key_id: bytes | None
    """Key id of the encryption key; vans only."""
    ml_kem_768_public: bytes | None
    """Raw ML-KEM-768 encapsulation key (1184 bytes); vans only."""
    x25519_public: bytes | None
    """Raw X25519 public key (32 bytes); vans only."""


@message(301, registry=KEY_FILES)
@dataclass(frozen=True, slots=True)
class SigningKeyRecord:
    """``signing.key``: the private signing seeds. ``repr`` leaves the seeds out."""

    role: NodeRole
    """The node's role."""
    node_id: str
    """The node's id."""
    signing_key_id: bytes
    """Key id of the public half, checked when read (a corrupt seed is caught here)."""
    ed25519_seed: bytes = field(repr=False)
    """Ed25519 private key (32 bytes)."""
    ml_dsa_65_seed: bytes = field(repr=False)
    """ML-DSA-65 seed (32 bytes)."""


@message(302, registry=KEY_FILES)
@dataclass(frozen=True, slots=True)
class EncryptionKeyRecord:
    """``encryption.key``: the private HPKE keys of a van. ``repr`` leaves them out."""

    role: NodeRole
    """The node's role (van)."""
    node_id: str
    """The node's id."""
    encryption_key_id: bytes
    """Key id of the public half, checked when read."""
    ml_kem_768_seed: bytes = field(repr=False)
    """ML-KEM-768 seed (64 bytes)."""
    x25519_private: bytes = field(repr=False)
    """X25519 private key (32 bytes)."""


@dataclass(frozen=True, slots=True)
class KeyFilePaths:
    """Where ``write_node_keys`` wrote."""

    signing: Path
    """The private signing key file (0600)."""
    encryption: Path | None
    """The private encryption key file (0600); vans only."""
    public: Path
    """The public-keys file."""


# -- public keys ---------------------------------------------------------------------------


def encode_public_keys(public: NodePublicKeys) -> bytes:
    """The bytes of a public-keys file."""
    enc = public.encryption_key
    return MAGIC + _CODEC.encode(PublicKeysRecord(
        public.role, public.node_id, public.verify_key.key_id,
        public.verify_key.ed25519_public, public.verify_key.ml_dsa_65_public,
        None if enc is None else enc.key_id, None if enc is None else enc.ml_kem_768_public,
        None if enc is None else enc.x25519_public))


def decode_public_keys(data: bytes, source: str,
                       expected_role: NodeRole | None = None) -> NodePublicKeys:
    """Parse a public-keys file's bytes; ``KeyFileError`` naming ``source`` and the field."""
    record = _decode(data, source, PublicKeysRecord)
    where = f"{source}: field"
    check = _field_check(source)
    check_node_id(record.node_id, f"{source}: node_id")
    verify_key = _build(where, "ed25519_public/ml_dsa_65_public",
                        lambda: VerifyKey(record.ed25519_public, record.ml_dsa_65_public))
    if verify_key.key_id != record.signing_key_id:
        raise KeyFileError(f"{where} signing_key_id does not match the public keys in the file")
    parts = (record.encryption_key_id, record.ml_kem_768_public, record.x25519_public)
    encryption: EncryptionPublicKey | None = None
    check(all(p is None for p in parts) or all(p is not None for p in parts),
          "encryption_key_id, ml_kem_768_public and x25519_public come together or not at all")
    check((parts[0] is not None) == record.role.has_encryption_key,
          f"a {record.role.value} has {'an' if record.role.has_encryption_key else 'no'} "
          "encryption key (encryption_key_id)")
    if record.ml_kem_768_public is not None and record.x25519_public is not None:
        ml_kem, x_pub = record.ml_kem_768_public, record.x25519_public
        encryption = _build(where, "ml_kem_768_public/x25519_public",
                            lambda: EncryptionPublicKey(ml_kem, x_pub))
        check(encryption.key_id == record.encryption_key_id,
              "encryption_key_id does not match the public keys in the file")
    check(expected_role is None or record.role is expected_role,
          f"role is {record.role.value}, expected "
          f"{expected_role.value if expected_role else ''}")
    return NodePublicKeys(record.role, record.node_id, verify_key, encryption)


def read_public_keys(path: Path | str, expected_role: NodeRole | None = None) -> NodePublicKeys:
    """Read a public-keys file (a regular file of at most 16 KiB)."""
    shown = f"public-keys file {printable(path)}"
    try:
        data = read_user_file(path, "public-keys file", MAX_PUBLIC_KEYS_FILE_BYTES)
    except UserFileError as exc:
        raise KeyFileError(str(exc)) from None
    return decode_public_keys(data, shown, expected_role)


# -- private keys --------------------------------------------------------------------------


def write_node_keys(keys: NodeKeys, out_dir: Path | str) -> KeyFilePaths:
    """Write ``keys`` into ``out_dir`` (created 0700 if missing): private files 0600, then the
    public-keys file. Refuses (``KeyFileError``) if any of the files already exists."""
    folder = Path(out_dir)
    _prepare_folder(folder)
    paths = KeyFilePaths(folder / SIGNING_KEY_FILE,
                         folder / ENCRYPTION_KEY_FILE if keys.encryption else None,
                         folder / PUBLIC_KEYS_FILE)
    targets = [p for p in (paths.signing, paths.encryption, paths.public) if p is not None]
    for target in targets:
        if os.path.lexists(target):
            raise KeyFileError(f"{printable(target)} already exists; key files are never "
                               "overwritten (move it away first)")
    ed_seed, ml_dsa_seed = keys.signing.private_seeds()
    contents = [MAGIC + _CODEC.encode(SigningKeyRecord(
        keys.role, keys.node_id, keys.signing.key_id, ed_seed, ml_dsa_seed))]
    if keys.encryption is not None:
        ml_kem_seed, x_private = keys.encryption.private_parts()
        contents.append(MAGIC + _CODEC.encode(EncryptionKeyRecord(
            keys.role, keys.node_id, keys.encryption.key_id, ml_kem_seed, x_private)))
    contents.append(encode_public_keys(keys.public()))
    modes = [_PRIVATE_MODE] * (len(targets) - 1) + [_PUBLIC_MODE]
    written: list[Path] = []
    try:
        for target, data, mode in zip(targets, contents, modes, strict=True):
            _write_new(target, data, mode)
            written.append(target)
    except BaseException:
        for done in written:  # never leave half a key set behind
            done.unlink(missing_ok=True)
        raise
    return paths


def read_node_keys(signing_path: Path | str,
                   encryption_path: Path | str | None = None) -> NodeKeys:
    """A node's keys from its private key files (the encryption file for vans only)."""
    shown = f"signing key file {printable(signing_path)}"
    signing_record = _decode(_read_private(signing_path, "signing key file"), shown,
                             SigningKeyRecord)
    check_node_id(signing_record.node_id, f"{shown}: node_id")
    signing = _build(f"{shown}: field", "ed25519_seed/ml_dsa_65_seed", lambda: SigningKeyPair(
        signing_record.ed25519_seed, signing_record.ml_dsa_65_seed))
    _field_check(shown)(signing.key_id == signing_record.signing_key_id,
                        "signing_key_id does not match the keys in the file (corrupt file)")
    role = signing_record.role
    if (encryption_path is not None) != role.has_encryption_key:
        raise KeyFileError(f"{shown}: a {role.value} node "
                           f"{'needs' if role.has_encryption_key else 'has no'} "
                           "encryption key file")
    encryption: EncryptionKeyPair | None = None
    if encryption_path is not None:
        shown_enc = f"encryption key file {printable(encryption_path)}"
        record = _decode(_read_private(encryption_path, "encryption key file"), shown_enc,
                         EncryptionKeyRecord)
        check = _field_check(shown_enc)
        check((record.role, record.node_id) == (signing_record.role, signing_record.node_id),
              f"role/node_id differ from those of {shown}")
        encryption = _build(f"{shown_enc}: field", "ml_kem_768_seed/x25519_private",
                            lambda: EncryptionKeyPair(record.ml_kem_768_seed,
                                                      record.x25519_private))
        check(encryption.key_id == record.encryption_key_id,
              "encryption_key_id does not match the keys in the file (corrupt file)")
    return NodeKeys(role, signing_record.node_id, signing, encryption)


# -- helpers -------------------------------------------------------------------------------

_Record = TypeVar("_Record", PublicKeysRecord, SigningKeyRecord, EncryptionKeyRecord)


def _decode(data: bytes, source: str, expected: type[_Record]) -> _Record:
    if not data.startswith(MAGIC):
        raise KeyFileError(f"{source}: not an lfr key file (it does not start with "
                           f"{MAGIC!r})")
    try:
        record = _CODEC.decode(data[len(MAGIC):])
    except DecodeError as exc:
        # Codec errors name fields and types, never values.
        raise KeyFileError(f"{source}: {exc}") from None
    if type(record) is not expected:
        raise KeyFileError(f"{source}: holds a {type(record).__name__}, not a "
                           f"{expected.__name__}")
    return record


def _field_check(source: str) -> Callable[[bool, str], None]:
    """A checker raising ``KeyFileError`` "<source>: field <problem>" when its condition fails."""

    def check(condition: bool, problem: str) -> None:  # noqa: FBT001
        if not condition:
            raise KeyFileError(f"{source}: field {problem}")

    return check


_Built = TypeVar("_Built")


def _build(where: str, fields: str, make: Callable[[], _Built]) -> _Built:
    try:
        return make()
    except ValueError:
        # cryptography's text names lengths only; ours too. Never a value.
        raise KeyFileError(f"{where} {fields}: not a valid key (wrong length or "
                           "encoding)") from None


def _prepare_folder(folder: Path) -> None:
    shown = f"--out {printable(folder)}"
    try:
        mode = folder.lstat().st_mode
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        raise KeyFileError(f"{shown}: {exc.strerror or exc}") from None
    if mode is not None and not stat.S_ISDIR(mode):
        # mkdir would say only "File exists" for /dev/null, a FIFO or a file.
        kind = "a symbolic link" if stat.S_ISLNK(mode) else (
            "a regular file" if stat.S_ISREG(mode) else file_kind(mode))
        raise KeyFileError(f"{shown}: is {kind}; --out must be a folder (the key files are "
                           "written into it; a missing one is created)")
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
    except FileNotFoundError:
        raise KeyFileError(f"{shown}: its parent folder does not exist") from None
    except OSError as exc:
        raise KeyFileError(f"{shown}: {exc.strerror or exc}") from None
    if not folder.is_dir() or folder.is_symlink():
        raise KeyFileError(f"{shown}: not a folder")


def _write_new(target: Path, data: bytes, mode: int) -> None:
    """A new key file (``guards.files.write_new_file``: never overwritten, exact mode)."""
    try:
        write_new_file(target, data, "key file", mode)
    except UserFileError as exc:
        raise KeyFileError(str(exc)) from None


def _read_private(path: Path | str, what: str) -> bytes:
    """A private key file's bytes (``guards.files.read_private_file``: a regular file, not a
    link, 0600 or stricter, owned by us, at most ``MAX_PRIVATE_KEY_FILE_BYTES``)."""
    try:
        return read_private_file(path, what, MAX_PRIVATE_KEY_FILE_BYTES)
    except UserFileError as exc:
        raise KeyFileError(str(exc)) from None
