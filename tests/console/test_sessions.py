"""``console.sessions``: sessions end when idle, at their absolute limit and on request; the
store stays bounded; CSRF tokens match only themselves; the sign-in throttle locks a name or an
address after five failures, doubles, caps, forgets and stays bounded."""

from __future__ import annotations

import pytest

from console.sessions import (
    MAX_TOKEN_CHARS,
    SessionConfig,
    SessionStore,
    SignInThrottle,
    ThrottleConfig,
    csrf_matches,
    retry_after_header,
)
from console.users import Role, UserAccount
from guards.config_checks import ConfigError
from tests.console.support import FakeClock

OLIVE = UserAccount("olive", Role.OPERATOR, 0.0, disabled=False)
SAM = UserAccount("sam", Role.SUPERVISOR, 0.0, disabled=False)


def test_a_session_is_found_by_its_token_only() -> None:
    store = SessionStore(SessionConfig(), clock=FakeClock())
    session = store.start(OLIVE)
    assert store.find(session.token) == session
    assert session.account == "olive"
    assert session.role is Role.OPERATOR
    assert store.find(session.csrf_token) is None
    assert store.find(session.token[:-1]) is None
    assert store.find("x" * (MAX_TOKEN_CHARS + 1)) is None
    assert store.find(None) is None
    assert len(session.token) >= 43  # 32 random bytes, base64url
    assert session.token not in repr(session)
    assert session.csrf_token not in repr(session)


def test_every_session_gets_new_random_tokens() -> None:
    store = SessionStore(SessionConfig(), clock=FakeClock())
    sessions = [store.start(OLIVE) for _ in range(10)]
    tokens = {s.token for s in sessions} | {s.csrf_token for s in sessions}
    assert len(tokens) == 20


def test_an_unused_session_ends_after_the_idle_timeout() -> None:
    clock = FakeClock()
    store = SessionStore(SessionConfig(), clock=clock)
    session = store.start(OLIVE)
    clock.advance(29 * 60)
    assert store.find(session.token) == session  # used: the idle time starts again
    clock.advance(29 * 60)
    assert store.find(session.token) == session
    clock.advance(30 * 60)
    assert store.find(session.token) is None
    assert len(store) == 0


def test_a_session_in_use_ends_at_its_absolute_limit() -> None:
    clock = FakeClock()
    store = SessionStore(SessionConfig(), clock=clock)
    session = store.start(OLIVE)
    for _ in range(12 * 3 - 1):  # used every 20 minutes for just under 12 hours
        clock.advance(20 * 60)
        assert store.find(session.token) == session
    clock.advance(20 * 60)
    assert store.find(session.token) is None


def test_starting_a_session_ends_the_one_the_browser_came_with() -> None:
    store = SessionStore(SessionConfig(), clock=FakeClock())
    first = store.start(OLIVE)
    second = store.start(OLIVE, replacing=first.token)
    assert second.token != first.token
    assert store.find(first.token) is None
    assert store.find(second.token) == second


def test_end_and_end_account() -> None:
    store = SessionStore(SessionConfig(), clock=FakeClock())
    olive_1, olive_2, sam = store.start(OLIVE), store.start(OLIVE), store.start(SAM)
    assert store.end(olive_1.token)
    assert not store.end(olive_1.token)
    assert not store.end("y" * 1000)
    store.start(OLIVE)
    assert store.end_account("olive") == 2
    assert store.find(olive_2.token) is None
    assert store.find(sam.token) == sam


def test_the_store_is_bounded_ending_the_least_recently_used() -> None:
    clock = FakeClock()
    store = SessionStore(SessionConfig(max_sessions=3, max_sessions_per_account=3), clock=clock)
    a = store.start(UserAccount("a", Role.OPERATOR, 0.0, disabled=False))
    b = store.start(UserAccount("b", Role.OPERATOR, 0.0, disabled=False))
    c = store.start(UserAccount("c", Role.OPERATOR, 0.0, disabled=False))
    assert store.find(a.token) == a  # a is now the most recently used
    d = store.start(UserAccount("d", Role.OPERATOR, 0.0, disabled=False))
    assert len(store) == 3
    assert store.find(b.token) is None
    assert {store.find(s.token) for s in (a, c, d)} == {a, c, d}


def test_one_account_holds_at_most_its_own_bound() -> None:
    store = SessionStore(SessionConfig(max_sessions_per_account=2), clock=FakeClock())
    sam = store.start(SAM)
    first, second = store.start(OLIVE), store.start(OLIVE)
    third = store.start(OLIVE)
    assert store.find(first.token) is None
    assert store.find(second.token) == second
    assert store.find(third.token) == third
    assert store.find(sam.token) == sam


def test_an_account_recheck_is_due_every_interval() -> None:
    clock = FakeClock()
    store = SessionStore(SessionConfig(account_recheck_s=30), clock=clock)
    session = store.start(OLIVE)
    assert not store.recheck_due(session)
    clock.advance(30)
    assert store.recheck_due(session)
    store.rechecked(session)
    assert not store.recheck_due(session)


def test_csrf_tokens_match_only_themselves() -> None:
    store = SessionStore(SessionConfig(), clock=FakeClock())
    session, other = store.start(OLIVE), store.start(OLIVE)
    assert csrf_matches(session, session.csrf_token)
    assert not csrf_matches(session, other.csrf_token)
    assert not csrf_matches(session, None)
    assert not csrf_matches(session, "")
    assert not csrf_matches(session, session.csrf_token[:-1])
    assert not csrf_matches(session, session.csrf_token + "x")
    assert not csrf_matches(session, "é\udcff" * 10)  # not even ASCII: refused, no error
    assert not csrf_matches(session, session.csrf_token * 3)


@pytest.mark.parametrize("config", [
    {"idle_timeout_s": 0}, {"absolute_timeout_s": -1}, {"idle_timeout_s": 10,
                                                             "absolute_timeout_s": 5},
    {"max_sessions": 0}, {"max_sessions_per_account": 0},
    {"max_sessions": 2, "max_sessions_per_account": 3}, {"account_recheck_s": float("nan")},
])
def test_a_bad_session_config_is_refused_naming_the_field(config: dict[str, float]) -> None:
    with pytest.raises(ConfigError, match="SessionConfig"):
        SessionConfig(**config)  # type: ignore[arg-type]


# -- the throttle ---------------------------------------------------------------------------


def test_five_failures_lock_the_name_out_for_a_minute() -> None:
    clock = FakeClock()
    throttle = SignInThrottle(ThrottleConfig(), clock=clock)
    for attempt in range(5):
        assert throttle.retry_after("olive", f"10.0.0.{attempt}") is None
        throttle.failed("olive", f"10.0.0.{attempt}")
    assert throttle.retry_after("olive", "10.0.0.99") == 60
    assert throttle.retry_after("OLIVE", "10.0.0.99") == 60  # any case of the name
    assert throttle.retry_after("sam", "10.0.0.99") is None
    clock.advance(59)
    assert throttle.retry_after("olive", "10.0.0.99") == 1
    clock.advance(1)
    assert throttle.retry_after("olive", "10.0.0.99") is None


def test_five_failures_lock_the_address_out_whatever_the_names() -> None:
    throttle = SignInThrottle(ThrottleConfig(), clock=FakeClock())
    for attempt in range(5):
        throttle.failed(f"name-{attempt}", "10.0.0.1")
    assert throttle.retry_after("someone-else", "10.0.0.1") == 60
    assert throttle.retry_after("someone-else", "10.0.0.2") is None


def test_each_further_failure_doubles_the_lockout_up_to_15_minutes() -> None:
    clock = FakeClock()
    throttle = SignInThrottle(ThrottleConfig(window_s=24 * 3600), clock=clock)
    for _ in range(5):
        throttle.failed("olive", "a")
    lockouts = []
    for _ in range(6):
        wait = throttle.retry_after("olive", "a")
        assert wait is not None
        lockouts.append(wait)
        clock.advance(wait)
        throttle.failed("olive", "a")
    assert lockouts == [60, 120, 240, 480, 900, 900]


def test_failures_older_than_the_window_stop_counting() -> None:
    clock = FakeClock()
    throttle = SignInThrottle(ThrottleConfig(), clock=clock)
    for _ in range(4):
        throttle.failed("olive", "a")
    clock.advance(15 * 60)
    throttle.failed("olive", "a")
    assert throttle.retry_after("olive", "a") is None


def test_a_success_clears_the_name_but_not_the_address() -> None:
    throttle = SignInThrottle(ThrottleConfig(), clock=FakeClock())
    for _ in range(4):
        throttle.failed("olive", "a")
    throttle.succeeded("Olive")
    throttle.failed("olive", "b")
    assert throttle.retry_after("olive", "b") is None  # one failure counted for the name
    throttle.failed("other", "a")  # the address's fifth
    assert throttle.retry_after("olive", "a") == 60


def test_the_throttle_remembers_at_most_max_tracked() -> None:
    throttle = SignInThrottle(ThrottleConfig(max_tracked=100), clock=FakeClock())
    for attempt in range(1000):
        throttle.failed(f"name-{attempt}", f"address-{attempt}")
    assert len(throttle) == 100
    throttle.failed("x" * 10_000, "a")  # a long name is kept cut
    assert len(throttle) == 100


def test_retry_after_is_whole_seconds_at_least_one() -> None:
    assert retry_after_header(0.01) == "1"
    assert retry_after_header(59.2) == "60"
    assert retry_after_header(900) == "900"


@pytest.mark.parametrize("config", [
    {"max_failures": 0}, {"window_s": 0}, {"first_lockout_s": 0},
    {"first_lockout_s": 100, "max_lockout_s": 50}, {"max_tracked": 1},
])
def test_a_bad_throttle_config_is_refused_naming_the_field(config: dict[str, float]) -> None:
    with pytest.raises(ConfigError, match="ThrottleConfig"):
        ThrottleConfig(**config)  # type: ignore[arg-type]
