"""The hashed lock (``requirements.lock``), read and filtered for a release target.

The lock is universal (``uv pip compile --universal``): one file for every platform, each line
guarded by a PEP 508 marker, a package sometimes listed twice with different markers (numpy for
Python below and from 3.12). pip evaluates markers against the machine it runs on, so a build
for aarch64 on an x86_64 laptop would pick the laptop's lines. ``LockedRequirement.applies_to``
evaluates them against the target's fixed environment instead (``target.Arch``).

Guarantees: every requirement is pinned (``name==version``) and carries at least one sha256;
anything else (an unpinned line, an option line, a URL, a hash of another algorithm) is refused
with the line's number. ``select`` returns exactly one entry per package name for a target, or
refuses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from packaging.markers import InvalidMarker, Marker
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from guards.files import read_user_file
from guards.log_text import printable
from guards.user_input import UserInputError
from lfr.release.target import Arch

MAX_LOCK_BYTES = 4 * 1024 * 1024
"""The lock is about 120 KB."""
_HASH = re.compile(r"--hash=sha256:([0-9a-f]{64})")
_PINNED = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*==[A-Za-z0-9.+!_-]+$")


class LockFileError(UserInputError):
    """The lock is unreadable, a line is not a pinned, hashed requirement, or a package has no
    single line for the target; the text names the line or the package."""


@dataclass(frozen=True, slots=True)
class LockedRequirement:
    """One requirement of the lock: a pinned version and the sha256 of every file allowed."""

    name: str
    """The canonical package name (PEP 503: lower case, runs of ``-_.`` as ``-``)."""
    version: str
    """The pinned version."""
    marker: Marker | None
    """Where it applies; None: everywhere."""
    sha256: frozenset[str]
    """Every allowed file's sha256 (lower-case hex); never empty."""
    line: int
    """The line of the lock it starts on (for messages)."""

    def __post_init__(self) -> None:
        if not self.sha256:
            raise LockFileError(f"lock line {self.line}: {self.name} has no sha256 hash")

    def applies_to(self, arch: Arch) -> bool:
        """Whether a unit of ``arch`` running CPython 3.11 on Linux installs it."""
        return self.marker is None or self.marker.evaluate(arch.marker_environment())

    def requirement_line(self) -> str:
        """The line for pip's ``--require-hashes`` mode, without a marker (already decided)."""
        hashes = " ".join(f"--hash=sha256:{digest}" for digest in sorted(self.sha256))
        return f"{self.name}=={self.version} {hashes}"


def read_lock(path: Path) -> tuple[LockedRequirement, ...]:
    """Every requirement of the lock at ``path``, in file order."""
    text = read_user_file(path, "lock file", MAX_LOCK_BYTES).decode("utf-8", "replace")
    return parse_lock(text, printable(path))


def parse_lock(text: str, source: str) -> tuple[LockedRequirement, ...]:
    """Every requirement of a lock's ``text`` (``source`` names it in messages)."""
    entries: list[LockedRequirement] = []
    for number, logical in _logical_lines(text):
        if not logical or logical.startswith("#"):
            continue
        entries.append(_parse_entry(logical, number, source))
    if not entries:
        raise LockFileError(f"lock file {source} holds no requirement")
    return tuple(entries)


def select(entries: tuple[LockedRequirement, ...], arch: Arch) -> tuple[LockedRequirement, ...]:
    """The requirements a unit of ``arch`` installs, one per package, sorted by name."""
    chosen: dict[str, LockedRequirement] = {}
    for entry in entries:
        if not entry.applies_to(arch):
            continue
        if entry.name in chosen:
            raise LockFileError(
                f"lock lists {entry.name} twice for {arch.value} (lines "
                f"{chosen[entry.name].line} and {entry.line}): its markers overlap")
        chosen[entry.name] = entry
    return tuple(chosen[name] for name in sorted(chosen))


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """Lines joined across trailing backslashes, comments after ``  #`` dropped, with the
    number of the line each starts on."""
    lines: list[tuple[int, str]] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not pending:
            start = number
        if stripped.startswith("#"):
            if pending:
                continue
            lines.append((number, stripped))
            continue
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        lines.append((start, " ".join(part for part in pending if part)))
        pending = []
    if pending:
        lines.append((start, " ".join(part for part in pending if part)))
    return lines


def _parse_entry(logical: str, number: int, source: str) -> LockedRequirement:
    where = f"lock file {source} line {number}"
    if logical.startswith("-"):
        raise LockFileError(f"{where}: option lines are not allowed in a release lock: "
                            f"{printable(logical, max_chars=80)}")
    hashes = _HASH.findall(logical)
    spec = _HASH.sub("", logical).strip()
    if "--" in spec:
        raise LockFileError(f"{where}: only --hash=sha256:... options are allowed: "
                            f"{printable(spec, max_chars=120)}")
    try:
        requirement = Requirement(spec)
    except (InvalidRequirement, InvalidMarker) as exc:
        raise LockFileError(f"{where}: not a requirement: {printable(exc, max_chars=200)}"
                            ) from None
    pinned = f"{requirement.name}{requirement.specifier}"
    if requirement.url or requirement.extras or not _PINNED.match(pinned):
        raise LockFileError(f"{where}: {printable(spec, max_chars=120)} is not pinned with =="
                            " to one version")
    version = str(requirement.specifier).removeprefix("==")
    return LockedRequirement(canonicalize_name(requirement.name), version, requirement.marker,
                             frozenset(hashes), number)
