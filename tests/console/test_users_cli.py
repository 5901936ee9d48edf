"""``lfr van user add``, ``list`` and ``disable``: what each does and prints, every refusal with
exit 2 and a message naming the problem (never the password); one run as a real process."""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path

import pytest

from console.users import USERS_FILE, Role, UserStore
from guards.exit_codes import ExitCode
from lfr.cli import main
from tests.lfr.cli_process import ENV, LFR
from tests.lfr.test_node_config import make_van, write_config

PASSWORD = "a long enough password"


@pytest.fixture
def van_toml(tmp_path: Path) -> Path:
    folder = tmp_path / "van"
    folder.mkdir()
    return write_config(folder / "van.toml", make_van(folder))


def _run(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str,
         stdin: str = "") -> tuple[int, str, str]:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _add(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, van_toml: Path,
         name: str, role: str, password: str = PASSWORD) -> tuple[int, str, str]:
    return _run(capsys, monkeypatch, "van", "user", "add", name, "--role", role,
                "--password-stdin", "--config", str(van_toml), stdin=password + "\n")


def test_add_list_and_disable_accounts(van_toml: Path, capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, err = _add(capsys, monkeypatch, van_toml, "olive", "operator")
    assert code == ExitCode.OK, err
    assert "added operator olive to the console of van van-1" in out
    assert PASSWORD not in out + err
    code, out, err = _add(capsys, monkeypatch, van_toml, "Sam", "supervisor")
    assert code == ExitCode.OK, err

    store = UserStore.open(van_toml.parent / "state")
    assert store.verify("olive", PASSWORD) is not None
    sam = store.verify("sam", PASSWORD)
    assert sam is not None
    assert sam.role is Role.SUPERVISOR

    code, out, _ = _run(capsys, monkeypatch, "van", "user", "list", "--config", str(van_toml))
    assert code == ExitCode.OK
    assert "van van-1: 2 console accounts" in out
    assert out.index("olive") < out.index("Sam")
    assert "DISABLED" not in out

    code, out, _ = _run(capsys, monkeypatch, "van", "user", "disable", "OLIVE",
                        "--config", str(van_toml))
    assert code == ExitCode.OK
    assert "disabled account olive" in out
    assert store.verify("olive", PASSWORD) is None
    code, out, _ = _run(capsys, monkeypatch, "van", "user", "disable", "olive",
                        "--config", str(van_toml))
    assert code == ExitCode.OK
    assert "already disabled; nothing changed" in out

    code, out, _ = _run(capsys, monkeypatch, "van", "user", "list", "--config", str(van_toml),
                        "--json")
    assert code == ExitCode.OK
    listed = json.loads(out)
    assert listed["van"] == "van-1"
    assert [(u["name"], u["role"], u["disabled"]) for u in listed["users"]] == [
        ("olive", "operator", True), ("Sam", "supervisor", False)]
    assert all(u["created_at"].endswith("Z") for u in listed["users"])
    assert set(listed["users"][0]) == {"name", "role", "created_at", "disabled"}


@pytest.mark.parametrize(("name", "password", "problem"), [
    ("olive", "short", "a password needs at least 12 characters, this one has 5"),
    ("olive", "x" * 1025, "at most 1024 characters"),
    ("olive", "", "no password on stdin"),
    (" olive", PASSWORD, "starts or ends with a space"),
    ("x" * 65, PASSWORD, "an account name is 1-64 characters"),
])
def test_a_bad_name_or_password_is_refused_with_exit_2(
        van_toml: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        name: str, password: str, problem: str) -> None:
    code, out, err = _add(capsys, monkeypatch, van_toml, name, "operator", password)
    assert code == ExitCode.BAD_INPUT
    assert problem in err
    assert out == ""
    if len(password) >= 3:
        assert password not in err
    assert UserStore.open(van_toml.parent / "state").accounts() == ()


def test_an_existing_name_is_refused_in_any_case(
        van_toml: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert _add(capsys, monkeypatch, van_toml, "olive", "operator")[0] == ExitCode.OK
    code, _, err = _add(capsys, monkeypatch, van_toml, "Olive", "supervisor", "other password")
    assert code == ExitCode.BAD_INPUT
    assert "account olive exists already" in err
    store = UserStore.open(van_toml.parent / "state")
    assert store.verify("olive", PASSWORD) is not None  # unchanged
    assert [a.role for a in store.accounts()] == [Role.OPERATOR]


def test_other_refusals_name_what_is_wrong(
        van_toml: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = _run(capsys, monkeypatch, "van", "user", "disable", "nobody",
                        "--config", str(van_toml))
    assert code == ExitCode.BAD_INPUT
    assert "no account nobody in" in err
    code, _, err = _run(capsys, monkeypatch, "van", "user", "list",
                        "--config", str(tmp_path / "missing.toml"))
    assert code == ExitCode.BAD_INPUT
    assert "missing.toml" in err
    code, _, err = _run(capsys, monkeypatch, "van", "user", "add", "olive", "--role", "admin",
                        "--password-stdin", "--config", str(van_toml))
    assert code == ExitCode.BAD_INPUT
    assert "invalid choice: 'admin'" in err
    code, _, err = _run(capsys, monkeypatch, "van", "user", "add", "olive", "--role",
                        "operator", "--config", str(van_toml))  # stdin is no terminal
    assert code == ExitCode.BAD_INPUT
    assert "no terminal to ask for the password on; give --password-stdin" in err
    (van_toml.parent / "state" / USERS_FILE).write_bytes(b"not a database at all" * 10)
    (van_toml.parent / "state" / USERS_FILE).chmod(0o600)
    code, _, err = _run(capsys, monkeypatch, "van", "user", "list", "--config", str(van_toml))
    assert code == ExitCode.BAD_INPUT
    assert f"console users {van_toml.parent / 'state' / USERS_FILE}" in err


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_terminal_is_asked_twice_and_two_different_entries_add_nothing(
        van_toml: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    entries = iter([PASSWORD, PASSWORD + "!"])
    monkeypatch.setattr("getpass.getpass", lambda prompt: next(entries))
    monkeypatch.setattr("sys.stdin", _Terminal())
    args = ["van", "user", "add", "olive", "--role", "operator", "--config", str(van_toml)]
    assert main(args) == ExitCode.BAD_INPUT
    assert "the two passwords differ; nothing was added" in capsys.readouterr().err
    assert UserStore.open(van_toml.parent / "state").accounts() == ()
    entries = iter([PASSWORD, PASSWORD])
    assert main(args) == ExitCode.OK
    assert UserStore.open(van_toml.parent / "state").verify("olive", PASSWORD) is not None


def test_a_password_line_ending_in_crlf_is_the_password_without_it(
        van_toml: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = _add(capsys, monkeypatch, van_toml, "olive", "operator", PASSWORD + "\r")
    assert code == ExitCode.OK, err
    assert UserStore.open(van_toml.parent / "state").verify("olive", PASSWORD) is not None


def test_as_a_real_process(van_toml: Path) -> None:
    added = subprocess.run([*LFR, "van", "user", "add", "olive", "--role", "supervisor",
                            "--password-stdin", "--config", str(van_toml)],
                           input=PASSWORD + "\n", env=ENV, capture_output=True, text=True,
                           timeout=120, check=False)
    assert added.returncode == ExitCode.OK, added.stderr
    assert "added supervisor olive" in added.stdout
    again = subprocess.run([*LFR, "van", "user", "add", "olive", "--role", "operator",
                            "--password-stdin", "--config", str(van_toml)],
                           input=PASSWORD + "\n", env=ENV, capture_output=True, text=True,
                           timeout=120, check=False)
    assert again.returncode == ExitCode.BAD_INPUT
    assert "lfr van: account olive exists already" in again.stderr
    listed = subprocess.run([*LFR, "van", "user", "list", "--json", "--config", str(van_toml)],
                            env=ENV, capture_output=True, text=True, timeout=120, check=False)
    assert listed.returncode == ExitCode.OK, listed.stderr
    assert [u["name"] for u in json.loads(listed.stdout)["users"]] == ["olive"]
    assert PASSWORD not in added.stdout + added.stderr + listed.stdout
