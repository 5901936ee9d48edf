"""The van's registry of enrolled units: whose envelopes it opens (``Enrolment``).

A unit is enrolled from its ``public.keys`` file (``secure.key_files``; role unit, never a
van's or an authority's keys) and kept in ``ENROLMENT_FILE`` in the van's state folder::

    b"LFR-ENR\\n" | format version (u16, big-endian) | payload | sha256 of every byte before it

The payload is one ``EnrolmentRecord`` of the strict codec from ``ENROLMENT_RECORDS``, a
registry of its own (type codes 330-339), so no record can be encoded onto a link. The file is
written atomically with mode 0600 (``guards.files.write_file_atomically``) and read back only
as a regular file of this user, not a symbolic link, with no group or other permission bit, of
at most ``MAX_ENROLMENT_FILE_BYTES``; the sha256 covers the whole file, so a flipped byte or a
cut file is refused, and then every unit is checked again (id, keys, key id, no repeats). The
checksum guards against corruption, not an attacker who can write the van's state folder.

``lookup`` is the signer lookup ``secure.envelope.open_envelope`` takes. It follows the file:
an enrolment or revocation made by another process (the command line beside a running van)
counts from the next lookup, and a file that became unreadable enrols nobody (fail closed).
Writers take an exclusive ``flock`` on the state folder and re-read the file under it, so two
writers never lose each other's changes.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import logging
import math
import os
import stat
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from guards.files import UserFileError, file_kind, read_private_file, write_file_atomically
from guards.log_text import printable
from guards.user_input import UserInputError
from runtime.codec import Codec, DecodeError, EncodeError
from runtime.message import MessageRegistry, message
from secure.hybrid_signature import VerifyKey
from secure.key_files import KeyFileError, read_public_keys
from secure.key_id import format_key_id
from secure.node_keys import NodeIdError, NodeRole, check_node_id

log = logging.getLogger("lfr.van.enrolment")
ENROLMENT_RECORDS = MessageRegistry()
"""The registry of enrolment file records (type codes 330-339), never used by a link."""
ENROLMENT_FILE: Final = "enrolled-units"
"""The file's name in the van's state folder."""
MAGIC: Final = b"LFR-ENR\n"
FORMAT_VERSION: Final = 1
MAX_UNITS: Final = 1024
"""Units one van enrols (a deployment has a few dozen)."""
MAX_ENROLMENT_FILE_BYTES: Final = 4 * 1024 * 1024
"""1024 units of about 2.1 KB each (the ML-DSA-65 public key is 1,952 bytes), with room."""
_VERSION = struct.Struct(">H")
_DIGEST_BYTES = 32
_MAX_EPOCH_S = 4_102_444_800.0  # 2100-01-01 UTC
_CODEC = Codec(ENROLMENT_RECORDS, max_message_bytes=MAX_ENROLMENT_FILE_BYTES)


class EnrolmentError(UserInputError):
    """An enrolment refused, or an enrolment file that cannot be used; names file and unit."""


@message(330, registry=ENROLMENT_RECORDS)
@dataclass(frozen=True, slots=True)
class EnrolledUnit:
    """One enrolled unit: its id and the public keys its envelopes are verified with."""

    unit_id: str
    """The unit's node id (``check_node_id``)."""
    signing_key_id: bytes
    """Key id of its signing key; must match the keys below."""
    ed25519_public: bytes
    """Raw Ed25519 public key (32 bytes)."""
    ml_dsa_65_public: bytes
    """Raw ML-DSA-65 public key (1,952 bytes)."""
    enrolled_at: float
    """When it was enrolled, seconds since the Unix epoch (UTC)."""


@message(331, registry=ENROLMENT_RECORDS)
@dataclass(frozen=True, slots=True)
class EnrolmentRecord:
    """The file's payload: every enrolled unit, sorted by id."""

    units: tuple[EnrolledUnit, ...]
    """At most ``MAX_UNITS``; ids and signing keys unique."""


def encode_enrolment(record: EnrolmentRecord) -> bytes:
    """The file's bytes for ``record`` (no check: ``decode_enrolment`` checks)."""
    try:
        head = MAGIC + _VERSION.pack(FORMAT_VERSION) + _CODEC.encode(record)
    except EncodeError as exc:
        raise EnrolmentError(f"enrolment record cannot be written: {exc}") from None
    return head + hashlib.sha256(head).digest()


def decode_enrolment(data: bytes, shown: str) -> dict[str, tuple[EnrolledUnit, VerifyKey]]:
    """The units in a file's bytes, by id; ``EnrolmentError`` starting with ``shown``."""
    body_start = len(MAGIC) + _VERSION.size
    if not data.startswith(MAGIC):
        raise EnrolmentError(f"{shown}: not an enrolment file (it does not start with "
                             f"{MAGIC!r})")
    if len(data) < body_start + _DIGEST_BYTES:
        raise EnrolmentError(f"{shown}: cut short ({len(data)} bytes)")
    (version,) = _VERSION.unpack_from(data, len(MAGIC))
    if version != FORMAT_VERSION:
        raise EnrolmentError(f"{shown}: format version {version}; this van reads "
                             f"{FORMAT_VERSION}")
    head, digest = data[:-_DIGEST_BYTES], data[-_DIGEST_BYTES:]
    if not hmac.compare_digest(hashlib.sha256(head).digest(), digest):
        raise EnrolmentError(f"{shown}: checksum mismatch: the file is corrupt or was cut "
                             "or changed by hand; restore it from a backup or enrol the units "
                             "again")
    try:
        record = _CODEC.decode(head[body_start:])
    except DecodeError as exc:
        raise EnrolmentError(f"{shown}: {printable(exc)}") from None
    if type(record) is not EnrolmentRecord:
        raise EnrolmentError(f"{shown}: holds a {type(record).__name__}, not an "
                             "EnrolmentRecord")
    if len(record.units) > MAX_UNITS:
        raise EnrolmentError(f"{shown}: {len(record.units)} units; at most {MAX_UNITS}")
    units: dict[str, tuple[EnrolledUnit, VerifyKey]] = {}
    key_ids: set[bytes] = set()
    for i, unit in enumerate(record.units):
        key = _check_unit(unit, f"{shown}: units[{i}]")
        if unit.unit_id in units or key.key_id in key_ids:
            raise EnrolmentError(f"{shown}: units[{i}]: unit {printable(unit.unit_id)} or its "
                                 "signing key is enrolled twice")
        units[unit.unit_id] = (unit, key)
        key_ids.add(key.key_id)
    return units


def _check_unit(unit: EnrolledUnit, where: str) -> VerifyKey:
    try:
        check_node_id(unit.unit_id, "unit_id")
        key = VerifyKey(unit.ed25519_public, unit.ml_dsa_65_public)
    except NodeIdError as exc:
        raise EnrolmentError(f"{where}: {exc}") from None
    except ValueError:  # cryptography names lengths only; never a value
        raise EnrolmentError(f"{where}: ed25519_public/ml_dsa_65_public: not a valid key "
                             "(wrong length or encoding)") from None
    if not hmac.compare_digest(key.key_id, unit.signing_key_id):
        raise EnrolmentError(f"{where}: signing_key_id does not match the public keys")
    if not (math.isfinite(unit.enrolled_at) and 0 <= unit.enrolled_at <= _MAX_EPOCH_S):
        raise EnrolmentError(f"{where}: enrolled_at is not a time between 1970 and 2100")
    return key


_FileStamp = tuple[int, int, int, int] | None
"""(device, inode, size, mtime ns) of the file as last read; None when there was none."""


class Enrolment:
    """The units a van accepts envelopes from; open with ``Enrolment.open(state_dir)``."""

    def __init__(self, folder: Path, clock: Callable[[], float]) -> None:
        """Use ``open``."""
        self.folder = folder
        """The van's state folder."""
        self.path = folder / ENROLMENT_FILE
        """The enrolment file."""
        self._shown = f"enrolment file {printable(self.path)}"
        self._clock = clock
        self._units: dict[str, tuple[EnrolledUnit, VerifyKey]] = {}
        self._stamp: _FileStamp = None

    @classmethod
    def open(cls, state_dir: Path | str, *,
             clock: Callable[[], float] = time.time) -> Enrolment:
        """The registry in ``state_dir`` (an existing folder); no file yet means no unit.
        ``EnrolmentError`` naming the file when it exists and cannot be used."""
        folder = Path(state_dir)
        if not folder.is_dir():
            raise EnrolmentError(f"van state folder {printable(folder)} does not exist or is "
                                 "not a folder")
        enrolment = cls(folder, clock)
        enrolment._reload()
        return enrolment

    # -- what the receiver asks -------------------------------------------------------------

    def lookup(self, unit_id: str, key_id: bytes) -> VerifyKey | None:
        """The verify key of enrolled unit ``unit_id`` if its signing key has ``key_id``;
        None for a unit never enrolled or revoked, or another key. A ``SignerLookup``: never
        raises; a file another process made unusable enrols nobody until it is repaired."""
        self._follow_file()
        found = self._units.get(unit_id)
        if found is None or not hmac.compare_digest(found[1].key_id, key_id):
            return None
        return found[1]

    def units(self) -> tuple[EnrolledUnit, ...]:
        """Every enrolled unit, sorted by id (as of the file's last change)."""
        self._follow_file()
        return tuple(unit for _, (unit, _key) in sorted(self._units.items()))

    # -- what the operator does -------------------------------------------------------------

    def enrol(self, public_keys_file: Path | str, *, unit_id: str | None = None) -> EnrolledUnit:
        """Enrol the unit whose ``public.keys`` is ``public_keys_file`` (if ``unit_id`` is
        given, the file must be that unit's). Enrolling the same keys again changes nothing;
        other keys under an enrolled id are refused: revoke the unit first."""
        try:
            public = read_public_keys(public_keys_file)
        except KeyFileError as exc:  # names the file and the field
            raise EnrolmentError(str(exc)) from None
        shown = f"public-keys file {printable(public_keys_file)}"
        if public.role is not NodeRole.UNIT:
            raise EnrolmentError(f"{shown}: holds the keys of {public.role.value} "
                                 f"{printable(public.node_id)}; only units are enrolled")
        if unit_id is not None and public.node_id != unit_id:
            raise EnrolmentError(f"{shown}: holds the keys of unit "
                                 f"{printable(public.node_id)}, not of {printable(unit_id)}")
        key = public.verify_key
        with self._writing():
            existing = self._units.get(public.node_id)
            if existing is not None:
                if existing[1] == key:
                    return existing[0]
                raise EnrolmentError(
                    f"unit {printable(public.node_id)} is already enrolled with signing key "
                    f"{format_key_id(existing[1].key_id)}; {shown} has "
                    f"{format_key_id(key.key_id)}. To replace its keys, revoke unit "
                    f"{printable(public.node_id)} first, then enrol the new file")
            twin = next((u for u, k in self._units.values() if k == key), None)
            if twin is not None:
                raise EnrolmentError(f"{shown}: signing key {format_key_id(key.key_id)} is "
                                     f"already enrolled for unit {printable(twin.unit_id)}; "
                                     "every unit needs keys of its own (lfr keys init)")
            if len(self._units) >= MAX_UNITS:
                raise EnrolmentError(f"{self._shown}: already {MAX_UNITS} units enrolled")
            unit = EnrolledUnit(public.node_id, key.key_id, key.ed25519_public,
                                key.ml_dsa_65_public, self._clock())
            self._write({**self._units, unit.unit_id: (unit, key)})
            return unit

    def revoke(self, unit_id: str) -> EnrolledUnit:
        """Forget ``unit_id``: its envelopes are refused as from an unknown signer from the
        next lookup on. ``EnrolmentError`` if it is not enrolled."""
        with self._writing():
            found = self._units.get(unit_id)
            if found is None:
                raise EnrolmentError(f"unit {printable(unit_id)} is not enrolled")
            self._write({k: v for k, v in self._units.items() if k != unit_id})
            return found[0]

    # -- the file -------------------------------------------------------------------------

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """Hold the state folder's lock and start from the file as it is now (strictly)."""
        try:
            fd = os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise EnrolmentError(f"van state folder {printable(self.folder)}: "
                                 f"{exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._reload()
            yield
        finally:
            os.close(fd)  # releases the lock

    def _write(self, units: dict[str, tuple[EnrolledUnit, VerifyKey]]) -> None:
        record = EnrolmentRecord(tuple(unit for _, (unit, _key) in sorted(units.items())))
        try:
            write_file_atomically(self.path, encode_enrolment(record), "enrolment file",
                                  mode=0o600)
        except UserFileError as exc:
            raise EnrolmentError(str(exc)) from None
        self._units = units
        self._stamp = self._file_stamp()

    def _reload(self) -> None:
        """Read the file (strictly: ``EnrolmentError``) and remember which file it was."""
        stamp = self._file_stamp()
        self._units = {} if stamp is None else decode_enrolment(self._read(), self._shown)
        self._stamp = stamp

    def _follow_file(self) -> None:
        """Reload when the file changed since it was read; a bad file enrols nobody."""
        try:
            if self._file_stamp() == self._stamp:
                return
            self._reload()
        except EnrolmentError as exc:
            self._units = {}
            with contextlib.suppress(EnrolmentError):
                self._stamp = self._file_stamp()  # log once per change of the file
            # The reason is the message (it names the file): no traceback.
            log.error("%s; no unit is enrolled until it is repaired",  # noqa: TRY400
                      printable(exc))

    def _file_stamp(self) -> _FileStamp:
        try:
            info = os.lstat(self.path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise EnrolmentError(f"{self._shown}: {exc.strerror or exc}") from None
        return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)

    def _read(self) -> bytes:
        try:
            mode = os.lstat(self.path).st_mode
        except OSError as exc:
            raise EnrolmentError(f"{self._shown}: {exc.strerror or exc}") from None
        if not stat.S_ISREG(mode):
            kind = "a symbolic link" if stat.S_ISLNK(mode) else file_kind(mode)
            raise EnrolmentError(f"{self._shown}: is {kind}; only a regular file is read")
        try:
            return read_private_file(self.path, "enrolment file", MAX_ENROLMENT_FILE_BYTES)
        except UserFileError as exc:
            raise EnrolmentError(str(exc)) from None
