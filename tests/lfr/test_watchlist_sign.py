"""``lfr watchlist sign`` and ``lfr watchlist inspect``: an authority's key made by ``lfr keys
init --role authority`` signs a built watchlist; what is printed; inspect's verdicts and exit
codes; every refusal names its argument (exit 2) and nothing is overwritten."""

from __future__ import annotations

import datetime
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import pytest

from actors.signed_watchlist import (
    RefusalReason,
    read_signed_watchlist,
    sign_watchlist,
    verify_signed_watchlist,
)
from actors.unit.watchlist import Watchlist, save_watchlist
from guards.exit_codes import ExitCode
from lfr.cli import main
from models.model_file import MOBILEFACENET
from models.second_opinion_model import DLIB_RESNET_V1
from secure.key_files import (
    PUBLIC_KEYS_FILE,
    SIGNING_KEY_FILE,
    read_node_keys,
    read_public_keys,
)
from secure.node_keys import NodeRole
from tests.actors.support import unit_rows
from tests.lfr.cli_process import lfr


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def iso(offset_s: float) -> str:
    """Now plus ``offset_s`` as ISO 8601 in UTC, with its timezone."""
    return (datetime.datetime.now(datetime.UTC)
            + datetime.timedelta(seconds=offset_s)).isoformat(timespec="seconds")


DAY = 86_400.0


def make_watchlist(n: int = 3, *, threshold: float = 0.6) -> Watchlist:
    """A watchlist of the shipped models (so ``inspect`` verifies it as this lfr's unit)."""
    rng = np.random.default_rng(3)
    return Watchlist(model_id=MOBILEFACENET.model_id, model_sha256=MOBILEFACENET.sha256,
                     created_at=1_700_000_000.0, subjects=tuple(f"person {i}" for i in range(n)),
                     embeddings=unit_rows(rng, n, 192),
                     thresholds=np.full(n, threshold, np.float32), photos=(2,) * n,
                     second_model_id=DLIB_RESNET_V1.model_id,
                     second_model_sha256=DLIB_RESNET_V1.sha256,
                     second_embeddings=(0.1 * rng.standard_normal((n, 128))).astype(np.float32),
                     second_thresholds=np.full(n, 0.6, np.float32))


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with ``authority/``, ``other/`` (a second authority) and ``unit/`` keys, made by
    ``lfr keys init``."""
    root = tmp_path_factory.mktemp("keys")
    for role, node_id, folder in (("authority", "hq", "authority"),
                                  ("authority", "hq-2", "other"), ("unit", "u1", "unit")):
        assert main(["keys", "init", "--role", role, "--id", node_id,
                     "--out", str(root / folder)]) == 0
    return root


@pytest.fixture
def watchlist_file(tmp_path: Path) -> Path:
    path = tmp_path / "list.lfrw"
    save_watchlist(make_watchlist(), path)
    return path


def sign_args(keys: Path, watchlist: Path, out: Path, *extra: str,
              key: str = "authority") -> list[str]:
    return ["watchlist", "sign", str(watchlist), "--key", str(keys / key / SIGNING_KEY_FILE),
            "--version", "7", "--deployment", "op-north", "--not-after", iso(DAY),
            "--out", str(out), *extra]


# --- sign --------------------------------------------------------------------------------------


def test_an_authority_key_from_keys_init_signs_and_a_unit_would_accept_it(
        keys: Path, watchlist_file: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "list.signed"
    before = time.time()
    code, stdout, stderr = _run(capsys, *sign_args(keys, watchlist_file, out,
                                                    "--not-before", iso(-60)))
    assert code == ExitCode.OK, stderr
    assert out.stat().st_mode & 0o777 == 0o600
    data = out.read_bytes()
    authority = read_public_keys(keys / "authority" / PUBLIC_KEYS_FILE, NodeRole.AUTHORITY)
    verified = verify_signed_watchlist(
        read_signed_watchlist(data), authority=authority, model_id=MOBILEFACENET.model_id,
        model_sha256=MOBILEFACENET.sha256, held_version=6, now=time.time())
    manifest = verified.manifest
    assert (manifest.deployment_id, manifest.version, manifest.subject_count) == (
        "op-north", 7, 3)
    assert before - 61 <= manifest.not_before <= before
    assert verified.watchlist.subjects == ("person 0", "person 1", "person 2")
    for shown in (f"{len(data)} bytes, mode 0600", "deployment      op-north",
                  "version         7", "subjects        3", verified.payload_sha256,
                  authority.verify_key.key_id.hex(), MOBILEFACENET.model_id,
                  DLIB_RESNET_V1.model_id):
        assert shown in stdout
    signing = read_node_keys(keys / "authority" / SIGNING_KEY_FILE).signing
    for secret in signing.private_seeds():
        assert secret.hex() not in stdout + stderr


@pytest.mark.parametrize(("change", "problem"), [
    (("--not-after", "2030-01-01T00:00:00"), "--not-after 2030-01-01T00:00:00: has no timezone"),
    (("--not-after", "2030-01-01"), "--not-after 2030-01-01: has no timezone"),
    (("--not-after", "tomorrow"), "--not-after tomorrow: not an ISO 8601 time"),
    (("--not-after", "2300-01-01T00:00:00Z"), "must lie between 1970 and 2100"),
    (("--not-after", "2020-01-01T00:00:00+00:00"), "has already passed"),
    (("--not-before", "2030-01-01T12:00"), "--not-before 2030-01-01T12:00: has no timezone"),
    (("--not-before", "2099-01-01T00:00Z"), "must be later than --not-before 2099-01-01T00:00Z"),
    (("--version", "0"), "--version 0: must be a whole number from 1"),
    (("--version", "seven"), "--version seven: must be a whole number"),
    (("--version", str(2**63)), "must be a whole number"),
    (("--deployment", "*"), "--deployment * must be 1 to 64 printable characters"),
])
def test_bad_arguments_are_refused_naming_them(
        keys: Path, watchlist_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        change: tuple[str, str], problem: str) -> None:
    args = sign_args(keys, watchlist_file, tmp_path / "out.signed")
    flag, value = change
    if flag in args:
        args[args.index(flag) + 1] = value
    else:
        args += [flag, value]
    code, _, stderr = _run(capsys, *args)
    assert code == ExitCode.BAD_INPUT
    assert problem in stderr
    assert not (tmp_path / "out.signed").exists()


@pytest.mark.parametrize("folder", ["unit", "other-missing"])
def test_a_key_that_is_not_an_authoritys_is_refused(
        keys: Path, watchlist_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        folder: str) -> None:
    code, _, stderr = _run(capsys, *sign_args(keys, watchlist_file, tmp_path / "o", key=folder))
    assert code == ExitCode.BAD_INPUT
    if folder == "unit":
        assert "the signing key of unit u1, not of an authority" in stderr
        assert "lfr keys init --role authority" in stderr
    else:
        assert "no such file" in stderr
    assert not (tmp_path / "o").exists()


def test_an_existing_out_file_is_never_overwritten(
        keys: Path, watchlist_file: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "list.signed"
    out.write_bytes(b"keep me")
    code, _, stderr = _run(capsys, *sign_args(keys, watchlist_file, out))
    assert code == ExitCode.BAD_INPUT
    assert "already exists" in stderr
    assert out.read_bytes() == b"keep me"
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "nowhere")
    assert _run(capsys, *sign_args(keys, watchlist_file, dangling))[0] == ExitCode.BAD_INPUT
    assert not (tmp_path / "nowhere").exists()
    code, _, stderr = _run(capsys, *sign_args(keys, watchlist_file,
                                              tmp_path / "missing" / "x.signed"))
    assert code == ExitCode.BAD_INPUT
    assert "does not exist" in stderr


def test_unusual_thresholds_need_the_flag_to_be_signed(
        keys: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    unusual = tmp_path / "unusual.lfrw"
    save_watchlist(make_watchlist(threshold=0.3), unusual)
    code, _, stderr = _run(capsys, *sign_args(keys, unusual, tmp_path / "a.signed"))
    assert code == ExitCode.BAD_INPUT
    assert "--allow-unusual-thresholds" in stderr
    assert _run(capsys, *sign_args(keys, unusual, tmp_path / "b.signed",
                                   "--allow-unusual-thresholds"))[0] == ExitCode.OK


def test_a_file_that_is_not_a_watchlist_is_refused(
        keys: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bogus = tmp_path / "bogus"
    bogus.write_bytes(b"not a watchlist")
    code, _, stderr = _run(capsys, *sign_args(keys, bogus, tmp_path / "o"))
    assert code == ExitCode.BAD_INPUT
    assert "not a watchlist file" in stderr


# --- inspect -----------------------------------------------------------------------------------


@pytest.fixture
def signed_file(keys: Path, watchlist_file: Path, tmp_path: Path) -> Path:
    out = tmp_path / "list.signed"
    assert main(sign_args(keys, watchlist_file, out)) == ExitCode.OK
    return out


def test_inspect_prints_the_manifest_without_keys(signed_file: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    code, stdout, _ = _run(capsys, "watchlist", "inspect", str(signed_file))
    assert code == ExitCode.OK
    assert "deployment      op-north" in stdout
    assert "verification" not in stdout
    code, stdout, _ = _run(capsys, "watchlist", "inspect", str(signed_file), "--json")
    report = json.loads(stdout)
    manifest = read_signed_watchlist(signed_file.read_bytes()).manifest
    assert report["bytes"] == signed_file.stat().st_size
    assert report["manifest"]["version"] == 7
    assert report["manifest"]["payload_sha256"] == manifest.payload_sha256.hex()
    assert report["manifest"]["authority_key_id"] == manifest.authority_key_id.hex()
    assert report["manifest"]["not_after"].endswith("Z")
    assert "verification" not in report


def test_inspect_with_the_authoritys_keys_verifies(keys: Path, signed_file: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    public = str(keys / "authority" / PUBLIC_KEYS_FILE)
    code, stdout, _ = _run(capsys, "watchlist", "inspect", str(signed_file),
                           "--authority-keys", public)
    assert code == ExitCode.OK
    assert "verification: ok" in stdout
    code, stdout, _ = _run(capsys, "watchlist", "inspect", str(signed_file),
                           "--authority-keys", public, "--json")
    verification = json.loads(stdout)["verification"]
    assert verification == {"ok": True, "payload_sha256": hashlib.sha256(
        read_signed_watchlist(signed_file.read_bytes()).payload).hexdigest()}


def test_inspect_names_the_refusal_and_exits_1(keys: Path, signed_file: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    other = str(keys / "other" / PUBLIC_KEYS_FILE)
    code, stdout, stderr = _run(capsys, "watchlist", "inspect", str(signed_file),
                                "--authority-keys", other)
    assert code == ExitCode.VERIFICATION_FAILED
    assert int(ExitCode.VERIFICATION_FAILED) == 1
    assert "verification: refused: other_authority: signed by authority hq" in stdout
    assert "refused: other_authority" in stderr

    tampered = tmp_path / "tampered.signed"
    data = bytearray(signed_file.read_bytes())
    data[-5] ^= 0x10
    tampered.write_bytes(data)
    code, stdout, _ = _run(capsys, "watchlist", "inspect", str(tampered), "--authority-keys",
                           str(keys / "authority" / PUBLIC_KEYS_FILE), "--json")
    assert code == 1
    verification = json.loads(stdout)["verification"]
    assert (verification["ok"], verification["reason"]) == (False, "payload_corrupt")
    assert "is not the signed" in verification["message"]


def test_inspect_says_when_a_file_has_expired(keys: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    authority = read_node_keys(keys / "authority" / SIGNING_KEY_FILE)
    now = time.time()
    expired = tmp_path / "expired.signed"
    expired.write_bytes(sign_watchlist(make_watchlist(), authority=authority,
                                       deployment_id="old", version=1, not_after=now - 60,
                                       now=now - 3600))
    code, stdout, _ = _run(capsys, "watchlist", "inspect", str(expired), "--authority-keys",
                           str(keys / "authority" / PUBLIC_KEYS_FILE))
    assert code == 1
    assert f"refused: {RefusalReason.EXPIRED}: watchlist expired at" in stdout


@pytest.mark.parametrize(("setup", "problem"), [
    ("unsigned", "an unsigned watchlist file (LFRW)"),
    ("unit-keys", "role is unit, expected authority"),
    ("missing", "no such file"),
])
def test_inspect_refuses_what_it_cannot_read_with_exit_2(
        keys: Path, signed_file: Path, watchlist_file: Path,
        capsys: pytest.CaptureFixture[str], setup: str, problem: str) -> None:
    target = {"unsigned": watchlist_file, "unit-keys": signed_file,
              "missing": signed_file.with_name("missing")}[setup]
    authority = keys / ("unit" if setup == "unit-keys" else "authority") / PUBLIC_KEYS_FILE
    code, _, stderr = _run(capsys, "watchlist", "inspect", str(target),
                           "--authority-keys", str(authority))
    assert code == ExitCode.BAD_INPUT
    assert problem in stderr


# --- as a user runs it -------------------------------------------------------------------------


def test_keys_init_sign_and_inspect_as_separate_processes(tmp_path: Path,
                                                          watchlist_file: Path) -> None:
    made = lfr("keys", "init", "--role", "authority", "--id", "supervisor", "--out",
               str(tmp_path / "authority"))
    assert made.returncode == 0, made.stderr
    out = tmp_path / "list.signed"
    signed = lfr("watchlist", "sign", str(watchlist_file), "--key",
                 str(tmp_path / "authority" / SIGNING_KEY_FILE), "--version", "1",
                 "--deployment", "op-1", "--not-after", iso(3600).replace("+00:00", "Z"),
                 "--out", str(out))
    assert signed.returncode == 0, signed.stderr
    assert "deployment      op-1" in signed.stdout
    inspected = lfr("watchlist", "inspect", str(out), "--authority-keys",
                    str(tmp_path / "authority" / PUBLIC_KEYS_FILE), "--json")
    assert inspected.returncode == 0, inspected.stderr
    report = json.loads(inspected.stdout)
    assert report["verification"]["ok"] is True
    assert report["manifest"]["authority_id"] == "supervisor"
    again = lfr("watchlist", "sign", str(watchlist_file), "--key",
                str(tmp_path / "authority" / SIGNING_KEY_FILE), "--version", "2",
                "--deployment", "op-1", "--not-after", "2030-01-01T00:00", "--out",
                str(tmp_path / "other.signed"))
    assert again.returncode == 2
    assert "--not-after 2030-01-01T00:00: has no timezone" in again.stderr
