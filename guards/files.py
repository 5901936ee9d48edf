"""``read_user_file``: read a file a user named, refusing what is not a regular file.

``stat()`` cannot bound a read: ``/dev/zero`` and ``/proc`` files report a size of 0, a FIFO
blocks ``open()`` until a writer comes, a directory fails late with a confusing message. So the
file is opened with ``O_NONBLOCK`` (a FIFO then opens at once), checked with ``fstat`` on the
open descriptor (no race with a rename), and read until ``max_bytes + 1`` bytes at most: the
limit holds whatever the file claims.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from guards.log_text import printable
from guards.user_input import UserInputError

_READ_CHUNK = 1 << 20


class UserFileError(UserInputError):
    """A named file is missing, unreadable, not a regular file or over its size limit."""


def file_kind(mode: int) -> str:
    """What a non-regular file is, for messages ("a directory", "a FIFO (named pipe)"...)."""
    kinds = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
             (stat.S_ISSOCK, "a socket"))
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def open_regular_file(path: Path | str, what: str) -> int:
    """Open ``path`` for reading and return its descriptor, refusing anything but a regular file
    (symbolic links are followed). ``what`` names the file's role in messages ("watchlist")."""
    shown = printable(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise UserFileError(f"{what} {shown}: no such file") from None
    except IsADirectoryError:
        raise UserFileError(f"{what} {shown}: is a directory, not a file") from None
    except OSError as exc:
        raise UserFileError(f"{what} {shown}: cannot open: {exc.strerror or exc}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise UserFileError(f"{what} {shown}: is {file_kind(mode)}; only regular files are read")
    os.set_blocking(fd, True)
    return fd


def read_user_file(path: Path | str, what: str, max_bytes: int) -> bytes:
    """The whole content of a regular file of at most ``max_bytes`` bytes.

    Raises ``UserFileError`` naming ``what`` and the path when the file is missing, unreadable,
    not a regular file, or longer than ``max_bytes`` (counted while reading, not from ``stat``).
    """
    fd = open_regular_file(path, what)
    try:
        return _read_bounded(fd, path, what, max_bytes)
    finally:
        os.close(fd)


def read_private_file(path: Path | str, what: str, max_bytes: int) -> bytes:
    """``read_user_file`` for a secret (a key file): also refused when the path is a symbolic
    link, when group or others have any permission on it (it must be 0600 or stricter), or when
    another user owns it. Mode, owner and content all come from the one open descriptor, so a
    file swapped in between the checks and the read cannot slip through."""
    shown = f"{what} {printable(path)}"
    fd = open_regular_file(path, what)
    try:
        info = os.fstat(fd)
        link = os.lstat(path)
        if stat.S_ISLNK(link.st_mode) or (link.st_dev, link.st_ino) != (info.st_dev,
                                                                        info.st_ino):
            raise UserFileError(f"{shown}: is a symbolic link (or was replaced while opened); "
                                "secrets are read only from regular files")
        if info.st_mode & 0o077:
            raise UserFileError(f"{shown}: mode {stat.S_IMODE(info.st_mode):04o} lets others "
                                f"read or change it; it must be 0600 (chmod 600 {printable(path)})")
        if info.st_uid != os.getuid():
            raise UserFileError(f"{shown}: owned by uid {info.st_uid}, not by the user running "
                                f"this program (uid {os.getuid()})")
        return _read_bounded(fd, path, what, max_bytes)
    except OSError as exc:
        raise UserFileError(f"{shown}: cannot read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def _read_bounded(fd: int, path: Path | str, what: str, max_bytes: int) -> bytes:
    chunks: list[bytes] = []
    total = 0
    try:
        while True:
            chunk = os.read(fd, min(_READ_CHUNK, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > max_bytes:
                raise UserFileError(f"{what} {printable(path)}: over the limit of {max_bytes} "
                                    "bytes")
    except OSError as exc:
        raise UserFileError(f"{what} {printable(path)}: cannot read: "
                            f"{exc.strerror or exc}") from None
    return b"".join(chunks)


def check_output_target(path: Path | str, what: str) -> Path:
    """Refuse an output path that exists and is not a regular file (``/dev/full``, a directory,
    a FIFO): writing there would replace a device node or fail half-way. Returns it as a Path."""
    target = Path(path)
    try:
        mode = target.stat().st_mode
    except FileNotFoundError:
        if not target.parent.is_dir():
            raise UserFileError(f"{what} {printable(target)}: folder "
                                f"{printable(target.parent)} does not exist") from None
        return target
    except OSError as exc:
        raise UserFileError(f"{what} {printable(target)}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(mode):
        raise UserFileError(f"{what} {printable(target)}: is {file_kind(mode)}; "
                            "only a regular file can be replaced")
    return target
