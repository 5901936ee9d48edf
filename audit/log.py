"""``AuditLog``: a node's append-only, hash-chained audit log file, written one record at a time.

Guarantees:

- **Append only.** The file is opened ``O_APPEND|O_WRONLY|O_CREAT|O_NOFOLLOW|O_CLOEXEC``, mode
  0600 when created; ``append`` writes its record's whole line and ``os.fsync``s, so it returns
  only once the record is on disk. ``append_all`` does the same for a group of records (group
  commit): their lines, chained in the group's order, are written together and fsynced once,
  and it returns only once every record of the group is on disk. The one time bytes are ever
  removed is a torn last line (below), or the part of a group a failed write left behind (the
  file is cut back to where it stood before the group: none of the group is written).
- **One writer.** ``open`` takes an exclusive ``flock`` on the file for the log's lifetime: a
  second ``AuditLog`` on the same file, in this process or another, is refused. Within the
  process, ``append`` and ``append_all`` are thread-safe (a lock): actors call them from the
  worker pool, and a group's records are contiguous in the log.
- **Never appends to a broken chain.** ``open`` reads the existing file streaming, line by line
  (each at most ``MAX_RECORD_BYTES``), and checks the whole chain (``audit.verify.ChainWalk``)
  before writing anything; a broken chain, a record of another node, a symbolic link or
  anything but a regular file is refused with ``AuditLogError`` naming the file and the first
  bad record: appending would bury the damage under valid records.
- **Torn tail repair.** A last line without ``\\n`` (a crash in the middle of a write) is the
  one exception: it is cut away, and the next record is a ``LOG_REPAIRED`` record with the
  number of bytes cut and their sha256. A torn line was never a complete record, so no
  witnessed head can be lost this way unless the log was tampered with: the witness shows it.
- **Privacy.** ``append`` takes only fields ``audit.record.check_fields`` allows (flat scalars,
  short text): a refused field raises ``AuditFieldError`` and nothing is written. In
  ``append_all`` a refused record is left out of the chain (the others are written) and its
  ``AuditFieldError`` is returned in its place.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import stat
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from audit.kinds import AuditKind
from audit.lines import read_lines
from audit.record import (
    MAX_RECORD_BYTES,
    AuditFieldError,
    AuditRecord,
    FieldValue,
    check_fields,
    format_time,
    make_record,
)
from audit.verify import ChainWalk
from guards.files import file_kind
from guards.log_text import printable
from guards.user_input import UserInputError
from runtime.link_keys import valid_peer_name

Clock = Callable[[], float]
"""Seconds since 1970 (UTC), like ``time.time``."""
MAX_GROUP_RECORDS = 256
"""Most records ``append_all`` writes with one fsync: at most 4 MiB in one write
(``MAX_RECORD_BYTES`` each)."""
Pending = tuple[AuditKind, Mapping[str, FieldValue]]
"""One record to append: its kind and its fields (checked when appended)."""


class AuditLogError(UserInputError):
    """An audit log file cannot be opened or continued; the text names it and says why."""


class AuditLogClosed(RuntimeError):
    """``append`` on a closed log, or on one closed after a write it could not undo."""


@dataclass(frozen=True, slots=True)
class AuditHead:
    """Where a log stands: what a signed health report carries as the van's witness."""

    count: int
    """Records in the log; the last one's seq (0 when empty)."""
    hash: str
    """The last record's hash (``GENESIS_HASH`` when empty)."""


class AuditLog:
    """One node's audit log file, open for appending (``AuditLog.open``)."""

    __slots__ = ("_clock", "_count", "_failure", "_fd", "_head", "_lock", "_node", "_path",
                 "_size")

    def __init__(self, path: Path, node_id: str, *, fd: int, head: AuditHead, size: int,
                 clock: Clock) -> None:
        """Use ``AuditLog.open``."""
        self._path = path
        self._node = node_id
        self._clock = clock
        self._lock = threading.Lock()
        # Guarded by _lock: _fd (None once closed), _count and _head (the last record written),
        # _size (the file's length after it: a failed write is cut back to it), _failure.
        self._fd: int | None = fd
        self._count = head.count
        self._head = head.hash
        self._size = size
        self._failure: str | None = None

    @classmethod
    def open(cls, path: Path, node_id: str, *, clock: Clock = time.time) -> AuditLog:
        """Create the log at ``path`` (its folder must exist) or continue the one there, after
        checking its whole chain; a torn last line is cut away and a ``LOG_REPAIRED`` record
        appended. ``clock`` gives each record's time. Raises ``AuditLogError``."""
        shown = f"audit log {printable(path)}"
        if not valid_peer_name(node_id):
            raise AuditLogError(f"{shown}: node id {printable(node_id, max_chars=80)} is not "
                                "1-64 printable characters")
        fd = _open_for_append(path, shown)
        try:
            walk = _check_existing(fd, path, node_id, shown)
            torn = walk.problem.torn_tail if walk.problem is not None else None
            if torn is not None:
                os.ftruncate(fd, torn.offset)
                os.fsync(fd)
            size = os.fstat(fd).st_size
            if size == 0:
                _make_private(fd, path)
        except OSError as exc:
            os.close(fd)
            raise AuditLogError(f"{shown}: cannot prepare it for appending: "
                                f"{exc.strerror or exc}") from None
        except BaseException:
            os.close(fd)
            raise
        log = cls(path, node_id, fd=fd, head=AuditHead(walk.records, walk.head_hash), size=size,
                  clock=clock)
        if torn is not None:
            try:
                log.append(AuditKind.LOG_REPAIRED, torn_bytes=len(torn.data),
                           torn_sha256=hashlib.sha256(torn.data).hexdigest())
            except BaseException:
                log.close()
                raise
        return log

    @property
    def path(self) -> Path:
        """The log file."""
        return self._path

    @property
    def node_id(self) -> str:
        """The node whose log it is (every record's ``node``)."""
        return self._node

    @property
    def count(self) -> int:
        """Records in the log; the last one's seq."""
        with self._lock:
            return self._count

    @property
    def head_hash(self) -> str:
        """The last record's hash; 64 zeros when the log is empty."""
        with self._lock:
            return self._head

    def head(self) -> AuditHead:
        """``count`` and ``head_hash`` read together (one consistent pair)."""
        with self._lock:
            return AuditHead(self._count, self._head)

    def append(self, kind: AuditKind, /, **fields: FieldValue) -> AuditRecord:
        """Write one record of ``kind`` with ``fields`` and return it once it is on disk
        (written and fsynced). A field the privacy rule refuses, or a record over
        ``MAX_RECORD_BYTES``, raises ``AuditFieldError`` and writes nothing; a failed write
        raises its ``OSError`` and leaves the file as it was (``AuditLogClosed`` from then on
        if even that failed)."""
        (result,) = self.append_all(((kind, fields),))
        if isinstance(result, AuditFieldError):
            raise result
        return result

    def append_all(self, pending: Sequence[Pending]) -> list[AuditRecord | AuditFieldError]:
        """Write the records ``pending`` holds, chained in that order, with one write and one
        fsync (group commit), and return, in the same order, each record once all of them are
        on disk, or the ``AuditFieldError`` that refused it (a field the privacy rule refuses,
        a record over ``MAX_RECORD_BYTES``): a refused record is left out, the others are
        written. A failed write raises its ``OSError`` and leaves the file as it was: none of
        the group is written (``AuditLogClosed`` from then on if even undoing it failed). At
        most ``MAX_GROUP_RECORDS`` records (``ValueError`` beyond)."""
        if len(pending) > MAX_GROUP_RECORDS:
            raise ValueError(f"{len(pending)} records in one group, over the limit of "
                             f"{MAX_GROUP_RECORDS}")
        checked: list[Pending | AuditFieldError] = []
        for kind, fields in pending:
            if type(kind) is not AuditKind:
                raise TypeError(f"kind must be an AuditKind, not {type(kind).__qualname__}")
            try:
                checked.append((kind, check_fields(fields)))
            except AuditFieldError as exc:
                checked.append(exc)
        results: list[AuditRecord | AuditFieldError] = []
        with self._lock:
            fd = self._open_fd()
            count, head = self._count, self._head  # the group's chain, kept once it is on disk
            lines: list[bytes] = []
            for item in checked:
                if isinstance(item, AuditFieldError):
                    results.append(item)
                    continue
                kind, fields = item
                record = make_record(seq=count + 1, time=format_time(self._clock()),
                                     node=self._node, kind=kind, fields=fields, prev=head)
                line = record.line()
                if len(line) > MAX_RECORD_BYTES:
                    results.append(AuditFieldError(
                        f"the {kind.value} record would be {len(line)} bytes, over the limit "
                        f"of {MAX_RECORD_BYTES}: shorten its fields"))
                    continue
                count, head = record.seq, record.hash
                lines.append(line)
                results.append(record)
            if lines:
                data = b"".join(lines)
                self._write(fd, data)
                self._count = count
                self._head = head
                self._size += len(data)
        return results

    def close(self) -> None:
        """Close the file (and release its lock); appending afterwards raises
        ``AuditLogClosed``. Idempotent."""
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"AuditLog({printable(self._path)}, node {printable(self._node)}, "
                f"{self._count} records)")

    def _open_fd(self) -> int:
        if self._fd is None:
            raise AuditLogClosed(f"audit log {printable(self._path)} is closed"
                                 + (f" after a failed write ({self._failure}); reopen it"
                                    if self._failure else ""))
        return self._fd

    def _write(self, fd: int, data: bytes) -> None:
        """Write ``data`` (whole lines) whole and fsync, or leave the file at ``_size`` and
        raise."""
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        except BaseException as exc:  # any failure, Ctrl-C included: no half record stays
            self._cut_back(fd, exc)
            raise

    def _cut_back(self, fd: int, exc: BaseException) -> None:
        """Undo a failed write; if that fails too the log closes (a reopen repairs it)."""
        try:
            os.ftruncate(fd, self._size)
            os.fsync(fd)
        except OSError as undo:
            self._failure = f"{exc!r}, then {undo.strerror or undo} undoing it"
            os.close(fd)
            self._fd = None


def _open_for_append(path: Path, shown: str) -> int:
    """The log's append descriptor, locked; refuses links, non-regular files and a log
    another writer holds."""
    flags = (os.O_APPEND | os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
             | os.O_NONBLOCK)  # O_NONBLOCK: a FIFO fails at once (ENXIO) instead of blocking
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        raise AuditLogError(f"{shown}: {_why_not_opened(path, exc)}") from None
    try:
        _check_and_lock(fd, path, shown)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _check_and_lock(fd: int, path: Path, shown: str) -> None:
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        raise AuditLogError(f"{shown}: is {file_kind(info.st_mode)}; an audit log is a "
                            "regular file")
    if info.st_mode & 0o022:
        raise AuditLogError(f"{shown}: mode {stat.S_IMODE(info.st_mode):04o} lets others "
                            f"change it; it must be 0600 (chmod 600 {printable(path)})")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise AuditLogError(f"{shown}: is already open for writing (by this or another "
                            "process); a log has one writer") from None
    os.set_blocking(fd, True)


def _why_not_opened(path: Path, exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "is a symbolic link; an audit log is never opened through one"
    if exc.errno == errno.EISDIR:
        return "is a directory; an audit log is a regular file"
    if exc.errno == errno.ENXIO:
        return "is a FIFO or a socket; an audit log is a regular file"
    if exc.errno == errno.ENOENT:
        return f"folder {printable(path.parent)} does not exist"
    return f"cannot open: {exc.strerror or exc}"


def _check_existing(fd: int, path: Path, node_id: str, shown: str) -> ChainWalk:
    """Walk the chain already in the file (``fd`` is its locked append descriptor): a good
    chain, possibly ending in a torn line (``problem.torn_tail``), or ``AuditLogError``."""
    try:
        reader = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise AuditLogError(f"{shown}: cannot read: {exc.strerror or exc}") from None
    walk = ChainWalk(node=node_id)
    try:
        written, read = os.fstat(fd), os.fstat(reader)
        if (written.st_dev, written.st_ino) != (read.st_dev, read.st_ino):
            raise AuditLogError(f"{shown}: was replaced while being opened")
        for _ in walk.walk(read_lines(reader, max_line_bytes=MAX_RECORD_BYTES)):
            pass
    except OSError as exc:
        raise AuditLogError(f"{shown}: cannot read: {exc.strerror or exc}") from None
    finally:
        os.close(reader)
    problem = walk.problem
    if problem is not None and problem.torn_tail is None:
        raise AuditLogError(
            f"{shown}: the chain is broken at record seq {problem.seq} (line {problem.line}): "
            f"{problem.reason}. Nothing is appended to a broken log, as that would bury the "
            "damage: keep this file as evidence (lfr audit verify shows the same) and give the "
            "node a new log file")
    return walk


def _make_private(fd: int, path: Path) -> None:
    """A new (empty) log: mode 0600 whatever the umask, and its folder entry made durable."""
    os.fchmod(fd, 0o600)
    # Best effort: some file systems refuse fsync on a folder; the records are synced anyway.
    with contextlib.suppress(OSError):
        folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)

