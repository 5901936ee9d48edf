"""``DeploymentStore``: the van's record of deployments, their signed watchlists, the subjects'
reference photos and which unit holds which watchlist (issue 9). One SQLite file in the van's
state folder (``DEFAULT_FILE_NAME``).

**What is stored.**

- Deployments: id, alert threshold, start and end (``ended_at`` NULL while active).
- Per deployment, each signed watchlist the supervisor pushed (the file ``lfr watchlist sign``
  makes, an opaque blob here) beside the manifest facts the caller read from it: version,
  subject count, payload sha256, validity window, when it was pushed, its size.
- Per deployment and subject, the reference photo (a JPEG) the officer compares an alert with.
- Per unit, the latest watchlist state the van knows of (offered, held, refused...).

**Sealed at rest.** Watchlists hold embeddings and photos are faces: both are stored only
HPKE-sealed (``secure.sealing``) to the van's own encryption key, the ``EncryptionKeyPair`` the
store is opened with, and opened again on read; the plaintext is never written. ``info`` binds
each ciphertext to its row: ``WATCHLIST_INFO`` + deployment id + 0x00 + version (8 bytes, big
endian) for a watchlist, ``PHOTO_INFO`` + deployment id + 0x00 + subject id for a photo (ids are
printable, so they hold no 0x00), so a blob copied to another row, deployment or file does not
open (``SealedRowError``). The file remembers the id of the key it was first opened with and
refuses any other key at open, naming both.

**What dies at deployment end, and how.** ``end_deployment`` ends the deployment, sets every
sealed watchlist of it to NULL (the facts rows stay, for the report and the audit) and deletes
its photos, in one transaction. The connection runs with ``PRAGMA secure_delete = ON``, so
SQLite overwrites the freed cells and pages with zeros; after the commit a
``PRAGMA wal_checkpoint(TRUNCATE)`` copies the zeroed pages into the file and empties the WAL,
whose older frames still held the sealed blobs. Afterwards no byte of those blobs is in the
file or its -wal (tested by scanning both). The checkpoint cannot finish while another
connection (another process) reads an old snapshot: ``wipe_wal()`` says whether the WAL is
empty and may be called again.

**Invariants** (commented beside the schema too): at most one active deployment (checked in
the transaction and by a unique partial index); a deployment id is used once; watchlists and
photos are stored only for the active deployment; within a deployment watchlist versions only
grow (a version at or below the highest stored is a rollback and refused); sealed blobs exist
only while their deployment is active.

**Crash safety and reads** as the event store (``actors.durable_database``): WAL,
``synchronous=FULL``, an ``application_id`` of its own (another program's database is refused,
naming the file), every read bounded. Every call is one short transaction under a lock: callers
run them on the worker pool. Sealing and opening run outside the lock. Timestamps (seconds since
epoch) are the caller's ``now``; nothing here reads a clock.

Refusals are ``UserInputError``s: ``DeploymentError`` for the store's rules, ``NodeIdError`` for
a malformed deployment or unit id, ``ThresholdError`` for a threshold outside (0, 1).
"""

from __future__ import annotations

import enum
import json
import math
import re
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from actors.durable_database import DatabaseKind, DurableStore, open_durable_database
from actors.unit.watchlist import MAX_SUBJECT_ID_CHARS, check_threshold
from guards.log_text import printable
from guards.user_input import UserInputError
from secure.key_id import format_key_id
from secure.node_keys import check_node_id
from secure.sealing import EncryptionKeyPair, SealedOpenFailed

DEFAULT_FILE_NAME = "deployments.sqlite"
"""The store's file name in the van's state folder (beside ``events.sqlite``)."""
MAX_SIGNED_BYTES = 64 * 1024 * 1024
"""Largest signed watchlist file stored (64 MiB; 10,000 subjects of both models are ~14 MB)."""
MAX_PHOTO_BYTES = 2 * 1024 * 1024
"""Largest reference photo (a JPEG), 2 MiB."""
MAX_PHOTOS_PER_DEPLOYMENT = 20_000
"""Reference photos one deployment may hold (one per subject)."""
MAX_REASON_CHARS = 500
"""A unit's refusal reason is kept to this many printable characters."""
MAX_PAGE = 1000
"""A list returns at most this many rows."""
JPEG_MAGIC = b"\xff\xd8\xff"
"""Every JPEG file starts with these bytes (SOI marker, then the first segment's marker)."""
WATCHLIST_INFO = b"lfr-edge/stored-watchlist/v1\x00"
"""HPKE ``info`` prefix of a stored watchlist (then deployment id, 0x00, version)."""
PHOTO_INFO = b"lfr-edge/stored-reference-photo/v1\x00"
"""HPKE ``info`` prefix of a stored reference photo (then deployment id, 0x00, subject id)."""

_APPLICATION_ID = 0x4C464453  # "LFDS" in the SQLite header: this file is an lfr deployment store
_SCHEMA_VERSION = 1
_MAX_INT = 2**63 - 1  # SQLite's INTEGER
_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")

_SCHEMA = """
CREATE TABLE van_key (
    only INTEGER PRIMARY KEY CHECK (only = 1),   -- one row
    key_id TEXT NOT NULL                         -- the encryption key every blob is sealed to
);
CREATE TABLE deployments (
    number INTEGER PRIMARY KEY,                  -- order of starting: newest is highest
    id TEXT NOT NULL UNIQUE,                     -- a deployment id is used once
    threshold REAL NOT NULL CHECK (threshold > 0 AND threshold < 1),
    started_at REAL NOT NULL,
    ended_at REAL                                -- NULL while active
);
-- Invariant: at most one active deployment.
CREATE UNIQUE INDEX one_active_deployment ON deployments ((ended_at IS NULL))
    WHERE ended_at IS NULL;
CREATE TABLE watchlists (
    deployment TEXT NOT NULL REFERENCES deployments (id),
    version INTEGER NOT NULL CHECK (version >= 1),
    subject_count INTEGER NOT NULL CHECK (subject_count >= 1),
    payload_sha256 TEXT NOT NULL CHECK (length(payload_sha256) = 64),
    not_before REAL NOT NULL,
    not_after REAL NOT NULL CHECK (not_after > not_before),
    pushed_at REAL NOT NULL,
    signed_bytes INTEGER NOT NULL,               -- size of the signed file
    sealed BLOB,                                 -- HPKE to the van's key; NULL once ended
    PRIMARY KEY (deployment, version)
);
-- Invariants: rows are added only for the active deployment, each with a version above every
-- version of that deployment already stored (no rollback); sealed is NULL exactly when the
-- deployment has ended (end_deployment clears it under secure_delete).
CREATE TABLE reference_photos (
    deployment TEXT NOT NULL REFERENCES deployments (id),
    subject TEXT NOT NULL,
    sealed BLOB NOT NULL,                        -- HPKE to the van's key
    PRIMARY KEY (deployment, subject)
);
-- Invariant: photos exist only for the active deployment (end_deployment deletes them), at most
-- MAX_PHOTOS_PER_DEPLOYMENT of them.
CREATE TABLE assignments (
    number INTEGER PRIMARY KEY,                  -- order of the operators' commands
    deployment TEXT NOT NULL REFERENCES deployments (id),
    action TEXT NOT NULL CHECK (action IN ('push', 'purge')),
    version INTEGER CHECK ((action = 'push') = (version IS NOT NULL)),
    units TEXT NOT NULL,                         -- JSON list of unit ids; [] for all units
    at REAL NOT NULL
);
-- Invariant: rows are added only for the active deployment, a push only of a version stored
-- for it; replayed in order they give which unit must hold which version (WatchlistBoard).
CREATE TABLE unit_watchlists (
    unit TEXT PRIMARY KEY,                       -- the latest state per unit
    deployment TEXT,
    version INTEGER CHECK (version IS NULL OR (version >= 1 AND deployment IS NOT NULL)),
    state TEXT NOT NULL
        CHECK (state IN ('none', 'offered', 'held', 'refused', 'purged', 'expired')),
    reason TEXT CHECK (reason IS NULL OR length(reason) <= 500),
    subjects INTEGER CHECK (subjects IS NULL OR subjects >= 0),
    updated_at REAL NOT NULL
);
"""
_DEPLOYMENT_STORE = DatabaseKind("deployment store", _APPLICATION_ID, _SCHEMA, _SCHEMA_VERSION)


class DeploymentStoreFileError(UserInputError):
    """The path cannot hold a deployment store: missing folder, not a regular file, not
    writable, not an SQLite database, another program's database, or a store sealed to another
    van key. The text names the file."""


class DeploymentError(UserInputError):
    """A call the store's rules refuse (a second active deployment, a reused id, a rollback, an
    oversize or malformed blob...); the text says which rule and names the values."""


class SealedRowError(Exception):
    """A sealed blob in the store does not open with the van's key under its own row's
    deployment and version or subject: the row was altered, or copied from another row or
    file. Not the caller's input: the file was tampered with or damaged."""


class UnitWatchlistState(enum.StrEnum):
    """What a unit holds, as far as the van knows."""

    NONE = "none"
    """The unit holds no watchlist."""
    OFFERED = "offered"
    """The van is sending it a watchlist."""
    HELD = "held"
    """The unit accepted the watchlist and matches against it."""
    REFUSED = "refused"
    """The unit refused the watchlist; ``reason`` says why."""
    PURGED = "purged"
    """The unit dropped the watchlist at the van's order (deployment end)."""
    EXPIRED = "expired"
    """The unit dropped the watchlist by itself at its ``not_after``."""


@dataclass(frozen=True, slots=True)
class Deployment:
    """One deployment: what every alert, decision and watchlist is tied to."""

    id: str
    """1-64 printable characters, used once (``secure.node_keys.check_node_id``)."""
    threshold: float
    """The deployment's alert threshold, a cosine strictly between 0 and 1."""
    started_at: float
    """When it started, seconds since epoch (the van's clock)."""
    ended_at: float | None
    """When it ended; None while it is active."""

    @property
    def active(self) -> bool:
        """True while the deployment has not ended."""
        return self.ended_at is None


@dataclass(frozen=True, slots=True)
class WatchlistFacts:
    """What the van keeps of one signed watchlist for the report and the audit: its manifest
    facts, never its embeddings."""

    deployment_id: str
    """The deployment it was signed for."""
    version: int
    """Its version; versions only grow within a deployment."""
    subject_count: int
    """Subjects it holds."""
    payload_sha256: str
    """sha256 of the payload (64 lowercase hex digits)."""
    not_before: float
    """Start of its validity window, seconds since epoch."""
    not_after: float
    """End of its validity window, seconds since epoch."""
    pushed_at: float
    """When the van stored it, seconds since epoch."""
    signed_bytes: int
    """Size of the signed file."""
    stored: bool
    """Whether the signed file is still held (sealed); False once the deployment ended."""


@dataclass(frozen=True, slots=True)
class StoredWatchlist:
    """The active deployment's current watchlist, opened: what the van pushes to units."""

    facts: WatchlistFacts
    """Its manifest facts."""
    signed: bytes = field(repr=False)
    """The signed watchlist file as pushed (biometric data: never logged, never written
    unsealed; drop it after use)."""


@dataclass(frozen=True, slots=True)
class UnitWatchlist:
    """The latest watchlist state the van knows of for one unit."""

    unit_id: str
    """The unit's node id."""
    deployment_id: str | None
    """The deployment of the watchlist concerned; None if none is."""
    version: int | None
    """Its version; None if unknown or none (never without a deployment)."""
    state: UnitWatchlistState
    """What the unit holds or did."""
    reason: str | None
    """Why (a refusal's reason), at most ``MAX_REASON_CHARS`` printable characters."""
    subjects: int | None
    """Subjects the unit reported holding; None if it did not say."""
    updated_at: float
    """When the van recorded this state, seconds since epoch."""


def watchlist_info(deployment_id: str, version: int) -> bytes:
    """The HPKE ``info`` a stored watchlist is sealed under."""
    return WATCHLIST_INFO + deployment_id.encode() + b"\x00" + version.to_bytes(8, "big")


def photo_info(deployment_id: str, subject: str) -> bytes:
    """The HPKE ``info`` a stored reference photo is sealed under."""
    return PHOTO_INFO + deployment_id.encode() + b"\x00" + subject.encode()


@dataclass(frozen=True, slots=True)
class Assignment:
    """One operator's push or purge, as the board replays it after a van restart."""

    action: str
    """``push`` or ``purge``."""
    version: int | None
    """The version pushed (None for a purge)."""
    units: tuple[str, ...]
    """The units named; empty for all units."""
    at: float
    """When, seconds since epoch."""


MAX_ASSIGNMENTS = 100_000
"""Pushes and purges one deployment records at most."""


class DeploymentStore(DurableStore):
    """The van's deployment store; ``DeploymentStore.open(path, van_key)``, then ``close()``."""

    def __init__(self, connection: sqlite3.Connection, path: Path,
                 van_key: EncryptionKeyPair) -> None:
        self.path = path
        super().__init__(connection)
        self._key = van_key

    @classmethod
    def open(cls, path: Path, van_key: EncryptionKeyPair) -> DeploymentStore:
        """Open the store at ``path``, creating it if absent, with the van's encryption key
        (blobs are sealed to it and opened with it). Raises ``DeploymentStoreFileError``
        naming the file, also when the file's blobs are sealed to another key."""
        path = Path(path)
        db = open_durable_database(path, _DEPLOYMENT_STORE, DeploymentStoreFileError)
        shown = f"deployment store {printable(path)}"
        try:
            _prepare(db, van_key, shown)
        except sqlite3.Error as exc:
            db.close()
            raise DeploymentStoreFileError(f"{shown}: cannot use it: {exc}") from None
        except BaseException:
            db.close()
            raise
        return cls(db, path, van_key)




    # --- deployments --------------------------------------------------------------------------

    def start_deployment(self, deployment_id: str, threshold: float, *,
                         now: float) -> Deployment:
        """Start deployment ``deployment_id`` with alert ``threshold`` at ``now``. Refused
        (``DeploymentError``) while another is active or if the id was used before."""
        check_node_id(deployment_id, what="deployment id")
        check_threshold(threshold, what="deployment threshold")
        _check_time("now", now)
        with self._transaction() as db:
            active = _active(db)
            if active is not None:
                raise DeploymentError(
                    f"deployment {printable(deployment_id)!r} cannot start: deployment "
                    f"{printable(active.id)!r} is active; end it first")
            if db.execute("SELECT 1 FROM deployments WHERE id = ?",
                          (deployment_id,)).fetchone() is not None:
                raise DeploymentError(
                    f"deployment id {printable(deployment_id)!r} was used before; each "
                    "deployment needs an id of its own")
            db.execute("INSERT INTO deployments VALUES (NULL, ?, ?, ?, NULL)",
                       (deployment_id, float(threshold), float(now)))
        return Deployment(deployment_id, float(threshold), float(now), None)

    def end_deployment(self, *, now: float) -> Deployment:
        """End the active deployment at ``now``: in one transaction, mark it ended, drop every
        sealed watchlist of it (keeping their facts) and delete its reference photos; then
        empty the WAL (``wipe_wal``). Refused (``DeploymentError``) when none is active. The
        end is recorded whatever ``now`` is (a clock stepped back must not keep a watchlist)."""
        _check_time("now", now)
        with self._transaction() as db:
            active = _active(db)
            if active is None:
                raise DeploymentError("no deployment is active: there is none to end")
            db.execute("UPDATE deployments SET ended_at = ? WHERE id = ?", (float(now),
                                                                            active.id))
            db.execute("UPDATE watchlists SET sealed = NULL WHERE deployment = ?", (active.id,))
            db.execute("DELETE FROM reference_photos WHERE deployment = ?", (active.id,))
        self.wipe_wal()
        return Deployment(active.id, active.threshold, active.started_at, float(now))

    def wipe_wal(self) -> bool:
        """Checkpoint the WAL into the file and truncate it, so that pages freed (and zeroed)
        by ``end_deployment`` leave no older copy in the -wal file. False when another
        connection reading an older snapshot kept it from finishing: call again later."""
        with self._lock:
            busy: int = self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        return busy == 0

    def active_deployment(self) -> Deployment | None:
        """The active deployment, or None."""
        with self._lock:
            return _active(self._db)

    def deployments(self, limit: int = 100) -> list[Deployment]:
        """Up to ``limit`` (1 to ``MAX_PAGE``) deployments, the last started first."""
        _check_limit(limit)
        with self._lock:
            rows = self._db.execute("SELECT id, threshold, started_at, ended_at FROM deployments "
                                    "ORDER BY number DESC LIMIT ?", (limit,)).fetchall()
        return [Deployment(*row) for row in rows]

    # --- watchlists ---------------------------------------------------------------------------

    def put_watchlist(self, deployment_id: str, version: int, signed: bytes, *,
                      subject_count: int, payload_sha256: str, not_before: float,
                      not_after: float, now: float) -> None:
        """Store signed watchlist ``version`` of the active deployment ``deployment_id``,
        sealed, with its manifest facts. Refused (``DeploymentError``): the deployment is not
        the active one, ``version`` is not above every version of it already stored (a
        rollback), ``signed`` is empty or over ``MAX_SIGNED_BYTES``, or a fact is malformed."""
        check_node_id(deployment_id, what="deployment id")
        _check_count("watchlist version", version, minimum=1)
        _check_count("subject count", subject_count, minimum=1)
        if not isinstance(payload_sha256, str) or not _SHA256_HEX.fullmatch(payload_sha256):
            raise DeploymentError(f"payload sha256 must be 64 hex digits, got "
                                  f"{printable(payload_sha256, max_chars=80)!r}")
        for name, value in (("not_before", not_before), ("not_after", not_after),
                            ("now", now)):
            _check_time(name, value)
        if not not_before < not_after:
            raise DeploymentError(f"watchlist validity window is empty: not_after "
                                  f"{not_after} is not after not_before {not_before}")
        signed = _check_blob("signed watchlist", signed, MAX_SIGNED_BYTES)
        sealed = self._key.public_key.seal(signed, watchlist_info(deployment_id, version))
        with self._transaction() as db:
            _require_active(db, deployment_id, "a watchlist")
            (highest,) = db.execute("SELECT max(version) FROM watchlists WHERE deployment = ?",
                                    (deployment_id,)).fetchone()
            if highest is not None and version <= highest:
                raise DeploymentError(
                    f"watchlist version {version} of deployment {printable(deployment_id)!r} "
                    f"refused: version {highest} is stored already and versions only grow "
                    "(a lower or equal version is a rollback)")
            db.execute("INSERT INTO watchlists VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (deployment_id, version, subject_count, payload_sha256.lower(),
                        float(not_before), float(not_after), float(now), len(signed), sealed))

    def current_watchlist(self) -> StoredWatchlist | None:
        """The active deployment's highest watchlist version, opened; None when no deployment
        is active or none was stored for it. ``SealedRowError`` if its blob does not open."""
        with self._lock:
            row = self._db.execute(
                "SELECT deployment, version, subject_count, payload_sha256, not_before, "
                "not_after, pushed_at, signed_bytes, sealed IS NOT NULL, sealed FROM watchlists "
                "WHERE deployment = (SELECT id FROM deployments WHERE ended_at IS NULL) "
                "ORDER BY version DESC LIMIT 1").fetchone()
        if row is None:
            return None
        facts = _facts(row[:-1])
        signed = self._open(row[-1], watchlist_info(facts.deployment_id, facts.version),
                            f"watchlist version {facts.version} of deployment "
                            f"{printable(facts.deployment_id)!r}")
        return StoredWatchlist(facts, signed)

    def watchlist(self, deployment_id: str, version: int) -> StoredWatchlist | None:
        """Version ``version`` of the active deployment ``deployment_id``, opened; None when
        that is not the active deployment or the version was not stored.
        ``SealedRowError`` if its blob does not open."""
        with self._lock:
            row = self._db.execute(
                "SELECT deployment, version, subject_count, payload_sha256, not_before, "
                "not_after, pushed_at, signed_bytes, sealed IS NOT NULL, sealed FROM watchlists "
                "WHERE deployment = (SELECT id FROM deployments WHERE ended_at IS NULL) "
                "AND deployment = ? AND version = ?", (deployment_id, version)).fetchone()
        if row is None or row[-1] is None:
            return None
        facts = _facts(row[:-1])
        signed = self._open(row[-1], watchlist_info(facts.deployment_id, facts.version),
                            f"watchlist version {facts.version} of deployment "
                            f"{printable(facts.deployment_id)!r}")
        return StoredWatchlist(facts, signed)

    def record_assignment(self, deployment_id: str, *, action: str, version: int | None,
                          units: tuple[str, ...], now: float) -> None:
        """Record a push (of a stored ``version``) or a purge for ``units`` (empty: all) in the
        active deployment ``deployment_id``; ``DeploymentError`` otherwise."""
        _check_time("now", now)
        if action not in ("push", "purge") or (action == "push") != (version is not None):
            raise DeploymentError(f"an assignment is a push with a version or a purge without "
                                  f"one, not {printable(action)!r} with {version!r}")
        for unit in units:
            check_node_id(unit, "unit id")
        with self._transaction() as db:
            _require_active(db, deployment_id, "an assignment")
            if version is not None and db.execute(
                    "SELECT 1 FROM watchlists WHERE deployment = ? AND version = ?",
                    (deployment_id, version)).fetchone() is None:
                raise DeploymentError(f"version {version} of deployment "
                                      f"{printable(deployment_id)!r} is not stored")
            (count,) = db.execute("SELECT count(*) FROM assignments WHERE deployment = ?",
                                  (deployment_id,)).fetchone()
            if count >= MAX_ASSIGNMENTS:
                raise DeploymentError(f"deployment {printable(deployment_id)!r} has "
                                      f"{MAX_ASSIGNMENTS} pushes and purges already")
            db.execute("INSERT INTO assignments (deployment, action, version, units, at) "
                       "VALUES (?, ?, ?, ?, ?)",
                       (deployment_id, action, version, json.dumps(list(units)), float(now)))

    def assignments(self, deployment_id: str) -> list[Assignment]:
        """The pushes and purges of ``deployment_id``, oldest first (at most
        ``MAX_ASSIGNMENTS``)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT action, version, units, at FROM assignments WHERE deployment = ? "
                "ORDER BY number LIMIT ?", (deployment_id, MAX_ASSIGNMENTS)).fetchall()
        return [Assignment(action, version, tuple(json.loads(units)), at)
                for action, version, units, at in rows]

    def watchlist_facts(self, deployment_id: str, *, before_version: int | None = None,
                        limit: int = 100) -> list[WatchlistFacts]:
        """Up to ``limit`` (1 to ``MAX_PAGE``) watchlists of ``deployment_id``, highest version
        first, without their blobs; the next page starts ``before_version`` = the last one's
        ``version``. Empty for an unknown deployment."""
        check_node_id(deployment_id, what="deployment id")
        _check_limit(limit)
        with self._lock:
            rows = self._db.execute(
                "SELECT deployment, version, subject_count, payload_sha256, not_before, "
                "not_after, pushed_at, signed_bytes, sealed IS NOT NULL FROM watchlists "
                "WHERE deployment = ? AND version < ? "
                "ORDER BY version DESC LIMIT ?",
                (deployment_id, _MAX_INT if before_version is None else before_version,
                 limit)).fetchall()
        return [_facts(row) for row in rows]

    # --- reference photos ---------------------------------------------------------------------

    def put_reference_photo(self, deployment_id: str, subject: str, jpeg: bytes) -> None:
        """Store (or replace) ``subject``'s reference photo for the active deployment
        ``deployment_id``, sealed. Refused (``DeploymentError``): the deployment is not the
        active one, the subject id is malformed, the bytes are not a JPEG, empty or over
        ``MAX_PHOTO_BYTES``, or the deployment holds ``MAX_PHOTOS_PER_DEPLOYMENT`` already."""
        check_node_id(deployment_id, what="deployment id")
        _check_subject(subject)
        jpeg = _check_blob("reference photo", jpeg, MAX_PHOTO_BYTES)
        if not jpeg.startswith(JPEG_MAGIC):
            raise DeploymentError(f"reference photo of {printable(subject)!r} is not a JPEG "
                                  "(it does not start with FF D8 FF)")
        sealed = self._key.public_key.seal(jpeg, photo_info(deployment_id, subject))
        with self._transaction() as db:
            _require_active(db, deployment_id, "a reference photo")
            (held,) = db.execute("SELECT count(*) FROM reference_photos WHERE deployment = ?",
                                 (deployment_id,)).fetchone()
            replaces = db.execute(
                "SELECT 1 FROM reference_photos WHERE deployment = ? AND subject = ?",
                (deployment_id, subject)).fetchone() is not None
            if held >= MAX_PHOTOS_PER_DEPLOYMENT and not replaces:
                raise DeploymentError(
                    f"deployment {printable(deployment_id)!r} holds {held} reference photos, "
                    f"the most one may hold ({MAX_PHOTOS_PER_DEPLOYMENT})")
            db.execute("INSERT INTO reference_photos VALUES (?, ?, ?) ON CONFLICT "
                       "(deployment, subject) DO UPDATE SET sealed = excluded.sealed",
                       (deployment_id, subject, sealed))

    def reference_photo(self, deployment_id: str, subject: str) -> bytes | None:
        """``subject``'s reference photo in ``deployment_id``, opened; None if there is none
        (also once the deployment ended). ``SealedRowError`` if its blob does not open."""
        check_node_id(deployment_id, what="deployment id")
        _check_subject(subject)
        with self._lock:
            row = self._db.execute(
                "SELECT sealed FROM reference_photos WHERE deployment = ? AND subject = ?",
                (deployment_id, subject)).fetchone()
        if row is None:
            return None
        return self._open(row[0], photo_info(deployment_id, subject),
                          f"reference photo of {printable(subject)!r} in deployment "
                          f"{printable(deployment_id)!r}")

    # --- units --------------------------------------------------------------------------------

    def record_unit_watchlist(self, unit_id: str, *, deployment_id: str | None,
                              version: int | None, state: UnitWatchlistState,
                              reason: str | None, subjects: int | None, now: float) -> None:
        """Record ``unit_id``'s watchlist state (replacing the one before). ``version`` needs a
        ``deployment_id``; ``offered`` and ``held`` need both; ``refused`` needs a reason.
        ``reason`` is made printable and cut to ``MAX_REASON_CHARS``."""
        check_node_id(unit_id, what="unit id")
        if deployment_id is not None:
            check_node_id(deployment_id, what="deployment id")
        if version is not None:
            _check_count("watchlist version", version, minimum=1)
        if subjects is not None:
            _check_count("subjects", subjects, minimum=0)
        _check_time("now", now)
        try:
            state = UnitWatchlistState(state)
        except ValueError:
            raise DeploymentError(f"unknown unit watchlist state {printable(state)!r}; expected "
                                  f"one of {[s.value for s in UnitWatchlistState]}") from None
        if version is not None and deployment_id is None:
            raise DeploymentError(f"unit {printable(unit_id)!r}: a watchlist version needs its "
                                  "deployment id")
        if (state in (UnitWatchlistState.OFFERED, UnitWatchlistState.HELD)
                and (deployment_id is None or version is None)):
            raise DeploymentError(f"unit {printable(unit_id)!r}: state {state.value!r} needs "
                                  "the deployment id and version of the watchlist")
        reason = _safe_reason(reason)
        if state is UnitWatchlistState.REFUSED and reason is None:
            raise DeploymentError(f"unit {printable(unit_id)!r}: a refusal needs its reason")
        with self._transaction() as db:
            db.execute("INSERT INTO unit_watchlists VALUES (?, ?, ?, ?, ?, ?, ?) "
                       "ON CONFLICT (unit) DO UPDATE SET deployment = excluded.deployment, "
                       "version = excluded.version, state = excluded.state, "
                       "reason = excluded.reason, subjects = excluded.subjects, "
                       "updated_at = excluded.updated_at",
                       (unit_id, deployment_id, version, state.value, reason, subjects,
                        float(now)))

    def unit_watchlists(self, *, after: str | None = None,
                        limit: int = MAX_PAGE) -> list[UnitWatchlist]:
        """Up to ``limit`` (1 to ``MAX_PAGE``) units' states, sorted by unit id; the next page
        starts ``after`` = the last one's ``unit_id``."""
        _check_limit(limit)
        with self._lock:
            rows = self._db.execute(
                "SELECT unit, deployment, version, state, reason, subjects, updated_at "
                "FROM unit_watchlists WHERE unit > ? ORDER BY unit LIMIT ?",
                ("" if after is None else after, limit)).fetchall()
        return [_unit_watchlist(row) for row in rows]

    def unit_watchlist(self, unit_id: str) -> UnitWatchlist | None:
        """``unit_id``'s latest state, or None if none was recorded."""
        check_node_id(unit_id, what="unit id")
        with self._lock:
            row = self._db.execute(
                "SELECT unit, deployment, version, state, reason, subjects, updated_at "
                "FROM unit_watchlists WHERE unit = ?", (unit_id,)).fetchone()
        return None if row is None else _unit_watchlist(row)

    # --- inside -------------------------------------------------------------------------------

    def _open(self, sealed: bytes | None, info: bytes, what: str) -> bytes:
        unreadable = SealedRowError(
            f"deployment store {printable(self.path)}: {what} does not open with the van's key "
            "under its own row (altered, or copied from another row or file)")
        if not isinstance(sealed, bytes):  # a NULL or text put there by hand
            raise unreadable
        try:
            return self._key.open(sealed, info)
        except SealedOpenFailed:
            raise unreadable from None



def _prepare(db: sqlite3.Connection, van_key: EncryptionKeyPair, shown: str) -> None:
    """Turn on secure_delete and foreign keys; record the van's key id in a new file, check it
    in an old one."""
    if db.execute("PRAGMA secure_delete = ON").fetchone()[0] != 1:
        raise DeploymentStoreFileError(f"{shown}: SQLite refused secure_delete, which the "
                                       "store needs to wipe a deployment's watchlists")
    db.execute("PRAGMA foreign_keys = ON")
    key_id = format_key_id(van_key.key_id)
    db.execute("BEGIN IMMEDIATE")
    try:
        db.execute("INSERT OR IGNORE INTO van_key VALUES (1, ?)", (key_id,))
        (stored,) = db.execute("SELECT key_id FROM van_key").fetchone()
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    if stored != key_id:
        raise DeploymentStoreFileError(
            f"{shown}: its watchlists and photos are sealed to encryption key {stored}, not to "
            f"this van's key {key_id}; open it with the key it was made with")


def _active(db: sqlite3.Connection) -> Deployment | None:
    row = db.execute("SELECT id, threshold, started_at, ended_at FROM deployments "
                     "WHERE ended_at IS NULL").fetchone()
    return None if row is None else Deployment(*row)


def _require_active(db: sqlite3.Connection, deployment_id: str, what: str) -> None:
    """``DeploymentError`` unless ``deployment_id`` is the active deployment."""
    active = _active(db)
    if active is not None and active.id == deployment_id:
        return
    known = db.execute("SELECT ended_at FROM deployments WHERE id = ?",
                       (deployment_id,)).fetchone()
    shown = printable(deployment_id)
    why = ("there is no such deployment" if known is None
           else "it has ended" if known[0] is not None else "it is not active")
    now_active = ("no deployment is active" if active is None
                  else f"the active one is {printable(active.id)!r}")
    raise DeploymentError(f"{what} for deployment {shown!r} refused: {why} ({now_active}); "
                          "only the active deployment's are stored")


def _facts(row: Any) -> WatchlistFacts:
    """A row of deployment, version, subject_count, payload_sha256, not_before, not_after,
    pushed_at, signed_bytes, sealed IS NOT NULL."""
    (deployment_id, version, subject_count, payload_sha256, not_before, not_after, pushed_at,
     signed_bytes, stored) = row
    return WatchlistFacts(deployment_id, version, subject_count, payload_sha256, not_before,
                          not_after, pushed_at, signed_bytes, bool(stored))


def _unit_watchlist(row: Any) -> UnitWatchlist:
    unit, deployment, version, state, reason, subjects, updated_at = row
    return UnitWatchlist(unit, deployment, version, UnitWatchlistState(state), reason, subjects,
                         updated_at)


def _check_time(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise DeploymentError(f"{name} must be a finite time in seconds since epoch, got "
                              f"{printable(repr(value))}")


def _check_count(name: str, value: int, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= _MAX_INT:
        raise DeploymentError(f"{name} must be an integer in [{minimum}, 2**63 - 1], got "
                              f"{printable(repr(value))}")


def _check_blob(what: str, data: bytes, max_bytes: int) -> bytes:
    """``data`` as ``bytes`` if it is 1 to ``max_bytes`` bytes."""
    if not isinstance(data, bytes | bytearray):
        raise DeploymentError(f"{what} must be bytes, got {type(data).__name__}")
    if not data:
        raise DeploymentError(f"{what} is empty")
    if len(data) > max_bytes:
        raise DeploymentError(f"{what} of {len(data)} bytes is over the {max_bytes}-byte limit")
    return bytes(data)


def _check_subject(subject: str) -> None:
    """As ``actors.unit.watchlist``: 1 to ``MAX_SUBJECT_ID_CHARS`` printable characters."""
    if not isinstance(subject, str) or not 0 < len(subject) <= MAX_SUBJECT_ID_CHARS:
        raise DeploymentError(f"subject id {printable(subject, max_chars=64)!r} must have 1 to "
                              f"{MAX_SUBJECT_ID_CHARS} characters")
    if not subject.isprintable():  # also refuses surrogates, which would not encode
        raise DeploymentError(f"subject id {printable(subject)!r} holds characters that cannot "
                              "be printed")


def _check_limit(limit: int) -> None:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise DeploymentError(f"limit must lie in [1, {MAX_PAGE}], got {limit!r}")


def _safe_reason(reason: str | None) -> str | None:
    """``reason`` made printable and at most ``MAX_REASON_CHARS`` long; None if empty."""
    if reason is None or reason == "":
        return None
    text = printable(reason, max_chars=MAX_REASON_CHARS)
    return text if len(text) <= MAX_REASON_CHARS else text[:MAX_REASON_CHARS - 3] + "..."
