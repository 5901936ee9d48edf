"""``UserStore``: the console's accounts, their roles and scrypt password hashes, in one SQLite
file in the van's state folder (``USERS_FILE``).

**Accounts.** A name (1-64 printable characters, no space at either end; unique whatever its
case: ``Alice`` and ``alice`` are one account, found by either spelling and shown as created), a
role (``operator`` or ``supervisor``: a supervisor may do everything an operator may, and
manage watchlists), when it was created and whether it is disabled. Accounts are never deleted:
a disabled account keeps its name, so the audit trail's names stay unambiguous.

**Passwords.** 12-1024 characters, no control characters, compared after Unicode NFC
normalisation (the same password typed on two keyboards is the same password). Stored only as
``hashlib.scrypt`` with a 16-byte random salt per account and a 32-byte key; the cost (n, r, p)
is stored in each row, so the default (``DEFAULT_SCRYPT``: n=2**14, r=8, p=1, 16 MiB and tens
of milliseconds per check) can be raised for new accounts without breaking older ones. A
password is never logged, never in an error's text and never part of any ``repr``:
``UserAccount`` (what callers get back) holds no hash either.

**Verification** (``verify``) costs one scrypt whatever happens: for a missing account it runs
scrypt on a fixed dummy salt, for a disabled one it checks the password all the same, and it
compares keys with ``hmac.compare_digest``. So neither a wrong name, a disabled account nor how
much of a key matched shows in the time an answer takes (an account whose cost was raised above
the default takes longer: raise everyone's together). The answer is the account or ``None``,
never why.

**The file.** Opened through ``actors.durable_database`` (WAL, ``synchronous=FULL``, an
``application_id`` of its own: another program's database is refused, naming the file); created
0600 with its -wal and -shm, and an existing file readable by anyone else is refused. Every call
is one short transaction under a lock and may block (scrypt, fsync): an event loop runs them on
a worker thread. ``lfr van user add`` in another process and a running van share the file
safely (SQLite's locking); the van sees a new or disabled account at its next lookup. At most
``MAX_USERS`` accounts.

Refusals are ``UserError`` (a ``UserInputError``: exit 2 on the command line) naming the account
and the problem, never the password.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import os
import secrets
import sqlite3
import stat
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from actors.durable_database import DatabaseKind, DurableStore, open_durable_database
from guards.config_checks import ConfigError
from guards.log_text import printable
from guards.user_input import UserInputError

USERS_FILE: Final = "console-users.sqlite"
"""The accounts' file in the van's state folder."""
MAX_NAME_CHARS: Final = 64
"""Longest account name."""
MIN_PASSWORD_CHARS: Final = 12
"""Shortest password accepted for a new account."""
MAX_PASSWORD_CHARS: Final = 1024
"""Longest password: more is refused before any hashing (scrypt's cost grows with it)."""
MAX_USERS: Final = 1000
"""Accounts one van holds; a list returns all of them."""
SALT_BYTES: Final = 16
"""Random salt per account."""
KEY_BYTES: Final = 32
"""scrypt's output kept per account."""

_APPLICATION_ID = 0x4C464355  # "LFCU" in the SQLite header: this file is lfr's console users
_SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE users (
    key TEXT PRIMARY KEY,                         -- the name casefolded: names are unique
    name TEXT NOT NULL,                           -- as created; shown and audited
    role TEXT NOT NULL CHECK (role IN ('operator', 'supervisor')),
    salt BLOB NOT NULL CHECK (length(salt) >= 16),
    scrypt_n INTEGER NOT NULL,                    -- the cost this row was hashed with
    scrypt_r INTEGER NOT NULL,
    scrypt_p INTEGER NOT NULL,
    hash BLOB NOT NULL CHECK (length(hash) = 32), -- scrypt(NFC(password), salt, n, r, p)
    created_at REAL NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1))
);
"""
_USERS_DB = DatabaseKind("console users", _APPLICATION_ID, _SCHEMA, _SCHEMA_VERSION)


class UserError(UserInputError):
    """An account name, role or password is unusable, or the account exists or does not; the
    text names the account and the problem, never the password."""


class Role(enum.StrEnum):
    """What an account may do in the console."""

    OPERATOR = "operator"
    """Sees alerts, units, reports and the audit; decides on alerts."""
    SUPERVISOR = "supervisor"
    """Everything an operator may, and the watchlist: push, purge."""

    def allows(self, needed: Role) -> bool:
        """Whether this role may do what ``needed`` may (a supervisor may do all)."""
        return self is Role.SUPERVISOR or needed is Role.OPERATOR


@dataclass(frozen=True, slots=True)
class ScryptCost:
    """scrypt's cost parameters, stored beside each hash."""

    n: int = 2**14
    """CPU/memory cost: a power of two, 2**14-2**20."""
    r: int = 8
    """Block size, 8-32."""
    p: int = 1
    """Parallelism, 1-16."""

    def __post_init__(self) -> None:
        if not (2**14 <= self.n <= 2**20 and self.n & (self.n - 1) == 0):
            raise ConfigError(f"ScryptCost.n must be a power of two in 2**14-2**20, got {self.n}")
        if not 8 <= self.r <= 32:
            raise ConfigError(f"ScryptCost.r must be 8-32, got {self.r}")
        if not 1 <= self.p <= 16:
            raise ConfigError(f"ScryptCost.p must be 1-16, got {self.p}")

    @property
    def memory_bytes(self) -> int:
        """What one hash needs (128 * r * n, and the p blocks), for OpenSSL's ``maxmem``."""
        return 128 * self.r * (self.n + self.p + 2)


DEFAULT_SCRYPT: Final = ScryptCost()
"""n=2**14, r=8, p=1: 16 MiB per hash (OWASP's minimum for scrypt)."""


@dataclass(frozen=True, slots=True)
class UserAccount:
    """One account as callers see it: never its hash or salt."""

    name: str
    """As created (printable, 1-64 characters)."""
    role: Role
    """What it may do."""
    created_at: float
    """Seconds since the epoch."""
    disabled: bool
    """A disabled account cannot sign in, and its sessions end (docs/CONSOLE.md)."""


@dataclass(frozen=True, slots=True)
class _Hash:
    """A stored hash (never leaves this module)."""

    salt: bytes = field(repr=False)
    cost: ScryptCost
    key: bytes = field(repr=False)


def check_name(name: str) -> str:
    """``name`` if it may name an account; ``UserError`` saying why not."""
    if not 1 <= len(name) <= MAX_NAME_CHARS:
        raise UserError(f"an account name is 1-{MAX_NAME_CHARS} characters, got {len(name)}")
    if not name.isprintable():
        raise UserError(f"account name {printable(name)} holds control characters")
    if name != name.strip():
        raise UserError(f"account name {printable(name)!r} starts or ends with a space")
    return name


def check_role(role: str) -> Role:
    """``role`` as a ``Role``; ``UserError`` naming the roles otherwise."""
    try:
        return Role(role)
    except ValueError:
        raise UserError(f"unknown role {printable(role, max_chars=40)}; one of: "
                        f"{', '.join(r.value for r in Role)}") from None


def check_password(password: str) -> None:
    """``UserError`` unless ``password`` may be a new account's password (its text is never
    in the error)."""
    if len(password) < MIN_PASSWORD_CHARS:
        raise UserError(f"a password needs at least {MIN_PASSWORD_CHARS} characters, this one "
                        f"has {len(password)}")
    if len(password) > MAX_PASSWORD_CHARS:
        raise UserError(f"a password has at most {MAX_PASSWORD_CHARS} characters, this one has "
                        f"{len(password)}")
    if any(unicodedata.category(char) == "Cc" for char in password):
        raise UserError("a password cannot hold control characters (tab, newline, escape...)")


def _key_of(name: str) -> str:
    """The account's lookup key: unique whatever the case."""
    return unicodedata.normalize("NFC", name).casefold()


def _scrypt(password: str, salt: bytes, cost: ScryptCost) -> bytes:
    secret = unicodedata.normalize("NFC", password).encode("utf-8")
    return hashlib.scrypt(secret, salt=salt, n=cost.n, r=cost.r, p=cost.p,
                          maxmem=cost.memory_bytes + (1 << 20), dklen=KEY_BYTES)


_DUMMY_SALT: Final = bytes(SALT_BYTES)
"""Salt of the scrypt a missing account costs (its result is compared and thrown away)."""
_DUMMY_KEY: Final = bytes(KEY_BYTES)


class UserStore(DurableStore):
    """The console's accounts in ``state_dir / USERS_FILE``; see the module docstring."""

    def __init__(self, db: sqlite3.Connection, path: Path, cost: ScryptCost,
                 clock: Callable[[], float]) -> None:
        super().__init__(db)
        self.path = path
        self._cost = cost
        self._clock = clock

    @classmethod
    def open(cls, state_dir: Path, *, cost: ScryptCost = DEFAULT_SCRYPT,
             clock: Callable[[], float] = time.time) -> UserStore:
        """Open (or create, 0600) the accounts' file in ``state_dir``; ``UserError`` naming the
        file if it cannot be used. ``cost`` applies to accounts added from now on; ``clock``
        gives ``created_at``."""
        path = state_dir / USERS_FILE
        _refuse_shared_file(path)
        db = open_durable_database(path, _USERS_DB, UserError)
        return cls(db, path, cost, clock)


    def add(self, name: str, role: Role, password: str) -> UserAccount:
        """A new account; ``UserError`` if the name or password is refused, the name (in any
        case) is taken, or the store is full."""
        check_name(name)
        check_password(password)
        salt = secrets.token_bytes(SALT_BYTES)
        key = _scrypt(password, salt, self._cost)  # outside the lock: slow on purpose
        account = UserAccount(name, Role(role), self._clock(), disabled=False)
        with self._transaction() as db:
            taken = db.execute("SELECT name FROM users WHERE key = ?",
                               (_key_of(name),)).fetchone()
            if taken is not None:
                raise UserError(f"account {printable(taken[0])} exists already; choose "
                                "another name (names are unique whatever their case)")
            if db.execute("SELECT count(*) FROM users").fetchone()[0] >= MAX_USERS:
                raise UserError(f"{printable(self.path)} holds {MAX_USERS} accounts "
                                "already, the most it may")
            db.execute(
                "INSERT INTO users (key, name, role, salt, scrypt_n, scrypt_r, scrypt_p, "
                "hash, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (_key_of(name), name, account.role.value, salt, self._cost.n, self._cost.r,
                 self._cost.p, key, account.created_at))
        return account

    def accounts(self) -> tuple[UserAccount, ...]:
        """Every account (at most ``MAX_USERS``), sorted by name's key."""
        with self._lock:
            rows = self._db.execute(
                "SELECT name, role, created_at, disabled FROM users ORDER BY key LIMIT ?",
                (MAX_USERS,)).fetchall()
        return tuple(UserAccount(n, Role(r), c, bool(d)) for n, r, c, d in rows)

    def account(self, name: str) -> UserAccount | None:
        """The account ``name`` (any case), or None. No password check: for sessions that
        re-check an account they already signed in."""
        if not 1 <= len(name) <= MAX_NAME_CHARS:
            return None
        with self._lock:
            row = self._db.execute(
                "SELECT name, role, created_at, disabled FROM users WHERE key = ?",
                (_key_of(name),)).fetchone()
        return None if row is None else UserAccount(row[0], Role(row[1]), row[2], bool(row[3]))

    def disable(self, name: str) -> tuple[UserAccount, bool]:
        """Disable ``name``: the account and whether this call changed it (False if it was
        disabled already); ``UserError`` if there is no such account."""
        with self._transaction() as db:
            row = db.execute("SELECT name, role, created_at, disabled FROM users WHERE key = ?",
                             (_key_of(name),)).fetchone()
            if row is None:
                raise UserError(f"no account {printable(name)} in {printable(self.path)}")
            if not row[3]:
                db.execute("UPDATE users SET disabled = 1 WHERE key = ?", (_key_of(name),))
        return UserAccount(row[0], Role(row[1]), row[2], disabled=True), not row[3]


    def verify(self, name: str, password: str) -> UserAccount | None:
        """The account if ``name`` exists, is enabled and ``password`` is its password; None
        otherwise. Always one scrypt and a constant-time comparison (module docstring)."""
        row = None
        if 1 <= len(name) <= MAX_NAME_CHARS:
            with self._lock:
                row = self._db.execute(
                    "SELECT name, role, created_at, disabled, salt, scrypt_n, scrypt_r, "
                    "scrypt_p, hash FROM users WHERE key = ?", (_key_of(name),)).fetchone()
        stored = (_Hash(_DUMMY_SALT, DEFAULT_SCRYPT, _DUMMY_KEY) if row is None
                  else _Hash(row[4], ScryptCost(row[5], row[6], row[7]), row[8]))
        # A password too long is hashed as a dummy of the usual length: its cost stays bounded.
        candidate = password if len(password) <= MAX_PASSWORD_CHARS else "x" * MIN_PASSWORD_CHARS
        matches = hmac.compare_digest(_scrypt(candidate, stored.salt, stored.cost), stored.key)
        if row is None or not matches or row[3] or len(password) > MAX_PASSWORD_CHARS:
            return None
        return UserAccount(row[0], Role(row[1]), row[2], disabled=False)


def _refuse_shared_file(path: Path) -> None:
    """An existing accounts' file must be the van user's own and 0600: password hashes are
    secrets (a weak password falls to an offline guess)."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise UserError(f"console users {printable(path)}: cannot read: "
                        f"{exc.strerror or exc}") from None
    if stat.S_ISLNK(info.st_mode):
        raise UserError(f"console users {printable(path)}: is a symbolic link; it must be a "
                        "regular file")
    if stat.S_ISREG(info.st_mode) and (info.st_mode & 0o077 or info.st_uid != os.geteuid()):
        raise UserError(f"console users {printable(path)}: must be 0600 and owned by this user "
                        f"(it holds password hashes); it is {stat.filemode(info.st_mode)}: "
                        f"chmod 600 it")
