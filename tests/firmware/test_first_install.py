"""firmware/first-install.sh: the first release on a fresh unit from the bundle alone.

The script is run as a unit's root would run it, against the session's real x86_64 bundle
(test_release_bundle.py) and a temporary ROOT: a wrong or malformed sha256, or a missing
bundle, is refused before anything is unpacked; the right one bootstraps a temporary venv
from the bundle's own wheels whose ``lfr update apply`` installs the release into ROOT (the
signature checked against ROOT's release.keys) and the work folder is removed either way."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from packaging.version import Version

from lfr.release.release_layout import ReleaseLayout
from lfr.release.system_files import SYSUSERS_FILE, UNIT_FILE
from tests.firmware.test_release_bundle import BuiltRelease, built_release

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "firmware" / "first-install.sh"
BASE_PYTHON = getattr(sys, "_base_executable", sys.executable)
"""The interpreter a unit has (not this checkout's venv)."""


@pytest.fixture(scope="session")
def first(tmp_path_factory: pytest.TempPathFactory) -> BuiltRelease:
    return built_release(tmp_path_factory)


def _sha256(path: Path) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            hasher.update(chunk)
    return hasher.hexdigest()


def _root(path: Path, release: BuiltRelease) -> Path:
    (path / "etc" / "lfr-edge").mkdir(parents=True)
    (path / "etc" / "lfr-edge" / "release.keys").write_bytes(release.public_keys.read_bytes())
    return path


def _run(args: list[str], work: Path) -> subprocess.CompletedProcess[str]:
    """The script as root runs it on a unit: no venv active, TMPDIR the test's work folder."""
    environment = {key: value for key, value in os.environ.items()
                   if key not in {"PYTHONPATH", "VIRTUAL_ENV"} and not key.startswith("PIP_")}
    environment.update(TMPDIR=str(work), PYTHON=BASE_PYTHON,
                       PIP_INDEX_URL="http://127.0.0.1:9/never-used")  # must be ignored
    return subprocess.run(["sh", str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=1800, env=environment, check=False, cwd=work)


@pytest.fixture
def work(tmp_path: Path) -> Path:
    folder = tmp_path / "work"
    folder.mkdir()
    return folder


def test_a_bundle_whose_sha256_is_not_the_announced_one_is_refused(
        first: BuiltRelease, tmp_path: Path, work: Path) -> None:
    root = _root(tmp_path / "root", first)
    wrong = "0" * 64
    ran = _run([str(first.bundle), wrong, "--root", str(root)], work)
    assert ran.returncode == 2, ran.stderr
    assert (f"first-install: REFUSED: {first.bundle} has sha256 {_sha256(first.bundle)}, the "
            f"release was announced with {wrong} (another file, altered or damaged); nothing "
            "was installed") in ran.stderr
    assert sorted(p.name for p in root.iterdir()) == ["etc"]  # no opt/, no usr/
    assert list(work.iterdir()) == []  # the copy is gone


@pytest.mark.parametrize(("args", "expected"), [
    ([], "usage: sh first-install.sh BUNDLE SHA256"),
    (["BUNDLE"], "usage: sh first-install.sh BUNDLE SHA256"),
    (["BUNDLE", "abc"], "SHA256 must be 64 hex digits, got 3"),
    (["BUNDLE", "g" * 64], "SHA256 must be 64 hex digits, got 'g"),
    (["BUNDLE", "a" * 65], "SHA256 must be 64 hex digits, got 65"),
    (["MISSING", "a" * 64], "MISSING is not a file"),
])
def test_bad_arguments_are_refused_before_any_work(args: list[str], expected: str,
                                                   tmp_path: Path, work: Path) -> None:
    bundle = tmp_path / "bundle.lfr"
    bundle.write_bytes(b"not used")
    missing = tmp_path / "no-such.lfr"
    args = [str(bundle) if a == "BUNDLE" else str(missing) if a == "MISSING" else a
            for a in args]
    ran = _run(args, work)
    assert ran.returncode == 2
    assert expected.replace("MISSING", str(missing)) in ran.stderr
    assert list(work.iterdir()) == []


def test_the_bundle_alone_installs_the_first_release(first: BuiltRelease, tmp_path: Path,
                                                    work: Path) -> None:
    """From a root with only release.keys: the release laid out as ``lfr update apply``
    lays it out (its signature checked by the bootstrap's lfr), the systemd files in place,
    the upper-case sha256 accepted, the temporary venv removed."""
    root = _root(tmp_path / "root", first)
    started = time.monotonic()
    ran = _run([str(first.bundle), _sha256(first.bundle).upper(), "--root", str(root),
                "--health-deadline", "600"], work)
    print(f"first install through the bootstrap: {time.monotonic() - started:.1f} s")
    print(ran.stdout)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    out = ran.stdout
    assert f"first-install: {first.bundle} has the announced sha256" in out
    assert "update: signature verified (Ed25519 and ML-DSA-65): release 0.1.0" in out
    assert "update: systemd reload: not reloaded (no reload command)" in out
    assert "update: release 0.1.0 is healthy: health command exited 0" in out
    layout = ReleaseLayout(root)
    assert os.readlink(layout.current) == "releases/0.1.0"
    assert layout.highest_version() == Version("0.1.0")
    release = layout.release_dir(Version("0.1.0"))
    # The release's venv is made from the unit's interpreter, not the temporary venv.
    home = [line for line in (release / "pyvenv.cfg").read_text().splitlines()
            if line.startswith("home = ")]
    assert home == [f"home = {Path(BASE_PYTHON).resolve().parent}"]
    for file in (UNIT_FILE, SYSUSERS_FILE):
        assert (root / file.target).read_bytes() == (release / "firmware" / file.name
                                                     ).read_bytes()
    ran_lfr = subprocess.run([str(layout.current / "bin" / "lfr"), "update", "apply", "--help"],
                             capture_output=True, text=True, timeout=300, check=False,
                             cwd=tmp_path)
    assert ran_lfr.returncode == 0, ran_lfr.stderr
    assert list(work.iterdir()) == []  # the bootstrap venv and the copy are gone
