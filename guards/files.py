"""``read_user_file``: read a file a user named, refusing what is not a regular file;
``write_file_atomically``: replace an output file all or nothing.

``stat()`` cannot bound a read: ``/dev/zero`` and ``/proc`` files report a size of 0, a FIFO
blocks ``open()`` until a writer comes, a directory fails late with a confusing message. So the
file is opened with ``O_NONBLOCK`` (a FIFO then opens at once), checked with ``fstat`` on the
open descriptor (no race with a rename), and read until ``max_bytes + 1`` bytes at most: the
limit holds whatever the file claims.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
import tempfile
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


def write_new_file(path: Path | str, data: bytes, what: str, mode: int) -> None:
    """Create ``path`` holding ``data`` with exactly ``mode`` (whatever the umask), fsynced; for
    secrets and identities, which are never overwritten: an existing file (or a symbolic link)
    at ``path`` is refused. On a failed write the half-written file is removed. Failures raise
    ``UserFileError`` naming ``what`` and the path."""
    shown = f"{what} {printable(path)}"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, mode)
    except FileExistsError:
        raise UserFileError(f"{shown} already exists; it is never overwritten") from None
    except OSError as exc:
        raise UserFileError(f"{shown}: cannot create: {exc.strerror or exc}") from None
    try:
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except BaseException as exc:  # any failure, Ctrl-C included: no half-written secret left
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        if isinstance(exc, OSError):
            raise UserFileError(f"{shown}: cannot write: {exc.strerror or exc}") from None
        raise
    os.close(fd)


def write_file_atomically(path: Path | str, data: bytes, what: str, *,
                          mode: int = 0o600) -> Path:
    """Replace ``path`` by a file holding ``data``, all or nothing, and return it as a Path.

    ``data`` goes to a temporary file in the target's own folder (a rename never crosses file
    systems), is fsynced, then renamed over the target: a full disk or a crash leaves the old
    file whole, never an empty or cut one. The temporary file is removed on every failure,
    Ctrl-C included. A new file gets ``mode`` (default 0600: outputs may hold biometric data);
    a replaced file keeps its own mode, so whoever read it still can. A target that exists and
    is not a regular file is refused (``check_output_target``). Failures raise
    ``UserFileError`` naming ``what`` and the path.
    """
    target = check_output_target(path, what)
    shown = f"{what} {printable(target)}"
    folder = target.parent
    try:
        fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as exc:
        raise UserFileError(f"{shown}: cannot be written there: {_why_no_new_file(folder, exc)}"
                            ) from None
    try:
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), _mode_to_keep(target, mode))
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp_name, target)
    except BaseException as exc:  # any failure, Ctrl-C included: never leave the copy behind
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        if isinstance(exc, OSError):
            raise UserFileError(f"{shown}: cannot write: {exc.strerror or exc}; the file was "
                                "left as it was") from None
        raise
    sync_folder(folder)
    return target


def _mode_to_keep(target: Path, new_mode: int) -> int:
    try:
        return stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        return new_mode


def _why_no_new_file(folder: Path, exc: OSError) -> str:
    """Plain words for why no file can be created in ``folder``."""
    shown = printable(folder)
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"you may not create files in folder {shown} (permission denied)"
    if exc.errno == errno.EROFS:
        return f"folder {shown} is on a read-only file system"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"the disk holding folder {shown} is full"
    # ENOENT for a folder that exists: /proc, /sys and the like make no new files.
    return (f"folder {shown} does not take new files ({exc.strerror or exc}); it is not an "
            "ordinary folder on a disk (such as /proc or /sys) or was removed")


def sync_folder(folder: Path) -> None:
    """Make the renames and new names in ``folder`` durable (fsync of the folder itself).

    Best effort: some file systems refuse fsync on a folder; the data itself is already on
    disk by then."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def file_sha256(path: Path) -> str:
    """The sha256 of the file at ``path`` (hex), read in 1 MiB pieces whatever its size."""
    hasher = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            hasher.update(chunk)
    return hasher.hexdigest()
