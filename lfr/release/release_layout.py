"""The install layout under ROOT (``/`` on a unit, a temporary folder in tests), as
docs/RELEASES.md and the firmware layout describe it::

    ROOT/opt/lfr-edge/releases/<version>/   a venv with the release, and its release.json
    ROOT/opt/lfr-edge/current               -> releases/<version>   (a relative symlink)
    ROOT/opt/lfr-edge/highest-version       the newest version ever committed (rollback guard)
    ROOT/opt/lfr-edge/.update.lock          held (flock) while an update runs
    ROOT/etc/lfr-edge/release.keys          the release key units trust

Guarantees: ``switch_current`` replaces the link atomically (a new link under a temporary name,
then ``os.replace``), so ``current`` always names a whole release or nothing; a release folder
counts as installed only with its ``release.json`` whose version is its name (a half install
lives under a hidden staging name, ``.staging-*``, and ``clean_leftovers`` removes it);
``installed_version`` refuses (``UpdateRefused``, ``layout``) a ``current`` that is anything
but such a link; ``highest-version`` is written atomically.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from packaging.version import Version

from guards.files import UserFileError, read_user_file, sync_folder, write_file_atomically
from guards.log_text import printable
from lfr.release.bundle_manifest import (
    MANIFEST_NAME,
    MAX_MANIFEST_BYTES,
    decode_manifest,
    parse_version,
)
from lfr.release.refusal import RefusalReason, UpdateRefused

STAGING_PREFIX = ".staging-"
"""Folders under releases/ being built; never a release."""
INCOMING_PREFIX = ".incoming-"
"""Folders under ROOT/opt/lfr-edge holding a bundle's files while they are verified."""
_VERSION_NAME = re.compile(r"[0-9][0-9A-Za-z.+!-]*")
_MAX_VERSION_FILE_BYTES = 256


def _layout_error(problem: str) -> UpdateRefused:
    return UpdateRefused(RefusalReason.LAYOUT, problem)


class ReleaseLayout:
    """Paths and the few operations on them, under one ROOT."""

    __slots__ = ("base", "current", "highest_file", "lock_file", "release_keys", "releases",
                 "root")

    def __init__(self, root: Path) -> None:
        self.root = root
        """The layout's root."""
        self.base = root / "opt" / "lfr-edge"
        """ROOT/opt/lfr-edge."""
        self.releases = self.base / "releases"
        """One folder per installed release."""
        self.current = self.base / "current"
        """The link to the running release."""
        self.highest_file = self.base / "highest-version"
        """The newest version ever committed."""
        self.lock_file = self.base / ".update.lock"
        """Held while an update runs."""
        self.release_keys = root / "etc" / "lfr-edge" / "release.keys"
        """The trusted release key (default)."""

    def release_dir(self, version: Version) -> Path:
        """The folder of release ``version``."""
        return self.releases / str(version)

    @contextmanager
    def update_lock(self) -> Iterator[None]:
        """Hold the update lock (non-blocking: another update running is refused as
        ``busy``)."""
        self.releases.mkdir(parents=True, exist_ok=True, mode=0o755)
        fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise UpdateRefused(RefusalReason.BUSY,
                                    f"another update is running ({printable(self.lock_file)} "
                                    "is locked)") from None
            yield
        finally:
            os.close(fd)

    def installed_version(self) -> Version | None:
        """The version ``current`` points at, None when there is no ``current``."""
        try:
            target = os.readlink(self.current)
        except FileNotFoundError:
            return None
        except OSError:
            raise _layout_error(f"{printable(self.current)} is not a symbolic link; it must "
                                "point at releases/<version>") from None
        head, _, name = target.partition("/")
        if head != "releases" or not _VERSION_NAME.fullmatch(name):
            raise _layout_error(f"{printable(self.current)} points at {printable(target)}, "
                                "not at releases/<version>")
        version = parse_version(name)
        self.read_installed_manifest(version)
        return version

    def read_installed_manifest(self, version: Version) -> bytes:
        """The ``release.json`` of installed release ``version`` (checked against its name)."""
        path = self.release_dir(version) / MANIFEST_NAME
        try:
            data = read_user_file(path, "installed release manifest", MAX_MANIFEST_BYTES)
        except UserFileError as exc:
            raise _layout_error(f"current points at release {version}, which is not whole "
                                f"({exc}); if it was removed by hand, remove "
                                f"{printable(self.current)} too (the highest version ever "
                                "installed is still remembered)") from None
        if decode_manifest(data).parsed_version != version:
            raise _layout_error(f"{printable(path)} is not the manifest of release {version}")
        return data

    def highest_version(self) -> Version | None:
        """The newest version ever committed here, None before the first."""
        try:
            text = read_user_file(self.highest_file, "highest-version file",
                                  _MAX_VERSION_FILE_BYTES)
        except UserFileError:
            if not os.path.lexists(self.highest_file):
                return None
            raise
        return parse_version(text.decode("ascii", "replace").strip())

    def record_highest(self, version: Version) -> None:
        """Remember ``version`` as the newest committed (never lowers what is recorded)."""
        highest = self.highest_version()
        if highest is None or version > highest:
            write_file_atomically(self.highest_file, f"{version}\n".encode(),
                                  "highest-version file", mode=0o644)

    def switch_current(self, version: Version | None) -> None:
        """Point ``current`` at release ``version`` atomically; None removes the link."""
        if version is None:
            with contextlib.suppress(FileNotFoundError):
                self.current.unlink()
            return
        if not (self.release_dir(version) / MANIFEST_NAME).is_file():
            raise _layout_error(f"release {version} is not installed")
        temporary = self.base / f".current.{os.getpid()}.tmp"
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        os.symlink(f"releases/{version}", temporary)
        try:
            os.replace(temporary, self.current)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()
            raise
        sync_folder(self.base)

    def installed_releases(self) -> list[Version]:
        """Every whole release folder (named by a version, with its manifest), oldest first."""
        if not self.releases.is_dir():
            return []
        found = []
        for entry in self.releases.iterdir():
            if entry.is_symlink() or not entry.is_dir() or not _VERSION_NAME.fullmatch(
                    entry.name):
                continue
            try:
                version = parse_version(entry.name)
            except UpdateRefused:
                continue
            if (entry / MANIFEST_NAME).is_file():
                found.append(version)
        return sorted(found)

    def clean_leftovers(self) -> list[str]:
        """Remove what an interrupted update left (staging folders, links and release
        folders without a manifest under releases/; scratch folders and temporary links
        beside them); returns the names removed, relative to ROOT/opt/lfr-edge."""
        removed = []
        for entry in sorted(self.base.iterdir()) if self.base.is_dir() else []:
            if entry.name.startswith((INCOMING_PREFIX, ".current.")):
                remove_tree(entry)
                removed.append(entry.name)
        for entry in sorted(self.releases.iterdir()) if self.releases.is_dir() else []:
            if entry.is_symlink():
                entry.unlink()
            elif entry.name.startswith(STAGING_PREFIX) or (
                    entry.is_dir() and not (entry / MANIFEST_NAME).is_file()):
                remove_tree(entry)
            else:
                continue
            removed.append(f"releases/{entry.name}")
        return removed


def remove_tree(path: Path) -> None:
    """Remove a folder and everything in it (links are removed, never followed)."""
    if path.is_symlink():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)
