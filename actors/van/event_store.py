"""``EventStore``: the van's durable record of every envelope its units delivered, each once.

**Kept sealed.** The store holds each envelope exactly as received (after the receiver verified
its signature and the unit's enrolment), still HPKE ciphertext, and the console opens it with
the van's private key when an officer looks at it, dropping the plaintext afterwards. So the
disk never holds a decrypted face crop: a copy of the database without the van's key is
ciphertext plus the header fields stored beside it for queries (unit, sequence number, kind,
capture and receive times, the officer's decision). See docs/DELIVERY.md.

**Exactly once.** Units deliver at least once; ``store`` refuses a (unit, seq) already stored
(a UNIQUE constraint) or at or below the unit's acknowledged mark, and returns False for it.

**Acknowledgements.** ``acknowledgeable(unit)`` is the unit's highest contiguous sequence
number: every number up to it is stored here or was given up by the unit (``skip_below``), so
the van may acknowledge it cumulatively. Envelopes that arrive above a gap (after a reconnect)
are stored at once, and the mark passes them as soon as the gap is filled. The mark only grows
and is persisted in the same transaction as the envelope that moves it.

**Crash safety**: SQLite, WAL mode, ``synchronous=FULL``: a ``store`` that returned True is on
disk. Readers (the console) never block the writer, nor the writer them.

**Bounded reads.** Every read is a page of at most ``MAX_PAGE`` events, continued with a key
(``before_seq``, ``before_id``), never an offset.

Every call is one short transaction: callers run them through the ``BlockingPool``. Calls may
come from any pool thread; a lock lets one run at a time on the connection.
"""

from __future__ import annotations

import math
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from actors.durable_database import DatabaseKind, DurableStore, open_durable_database
from guards.log_text import printable
from guards.user_input import UserInputError

EventKind = Literal["alert", "health"]
"""What an envelope carries: a match alert, or a health report (counts only, no face data)."""

Decision = Literal["open", "confirmed", "dismissed"]
"""The officer's decision on an alert; health reports have none."""

KINDS: frozenset[str] = frozenset(get_args(EventKind))

MAX_PAGE = 200
"""A read returns at most this many events (about 5 MB of 25 KB alerts)."""
MAX_UNIT_ID_BYTES = 255
"""A unit id is 1-255 bytes of UTF-8, printable (as in the envelope header)."""

_APPLICATION_ID = 0x4C464553  # "LFES" in the SQLite header: this file is an lfr event store
_SCHEMA_VERSION = 1
_MAX_SEQ = 2**63 - 1  # SQLite's INTEGER

_SCHEMA = """
CREATE TABLE events (
    id INTEGER PRIMARY KEY,               -- order of arrival at the van
    unit TEXT NOT NULL,
    seq INTEGER NOT NULL CHECK (seq >= 1),
    kind TEXT NOT NULL CHECK (kind IN ('alert', 'health')),
    captured_at REAL NOT NULL,            -- seconds since epoch, the unit's clock (signed header)
    received_at REAL NOT NULL,            -- seconds since epoch, the van's clock
    decision TEXT CHECK (decision IN ('open', 'confirmed', 'dismissed')),  -- NULL for health
    sealed BLOB NOT NULL,                 -- the envelope as received; opened only on read
    UNIQUE (unit, seq)                    -- at-least-once delivery, exactly-once storage
);
-- Invariant: every seq <= acknowledgeable of the unit is in events or was skipped by the unit;
-- it never decreases.
CREATE TABLE units (
    unit TEXT PRIMARY KEY,
    acknowledgeable INTEGER NOT NULL
);
"""
_EVENT_STORE = DatabaseKind("event store", _APPLICATION_ID, _SCHEMA, _SCHEMA_VERSION)


class EventStoreFileError(UserInputError):
    """The store path cannot hold an event store: missing folder, not a regular file, not
    writable, not an SQLite database or another program's database. The text names the file."""


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One stored envelope with the header fields kept beside it."""

    id: int
    """Order of arrival at the van (a paging key)."""
    unit: str
    seq: int
    kind: EventKind
    captured_at: float
    """Seconds since epoch, the unit's clock."""
    received_at: float
    """Seconds since epoch, the van's clock."""
    decision: Decision | None
    """The officer's decision on an alert; None for a health report."""
    sealed: bytes
    """The envelope as received: open it with the van's key to read it, and drop the result."""


@dataclass(frozen=True, slots=True)
class VerifiedEnvelope:
    """One envelope the receiver verified, for ``store_all_and_mark``."""

    seq: int
    """Its sequence number at the unit (from its verified header), 1 to 2**63-1."""
    kind: EventKind
    """Alert or health report (the header's kind, which the body matched)."""
    captured_at: float
    """When the unit captured it (s since the epoch, the unit's clock)."""
    sealed: bytes
    """The envelope exactly as received."""


@dataclass(frozen=True, slots=True)
class EventStoreStatistics:
    """A snapshot of the store."""

    events: int
    """Events held."""
    units: int
    """Units that delivered at least one event."""
    stored: int
    """``store`` calls that stored an event, since opened."""
    duplicates: int
    """``store`` calls refused as already stored or below the unit's mark, since opened."""




def _check_unit(unit: str) -> None:
    if not (0 < len(unit.encode(errors="replace")) <= MAX_UNIT_ID_BYTES
            and unit.isprintable()):
        raise ValueError(f"unit id must be 1-{MAX_UNIT_ID_BYTES} bytes of printable UTF-8, got "
                         f"{printable(unit, max_chars=80)!r}")


def _check_seq(name: str, seq: int) -> None:
    if isinstance(seq, bool) or not isinstance(seq, int) or not 1 <= seq <= _MAX_SEQ:
        raise ValueError(f"{name} must be an integer in [1, 2**63 - 1], got {seq!r}")


def _check_header(unit: str, seq: int, kind: str, captured_at: float) -> None:
    """The header fields come from a verified envelope; a bad one is a bug, not input."""
    _check_unit(unit)
    _check_seq("seq", seq)
    if kind not in KINDS:
        raise ValueError(f"unknown event kind {kind!r}; expected one of {sorted(KINDS)}")
    if not math.isfinite(captured_at):
        raise ValueError(f"captured_at must be finite, got {captured_at!r}")


def _check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"limit must lie in [1, {MAX_PAGE}], got {limit!r}")


class EventStore(DurableStore):
    """The van's event store; open with ``EventStore.open(path)``, close with ``close()``."""

    def __init__(self, connection: sqlite3.Connection, path: Path,
                 clock: Callable[[], float]) -> None:
        self.path = path
        super().__init__(connection)
        self._clock = clock
        self._stored = 0
        self._duplicates = 0

    @classmethod
    def open(cls, path: Path | str, *, clock: Callable[[], float] = time.time) -> EventStore:
        """Open the store at ``path``, creating it if absent; ``clock`` gives seconds since
        epoch for ``received_at``. Raises ``EventStoreFileError`` naming the file."""
        path = Path(path)
        db = open_durable_database(path, _EVENT_STORE, EventStoreFileError)
        return cls(db, path, clock)




    def store(self, unit: str, seq: int, kind: EventKind, captured_at: float,
              sealed: bytes) -> bool:
        """Store a verified envelope; False when (unit, seq) is already stored or at or below
        the unit's mark (a redelivery or a replay): nothing is changed then."""
        return self.store_and_mark(unit, seq, kind, captured_at, sealed)[0]

    def store_and_mark(self, unit: str, seq: int, kind: EventKind, captured_at: float,
                       sealed: bytes, *, skip_below: int = 1) -> tuple[bool, int]:
        """``skip_below(unit, skip_below)``, then ``store``, then ``acknowledgeable(unit)``, in
        one transaction (one commit, one fsync): whether the envelope was stored, and the mark.
        What the receiver does for each delivered envelope."""
        _check_header(unit, seq, kind, captured_at)
        _check_seq("skip_below", skip_below)
        with self._transaction() as db:
            mark = _mark(db, unit)
            if skip_below - 1 > mark:
                mark = _advance(db, unit, skip_below - 1)
            inserted = seq > mark and db.execute(
                "INSERT OR IGNORE INTO events VALUES (NULL, ?, ?, ?, ?, ?, ?, ?)",
                (unit, seq, kind, captured_at, self._clock(),
                 "open" if kind == "alert" else None, bytes(sealed))).rowcount == 1
            if inserted and seq == mark + 1:
                mark = _advance(db, unit, mark)
        if inserted:
            self._stored += 1
        else:
            self._duplicates += 1
        return inserted, mark

    def store_all_and_mark(self, unit: str, envelopes: Sequence[VerifiedEnvelope], *,
                           skip_below: int = 1) -> tuple[list[bool], int]:
        """``store_and_mark`` for several verified envelopes of ``unit`` at once: the skip,
        every store (in the given order) and the mark in one transaction (one commit, one
        fsync), all or none. Whether each was stored (False: already stored or at or below the
        mark), and the mark after them. What the receiver does for a ``DeliverBatch``."""
        _check_unit(unit)
        _check_seq("skip_below", skip_below)
        for item in envelopes:
            _check_header(unit, item.seq, item.kind, item.captured_at)
        inserted: list[bool] = []
        with self._transaction() as db:
            mark = _mark(db, unit)
            if skip_below - 1 > mark:
                mark = _advance(db, unit, skip_below - 1)
            received_at = self._clock()
            for item in envelopes:
                stored = item.seq > mark and db.execute(
                    "INSERT OR IGNORE INTO events VALUES (NULL, ?, ?, ?, ?, ?, ?, ?)",
                    (unit, item.seq, item.kind, item.captured_at, received_at,
                     "open" if item.kind == "alert" else None,
                     bytes(item.sealed))).rowcount == 1
                if stored and item.seq == mark + 1:
                    mark = _advance(db, unit, mark)
                inserted.append(stored)
        stored_count = sum(inserted)
        self._stored += stored_count
        self._duplicates += len(inserted) - stored_count
        return inserted, mark

    def acknowledgeable(self, unit: str) -> int:
        """The highest sequence number the van may acknowledge cumulatively to ``unit``: every
        number up to it is stored or was skipped by the unit (0: none yet)."""
        with self._lock:
            return _mark(self._db, unit)

    def skip_below(self, unit: str, first_pending: int) -> int:
        """``unit`` says it will never send a number below ``first_pending`` (acknowledged, or
        a health report its outbox dropped when full): the mark passes them. Returns the new
        ``acknowledgeable(unit)``. The claim comes from the unit's signed message."""
        _check_unit(unit)
        _check_seq("first_pending", first_pending)
        with self._transaction() as db:
            mark = _mark(db, unit)
            # nothing to skip (the usual case): no write, so the commit syncs nothing
            return mark if first_pending - 1 <= mark else _advance(db, unit, first_pending - 1)

    def by_unit(self, unit: str, *, before_seq: int | None = None,
                limit: int = MAX_PAGE) -> list[StoredEvent]:
        """A page of ``unit``'s events, highest sequence number (newest) first; the next page
        starts ``before_seq`` = the last one's ``seq``."""
        _check_limit(limit)
        with self._lock:
            rows = self._db.execute(
                "SELECT id, unit, seq, kind, captured_at, received_at, decision, sealed "
                "FROM events WHERE unit = ? AND seq < ? "
                "ORDER BY seq DESC LIMIT ?",
                (unit, _MAX_SEQ if before_seq is None else before_seq, limit)).fetchall()
        return [StoredEvent(*row) for row in rows]

    def recent(self, *, before_id: int | None = None, limit: int = MAX_PAGE) -> list[StoredEvent]:
        """A page of every unit's events, latest arrival first; the next page starts
        ``before_id`` = the last one's ``id``."""
        _check_limit(limit)
        with self._lock:
            rows = self._db.execute(
                "SELECT id, unit, seq, kind, captured_at, received_at, decision, sealed "
                "FROM events WHERE id < ? ORDER BY id DESC LIMIT ?",
                (_MAX_SEQ if before_id is None else before_id, limit)).fetchall()
        return [StoredEvent(*row) for row in rows]

    def statistics(self) -> EventStoreStatistics:
        """Events and units held, and what ``store`` did since opened."""
        with self._lock:
            events, units = self._db.execute(
                "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM units)").fetchone()
        return EventStoreStatistics(events=events, units=units, stored=self._stored,
                                    duplicates=self._duplicates)



def _mark(db: sqlite3.Connection, unit: str) -> int:
    row = db.execute("SELECT acknowledgeable FROM units WHERE unit = ?", (unit,)).fetchone()
    return 0 if row is None else int(row[0])


def _advance(db: sqlite3.Connection, unit: str, mark: int) -> int:
    """Move ``unit``'s mark from ``mark`` over the stored numbers that follow it without a gap;
    persist and return it."""
    for (seq,) in db.execute("SELECT seq FROM events WHERE unit = ? AND seq > ? ORDER BY seq",
                             (unit, mark)):
        if seq != mark + 1:
            break
        mark = seq
    db.execute("INSERT INTO units VALUES (?, ?) ON CONFLICT (unit) DO UPDATE SET "
               "acknowledgeable = max(acknowledgeable, excluded.acknowledgeable)", (unit, mark))
    return mark



