"""``Outbox``: the unit's sealed envelopes, kept on disk until the van acknowledges them.

The unit's uplink appends every alert and health report here before sending it, sends what
``pending`` returns in sequence order, and deletes what the van acknowledges. Delivery is
at-least-once and ordered per unit; the van's event store turns it into exactly-once storage by
(unit, sequence number). See docs/DELIVERY.md.

**Only sealed bytes.** The outbox stores envelopes as the envelope layer sealed them: HPKE
ciphertext for the van's public key, signed by the unit. The unit holds no key that opens them
(only the van's private key does), so nothing on the unit's disk decrypts the outbox; a stolen
unit yields ciphertext, sequence numbers, kinds and append times.

**Sequence numbers** are assigned here, inside the transaction that stores the envelope, and go
into its signed header: ``append`` passes the next number to ``seal``. They strictly increase and
are never reused, also after deletions and restarts (the last one assigned is persisted in the
same transaction as the row).

**A new file starts above any earlier one.** The van keeps every number it stored per unit and
treats a number at or below its mark as a duplicate; a unit whose outbox file was lost (a new SD
card) must never number from 1 again, or the van would answer "duplicate" to real alerts and the
unit would delete them. So a new file's first number is the clock in microseconds since the
epoch (``first_sequence_number``), written in the transaction that creates the schema: above
every number an earlier outbox of the unit assigned, as long as that one appended fewer than one
envelope per microsecond of its life. Residual risk: a clock set back before the old outbox's
last append (an RTC without battery, no NTP yet) starts below numbers the van holds. The uplink
covers the appends that follow: the van's answer to ``Resume`` carries its mark, and
``advance_past`` moves numbering above it. Envelopes appended before that answer, numbered at or
below the van's mark, cannot be delivered (the uplink logs and counts them).

**When full** (``OutboxConfig``): health reports give way, alerts never do. A newer health report
supersedes older ones, so the oldest health envelopes are deleted first to make room. Alerts may
fill the outbox only up to its bounds minus a reserve kept for health reports; beyond that
``append`` raises ``OutboxFull`` (counted in ``refused``) and stores nothing: the caller keeps the
alert, raises the health alarm the van shows, and the health report carrying it still fits. No
unacknowledged alert is ever deleted except by an acknowledgement.

**Crash safety**: SQLite in WAL mode with ``synchronous=FULL``: an append that returned is on
disk, also across a kill -9 or a power cut.

**Threads**: every call is one short SQLite transaction (one fsync per append or
acknowledgement, 0.5-2 ms here), so callers run them through the ``BlockingPool``
(``await context.run_blocking(outbox.append, ...)``), never on the event loop. Calls may come
from any pool thread; a lock lets one run at a time on the connection. ``append`` seals outside
that lock (under an append lock of its own), so reads and acknowledgements never wait for a
signature. ``append_sealed`` stores envelopes sealed ahead by the caller under the next numbers
(``next_seq``), several in one transaction: the uplink seals the next alert while the outbox
commits the ones before it, and one fsync covers every one sealed by then.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from actors.durable_database import DatabaseKind, DurableStore, open_durable_database
from guards.config_checks import ConfigError, require_at_least
from guards.user_input import UserInputError

EnvelopeKind = Literal["alert", "health"]
"""What an envelope carries: a match alert, or a health report (counts only, no face data)."""

KINDS: frozenset[str] = frozenset(get_args(EnvelopeKind))

MAX_PAGE = 256
"""``pending`` returns at most this many envelopes per call (about 6.4 MB of 25 KB alerts)."""
MAX_ADVANCE_SEQ = 2**62
"""The highest number ``advance_past`` (and a clock far in the future) may move numbering to:
it leaves 2**62 appends before SQLite's largest INTEGER (2**63 - 1). The clock's microseconds
reach it in the year 148,000."""

_APPLICATION_ID = 0x4C464F42  # "LFOB" in the SQLite header: this file is an lfr outbox
_SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE envelopes (
    seq INTEGER PRIMARY KEY,           -- per-unit sequence number, in the signed header
    kind TEXT NOT NULL CHECK (kind IN ('alert', 'health')),
    appended_at REAL NOT NULL,         -- seconds since epoch (unit clock)
    size INTEGER NOT NULL,             -- length(sealed), bytes
    sealed BLOB NOT NULL               -- the envelope as sealed; nothing here opens it
);
CREATE INDEX envelopes_by_kind ON envelopes (kind, seq);
-- One row. Invariant: last_seq >= every seq ever stored; the counts and bytes equal the rows
-- of envelopes, kept so by the triggers below.
CREATE TABLE outbox_state (
    only_row INTEGER PRIMARY KEY CHECK (only_row = 1),
    last_seq INTEGER NOT NULL,
    alerts INTEGER NOT NULL, alert_bytes INTEGER NOT NULL,
    health INTEGER NOT NULL, health_bytes INTEGER NOT NULL
);
INSERT INTO outbox_state VALUES (1, {last_seq}, 0, 0, 0, 0);
CREATE TRIGGER envelope_added AFTER INSERT ON envelopes BEGIN
    UPDATE outbox_state SET
        alerts = alerts + (NEW.kind = 'alert'),
        alert_bytes = alert_bytes + (NEW.kind = 'alert') * NEW.size,
        health = health + (NEW.kind = 'health'),
        health_bytes = health_bytes + (NEW.kind = 'health') * NEW.size;
END;
CREATE TRIGGER envelope_removed AFTER DELETE ON envelopes BEGIN
    UPDATE outbox_state SET
        alerts = alerts - (OLD.kind = 'alert'),
        alert_bytes = alert_bytes - (OLD.kind = 'alert') * OLD.size,
        health = health - (OLD.kind = 'health'),
        health_bytes = health_bytes - (OLD.kind = 'health') * OLD.size;
END;
"""


def first_sequence_number(now_s: float) -> int:
    """The first number of a new outbox file made at ``now_s`` (s since the epoch): the clock in
    microseconds, at least 1 and at most ``MAX_ADVANCE_SEQ`` (module docstring)."""
    return min(MAX_ADVANCE_SEQ, max(1, int(now_s * 1_000_000)))


def _outbox_kind(first_seq: int) -> DatabaseKind:
    """The outbox's schema; a new file's state row says ``first_seq - 1`` was the last number
    assigned, so its first append gets ``first_seq`` (an int: nothing else enters the SQL)."""
    schema = _SCHEMA.replace("{last_seq}", str(int(first_seq) - 1))
    return DatabaseKind("outbox", _APPLICATION_ID, schema, _SCHEMA_VERSION)


class OutboxFileError(UserInputError):
    """The outbox path cannot hold an outbox: missing folder, not a regular file, not writable,
    not an SQLite database or another program's database. The text names the file."""


class OutboxFull(RuntimeError):
    """Alerts fill their share of the outbox: this alert was not stored. Keep it, raise the
    health alarm, retry once the van has acknowledged some."""


class EnvelopeTooLarge(ValueError):
    """The envelope is larger than the outbox could ever hold for its kind."""


class SequenceMoved(RuntimeError):
    """Envelopes sealed ahead (``append_sealed``) are not numbered from the outbox's next
    number on: nothing was stored; seal them again with the numbers it assigns now."""


@dataclass(frozen=True, slots=True)
class OutboxConfig:
    """Bounds of the outbox. Defaults: about 10,000 alerts of ~25 KB (a 20 KB crop, 1.1 KB of
    HPKE and 3.3 KB of ML-DSA signature), hours of a lost link at alert rates."""

    max_envelopes: int = 10_000
    """Envelopes held at most, alerts and health reports together."""
    max_bytes: int = 256 * 1024 * 1024
    """Bytes of sealed envelopes held at most (the file is somewhat larger: SQLite pages)."""
    health_reserve_envelopes: int = 64
    """Of ``max_envelopes``, this many are never used by alerts, so health reports (the alarm
    that the outbox is full) always fit: 64 is 5 minutes of reports every 5 s."""
    health_reserve_bytes: int = 1024 * 1024
    """Of ``max_bytes``, this many bytes are never used by alerts (see above)."""

    def __post_init__(self) -> None:
        require_at_least("OutboxConfig.max_envelopes", self.max_envelopes, 2)
        require_at_least("OutboxConfig.max_bytes", self.max_bytes, 2)
        require_at_least("OutboxConfig.health_reserve_envelopes", self.health_reserve_envelopes, 1)
        require_at_least("OutboxConfig.health_reserve_bytes", self.health_reserve_bytes, 1)
        if self.health_reserve_envelopes >= self.max_envelopes:
            raise ConfigError("OutboxConfig.health_reserve_envelopes "
                              f"({self.health_reserve_envelopes}) must be below "
                              f"OutboxConfig.max_envelopes ({self.max_envelopes})")
        if self.health_reserve_bytes >= self.max_bytes:
            raise ConfigError(f"OutboxConfig.health_reserve_bytes ({self.health_reserve_bytes}) "
                              f"must be below OutboxConfig.max_bytes ({self.max_bytes})")


@dataclass(frozen=True, slots=True)
class PendingEnvelope:
    """An envelope the van has not acknowledged yet."""

    seq: int
    kind: EnvelopeKind
    sealed: bytes


@dataclass(frozen=True, slots=True)
class OutboxStatistics:
    """A snapshot of the outbox, for the unit's health report."""

    depth: int
    """Envelopes waiting for the van's acknowledgement (alerts + health)."""
    alerts: int
    """Of ``depth``, alerts."""
    health: int
    """Of ``depth``, health reports."""
    sealed_bytes: int
    """Bytes of the envelopes waiting."""
    oldest_age_s: float | None
    """Seconds since the oldest waiting envelope was appended; None when empty."""
    last_seq: int
    """The last sequence number assigned (before the first append of a new file: its first
    number minus one)."""
    appended: int
    """Envelopes appended since this ``Outbox`` was opened."""
    acknowledged: int
    """Envelopes deleted by acknowledgements since opened."""
    dropped_health: int
    """Unacknowledged health reports deleted to make room since opened (never alerts)."""
    refused: int
    """Appends refused (``OutboxFull``, ``EnvelopeTooLarge``) since opened."""


@dataclass(slots=True)
class _State:
    last_seq: int
    alerts: int
    alert_bytes: int
    health: int
    health_bytes: int




class Outbox(DurableStore):
    """The unit's outbox; open with ``Outbox.open(path, config)``, close with ``close()``."""

    def __init__(self, connection: sqlite3.Connection, path: Path, config: OutboxConfig,
                 clock: Callable[[], float]) -> None:
        self.path = path
        self.config = config
        super().__init__(connection)
        self._clock = clock
        # Held by append (across sealing) and advance_past: the only writers of last_seq run one
        # at a time. Lock order: _append_lock, then _lock.
        self._append_lock = threading.Lock()
        self._appended = 0
        self._acknowledged = 0
        self._dropped_health = 0
        self._refused = 0

    @classmethod
    def open(cls, path: Path | str, config: OutboxConfig | None = None, *,
             clock: Callable[[], float] = time.time) -> Outbox:
        """Open the outbox at ``path``, creating it if absent. ``clock`` gives seconds since
        epoch (append times survive restarts; a new file numbers from ``clock()`` in
        microseconds, see the module docstring). Raises ``OutboxFileError`` naming the file."""
        path = Path(path)
        # Used only if the file is new: the schema and this state row are one transaction.
        kind = _outbox_kind(first_sequence_number(clock()))
        db = open_durable_database(path, kind, OutboxFileError)
        return cls(db, path, config or OutboxConfig(), clock)




    def append(self, kind: EnvelopeKind, seal: Callable[[int], bytes]) -> int:
        """Store one envelope and return its sequence number.

        ``seal(seq)`` makes the sealed envelope whose header carries ``seq``; the number and the
        row are stored together or not at all. Raises ``OutboxFull`` when alerts fill their
        share, ``EnvelopeTooLarge`` for an envelope that could never fit; either way nothing is
        stored and the number is not used.

        ``seal`` runs outside the connection's lock (a signature takes milliseconds; reads and
        acknowledgements go on meanwhile) but inside the append lock: appends, and
        ``advance_past``, run one at a time, so the number read before sealing is still the
        next one when the row is written.
        """
        if kind not in KINDS:
            raise ValueError(f"unknown envelope kind {kind!r}; expected one of {sorted(KINDS)}")
        with self._append_lock:
            with self._lock:
                seq = _read_state(self._db).last_seq + 1
            sealed = bytes(seal(seq))
            with self._transaction() as db:
                state = _read_state(db)
                # invariant: only appends and advance_past change last_seq, both under the
                # append lock held here
                if state.last_seq + 1 != seq:
                    raise RuntimeError(f"outbox: the last number moved from {seq - 1} to "
                                       f"{state.last_seq} during an append")
                try:
                    dropped = self._make_room(db, state, kind, len(sealed))
                except (OutboxFull, EnvelopeTooLarge):
                    self._refused += 1
                    raise
                db.execute("INSERT INTO envelopes VALUES (?, ?, ?, ?, ?)",
                           (seq, kind, self._clock(), len(sealed), sealed))
                db.execute("UPDATE outbox_state SET last_seq = ?", (seq,))
            self._appended += 1
            self._dropped_health += dropped
        return seq

    def next_seq(self) -> int:
        """The number the next append is given (for ``append_sealed``)."""
        with self._lock:
            return _read_state(self._db).last_seq + 1

    def append_sealed(self, envelopes: Sequence[PendingEnvelope]) -> None:
        """Store envelopes sealed ahead, all in one transaction (one fsync), or none of them.

        The first must carry ``next_seq()`` and each following one the number after the one
        before: whoever seals ahead keeps the numbers (the unit's uplink seals the next alert
        while the outbox commits the ones before it, and stores every one sealed by then at
        once). Each is checked like an ``append`` of its own, in order, health reports giving
        way as there. Raises, storing nothing: ``SequenceMoved`` when the numbers are not
        those; ``OutboxFull`` or ``EnvelopeTooLarge`` for the first that does not fit. Those
        two are not counted in ``refused``: the caller appends the envelopes again one by one
        (``append``: sealed again, under the numbers it assigns then), which counts them.
        """
        if any(envelope.kind not in KINDS for envelope in envelopes):
            raise ValueError(f"unknown envelope kind; expected one of {sorted(KINDS)}")
        if not envelopes:
            return
        dropped = 0
        with self._append_lock, self._transaction() as db:
            # invariant: last_seq only changes under the append lock held here
            expected = _read_state(db).last_seq + 1
            for envelope in envelopes:
                if envelope.seq != expected:
                    raise SequenceMoved(f"outbox: an envelope sealed ahead as {envelope.seq} "
                                        f"where the next number is {expected}")
                size = len(envelope.sealed)
                dropped += self._make_room(db, _read_state(db), envelope.kind, size)
                db.execute("INSERT INTO envelopes VALUES (?, ?, ?, ?, ?)",
                           (envelope.seq, envelope.kind, self._clock(), size, envelope.sealed))
                expected += 1
            db.execute("UPDATE outbox_state SET last_seq = ?", (expected - 1,))
        self._appended += len(envelopes)
        self._dropped_health += dropped

    def _make_room(self, db: sqlite3.Connection, state: _State, kind: str, size: int) -> int:
        """Refuse an alert beyond the alerts' share; delete the oldest health reports until
        the new envelope fits both bounds. Returns how many were deleted (counted by the
        caller once its transaction committed)."""
        config = self.config
        if kind == "alert":
            envelopes_for_alerts = config.max_envelopes - config.health_reserve_envelopes
            bytes_for_alerts = config.max_bytes - config.health_reserve_bytes
            if size > bytes_for_alerts:
                raise EnvelopeTooLarge(f"alert envelope of {size} bytes: the outbox holds at "
                                       f"most {bytes_for_alerts} bytes of alerts")
            if state.alerts + 1 > envelopes_for_alerts or \
                    state.alert_bytes + size > bytes_for_alerts:
                raise OutboxFull(f"outbox full: {state.alerts} alerts, {state.alert_bytes} "
                                 "bytes waiting for the van")
        elif size > config.max_bytes:
            raise EnvelopeTooLarge(f"health envelope of {size} bytes: the outbox holds at most "
                                   f"{config.max_bytes} bytes")
        elif state.alert_bytes + size > config.max_bytes:
            raise OutboxFull(f"outbox full: {state.alerts} alerts leave no room for a health "
                             f"report of {size} bytes")
        excess_envelopes = state.alerts + state.health + 1 - config.max_envelopes
        excess_bytes = state.alert_bytes + state.health_bytes + size - config.max_bytes
        if excess_envelopes > 0 or excess_bytes > 0:
            return self._drop_oldest_health(db, excess_envelopes, excess_bytes)
        return 0

    @staticmethod
    def _drop_oldest_health(db: sqlite3.Connection, envelopes: int, size: int) -> int:
        """Delete the oldest health reports: at least ``envelopes`` of them and ``size`` bytes;
        how many. The checks in ``_make_room`` guarantee that deleting them all would be
        enough."""
        last_dropped = 0
        dropped = 0
        for seq, row_size in db.execute(
                "SELECT seq, size FROM envelopes WHERE kind = 'health' ORDER BY seq"):
            if envelopes <= 0 and size <= 0:
                break
            last_dropped = seq
            dropped += 1
            envelopes -= 1
            size -= row_size
        db.execute("DELETE FROM envelopes WHERE kind = 'health' AND seq <= ?", (last_dropped,))
        return dropped

    def pending(self, after_seq: int = 0, limit: int = MAX_PAGE) -> list[PendingEnvelope]:
        """Up to ``limit`` (at most ``MAX_PAGE``) unacknowledged envelopes with a sequence number
        above ``after_seq``, in sequence order."""
        if not 1 <= limit <= MAX_PAGE:
            raise ValueError(f"limit must lie in [1, {MAX_PAGE}], got {limit!r}")
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, kind, sealed FROM envelopes WHERE seq > ? ORDER BY seq LIMIT ?",
                (after_seq, limit)).fetchall()
        return [PendingEnvelope(seq, kind, sealed) for seq, kind, sealed in rows]

    def advance_past(self, seq: int) -> int:
        """Make sure the next number assigned is above ``seq`` (nothing changes when it already
        is); returns the last number assigned now. For a van whose mark is above what this
        outbox ever assigned (``Resume``: a new file on an old identity). ``ValueError`` for a
        number outside 0..``MAX_ADVANCE_SEQ``."""
        if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq <= MAX_ADVANCE_SEQ:
            raise ValueError(f"cannot number above {seq!r}: expected an integer in "
                             f"[0, {MAX_ADVANCE_SEQ}]")
        with self._append_lock, self._transaction() as db:
            last_seq = _read_state(db).last_seq
            if seq > last_seq:
                db.execute("UPDATE outbox_state SET last_seq = ?", (seq,))
                last_seq = seq
        return last_seq

    def alert_seqs(self, up_to_seq: int, also: Sequence[int] = (), *,
                   limit: int = MAX_PAGE) -> list[int]:
        """The sequence numbers of alerts waiting at or below ``up_to_seq`` or among ``also``,
        ascending, at most ``limit`` (what an acknowledgement is about to delete, for the
        audit trail)."""
        with self._transaction() as db:
            rows = db.execute("SELECT seq FROM envelopes WHERE kind = 'alert' AND seq <= ? "
                              "ORDER BY seq LIMIT ?", (up_to_seq, limit)).fetchall()
            seqs = [int(row[0]) for row in rows]
            for seq in also:
                if len(seqs) >= limit:
                    break
                if seq > up_to_seq and db.execute(
                        "SELECT 1 FROM envelopes WHERE kind = 'alert' AND seq = ?",
                        (seq,)).fetchone() is not None:
                    seqs.append(seq)
        return sorted(seqs)

    def acknowledge(self, up_to_seq: int) -> int:
        """The van has stored every envelope up to ``up_to_seq`` (a cumulative ack): delete
        them. Returns how many were deleted."""
        return self._delete("DELETE FROM envelopes WHERE seq <= ?", up_to_seq)

    def acknowledge_one(self, seq: int) -> bool:
        """The van has stored the envelope ``seq`` (a selective ack, for an envelope above a
        gap): delete it. Returns whether it was still here."""
        return self._delete("DELETE FROM envelopes WHERE seq = ?", seq) == 1

    def _delete(self, statement: str, seq: int) -> int:
        with self._transaction() as db:
            deleted = db.execute(statement, (seq,)).rowcount
        self._acknowledged += deleted
        return deleted

    def first_pending(self) -> int:
        """The lowest sequence number still waiting, or the next to be assigned when empty.
        Every number below it was acknowledged or dropped and will never be sent again: the
        uplink tells the van, so the van's cumulative ack can pass dropped health reports."""
        with self._lock:
            row = self._db.execute("SELECT min(seq), (SELECT last_seq FROM outbox_state) "
                                   "FROM envelopes").fetchone()
        lowest, last_seq = row
        return int(lowest) if lowest is not None else int(last_seq) + 1

    def depth(self) -> int:
        """Envelopes waiting for the van's acknowledgement."""
        with self._lock:
            state = _read_state(self._db)
        return state.alerts + state.health

    def statistics(self) -> OutboxStatistics:
        """Depth, age and bytes of what waits, and what happened since opened."""
        with self._lock:
            state = _read_state(self._db)
            oldest = self._db.execute(
                "SELECT appended_at FROM envelopes ORDER BY seq LIMIT 1").fetchone()
        return OutboxStatistics(
            depth=state.alerts + state.health, alerts=state.alerts, health=state.health,
            sealed_bytes=state.alert_bytes + state.health_bytes,
            oldest_age_s=None if oldest is None else max(0.0, self._clock() - oldest[0]),
            last_seq=state.last_seq, appended=self._appended, acknowledged=self._acknowledged,
            dropped_health=self._dropped_health, refused=self._refused)




def _read_state(db: sqlite3.Connection) -> _State:
    row = db.execute("SELECT last_seq, alerts, alert_bytes, health, health_bytes "
                     "FROM outbox_state").fetchone()
    return _State(*row)


