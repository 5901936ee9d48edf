"""``console.users``: names, roles and password rules; scrypt hashes that verify only the right
password; one scrypt whatever the name; the file's mode and kind."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from console.users import (
    DEFAULT_SCRYPT,
    MAX_PASSWORD_CHARS,
    USERS_FILE,
    Role,
    ScryptCost,
    UserError,
    UserStore,
    check_name,
    check_password,
    check_role,
)
from guards.config_checks import ConfigError

PASSWORD = "a long enough password"


@pytest.fixture
def store(tmp_path: Path) -> UserStore:
    return UserStore.open(tmp_path, clock=lambda: 1_700_000_000.0)


@pytest.fixture
def scrypt_calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every ``hashlib.scrypt`` call's keyword arguments, the call still made."""
    calls: list[dict[str, Any]] = []
    real: Callable[..., bytes] = hashlib.scrypt

    def counting(password: bytes, **kwargs: Any) -> bytes:
        calls.append(kwargs)
        return real(password, **kwargs)

    monkeypatch.setattr(hashlib, "scrypt", counting)
    return calls


@pytest.mark.parametrize("name", ["a", "Olive Smith", "x" * 64, "ÉLODIE", "o'brien-2"])
def test_a_usable_name_is_accepted(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["", "x" * 65, " olive", "olive ", "oli\nve", "o\x1b[2Jl",
                                  "a\u202eb", "\t"])
def test_a_bad_name_is_refused_naming_it(name: str) -> None:
    with pytest.raises(UserError, match=r"account name|1-64 characters"):
        check_name(name)


def test_roles_and_what_they_allow() -> None:
    assert check_role("operator") is Role.OPERATOR
    assert check_role("supervisor") is Role.SUPERVISOR
    with pytest.raises(UserError, match="unknown role admin; one of: operator, supervisor"):
        check_role("admin")
    assert Role.SUPERVISOR.allows(Role.OPERATOR)
    assert Role.SUPERVISOR.allows(Role.SUPERVISOR)
    assert Role.OPERATOR.allows(Role.OPERATOR)
    assert not Role.OPERATOR.allows(Role.SUPERVISOR)


@pytest.mark.parametrize(("password", "problem"), [
    ("x" * 11, "at least 12 characters, this one has 11"),
    ("", "at least 12 characters, this one has 0"),
    ("x" * (MAX_PASSWORD_CHARS + 1), "at most 1024 characters, this one has 1025"),
    ("twelve chars\n", "control characters"),
    ("tab\tinside password", "control characters"),
])
def test_a_bad_password_is_refused_without_showing_it(password: str, problem: str) -> None:
    with pytest.raises(UserError, match=problem) as refused:
        check_password(password)
    if password:
        assert password not in str(refused.value)


def test_passwords_of_12_and_1024_characters_are_accepted() -> None:
    check_password("x" * 12)
    check_password("é" * MAX_PASSWORD_CHARS)


def test_an_added_account_verifies_only_with_its_password(store: UserStore) -> None:
    added = store.add("Olive", Role.OPERATOR, PASSWORD)
    assert added.name == "Olive"
    assert added.role is Role.OPERATOR
    assert added.created_at == 1_700_000_000.0
    assert not added.disabled
    assert store.verify("Olive", PASSWORD) == added
    assert store.verify("olive", PASSWORD) == added  # any case finds the account
    assert store.verify("Olive", PASSWORD + "x") is None
    assert store.verify("Olive", PASSWORD.upper()) is None
    assert store.verify("Olive", "") is None
    assert store.verify("Olive", "x" * (MAX_PASSWORD_CHARS + 1)) is None


def test_a_password_is_compared_after_nfc_normalisation(store: UserStore) -> None:
    composed = "caf\u00e9 au lait, s'il vous pla\u00eet"
    decomposed = "cafe\u0301 au lait, s'il vous plai\u0302t"
    store.add("olive", Role.OPERATOR, composed)
    assert store.verify("olive", decomposed) is not None


def test_the_row_holds_a_salted_scrypt_hash_with_its_cost(store: UserStore) -> None:
    store.add("olive", Role.OPERATOR, PASSWORD)
    store.add("sam", Role.OPERATOR, PASSWORD)
    with sqlite3.connect(store.path) as db:
        rows = db.execute("SELECT salt, scrypt_n, scrypt_r, scrypt_p, hash FROM users "
                          "ORDER BY key").fetchall()
    (salt_1, n, r, p, key_1), (salt_2, *_, key_2) = rows
    assert (n, r, p) == (2**14, 8, 1)
    assert len(salt_1) == 16
    assert salt_1 != salt_2  # a random salt per account...
    assert key_1 != key_2  # ...so the same password hashes differently
    assert key_1 == hashlib.scrypt(PASSWORD.encode(), salt=salt_1, n=n, r=r, p=p, dklen=32)
    assert PASSWORD.encode() not in store.path.read_bytes()


def test_an_account_hashed_at_another_cost_still_verifies(tmp_path: Path) -> None:
    stronger = ScryptCost(n=2**15)
    UserStore.open(tmp_path, cost=stronger).add("olive", Role.SUPERVISOR, PASSWORD)
    later = UserStore.open(tmp_path)  # the default cost from now on
    later.add("sam", Role.OPERATOR, PASSWORD)
    assert later.verify("olive", PASSWORD) is not None
    assert later.verify("sam", PASSWORD) is not None
    with sqlite3.connect(later.path) as db:
        costs = dict(db.execute("SELECT key, scrypt_n FROM users").fetchall())
    assert costs == {"olive": 2**15, "sam": 2**14}


@pytest.mark.parametrize("case", ["missing", "disabled", "wrong password", "right password",
                                  "name too long", "password too long"])
def test_every_verification_costs_exactly_one_scrypt(
        store: UserStore, scrypt_calls: list[dict[str, Any]], case: str) -> None:
    store.add("olive", Role.OPERATOR, PASSWORD)
    store.add("dora", Role.OPERATOR, PASSWORD)
    store.disable("dora")
    scrypt_calls.clear()
    name, password = {
        "missing": ("nobody", PASSWORD),
        "disabled": ("dora", PASSWORD),
        "wrong password": ("olive", "another password"),
        "right password": ("olive", PASSWORD),
        "name too long": ("x" * 500, PASSWORD),
        "password too long": ("olive", "y" * 100_000),
    }[case]
    found = store.verify(name, password)
    assert (found is not None) == (case == "right password")
    assert len(scrypt_calls) == 1
    assert (scrypt_calls[0]["n"], scrypt_calls[0]["r"], scrypt_calls[0]["p"]) == (
        DEFAULT_SCRYPT.n, DEFAULT_SCRYPT.r, DEFAULT_SCRYPT.p)


def test_names_are_unique_whatever_their_case(store: UserStore) -> None:
    store.add("Olive", Role.OPERATOR, PASSWORD)
    with pytest.raises(UserError, match="account Olive exists already"):
        store.add("OLIVE", Role.SUPERVISOR, PASSWORD)
    assert [a.name for a in store.accounts()] == ["Olive"]


def test_accounts_are_listed_by_name_without_hashes(store: UserStore) -> None:
    store.add("sam", Role.SUPERVISOR, PASSWORD)
    store.add("Olive", Role.OPERATOR, PASSWORD)
    accounts = store.accounts()
    assert [(a.name, a.role) for a in accounts] == [("Olive", Role.OPERATOR),
                                                    ("sam", Role.SUPERVISOR)]
    assert "salt" not in repr(accounts)
    assert "hash" not in repr(accounts)


def test_a_disabled_account_cannot_sign_in_and_disabling_twice_changes_nothing(
        store: UserStore) -> None:
    store.add("olive", Role.OPERATOR, PASSWORD)
    account, changed = store.disable("OLIVE")
    assert changed
    assert account.name == "olive"
    assert account.disabled
    assert store.verify("olive", PASSWORD) is None
    found = store.account("olive")
    assert found is not None
    assert found.disabled
    assert store.disable("olive")[1] is False
    with pytest.raises(UserError, match="no account nobody in"):
        store.disable("nobody")


def test_a_refused_add_leaves_nothing(store: UserStore) -> None:
    with pytest.raises(UserError, match="at least 12"):
        store.add("olive", Role.OPERATOR, "short")
    with pytest.raises(UserError, match="account name"):
        store.add(" olive", Role.OPERATOR, PASSWORD)
    assert store.accounts() == ()


def test_the_file_and_its_journal_are_0600(store: UserStore) -> None:
    store.add("olive", Role.OPERATOR, PASSWORD)
    files = sorted(store.path.parent.glob(USERS_FILE + "*"))
    assert store.path in files
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_a_file_others_can_read_is_refused(tmp_path: Path) -> None:
    UserStore.open(tmp_path).close()
    os.chmod(tmp_path / USERS_FILE, 0o644)
    with pytest.raises(UserError, match="must be 0600"):
        UserStore.open(tmp_path)


def test_a_link_or_another_programs_database_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE t (x)")
    os.chmod(other, 0o600)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / USERS_FILE).symlink_to(other)
    with pytest.raises(UserError, match="symbolic link"):
        UserStore.open(tmp_path / "a")
    (tmp_path / "b").mkdir()
    os.link(other, tmp_path / "b" / USERS_FILE)
    with pytest.raises(UserError, match="another program"):
        UserStore.open(tmp_path / "b")


def test_a_missing_state_folder_is_refused_naming_it(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        UserStore.open(tmp_path / "nowhere")


@pytest.mark.parametrize("cost", [{"n": 2**13}, {"n": 3 * 2**13}, {"r": 4}, {"p": 0}])
def test_a_weak_or_malformed_cost_is_refused(cost: dict[str, int]) -> None:
    with pytest.raises(ConfigError, match="ScryptCost"):
        ScryptCost(**cost)
