"""The release's systemd files installed where systemd reads them, and put back on rollback.

A release carries its unit file and sysusers file in ``releases/<version>/firmware/``; the
service runs under the copies in ROOT (``SYSTEM_FILES``)::

    firmware/lfr-edge.service        -> ROOT/etc/systemd/system/lfr-edge.service
    firmware/lfr-edge.sysusers.conf  -> ROOT/usr/lib/sysusers.d/lfr-edge.conf

``install_system_files`` copies each one that differs from what is there (bytes or a mode other
than 0644) and returns a ``SystemFilesChange`` remembering what each replaced;
``restore_system_files`` puts exactly that back (the old bytes and mode, the old symbolic link,
or no file when there was none).

Guarantees: every write is atomic (a temporary file in the target's folder, fsynced, then
``os.replace``, then the folder fsynced), so systemd never reads half a file; an unchanged file
is not written (no reload is needed for it); ``install_system_files`` is all or nothing: any
failure, Ctrl-C included, puts back what it had replaced before it raises; a release without
the unit file is refused (a bundle always carries it), one without the sysusers file leaves the
installed one alone. Site changes belong in drop-ins (``lfr-edge.service.d/``), which are never
touched.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from guards.files import UserFileError, read_user_file, sync_folder
from guards.log_text import printable
from lfr.release.refusal import RefusalReason, UpdateRefused

MAX_SYSTEM_FILE_BYTES = 64 * 1024
"""A unit or sysusers file is a few KB; an installed one larger than this is not ours."""
SYSTEM_FILE_MODE = 0o644
"""Installed system files: root writes, everyone (systemd, ``systemd-analyze``) reads."""


@dataclass(frozen=True, slots=True)
class SystemFile:
    """One file of a release's ``firmware/`` folder that systemd reads from ROOT."""

    name: str
    """Its name in the release's ``firmware/`` folder."""
    target: PurePosixPath
    """Where it is installed, relative to ROOT."""
    required: bool
    """True: a release without it is refused; False: the installed copy is left alone."""


UNIT_FILE = SystemFile("lfr-edge.service", PurePosixPath("etc/systemd/system/lfr-edge.service"),
                       required=True)
"""The service's unit file (read by ``systemctl daemon-reload``)."""
SYSUSERS_FILE = SystemFile("lfr-edge.sysusers.conf",
                           PurePosixPath("usr/lib/sysusers.d/lfr-edge.conf"), required=False)
"""The service user's sysusers.d file (applied by ``systemd-sysusers``)."""
SYSTEM_FILES = (SYSUSERS_FILE, UNIT_FILE)
"""In install order: the user before the unit that runs as it."""


@dataclass(frozen=True, slots=True)
class PreviousFile:
    """What was at a target before it was replaced."""

    data: bytes | None
    """The old regular file's bytes; None when it was no regular file."""
    mode: int
    """The old regular file's permission bits (0 otherwise)."""
    link: str | None
    """The old symbolic link's target; None when it was no link. Both None: no file."""


@dataclass(frozen=True, slots=True)
class ReplacedFile:
    """One system file that an install replaced."""

    file: SystemFile
    """Which one."""
    path: Path
    """Its installed path (under ROOT)."""
    previous: PreviousFile
    """What was there before."""


@dataclass(frozen=True, slots=True)
class SystemFilesChange:
    """The system files an install (or a restore) changed; empty when none did."""

    replaced: tuple[ReplacedFile, ...]
    """Each changed file, in the order written."""

    @property
    def unit_file_changed(self) -> bool:
        """True when the unit file changed (systemd must reload its units)."""
        return any(item.file is UNIT_FILE for item in self.replaced)

    @property
    def users_file(self) -> Path | None:
        """The sysusers file to apply, when it changed and there is one now."""
        for item in self.replaced:
            if item.file is SYSUSERS_FILE and item.path.is_file():
                return item.path
        return None

    def describe(self) -> str:
        """One line for the audit: which files changed."""
        if not self.replaced:
            return "unchanged"
        return ", ".join(printable(str(item.file.target)) for item in self.replaced)


def install_system_files(root: Path, release: Path) -> SystemFilesChange:
    """Install ``release``'s system files under ``root`` (module docstring)."""
    replaced: list[ReplacedFile] = []
    try:
        for file in SYSTEM_FILES:
            source = release / "firmware" / file.name
            if not file.required and not os.path.lexists(source):
                continue
            try:
                data = read_user_file(source, "release's firmware file", MAX_SYSTEM_FILE_BYTES)
            except UserFileError as exc:
                raise UpdateRefused(RefusalReason.INSTALL_FAILED, str(exc)) from None
            target = root / file.target
            previous = _read_previous(target)
            if previous.data == data and previous.mode == SYSTEM_FILE_MODE:
                continue
            target.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
            _write_atomically(target, data, SYSTEM_FILE_MODE)
            replaced.append(ReplacedFile(file, target, previous))
    except BaseException as exc:  # any failure, Ctrl-C included: all or nothing
        restore_system_files(SystemFilesChange(tuple(replaced)))
        if isinstance(exc, OSError):
            raise UpdateRefused(RefusalReason.INSTALL_FAILED,
                                f"the release's system files could not be installed: "
                                f"{exc.strerror or exc}; those replaced were put back"
                                ) from None
        raise
    return SystemFilesChange(tuple(replaced))


def restore_system_files(change: SystemFilesChange) -> SystemFilesChange:
    """Put back what ``change`` replaced (newest first); returns what that changed, for the
    reload (the same files)."""
    for item in reversed(change.replaced):
        previous = item.previous
        if previous.data is not None:
            _write_atomically(item.path, previous.data, previous.mode)
        elif previous.link is not None:
            temporary = item.path.with_name(f".{item.path.name}.{os.getpid()}.link")
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()
            os.symlink(previous.link, temporary)
            os.replace(temporary, item.path)
            sync_folder(item.path.parent)
        else:
            with contextlib.suppress(FileNotFoundError):
                item.path.unlink()
            sync_folder(item.path.parent)
    return change


def _read_previous(target: Path) -> PreviousFile:
    try:
        status = target.lstat()
    except FileNotFoundError:
        return PreviousFile(None, 0, None)
    if stat.S_ISLNK(status.st_mode):
        return PreviousFile(None, 0, os.readlink(target))
    if not stat.S_ISREG(status.st_mode):
        raise UpdateRefused(RefusalReason.LAYOUT,
                            f"{printable(target)} is not a regular file; remove it so that "
                            "the release's file can be installed there")
    try:
        data = read_user_file(target, "installed system file", MAX_SYSTEM_FILE_BYTES)
    except UserFileError as exc:
        raise UpdateRefused(RefusalReason.LAYOUT, str(exc)) from None
    return PreviousFile(data, stat.S_IMODE(status.st_mode), None)


def _write_atomically(target: Path, data: bytes, mode: int) -> None:
    """``data`` with exactly ``mode`` at ``target``, replacing whatever is there (a link is
    replaced, never followed)."""
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), mode)
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(name, target)
    except BaseException:  # never leave the temporary copy behind, Ctrl-C included
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)
        raise
    sync_folder(target.parent)
