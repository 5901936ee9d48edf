"""``lfr keys init``: files and modes per role, key ids printed, nothing private shown,
refusals with exit 2."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from lfr.cli import main
from secure.key_files import (
    ENCRYPTION_KEY_FILE,
    PUBLIC_KEYS_FILE,
    SIGNING_KEY_FILE,
    read_node_keys,
    read_public_keys,
)
from secure.node_keys import NodeRole
from tests.lfr.cli_process import lfr


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_a_van_gets_both_key_files_and_its_key_ids_are_printed(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    out = tmp_path / "van"
    code, stdout, stderr = _run(capsys, "keys", "init", "--role", "van", "--id", "van-1",
                                "--out", str(out))
    assert code == 0, stderr
    modes = {p.name: p.stat().st_mode & 0o777 for p in out.iterdir()}
    assert modes == {SIGNING_KEY_FILE: 0o600, ENCRYPTION_KEY_FILE: 0o600,
                     PUBLIC_KEYS_FILE: 0o644}
    keys = read_node_keys(out / SIGNING_KEY_FILE, out / ENCRYPTION_KEY_FILE)
    assert keys.public() == read_public_keys(out / PUBLIC_KEYS_FILE, NodeRole.VAN)
    assert keys.encryption is not None
    assert keys.signing.key_id.hex() in stdout
    assert keys.encryption.key_id.hex() in stdout
    secrets = [*keys.signing.private_seeds(), *keys.encryption.private_parts()]
    for text in (stdout, stderr, caplog.text):
        for secret in secrets:
            assert secret.hex() not in text


def test_a_unit_gets_a_signing_key_only(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    code, stdout, _ = _run(capsys, "keys", "init", "--role", "unit", "--id", "unit-1",
                           "--out", str(tmp_path))
    assert code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [PUBLIC_KEYS_FILE, SIGNING_KEY_FILE]
    assert "encryption" not in stdout
    assert "lfr van enroll-unit" in stdout


def test_existing_keys_are_never_overwritten(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(capsys, "keys", "init", "--role", "authority", "--id", "hq", "--out",
                str(tmp_path))[0] == 0
    before = (tmp_path / SIGNING_KEY_FILE).read_bytes()
    code, _, stderr = _run(capsys, "keys", "init", "--role", "authority", "--id", "hq",
                           "--out", str(tmp_path))
    assert code == 2
    assert "already exists" in stderr
    assert (tmp_path / SIGNING_KEY_FILE).read_bytes() == before


@pytest.mark.parametrize(("args", "problem"), [
    (["--role", "unit", "--id", "bad\x1bid"], "--id"),
    (["--role", "unit", "--id", "*"], "--id"),
    (["--role", "unit", "--id", "u", "--out", "/nonexistent/dir/keys"], "parent folder"),
])
def test_bad_ids_and_folders_are_refused_with_exit_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str],
        problem: str) -> None:
    full = ["keys", "init", *args]
    if "--out" not in args:
        full += ["--out", str(tmp_path / "k")]
    code, _, stderr = _run(capsys, *full)
    assert code == 2
    assert problem in stderr
    assert "\x1b" not in stderr
    assert not (tmp_path / "k").exists()


@pytest.mark.parametrize(("kind", "named"), [
    ("device", "is a character device"),
    ("fifo", "is a FIFO (named pipe)"),
    ("file", "is a regular file"),
])
def test_an_out_that_is_not_a_folder_says_out_must_be_a_folder(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str, named: str) -> None:
    out = tmp_path / "keys"
    if kind == "device":
        out = Path("/dev/null")
    elif kind == "fifo":
        os.mkfifo(out)
    else:
        out.write_bytes(b"notes")
    code, stdout, stderr = _run(capsys, "keys", "init", "--role", "unit", "--id", "u",
                                "--out", str(out))
    assert code == 2
    assert stdout == ""
    assert stderr == (f"lfr keys: --out {out}: {named}; --out must be a folder (the key files "
                      "are written into it; a missing one is created)\n")
    if kind == "file":
        assert out.read_bytes() == b"notes"
    assert sorted(p.name for p in tmp_path.iterdir()) == ([] if kind == "device" else ["keys"])


def test_an_unknown_role_is_refused_by_the_parser(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "init", "--role", "camera", "--id", "x", "--out", "k"]) == 2
    assert "invalid choice: 'camera'" in capsys.readouterr().err


def test_keys_init_runs_as_a_command(tmp_path: Path) -> None:
    done = lfr("keys", "init", "--role", "van", "--id", "van-9", "--out", str(tmp_path / "k"),
               timeout_s=60)
    assert done.returncode == 0, done.stderr
    assert "signing key id" in done.stdout
    assert (tmp_path / "k" / ENCRYPTION_KEY_FILE).stat().st_mode & 0o777 == 0o600
