"""Who is signed in to the console, and who has failed to sign in too often.

``SessionStore``: server-side sessions, in memory only (a van restart signs everyone out).
A session is found by its token, ``secrets.token_urlsafe(32)`` (256 random bits) that the
browser holds in the ``lfr_session`` cookie; the store keys sessions by the token's sha256, so
it never looks a raw token up. Each session has a CSRF token of its own (random, 256 bits)
that every state-changing request must present (``csrf_matches``, constant time). A session
ends when it has not been used for ``idle_timeout_s`` (30 min), ``absolute_timeout_s`` (12 h)
after sign-in whatever its use, at sign-out, or when its account is disabled (the console
re-checks the account every ``account_recheck_s``). Sign-in always makes a new session (and
ends the one the browser presented), so a token planted before sign-in is worth nothing
(no fixation). Bounded: at most ``max_sessions`` in all and ``max_sessions_per_account`` per
account; one more ends the least recently used (of that account first).

``SignInThrottle``: failed sign-ins counted per account name (any case) and per client address.
After ``max_failures`` (5) failures within ``window_s`` (15 min) further attempts on that name,
or from that address, are refused without checking the password until the lockout ends: 60 s,
doubled by each further failure within the window, at most ``max_lockout_s`` (15 min). A
success clears the account's count (not the address's: one address trying many accounts stays
throttled). At most ``max_tracked`` names and addresses are remembered; the least recently
failed is forgotten first.

Nothing here reads a wall clock: both take a monotonic ``clock`` (tests inject one).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from console.users import MAX_NAME_CHARS, Role, UserAccount
from guards.config_checks import ConfigError, require_at_least, require_positive

TOKEN_BYTES: Final = 32
"""Random bytes in a session token and in a CSRF token (``secrets.token_urlsafe``)."""
MAX_TOKEN_CHARS: Final = 64
"""A presented token longer than this is no token of ours (43 characters are)."""


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """How long sessions live and how many there may be."""

    idle_timeout_s: float = 30 * 60
    """A session unused this long ends (30 min)."""
    absolute_timeout_s: float = 12 * 3600
    """A session ends this long after sign-in, however much it is used (12 h): one shift."""
    max_sessions: int = 1000
    """Sessions held at once; one more ends the least recently used."""
    max_sessions_per_account: int = 16
    """Sessions of one account at once; one more ends that account's least recently used."""
    account_recheck_s: float = 30.0
    """How often a session's account is looked up again: a disabled account's sessions end
    within this long."""

    def __post_init__(self) -> None:
        require_positive("SessionConfig.idle_timeout_s", self.idle_timeout_s)
        require_positive("SessionConfig.absolute_timeout_s", self.absolute_timeout_s)
        if self.idle_timeout_s > self.absolute_timeout_s:
            raise ConfigError("SessionConfig.idle_timeout_s must not exceed absolute_timeout_s, "
                              f"got {self.idle_timeout_s} > {self.absolute_timeout_s}")
        require_at_least("SessionConfig.max_sessions", self.max_sessions, 1)
        require_at_least("SessionConfig.max_sessions_per_account",
                         self.max_sessions_per_account, 1)
        if self.max_sessions_per_account > self.max_sessions:
            raise ConfigError("SessionConfig.max_sessions_per_account must not exceed "
                              f"max_sessions, got {self.max_sessions_per_account} > "
                              f"{self.max_sessions}")
        require_positive("SessionConfig.account_recheck_s", self.account_recheck_s)


@dataclass(frozen=True, slots=True)
class Session:
    """One signed-in browser."""

    token: str = field(repr=False)
    """The cookie's value (never logged)."""
    csrf_token: str = field(repr=False)
    """What state-changing requests of this session must present (never logged)."""
    account: str
    """The account's name, as created."""
    role: Role
    """The account's role at sign-in (re-checked every ``account_recheck_s``)."""
    started_at: float
    """The store's clock at sign-in."""


@dataclass(slots=True)
class _Entry:
    session: Session
    last_used: float
    checked_at: float  # when the account was last found enabled with this role


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def csrf_matches(session: Session, presented: str | None) -> bool:
    """Whether ``presented`` is ``session``'s CSRF token (constant time)."""
    if presented is None or len(presented) > MAX_TOKEN_CHARS:
        return False
    return hmac.compare_digest(session.csrf_token.encode("ascii"),
                               presented.encode("utf-8", "surrogatepass"))


class SessionStore:
    """The console's sessions; see the module docstring. Used from the event loop only."""

    def __init__(self, config: SessionConfig, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._clock = clock
        # Invariant: ordered from least to most recently used; at most config.max_sessions.
        self._entries: OrderedDict[bytes, _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def start(self, account: UserAccount, *, replacing: str | None = None) -> Session:
        """A new session for ``account``, ending the one whose token is ``replacing`` (the
        cookie the browser signed in with), if any."""
        if replacing is not None:
            self.end(replacing)
        now = self._clock()
        session = Session(secrets.token_urlsafe(TOKEN_BYTES), secrets.token_urlsafe(TOKEN_BYTES),
                          account.name, account.role, now)
        own = [d for d, e in self._entries.items() if e.session.account == account.name]
        if len(own) >= self.config.max_sessions_per_account:
            del self._entries[own[0]]
        while len(self._entries) >= self.config.max_sessions:
            self._entries.popitem(last=False)
        self._entries[_digest(session.token)] = _Entry(session, now, now)
        return session

    def find(self, token: str | None) -> Session | None:
        """The live session of ``token`` (now counted as used), or None; an expired one is
        ended here."""
        entry = self._live(token)
        if entry is None:
            return None
        entry.last_used = self._clock()
        self._entries.move_to_end(_digest(entry.session.token))
        return entry.session

    def peek(self, token: str | None) -> Session | None:
        """The live session of ``token`` without counting it as used (a live view checking
        it is still signed in does not keep it alive), or None; an expired one is ended."""
        entry = self._live(token)
        return None if entry is None else entry.session

    def _live(self, token: str | None) -> _Entry | None:
        """``token``'s entry if its session has not expired (an expired one is ended)."""
        if token is None or len(token) > MAX_TOKEN_CHARS:
            return None
        key = _digest(token)
        entry = self._entries.get(key)
        if entry is None:
            return None
        now = self._clock()
        if (now - entry.last_used >= self.config.idle_timeout_s
                or now - entry.session.started_at >= self.config.absolute_timeout_s):
            del self._entries[key]
            return None
        return entry

    def recheck_due(self, session: Session) -> bool:
        """Whether ``session``'s account should be looked up again now."""
        entry = self._entries.get(_digest(session.token))
        return entry is not None and (self._clock() - entry.checked_at
                                      >= self.config.account_recheck_s)

    def rechecked(self, session: Session) -> None:
        """``session``'s account was just found enabled, with the same role."""
        entry = self._entries.get(_digest(session.token))
        if entry is not None:
            entry.checked_at = self._clock()

    def end(self, token: str) -> bool:
        """End the session of ``token``; whether there was one."""
        if len(token) > MAX_TOKEN_CHARS:
            return False
        return self._entries.pop(_digest(token), None) is not None

    def end_account(self, name: str) -> int:
        """End every session of account ``name``; how many there were."""
        ended = [d for d, e in self._entries.items() if e.session.account == name]
        for digest in ended:
            del self._entries[digest]
        return len(ended)


@dataclass(frozen=True, slots=True)
class ThrottleConfig:
    """When failed sign-ins lock a name or an address out, and for how long."""

    max_failures: int = 5
    """Failures within ``window_s`` after which attempts are refused for a while."""
    window_s: float = 15 * 60
    """How long a failure counts (15 min)."""
    first_lockout_s: float = 60.0
    """The first lockout; each further failure within the window doubles it."""
    max_lockout_s: float = 15 * 60
    """The longest lockout (15 min)."""
    max_tracked: int = 10_000
    """Names and addresses remembered at once; beyond, the least recently failed is
    forgotten."""

    def __post_init__(self) -> None:
        require_at_least("ThrottleConfig.max_failures", self.max_failures, 1)
        require_positive("ThrottleConfig.window_s", self.window_s)
        require_positive("ThrottleConfig.first_lockout_s", self.first_lockout_s)
        require_positive("ThrottleConfig.max_lockout_s", self.max_lockout_s)
        if self.first_lockout_s > self.max_lockout_s:
            raise ConfigError("ThrottleConfig.first_lockout_s must not exceed max_lockout_s, "
                              f"got {self.first_lockout_s} > {self.max_lockout_s}")
        require_at_least("ThrottleConfig.max_tracked", self.max_tracked, 2)


_MAX_DOUBLINGS = 32  # failures kept beyond max_failures: 2**32 * any lockout exceeds the cap


@dataclass(slots=True)
class _Failures:
    times: deque[float]  # failures within the window, oldest first (bounded by maxlen)
    locked_until: float


class SignInThrottle:
    """Failed sign-ins per account name and client address; see the module docstring. Used
    from the event loop only."""

    def __init__(self, config: ThrottleConfig, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._clock = clock
        # Invariant: ordered from least to most recently failed; at most config.max_tracked.
        self._records: OrderedDict[tuple[str, str], _Failures] = OrderedDict()

    @staticmethod
    def _keys(name: str, address: str) -> tuple[tuple[str, str], ...]:
        """The counters a sign-in touches: its account's, and its address's unless ""."""
        account = ("account", name[:MAX_NAME_CHARS + 1].casefold())
        return (account, ("address", address)) if address else (account,)

    def retry_after(self, name: str, address: str) -> float | None:
        """Seconds until ``name`` from ``address`` may try again, or None if it may now."""
        now = self._clock()
        waits = [record.locked_until - now for key in self._keys(name, address)
                 if (record := self._records.get(key)) is not None
                 and record.locked_until > now]
        return max(waits) if waits else None

    def failed(self, name: str, address: str) -> None:
        """Count a failed sign-in of ``name`` from ``address``."""
        now = self._clock()
        for key in self._keys(name, address):
            record = self._records.pop(key, None)
            if record is None:
                record = _Failures(deque(maxlen=self.config.max_failures + _MAX_DOUBLINGS), 0.0)
            while record.times and now - record.times[0] >= self.config.window_s:
                record.times.popleft()
            record.times.append(now)
            beyond = len(record.times) - self.config.max_failures
            if beyond >= 0:
                lockout = min(self.config.first_lockout_s * 2.0 ** beyond,
                              self.config.max_lockout_s)
                record.locked_until = max(record.locked_until, now + lockout)
            self._records[key] = record
            while len(self._records) > self.config.max_tracked:
                self._records.popitem(last=False)

    def succeeded(self, name: str) -> None:
        """``name`` signed in: its failures are forgotten."""
        self._records.pop(self._keys(name, "")[0], None)

    def __len__(self) -> int:
        return len(self._records)


def retry_after_header(seconds: float) -> str:
    """``Retry-After``'s value: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))
