"""The bundle's container: an uncompressed POSIX ustar archive of regular files, written with
``tarfile`` and read back by a strict reader of its own.

Why not ``tarfile`` for reading: a bundle is untrusted until its signature and hashes hold, and
``tarfile`` follows PAX and GNU extension headers (names, sizes and headers of any length read
into memory), links, devices and directories. ``BundleTarReader`` accepts only what
``write_bundle`` writes: 512-byte ustar headers with a valid checksum, type "regular file",
an octal size, a name matching ``MEMBER_NAME`` (relative, no ``..`` or empty component, no
leading dot), then the end of archive (zero blocks) with nothing but zeros after it.

Guarantees: nothing is read into memory but 512-byte headers and members the caller reads with
a bound (``read_small``); a member's data is streamed with ``copy_to``; every refusal is
``UpdateRefused`` naming the member; the reader never seeks, so a bundle can be a pipe.
``write_bundle`` never replaces an existing file (the archive is written beside it and linked
into place) and writes fixed owners, modes and times, so the same inputs give the same bytes.
"""

from __future__ import annotations

import contextlib
import os
import re
import tarfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from guards.files import UserFileError
from guards.log_text import printable
from lfr.release.refusal import RefusalReason, UpdateRefused

BLOCK = 512
"""A tar block."""
RECORD = 20 * BLOCK
"""``tarfile`` pads the archive to a multiple of this with zeros."""
MEMBER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*(/[A-Za-z0-9][A-Za-z0-9._+-]*)*")
"""Names a member may have: relative, every component starting with a letter or digit (so
never ``.``, ``..`` or hidden), at most ``MAX_MEMBER_NAME_CHARS`` characters."""
MAX_MEMBER_NAME_CHARS = 255
"""ustar's longest name (prefix and name)."""
_CHUNK = 1 << 20
_REGULAR = (b"0", b"\0")
_USTAR_MAGIC = b"ustar\x0000"


@dataclass(frozen=True, slots=True)
class MemberHeader:
    """One member's header, checked: a regular file with an allowed name."""

    name: str
    """The member's name (``MEMBER_NAME``)."""
    size: int
    """Its data's length in bytes."""


def _malformed(problem: str) -> UpdateRefused:
    return UpdateRefused(RefusalReason.MALFORMED, f"not a valid release bundle: {problem}")


class BundleTarReader:
    """Reads members one after the other from a binary stream, strictly (module docstring)."""

    def __init__(self, stream: BinaryIO, *, max_bytes: int) -> None:
        """``max_bytes`` bounds everything read from ``stream``, headers and padding included."""
        self._stream = stream
        self._max_bytes = max_bytes
        self._read_total = 0
        self._pending = 0  # data (with padding) of the current member not yet read
        self._current: MemberHeader | None = None
        self._ended = False

    def next_member(self) -> MemberHeader | None:
        """The next member's header, or None at the end of the archive (after checking that
        only zeros follow). Skips what remains of the current member's data."""
        if self._ended:
            return None
        if self._pending:
            self._skip(self._pending)
        self._current = None
        block = self._read_exact(BLOCK, "a member header")
        if block == bytes(BLOCK):
            self._finish()
            return None
        header = self._parse_header(block)
        self._current = header
        self._pending = _padded(header.size)
        return header

    def read_small(self, header: MemberHeader, max_bytes: int) -> bytes:
        """The whole data of ``header`` (the current member), refused as ``oversize`` when it
        is longer than ``max_bytes``: checked on the header, before anything is read."""
        if header.size > max_bytes:
            raise UpdateRefused(RefusalReason.OVERSIZE,
                                f"bundle member {printable(header.name)} has {header.size} "
                                f"bytes, over its limit of {max_bytes}")
        data = bytearray()
        self.copy_to(header, data.extend)
        return bytes(data)

    def copy_to(self, header: MemberHeader, sink: Callable[[bytes], object]) -> None:
        """Stream the current member's data to ``sink`` in chunks of at most 1 MiB."""
        if self._current is not header or self._pending != _padded(header.size):
            raise RuntimeError("copy_to is for the current member, once")
        left = header.size
        while left:
            chunk = self._read_exact(min(_CHUNK, left), f"member {printable(header.name)}")
            sink(chunk)
            left -= len(chunk)
        self._pending -= header.size
        self._skip(self._pending)
        self._pending = 0

    def _parse_header(self, block: bytes) -> MemberHeader:
        stored = _octal(block[148:156], "header checksum")
        computed = sum(block[:148]) + sum(block[156:]) + 8 * ord(" ")
        if stored != computed:
            raise _malformed("a member header's checksum is wrong (not a tar archive, or "
                             "damaged)")
        if block[257:265] != _USTAR_MAGIC:
            raise _malformed("a member header is not POSIX ustar")
        prefix = block[345:500].split(b"\0", 1)[0]
        base = block[0:100].split(b"\0", 1)[0]
        raw_name = prefix + b"/" + base if prefix else base
        try:
            name = raw_name.decode("ascii")
        except UnicodeDecodeError:
            raise _malformed(f"member name {printable(raw_name, max_chars=120)} is not "
                             "ASCII") from None
        if len(name) > MAX_MEMBER_NAME_CHARS or not MEMBER_NAME.fullmatch(name):
            raise _malformed(f"member name {printable(repr(name), max_chars=120)} is not "
                             "allowed (a relative path of letters, digits and ._+-, no '..' "
                             "or hidden component)")
        kind = block[156:157]
        if kind not in _REGULAR:
            raise _malformed(f"member {printable(name)} is not a regular file (tar type "
                             f"{printable(kind)}); links, folders, devices and extension "
                             "headers are refused")
        size = _octal(block[124:136], f"member {printable(name)}'s size")
        return MemberHeader(name, size)

    def _finish(self) -> None:
        self._read_exact(BLOCK, "the end of the archive", zeros=True)
        # What follows must be zeros (tarfile's padding to a whole record) and little of it.
        while True:
            chunk = self._stream.read(RECORD)
            if not chunk:
                break
            self._count(len(chunk))
            if chunk.count(0) != len(chunk) or self._read_total > self._max_bytes:
                raise _malformed("data after the end of the archive")
        self._ended = True

    def _read_exact(self, size: int, what: str, *, zeros: bool = False) -> bytes:
        self._count(size)
        data = self._stream.read(size)
        if len(data) != size:
            raise _malformed(f"it ends inside {what}")
        if zeros and data.count(0) != size:
            raise _malformed("the end-of-archive marker is not two zero blocks")
        return data

    def _skip(self, size: int) -> None:
        left = size
        while left:
            left -= len(self._read_exact(min(_CHUNK, left), "padding"))

    def _count(self, size: int) -> None:
        self._read_total += size
        if self._read_total > self._max_bytes:
            raise UpdateRefused(RefusalReason.OVERSIZE,
                                f"release bundle is over the limit of {self._max_bytes} bytes")


def _octal(field: bytes, what: str) -> int:
    text = field.split(b"\0", 1)[0].strip(b" ")
    if not text or not all(48 <= byte <= 55 for byte in text):
        raise _malformed(f"{what} is not an octal number")
    return int(text, 8)


def _padded(size: int) -> int:
    return -(-size // BLOCK) * BLOCK


@dataclass(frozen=True, slots=True)
class SourceMember:
    """One member to write: its name and where its bytes come from."""

    name: str
    """The member's name (``MEMBER_NAME``)."""
    data: bytes | Path
    """Its bytes, or the regular file holding them."""


def write_bundle(out: Path, members: Iterable[SourceMember], *, mtime: int) -> int:
    """Write ``members`` as a ustar archive at ``out`` (which must not exist); returns its size.

    Every member is a regular file of mode 0644 owned by 0:0 with time ``mtime``. The archive
    is written to a temporary name in ``out``'s folder, fsynced and linked to ``out`` (never
    replacing a file there); on failure nothing is left behind."""
    if os.path.lexists(out):
        raise UserFileError(f"bundle {printable(out)} already exists; it is never overwritten")
    temporary = out.with_name(f".{out.name}.{os.getpid()}.partial")
    try:
        with open(temporary, "xb") as stream:
            with tarfile.open(fileobj=stream, mode="w", format=tarfile.USTAR_FORMAT) as archive:
                for member in members:
                    _add(archive, member, mtime)
            stream.flush()
            os.fsync(stream.fileno())
        os.link(temporary, out)
        return out.stat().st_size
    except FileExistsError:
        raise UserFileError(f"bundle {printable(out)} already exists; it is never "
                            "overwritten") from None
    except OSError as exc:
        raise UserFileError(f"bundle {printable(out)}: cannot write: {exc.strerror or exc}"
                            ) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()


def _add(archive: tarfile.TarFile, member: SourceMember, mtime: int) -> None:
    if not MEMBER_NAME.fullmatch(member.name):
        raise ValueError(f"member name {member.name!r} is not allowed")
    info = tarfile.TarInfo(member.name)
    info.mode, info.uid, info.gid, info.mtime = 0o644, 0, 0, mtime
    info.uname = info.gname = ""
    if isinstance(member.data, bytes):
        info.size = len(member.data)
        archive.addfile(info, _BytesReader(member.data))
        return
    with open(member.data, "rb") as source:
        info.size = os.fstat(source.fileno()).st_size
        archive.addfile(info, source)


class _BytesReader:
    """The ``read`` ``tarfile.addfile`` needs, over bytes (no io.BytesIO copy)."""

    def __init__(self, data: bytes) -> None:
        self._view = memoryview(data)
        self._offset = 0

    def read(self, size: int = -1) -> bytes:
        end = len(self._view) if size < 0 else self._offset + size
        chunk = bytes(self._view[self._offset:end])
        self._offset += len(chunk)
        return chunk
