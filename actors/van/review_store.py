"""``ReviewStore``: the officers' decisions on alerts, every one kept, in the van's state folder.

An officer looks at an alert (the live crop beside the subject's reference photo) and decides:
``confirmed`` (the officer engages), ``dismissed`` (a false alert) or ``cannot_tell``. Each
decision is one row of an **append-only** history (no row is ever changed or deleted: triggers
refuse it), keyed by the alert's (unit, sequence number), with an optional note, who decided
(the console account's name and role), when, and the deployment active then ("" if none). A
later decision on the same alert supersedes the earlier one for display and for the figures
(a supervisor may correct an operator), and both stay in the history.

**The figures.** ``counts(deployment)`` counts the alerts *first* decided while ``deployment``
was active, each by its *latest* decision: a correction made after the deployment ended
changes that deployment's figures and counts nowhere else, so an alert is counted once. (The
deployment report, ``console.report``, counts instead each alert the van received during the
deployment by its latest decision, with ``latest_many``, so that its decided and undecided
alerts always add up to its alerts.)

**Files and crash safety** as the event store (``actors.durable_database``): ``reviews.sqlite``
in the van's state folder, created 0600, WAL with ``synchronous=FULL`` (a ``record`` that
returned is on disk), an ``application_id`` of its own (another program's database is refused,
naming the file). Every call is one short transaction under a lock, so callers run them on the
worker pool from any thread. Every read is bounded: ``decisions`` returns at most
``MAX_HISTORY`` rows (and an alert holds at most that many), ``latest_many`` takes at most
``MAX_KEYS`` alerts, ``counts`` returns three numbers.

Nothing here is biometric: no crop, no embedding, no photo; the note is plain text that the
console asks to hold no names of people. Refusals are ``ReviewError`` (a ``UserInputError``)
whose ``field`` names the culprit, so the console can answer 400 naming it.
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, get_args

from actors.durable_database import DatabaseKind, DurableStore, open_durable_database
from guards.log_text import printable
from guards.user_input import UserInputError
from secure.node_keys import NodeIdError, check_node_id

DEFAULT_FILE_NAME: Final = "reviews.sqlite"
"""The store's file name in the van's state folder (beside ``events.sqlite``)."""

DecisionKind = Literal["confirmed", "dismissed", "cannot_tell"]
"""What an officer decided: engage, a false alert, or cannot tell from the pictures."""
DECISION_KINDS: Final[tuple[DecisionKind, ...]] = get_args(DecisionKind)
"""Every ``DecisionKind``, in the order the console shows them."""
REVIEWER_ROLES: Final = ("operator", "supervisor")
"""Who may decide: the console's roles (``console.users.Role`` values)."""
MAX_NOTE_CHARS: Final = 500
"""Longest note: printable characters only (no control characters, no line breaks)."""
MAX_OPERATOR_CHARS: Final = 64
"""Longest operator name (a console account name)."""
MAX_HISTORY: Final = 100
"""Decisions one alert may hold; one more is refused (nobody corrects an alert 100 times)."""
MAX_KEYS: Final = 200
"""Alerts one ``latest_many`` call asks about (a page of the console shows at most 50)."""
MAX_SEQ: Final = 2**63 - 1
"""Sequence numbers are 1..2**63-1, as in the event store (SQLite's INTEGER)."""

_APPLICATION_ID = 0x4C465256  # "LFRV" in the SQLite header: this file is an lfr review store
_SCHEMA_VERSION = 1

_SCHEMA = f"""
CREATE TABLE decisions (
    number INTEGER PRIMARY KEY,           -- order of recording: the highest is the latest
    unit TEXT NOT NULL,                   -- the alert's unit (a node id)
    seq INTEGER NOT NULL CHECK (seq >= 1),  -- the alert's sequence number at that unit
    decision TEXT NOT NULL CHECK (decision IN ('confirmed', 'dismissed', 'cannot_tell')),
    note TEXT NOT NULL CHECK (length(note) <= {MAX_NOTE_CHARS}),  -- '' when none
    operator TEXT NOT NULL CHECK (length(operator) BETWEEN 1 AND {MAX_OPERATOR_CHARS}),
    role TEXT NOT NULL CHECK (role IN ('operator', 'supervisor')),
    decided_at REAL NOT NULL,             -- seconds since epoch, the van's clock
    deployment TEXT NOT NULL              -- the deployment active then; '' when none was
);
-- Invariant: append-only. No decision is changed or deleted; a later one supersedes it.
CREATE TRIGGER decisions_never_change BEFORE UPDATE ON decisions
    BEGIN SELECT RAISE(ABORT, 'decisions are append-only'); END;
CREATE TRIGGER decisions_never_go BEFORE DELETE ON decisions
    BEGIN SELECT RAISE(ABORT, 'decisions are append-only'); END;
CREATE INDEX decisions_by_alert ON decisions (unit, seq, number);
CREATE TABLE alerts (
    unit TEXT NOT NULL,
    seq INTEGER NOT NULL,
    deployment TEXT NOT NULL,             -- of the alert's first decision (counted there)
    latest INTEGER NOT NULL REFERENCES decisions (number),
    decisions INTEGER NOT NULL CHECK (decisions BETWEEN 1 AND {MAX_HISTORY}),
    PRIMARY KEY (unit, seq)
);
-- Invariants (kept by record, in the same transaction as the decision it adds): one row per
-- decided alert; latest is the highest number among its decisions; decisions is how many it
-- has; deployment is the deployment of the lowest number and never changes.
CREATE INDEX alerts_by_deployment ON alerts (deployment);
"""
_REVIEW_STORE = DatabaseKind("review store", _APPLICATION_ID, _SCHEMA, _SCHEMA_VERSION)

AlertKey = tuple[str, int]
"""An alert's (unit id, sequence number)."""


class ReviewStoreFileError(UserInputError):
    """The path cannot hold a review store: missing folder, not a regular file, not writable,
    not an SQLite database or another program's database. The text names the file."""


class ReviewError(UserInputError):
    """A decision or a query refused; ``field`` names the culprit."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        """``unit``, ``seq``, ``decision``, ``note``, ``operator``, ``role``, ``deployment``
        or ``keys``."""
        super().__init__(f"{field}: {problem}")


@dataclass(frozen=True, slots=True)
class Decision:
    """One officer's decision on one alert, as recorded."""

    number: int
    """Order of recording in this store (the higher, the later)."""
    unit: str
    """The alert's unit (a node id)."""
    seq: int
    """The alert's sequence number at that unit."""
    decision: DecisionKind
    """What the officer decided."""
    note: str
    """The officer's note: 0-``MAX_NOTE_CHARS`` printable characters, "" for none."""
    operator: str
    """The console account that decided."""
    role: str
    """That account's role then (``REVIEWER_ROLES``)."""
    decided_at: float
    """When, seconds since epoch (the van's clock)."""
    deployment_id: str
    """The deployment active then; "" when none was."""


@dataclass(frozen=True, slots=True)
class DecisionCounts:
    """The alerts first decided in one deployment, by their latest decision."""

    deployment_id: str
    """The deployment counted ("" counts alerts decided while none was active)."""
    confirmed: int
    """Alerts confirmed: the officer engaged."""
    dismissed: int
    """Alerts dismissed as false alerts."""
    cannot_tell: int
    """Alerts the officer could not decide from the pictures."""

    @property
    def decided(self) -> int:
        """Alerts with a decision, whatever it is."""
        return self.confirmed + self.dismissed + self.cannot_tell


def check_decision(decision: object) -> DecisionKind:
    """``decision`` if it is a ``DecisionKind``; else ``ReviewError`` naming ``decision``."""
    if not isinstance(decision, str) or decision not in DECISION_KINDS:
        raise ReviewError("decision", f"must be one of {', '.join(DECISION_KINDS)}, got "
                                      f"{printable(repr(decision), max_chars=40)}")
    return decision


def check_note(note: object) -> str:
    """``note`` if it is text of at most ``MAX_NOTE_CHARS`` printable characters (control
    characters and line breaks refused); else ``ReviewError`` naming ``note``."""
    if not isinstance(note, str):
        raise ReviewError("note", f"must be text, got {type(note).__name__}")
    if len(note) > MAX_NOTE_CHARS:
        raise ReviewError("note", f"has {len(note)} characters; at most {MAX_NOTE_CHARS}")
    if not note.isprintable():  # controls, line breaks, bidi overrides, surrogates
        raise ReviewError("note", "holds control characters or line breaks: "
                                  f"{printable(note, max_chars=60)!r}")
    return note


def check_alert_key(unit: object, seq: object) -> AlertKey:
    """(``unit``, ``seq``) if ``unit`` is a node id and ``seq`` an integer in 1..2**63-1;
    else ``ReviewError`` naming ``unit`` or ``seq``."""
    if not isinstance(unit, str):
        raise ReviewError("unit", f"must be text, got {type(unit).__name__}")
    try:
        check_node_id(unit, "unit id")
    except NodeIdError as exc:
        raise ReviewError("unit", str(exc)) from None
    if isinstance(seq, bool) or not isinstance(seq, int) or not 1 <= seq <= MAX_SEQ:
        raise ReviewError("seq", f"must be an integer in 1..2**63-1, got "
                                 f"{printable(repr(seq), max_chars=40)}")
    return unit, seq


def _check_operator(operator: object, role: object) -> None:
    if (not isinstance(operator, str) or not 1 <= len(operator) <= MAX_OPERATOR_CHARS
            or not operator.isprintable()):
        raise ReviewError("operator", f"must be 1-{MAX_OPERATOR_CHARS} printable characters, "
                                      f"got {printable(repr(operator), max_chars=80)}")
    if role not in REVIEWER_ROLES:
        raise ReviewError("role", f"must be one of {', '.join(REVIEWER_ROLES)}, got "
                                  f"{printable(repr(role), max_chars=40)}")


def _check_deployment(deployment_id: object) -> str:
    if not isinstance(deployment_id, str):
        raise ReviewError("deployment", f"must be text, got {type(deployment_id).__name__}")
    if deployment_id:
        try:
            check_node_id(deployment_id, "deployment id")
        except NodeIdError as exc:
            raise ReviewError("deployment", str(exc)) from None
    return deployment_id


class ReviewStore(DurableStore):
    """The officers' decisions (module docstring); ``ReviewStore.open(state_dir)``, then
    ``close()``."""

    def __init__(self, connection: sqlite3.Connection, path: Path,
                 clock: Callable[[], float]) -> None:
        """Use ``open``."""
        self.path = path
        """The database file."""
        super().__init__(connection)
        self._clock = clock

    @classmethod
    def open(cls, state_dir: Path | str, *, file_name: str = DEFAULT_FILE_NAME,
             clock: Callable[[], float] = time.time) -> ReviewStore:
        """The store ``file_name`` in the van's ``state_dir`` (an existing folder), created if
        absent; ``clock`` gives seconds since epoch for ``decided_at``. Raises
        ``ReviewStoreFileError`` naming the file."""
        path = Path(state_dir) / file_name
        db = open_durable_database(path, _REVIEW_STORE, ReviewStoreFileError)
        return cls(db, path, clock)




    def record(self, unit: str, seq: int, decision: str, *, operator: str, role: str,
               deployment_id: str, note: str = "") -> Decision:
        """Record ``operator``'s (of ``role``) ``decision`` on alert (``unit``, ``seq``), made
        while ``deployment_id`` was active ("" if none), with ``note`` ("" for none); it
        supersedes every earlier decision on the alert. Returns what was recorded (on disk
        when this returns). ``ReviewError`` naming the field for anything malformed, or when
        the alert holds ``MAX_HISTORY`` decisions already. The caller checks the alert
        exists (the event store)."""
        check_alert_key(unit, seq)
        kind = check_decision(decision)
        note = check_note(note)
        _check_operator(operator, role)
        deployment_id = _check_deployment(deployment_id)
        decided_at = float(self._clock())
        if not math.isfinite(decided_at):
            raise ValueError(f"the clock gave {decided_at!r}")  # a bug, not input
        with self._transaction() as db:
            held = db.execute("SELECT decisions FROM alerts WHERE unit = ? AND seq = ?",
                              (unit, seq)).fetchone()
            if held is not None and held[0] >= MAX_HISTORY:
                raise ReviewError("seq", f"alert {printable(unit)}/{seq} holds {held[0]} "
                                         f"decisions already, the most one may hold")
            number = db.execute(
                "INSERT INTO decisions VALUES (NULL, ?, ?, ?, ?, ?, ?, ?, ?)",
                (unit, seq, kind, note, operator, role, decided_at, deployment_id)).lastrowid
            assert number is not None
            db.execute("INSERT INTO alerts VALUES (?, ?, ?, ?, 1) ON CONFLICT (unit, seq) DO "
                       "UPDATE SET latest = excluded.latest, decisions = decisions + 1",
                       (unit, seq, deployment_id, number))
        return Decision(number, unit, seq, kind, note, operator, role, decided_at,
                        deployment_id)

    def decisions(self, unit: str, seq: int, *, limit: int = MAX_HISTORY) -> list[Decision]:
        """Alert (``unit``, ``seq``)'s decisions, the latest first, at most ``limit``
        (1..``MAX_HISTORY``); empty when it has none."""
        check_alert_key(unit, seq)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_HISTORY:
            raise ReviewError("limit", f"must lie in 1..{MAX_HISTORY}, got {limit!r}")
        with self._lock:
            rows = self._db.execute(
                "SELECT number, unit, seq, decision, note, operator, role, decided_at, "
                "deployment FROM decisions WHERE unit = ? AND seq = ? "
                "ORDER BY number DESC LIMIT ?", (unit, seq, limit)).fetchall()
        return [_decision(row) for row in rows]

    def latest(self, unit: str, seq: int) -> Decision | None:
        """Alert (``unit``, ``seq``)'s latest decision, or None if it has none."""
        return self.latest_many([(unit, seq)]).get((unit, seq))

    def latest_many(self, keys: Collection[AlertKey]) -> dict[AlertKey, Decision]:
        """The latest decision of each alert in ``keys`` (at most ``MAX_KEYS``) that has one,
        by (unit, seq); alerts without a decision are absent."""
        if len(keys) > MAX_KEYS:
            raise ReviewError("keys", f"{len(keys)} alerts asked for; at most {MAX_KEYS}")
        wanted = sorted({check_alert_key(unit, seq) for unit, seq in keys})
        if not wanted:
            return {}
        with self._lock:
            # The keys go in as one JSON parameter: [[unit, seq], ...].
            rows = self._db.execute(
                "SELECT d.number, d.unit, d.seq, d.decision, d.note, d.operator, d.role, "
                "d.decided_at, d.deployment FROM json_each(?) k "
                "JOIN alerts a ON a.unit = json_extract(k.value, '$[0]') "
                "AND a.seq = json_extract(k.value, '$[1]') "
                "JOIN decisions d ON d.number = a.latest",
                (json.dumps(wanted),)).fetchall()
        found = (_decision(row) for row in rows)
        return {(decision.unit, decision.seq): decision for decision in found}

    def counts(self, deployment_id: str) -> DecisionCounts:
        """The alerts first decided while ``deployment_id`` was active ("" : while none was),
        each counted by its latest decision (module docstring)."""
        deployment_id = _check_deployment(deployment_id)
        with self._lock:
            rows = self._db.execute(
                "SELECT d.decision, count(*) FROM alerts a JOIN decisions d "
                "ON d.number = a.latest WHERE a.deployment = ? GROUP BY d.decision",
                (deployment_id,)).fetchall()
        by_kind: dict[str, int] = dict(rows)
        return DecisionCounts(deployment_id, by_kind.get("confirmed", 0),
                              by_kind.get("dismissed", 0), by_kind.get("cannot_tell", 0))



def _decision(row: Any) -> Decision:
    number, unit, seq, decision, note, operator, role, decided_at, deployment = row
    return Decision(number, unit, seq, decision, note, operator, role, decided_at, deployment)
