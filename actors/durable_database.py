"""``open_durable_database``: one of lfr's own SQLite files, opened so that what was committed
survives a crash, or refused with a message naming the file.

Shared by the unit's outbox and the van's event store. The path must be a regular file or absent
in an existing folder (SQLite would hang on a FIFO and explain a directory badly); the file must
be empty or carry this store's ``application_id`` and schema version (another program's database
is never touched); it runs in WAL mode with ``synchronous=FULL`` (a committed transaction is on
disk before the call returns) and autocommit (callers open their own transactions). A new file
is created with mode 0600.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from guards.files import file_kind
from guards.log_text import printable
from guards.user_input import UserInputError

BUSY_TIMEOUT_S = 2.0
"""Another connection holding the write lock longer than this is an error, not a wait."""


@dataclass(frozen=True, slots=True)
class DatabaseKind:
    """What one kind of lfr database is."""

    name: str
    """How messages call it ("outbox", "event store")."""
    application_id: int
    """Written into the SQLite header: marks the file as this kind of lfr database."""
    schema: str
    """SQL that creates the tables of an empty file."""
    schema_version: int
    """``PRAGMA user_version`` of the schema above; another version is refused."""


def open_durable_database(path: Path, kind: DatabaseKind,
                          error: type[UserInputError]) -> sqlite3.Connection:
    """Open (or create) ``path`` as a ``kind`` database; ``error`` (naming the file) otherwise.
    The connection may be used from any thread, one call at a time (callers hold a lock)."""
    shown = f"{kind.name} {printable(path)}"
    _check_path(path, shown, error)
    try:
        db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                             check_same_thread=False)
    except sqlite3.Error as exc:
        raise error(f"{shown}: {_explain(exc)}") from None
    try:
        _prepare(db, kind, shown, error)
    except sqlite3.Error as exc:
        db.close()
        raise error(f"{shown}: {_explain(exc)}") from None
    except BaseException:
        db.close()
        raise
    return db


def _check_path(path: Path, shown: str, error: type[UserInputError]) -> None:
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        if not path.parent.is_dir():
            raise error(f"{shown}: folder {printable(path.parent)} does not exist") from None
        # Created here, 0600 (SQLite gives its -wal and -shm files the same mode): what these
        # files hold is sealed, but who sent what and when is nobody else's business either.
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                             | os.O_CLOEXEC, 0o600))
        except FileExistsError:  # made meanwhile by another opener: checked by SQLite
            return
        except OSError as exc:
            raise error(f"{shown}: cannot create: {exc.strerror or exc}") from None
        return
    except OSError as exc:
        raise error(f"{shown}: cannot read: {exc.strerror or exc}") from None
    if not stat.S_ISREG(mode):
        raise error(f"{shown}: is {file_kind(mode)}; it must be a regular file")


def _explain(exc: sqlite3.Error) -> str:
    """What SQLite's error at open means for the person who named the file."""
    if getattr(exc, "sqlite_errorname", "") in ("SQLITE_NOTADB", "SQLITE_CORRUPT"):
        return f"not a usable SQLite database (corrupt, or another kind of file): {exc}"
    return (f"cannot use it: {exc} (the file and its folder must be writable: SQLite keeps "
            "-wal and -shm files beside it)")


def _prepare(db: sqlite3.Connection, kind: DatabaseKind, shown: str,
             error: type[UserInputError]) -> None:
    """Check the file is ``kind`` (or empty), create the schema, set WAL and FULL sync."""
    application_id = db.execute("PRAGMA application_id").fetchone()[0]
    foreign = (application_id not in (0, kind.application_id)
               or (application_id == 0
                   and db.execute("SELECT count(*) FROM sqlite_schema").fetchone()[0]))
    if foreign:
        raise error(f"{shown}: is an SQLite database of another program, not an lfr "
                    f"{kind.name}")
    if db.execute("PRAGMA journal_mode = WAL").fetchone()[0].lower() != "wal":
        raise error(f"{shown}: SQLite refused WAL mode on it")
    db.execute("PRAGMA synchronous = FULL")
    if application_id == 0:
        db.executescript(f"BEGIN IMMEDIATE; {kind.schema} "
                         f"PRAGMA application_id = {kind.application_id}; "
                         f"PRAGMA user_version = {kind.schema_version}; COMMIT;")
        return
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version != kind.schema_version:
        raise error(f"{shown}: schema version {version}, this lfr reads version "
                    f"{kind.schema_version}")


class DurableStore:
    """What every lfr SQLite store shares: its connection, the lock that lets one call at a
    time use it (from any thread: callers run on the worker pool), closing, ``with``, and the
    write transaction. A store subclasses it and passes the connection
    ``open_durable_database`` gave."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._db = connection
        self._lock = threading.Lock()  # one call at a time on the connection, from any thread

    def close(self) -> None:
        """Close the database; the store cannot be used afterwards."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction, taken at once (no upgrade from a read lock to deadlock on);
        committed when the block ends, rolled back when it raises."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
