"""``lfr update apply``: the real x86_64 bundle (test_release_bundle.py) installed into a
temporary root and run from there; every refusal leaves the installed release as it was; a new
release that fails its health check is rolled back, and the same release, healthy, is then
committed; the release's unit and sysusers files are installed into ROOT, read again before
the restart and put back on rollback.

Service control here is ``CommandServiceControl`` (no systemd in the tests): the health
command runs in the new ``current`` release; ``SystemdServiceControl`` runs against stand-in
``systemctl`` and ``systemd-sysusers`` scripts."""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import re
import subprocess
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.version import Version

from actors.van.tls_certificate import certificate_fingerprint, format_fingerprint
from guards.exit_codes import ExitCode
from guards.user_input import UserInputError
from lfr.release.bundle_manifest import MANIFEST_NAME, SIGNATURE_NAME, sign_manifest
from lfr.release.commands import add_update_commands
from lfr.release.installer import (
    UpdateOutcome,
    UpdateRequest,
    _prune,
    _switch,
    apply_update,
)
from lfr.release.refusal import RefusalReason, UpdateRefused
from lfr.release.release_layout import ReleaseLayout
from lfr.release.service_control import CommandServiceControl, SystemdServiceControl
from lfr.release.system_files import (
    SYSUSERS_FILE,
    UNIT_FILE,
    SystemFilesChange,
    install_system_files,
    restore_system_files,
)
from secure.key_files import KeyFileError, write_node_keys
from secure.node_keys import NodeKeys, NodeRole
from tests.firmware.test_release_bundle import BuiltRelease, built_release, second_release
from tests.lfr.test_node_config import make_van

REPO_ROOT = Path(__file__).resolve().parents[2]
CLIP = REPO_ROOT / "demo" / "short_hamilton_clip.mp4"
HEALTHY = CommandServiceControl(health=("bin/lfr", "--help"))
DEADLINE_S = 300.0  # generous: the machine is shared; nothing here asserts speed


@pytest.fixture(scope="session")
def first(tmp_path_factory: pytest.TempPathFactory) -> BuiltRelease:
    return built_release(tmp_path_factory)


@dataclass(frozen=True)
class Unit:
    """A temporary root with release 0.1.0 installed."""

    root: Path
    layout: ReleaseLayout
    install_s: float


def _new_root(path: Path, release: BuiltRelease) -> Path:
    (path / "etc" / "lfr-edge").mkdir(parents=True)
    (path / "etc" / "lfr-edge" / "release.keys").write_bytes(release.public_keys.read_bytes())
    return path


def _apply(root: Path, bundle: Path, control: CommandServiceControl = HEALTHY,
           keys: Path | None = None) -> UpdateOutcome:
    return apply_update(UpdateRequest(bundle=bundle, root=root, release_keys=keys,
                                      health_deadline_s=DEADLINE_S), control)


@pytest.fixture(scope="module")
def unit(first: BuiltRelease, tmp_path_factory: pytest.TempPathFactory) -> Unit:
    root = _new_root(tmp_path_factory.mktemp("unit-root"), first)
    started = time.monotonic()
    outcome = _apply(root, first.bundle)
    assert outcome == UpdateOutcome(Version("0.1.0"), None, healthy=True)
    return Unit(root, ReleaseLayout(root), time.monotonic() - started)


def _system_file(path: Path) -> tuple[bytes, str] | None:
    return (path.read_bytes(), oct(path.stat().st_mode & 0o777)) if path.exists() else None


def _state(layout: ReleaseLayout) -> dict[str, object]:
    """What an update may change: the link, the highest version, every name under the base,
    the installed unit and sysusers files (bytes and mode)."""
    return {"current": os.readlink(layout.current) if layout.current.is_symlink() else None,
            "highest": layout.highest_file.read_text() if layout.highest_file.exists()
            else None,
            "base": sorted(path.name for path in layout.base.iterdir()),
            "releases": sorted(path.name for path in layout.releases.iterdir()),
            "unit file": _system_file(layout.root / UNIT_FILE.target),
            "sysusers file": _system_file(layout.root / SYSUSERS_FILE.target)}


def _run(argv: list[str], cwd: Path, timeout_s: float = 600.0) -> subprocess.CompletedProcess[str]:
    environment = {key: value for key, value in os.environ.items()
                   if key not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout_s,
                          env=environment, check=False)


# -- installing and running the installed copy -------------------------------------------------


def test_the_bundle_installs_as_a_venv_that_runs_by_itself(unit: Unit, first: BuiltRelease,
                                                            tmp_path: Path) -> None:
    print(f"install of {first.bundle.stat().st_size} bytes: {unit.install_s:.1f} s")
    layout = unit.layout
    release = layout.release_dir(Version("0.1.0"))
    assert os.readlink(layout.current) == "releases/0.1.0"
    assert layout.highest_file.read_text() == "0.1.0\n"
    assert (release / MANIFEST_NAME).read_bytes() == json.dumps(
        json.loads((release / MANIFEST_NAME).read_bytes()), indent=1, sort_keys=True
    ).encode() + b"\n"
    assert (release / "firmware" / "lfr-edge.service").is_file()
    assert oct(release.stat().st_mode & 0o777) == "0o755"
    # The release's systemd files, where systemd reads them (0644, as shipped).
    for file in (UNIT_FILE, SYSUSERS_FILE):
        shipped = (release / "firmware" / file.name).read_bytes()
        assert _system_file(unit.root / file.target) == (shipped, "0o644"), file.name
    assert b"User=lfr-edge" in (unit.root / UNIT_FILE.target).read_bytes()
    # The installed interpreter imports the installed code, not this checkout's.
    where = _run([str(release / "bin" / "python"), "-c",
                  "import lfr, models, cv2, ai_edge_litert, dlib; print(lfr.__file__)"],
                 cwd=tmp_path)
    assert where.returncode == 0, where.stderr
    assert where.stdout.strip().startswith(str(release.resolve() / "lib"))
    shown = _run([str(layout.current / "bin" / "lfr"), "--help"], cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "edge" in shown.stdout


def test_the_installed_copy_provisions_a_unit_and_runs_its_self_test(unit: Unit,
                                                                    tmp_path: Path) -> None:
    """The installed ``lfr`` provisions a unit into ROOT/etc and ROOT/var, and its self-test
    passes every item that needs no van (there is none here: the van item fails, so exit 1)."""
    lfr = str(unit.layout.release_dir(Version("0.1.0")) / "bin" / "lfr")
    van = tmp_path / "van"
    van.mkdir()
    make_van(van)
    pin = format_fingerprint(certificate_fingerprint(van / "tls" / "tls.crt"))
    etc, state = unit.root / "etc" / "lfr-edge", unit.root / "var" / "lib" / "lfr-edge"
    state.parent.mkdir(parents=True)  # /var/lib exists on a unit
    provisioned = _run([lfr, "provision", "--unit-id", "unit-7", "--van", "https://127.0.0.1:9",
                        "--van-pubkeys", str(van / "keys" / "public.keys"),
                        "--authority-pubkeys", str(van / "authority" / "public.keys"),
                        "--van-tls-fingerprint", pin, "--out", str(etc),
                        "--state-dir", str(state), "--camera", f"door={CLIP}"], cwd=tmp_path)
    assert provisioned.returncode == 0, provisioned.stdout + provisioned.stderr
    checked = _run([lfr, "edge", "--self-test", "--config", str(etc / "unit.toml")],
                   cwd=tmp_path)
    print(checked.stdout)
    lines = dict(re.findall(r"^self-test (\S+): (pass|FAIL|skipped)\b", checked.stdout,
                            flags=re.MULTILINE))
    for item in ("config", "keys", "models", "recognition", "camera:door"):
        assert lines[item] == "pass", (item, checked.stdout, checked.stderr)
    assert lines["van"] == "FAIL"
    assert checked.returncode == ExitCode.VERIFICATION_FAILED


# -- refusals: the installed release stays ---------------------------------------------------

Document = dict[str, object]
Members = list[tuple[str, object]]


def _rewrite(release: BuiltRelease, out: Path, *, edit: Callable[[Document], None] | None = None,
             sign_with: NodeKeys | None = None, claim: NodeKeys | None = None,
             members: Callable[[Members, Callable[[str], bytes]], Members] | None = None
             ) -> Path:
    """A copy of ``release``'s bundle with its manifest edited and signed again (by the release
    key unless ``sign_with``; naming ``claim``'s key when given) and its members changed."""
    with tarfile.open(release.bundle) as source:
        document = json.loads(source.extractfile(MANIFEST_NAME).read())  # type: ignore[union-attr]
        if edit is not None:
            edit(document)
        signer = sign_with or release.keys
        named = claim or signer
        document["signer_id"] = named.node_id
        document["signer_key_id"] = named.signing.key_id.hex()
        manifest = (json.dumps(document, indent=1, sort_keys=True) + "\n").encode()
        listed: Members = [(MANIFEST_NAME, manifest),
                           (SIGNATURE_NAME, sign_manifest(manifest, signer))]
        listed += [(info.name, info) for info in source.getmembers()
                   if info.name not in {MANIFEST_NAME, SIGNATURE_NAME}]
        if members is not None:
            listed = members(listed, lambda name: source.extractfile(name).read())  # type: ignore[union-attr]
        with tarfile.open(out, "w", format=tarfile.USTAR_FORMAT) as archive:
            for name, item in listed:
                if isinstance(item, tarfile.TarInfo) and item.name == name and item.isfile():
                    archive.addfile(item, source.extractfile(item))
                elif isinstance(item, tarfile.TarInfo):  # a special member as it is
                    archive.addfile(item)
                else:
                    assert isinstance(item, bytes)
                    info = tarfile.TarInfo(name)
                    info.size = len(item)
                    archive.addfile(info, _Reader(item))
    return out


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.offset = data, 0

    def read(self, size: int = -1) -> bytes:
        end = len(self.data) if size < 0 else self.offset + size
        chunk, self.offset = self.data[self.offset:end], min(end, len(self.data))
        return chunk


def _header_only(members: Members, _: Callable[[str], bytes]) -> Members:
    """Only the manifest and its signature: these refusals come before any file is read."""
    return members[:2]


def _version(version: str) -> Callable[[Document], None]:
    return lambda document: document.update(version=version)


def _replace_member(name: str, change: Callable[[bytes], bytes]
                    ) -> Callable[[Members, Callable[[str], bytes]], Members]:
    def edit(members: Members, read: Callable[[str], bytes]) -> Members:
        return [(n, change(read(name))) if n == name else (n, item) for n, item in members]
    return edit


def _flip_middle(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 0x01]) + data[middle + 1:]


def _symlink(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, "/etc/shadow"
    return info


NEWER = _version("9.0.0")
OTHER_KEY = NodeKeys.generate(NodeRole.RELEASE, "release-rogue")
SERVICE = "firmware/lfr-edge.service"

REFUSALS: dict[str, tuple[Callable[[BuiltRelease, Path], Path], RefusalReason, str]] = {
    "one file tampered (the project wheel, one bit)": (
        lambda r, out: _rewrite(r, out, edit=NEWER, members=_replace_member(
            r.manifest.project_wheel, _flip_middle)),
        RefusalReason.FILE_CORRUPT, (r"file wheels/lfr_edge-.* has sha256 .* the signed "
                                    r"manifest says .* \(altered or damaged\)")),
    "signed by another release key": (
        lambda r, out: _rewrite(r, out, edit=NEWER, sign_with=OTHER_KEY,
                                members=_header_only),
        RefusalReason.OTHER_KEY, ("bundle signed by release-rogue with key .*; this unit "
                                 "trusts release key release-test")),
    "claims the trusted key, signed by another": (
        lambda r, out: _rewrite(r, out, edit=NEWER, sign_with=OTHER_KEY, claim=r.keys,
                                members=_header_only),
        RefusalReason.SIGNATURE, "signature invalid: neither half verifies"),
    "lower version": (
        lambda r, out: _rewrite(r, out, edit=_version("0.0.9"), members=_header_only),
        RefusalReason.ROLLBACK, ("bundle version 0.0.9 is not newer than the installed "
                                "release, 0.1.0")),
    "equal version (the installed bundle again)": (
        lambda r, out: r.bundle,
        RefusalReason.ROLLBACK, ("bundle version 0.1.0 is not newer than the installed "
                                "release, 0.1.0")),
    "another architecture": (
        lambda r, out: _rewrite(r, out, edit=lambda d: d.update(version="9.0.0",
                                                                arch="aarch64"),
                                members=_header_only),
        RefusalReason.OTHER_ARCH, "bundle is for aarch64, this unit is x86_64"),
    "another Python": (
        lambda r, out: _rewrite(r, out, edit=lambda d: d.update(version="9.0.0",
                                                                python_tag="cp312"),
                                members=_header_only),
        RefusalReason.OTHER_ARCH, "bundle is for Python cp312, this unit's interpreter"),
    "a traversal name": (
        lambda r, out: _rewrite(r, out, edit=NEWER, members=lambda m, _: [
            *m[:2], ("../../etc/cron.d/lfr", b"* * * * * root sh -c evil\n"), *m[2:]]),
        RefusalReason.MALFORMED, r"member name '\.\./\.\./etc/cron\.d/lfr' is not allowed"),
    "a symbolic link": (
        lambda r, out: _rewrite(r, out, edit=NEWER, members=lambda m, _: [
            (n, _symlink(n)) if n == SERVICE else (n, i) for n, i in m]),
        RefusalReason.MALFORMED, "member firmware/lfr-edge.service is not a regular file"),
    "an oversized manifest": (
        lambda r, out: _rewrite(r, out, members=lambda m, _: [
            (MANIFEST_NAME, b" " * (1024 * 1024 + 1)), *m[1:2]]),
        RefusalReason.OVERSIZE, ("bundle member release.json has 1048577 bytes, over its "
                                "limit of 1048576")),
    "a file longer than signed": (
        lambda r, out: _rewrite(r, out, edit=NEWER, members=_replace_member(
            SERVICE, lambda data: data + b"ExecStartPre=/bin/sh -c evil\n")),
        RefusalReason.FILE_CORRUPT, (r"file firmware/lfr-edge.service has \d+ bytes, the "
                                    r"signed manifest says \d+")),
    "a file missing": (
        lambda r, out: _rewrite(r, out, edit=NEWER, members=lambda m, _: m[:-1]),
        RefusalReason.FILE_CORRUPT, (r"file firmware/\S+ is missing \(the bundle ends before "
                                    r"it\)")),
    "an extra member": (
        lambda r, out: _rewrite(r, out, edit=NEWER, members=lambda m, _: [
            *m, ("firmware/extra.conf", b"[Service]\n")]),
        RefusalReason.FILE_CORRUPT, "member firmware/extra.conf follows the last file"),
    "not a bundle": (
        lambda r, out: (out.write_bytes(b"MZ" * 4096), out)[1],
        RefusalReason.MALFORMED, "not a valid release bundle: header checksum"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_a_bad_bundle_is_refused_and_the_installed_release_stays(
        case: str, unit: Unit, first: BuiltRelease, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    make, reason, expected = REFUSALS[case]
    bundle = make(first, tmp_path / "bundle.lfr")
    before = _state(unit.layout)
    with pytest.raises(UpdateRefused, match=expected) as refused:
        _apply(unit.root, bundle)
    assert refused.value.reason is reason
    assert _state(unit.layout) == before
    assert "current:" not in capsys.readouterr().out  # never switched


def test_the_highest_version_ever_committed_stays_refused_after_an_uninstall(
        first: BuiltRelease, tmp_path: Path) -> None:
    """Removing every release (and current) does not reopen an old version."""
    root = _new_root(tmp_path, first)
    layout = ReleaseLayout(root)
    layout.base.mkdir(parents=True)
    layout.highest_file.write_text("0.1.0\n")
    with pytest.raises(UpdateRefused, match=r"not newer than the highest release ever "
                                            r"installed here, 0\.1\.0") as refused:
        _apply(root, first.bundle)
    assert refused.value.reason is RefusalReason.ROLLBACK
    assert not layout.current.exists()


def test_only_the_trusted_release_key_file_is_taken(first: BuiltRelease, tmp_path: Path) -> None:
    root = tmp_path / "root"
    with pytest.raises(KeyFileError, match=r"release\.keys: no such file"):
        _apply(root, first.bundle)
    authority = write_node_keys(NodeKeys.generate(NodeRole.AUTHORITY, "auth-1"), tmp_path / "a")
    with pytest.raises(KeyFileError, match="authority"):
        _apply(root, first.bundle, keys=authority.public)
    assert not root.exists()


def test_a_second_update_at_the_same_time_is_refused(unit: Unit, first: BuiltRelease) -> None:
    before = _state(unit.layout)
    fd = os.open(unit.layout.lock_file, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(UpdateRefused, match="another update is running") as refused:
            _apply(unit.root, first.bundle)
    finally:
        os.close(fd)
    assert refused.value.reason is RefusalReason.BUSY
    assert _state(unit.layout) == before


def test_what_an_interrupted_update_left_is_removed(unit: Unit, first: BuiltRelease,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    layout = unit.layout
    before = _state(layout)
    (layout.releases / ".staging-9.0.0-abc").mkdir()
    (layout.releases / "9.0.0").symlink_to(".staging-9.0.0-abc")
    (layout.base / ".incoming-xyz").mkdir()
    with pytest.raises(UpdateRefused):
        _apply(unit.root, first.bundle)  # refused (same version), after the clean-up
    out = capsys.readouterr().out
    for name in (".incoming-xyz", "releases/.staging-9.0.0-abc", "releases/9.0.0"):
        assert f"removed {name}, left by an interrupted update" in out
    assert _state(layout) == before


def test_at_most_two_previous_releases_are_kept(tmp_path: Path) -> None:
    layout = ReleaseLayout(tmp_path)
    for version in ("0.1.0", "0.2.0", "0.10.0", "0.3.0", "1.0.0"):
        (layout.release_dir(Version(version))).mkdir(parents=True)
        (layout.release_dir(Version(version)) / MANIFEST_NAME).write_text("{}")
    _prune(layout, Version("0.3.0"))  # the current one need not be the newest
    assert [str(v) for v in layout.installed_releases()] == ["0.3.0", "0.10.0", "1.0.0"]


# -- a failed health check is rolled back ------------------------------------------------------


@pytest.fixture
def cli() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lfr")
    add_update_commands(parser.add_subparsers(dest="command", required=True))
    return parser


def test_a_release_failing_its_health_check_is_rolled_back_then_a_healthy_retry_commits(
        unit: Unit, first: BuiltRelease, tmp_path_factory: pytest.TempPathFactory,
        tmp_path: Path, cli: argparse.ArgumentParser, capsys: pytest.CaptureFixture[str]) -> None:
    """0.2.0 fails its health check: ``current`` goes back to 0.1.0, the system files it
    replaced are put back and reloaded, the node is restarted there, 0.2.0 is removed and not
    remembered (so the same bundle may be tried again); tried again with a passing check, 0.2.0
    is committed and 0.1.0 kept as the previous release.

    Both releases ship the same systemd files, so the installed ones are made to differ first
    (a unit file edited by hand, no sysusers file): 0.2.0 replaces both, the reload runs with
    its files in place before its restart, and the rollback puts the edited ones back."""
    second = second_release(tmp_path_factory)
    layout = unit.layout
    unit_file, users_file = unit.root / UNIT_FILE.target, unit.root / SYSUSERS_FILE.target
    edited = b"# an older unit file\n[Service]\nExecStart=/bin/true\n"
    unit_file.write_bytes(edited)
    unit_file.chmod(0o600)
    users_file.unlink()
    before = _state(layout)
    log = tmp_path / "service.log"
    args = cli.parse_args([
        "update", "apply", str(second.bundle), "--root", str(unit.root),
        "--health-deadline", str(DEADLINE_S),
        "--reload-command", (f"sh -c 'echo reload $(sha256sum < {unit_file} | cut -c1-64) "
                             f"$(test -e {users_file} && echo users || echo no-users) >> {log}'"),
        "--restart-command", f"sh -c 'echo restart $(pwd -P) >> {log}'",
        "--health-command", "bin/python -c 'raise SystemExit(3)'"])
    assert args.func(args) == ExitCode.VERIFICATION_FAILED
    out = capsys.readouterr().out
    assert ("systemd files installed: usr/lib/sysusers.d/lfr-edge.conf, "
            "etc/systemd/system/lfr-edge.service") in out
    assert "release 0.2.0 is NOT healthy: health command exited 3" in out
    assert "rolled back: current: 0.2.0 -> 0.1.0" in out
    assert "systemd files put back: usr/lib/sysusers.d/lfr-edge.conf, " in out
    assert "previous release 0.1.0 after the restart: NOT healthy" in out  # same failing check
    assert _state(layout) == before  # current, highest-version, releases, systemd files
    base = layout.releases.resolve()
    shipped = hashlib.sha256((first.source / "firmware" / UNIT_FILE.name).read_bytes())
    assert log.read_text().splitlines() == [
        f"reload {shipped.hexdigest()} users",  # 0.2.0's files in place before its restart
        f"restart {base / '0.2.0'}",
        f"reload {hashlib.sha256(edited).hexdigest()} no-users",  # put back before the restart
        f"restart {base / '0.1.0'}"]

    started = time.monotonic()
    outcome = _apply(unit.root, second.bundle)
    print(f"second install: {time.monotonic() - started:.1f} s")
    assert outcome == UpdateOutcome(Version("0.2.0"), Version("0.1.0"), healthy=True)
    assert os.readlink(layout.current) == "releases/0.2.0"
    assert layout.highest_file.read_text() == "0.2.0\n"
    assert [str(v) for v in layout.installed_releases()] == ["0.1.0", "0.2.0"]
    assert "systemd reload: not reloaded (no reload command): usr/lib/sysusers.d/" in (
        capsys.readouterr().out)
    for file in (UNIT_FILE, SYSUSERS_FILE):  # the edited unit file replaced again
        shipped_file = (layout.current / "firmware" / file.name).read_bytes()
        assert _system_file(unit.root / file.target) == (shipped_file, "0o644")
    ran = subprocess.run([str(layout.current / "bin" / "lfr"), "--help"], capture_output=True,
                         timeout=300, check=False, cwd=tmp_path)
    assert ran.returncode == 0
    # Now 0.1.0 is refused even though it is still installed.
    with pytest.raises(UpdateRefused, match=r"0\.1\.0 is not newer than the installed "
                                            r"release, 0\.2\.0"):
        _apply(unit.root, first.bundle)


# -- systemd service control (systemctl stood in for by a script: no systemd runs here) --------


def _fake_systemctl(folder: Path, *, restart_exit: int, states: list[str]) -> Path:
    """A ``systemctl`` that logs its arguments, exits ``restart_exit`` on ``restart`` and
    answers each ``show`` with the next of ``states`` (the last one repeated)."""
    for index, state in enumerate(states):
        (folder / f"state-{index}").write_text(state)
    script = folder / "systemctl"
    script.write_text(f"""#!/bin/sh
echo "$@" >> {folder}/calls
if [ "$1" = reset-failed ]; then exit 0; fi
if [ "$1" = restart ]; then echo "Job for $2 failed." >&2; exit {restart_exit}; fi
n=$(cat {folder}/n 2>/dev/null || echo 0)
if [ -e {folder}/state-$n ]; then cat {folder}/state-$n; echo $((n + 1)) > {folder}/n
else cat {folder}/state-{len(states) - 1}; fi
""")
    script.chmod(0o755)
    return script


def _show(active: str, restarts: int, kind: str = "notify") -> str:
    return (f"Type={kind}\nActiveState={active}\nSubState=running\nResult=success\n"
            f"NRestarts={restarts}\n")


@pytest.mark.parametrize(("restart_exit", "states", "healthy", "expected"), [
    (0, [_show("active", 2)], True,
     "lfr-edge.service active (READY=1 received), no restart in 0.3 s"),
    (0, [_show("active", 2, kind="simple")], True, "Type=simple, no readiness notification"),
    (1, [_show("active", 0)], False,
     "systemctl restart lfr-edge.service exited 1: Job for lfr-edge.service failed."),
    (0, [_show("failed", 0)], False, "lfr-edge.service is failed/running"),
    (0, [_show("active", 0), _show("active", 0), _show("active", 1)], False,
     "did not stay up: active/running (result success), NRestarts 0 -> 1"),
    (0, [_show("active", 0), _show("activating", 0)], False, "did not stay up: activating"),
])
def test_systemd_health_is_active_after_the_restart_and_no_restart_while_settling(
        tmp_path: Path, restart_exit: int, states: list[str], healthy: bool,
        expected: str) -> None:
    fake = _fake_systemctl(tmp_path, restart_exit=restart_exit, states=states)
    control = SystemdServiceControl(systemctl=str(fake), settle_s=0.3, poll_s=0.05)
    health = control.restart_and_check(tmp_path, deadline_s=60.0)
    assert health.healthy is healthy
    assert expected in health.detail
    calls = (tmp_path / "calls").read_text().splitlines()
    assert calls[:2] == ["reset-failed lfr-edge.service", "restart lfr-edge.service"]


def test_a_health_command_that_outlives_the_deadline_is_killed_with_its_children(
        tmp_path: Path) -> None:
    marker = tmp_path / "late"
    control = CommandServiceControl(health=(
        "sh", "-c", f"(sleep 3; touch {marker}) & sleep 60"))
    health = control.restart_and_check(tmp_path, deadline_s=0.5)
    assert not health.healthy
    assert "did not finish within" in health.detail
    time.sleep(4)
    assert not marker.exists()  # the background child died with the group


# -- the release's systemd files ------------------------------------------------------------


def _fake_release(layout: ReleaseLayout, version: str, unit_text: bytes,
                  users_text: bytes | None) -> Path:
    """A release folder as the installer leaves it, with only what switching reads."""
    release = layout.release_dir(Version(version))
    (release / "firmware").mkdir(parents=True)
    (release / "firmware" / UNIT_FILE.name).write_bytes(unit_text)
    if users_text is not None:
        (release / "firmware" / SYSUSERS_FILE.name).write_bytes(users_text)
    (release / MANIFEST_NAME).write_text("{}")
    return release


def test_system_files_are_installed_all_or_nothing_and_put_back_as_they_were(
        tmp_path: Path) -> None:
    layout = ReleaseLayout(tmp_path)
    release = _fake_release(layout, "0.2.0", b"[Service]\nType=notify\n", b"u lfr-edge -\n")
    unit_file, users_file = tmp_path / UNIT_FILE.target, tmp_path / SYSUSERS_FILE.target
    # The sysusers file is a link (installed first, so it is replaced), and a folder stands
    # where the unit file goes (refused): the replaced link must come back.
    users_file.parent.mkdir(parents=True)
    users_file.symlink_to("/usr/share/lfr-edge-old.conf")
    unit_file.mkdir(parents=True)
    with pytest.raises(UpdateRefused, match=r"lfr-edge\.service is not a regular file") as bad:
        install_system_files(tmp_path, release)
    assert bad.value.reason is RefusalReason.LAYOUT
    # The sysusers link it had already replaced is a link again, pointing where it did.
    assert os.readlink(users_file) == "/usr/share/lfr-edge-old.conf"
    assert sorted(p.name for p in users_file.parent.iterdir()) == ["lfr-edge.conf"]

    unit_file.rmdir()
    change = install_system_files(tmp_path, release)
    assert change.describe() == ("usr/lib/sysusers.d/lfr-edge.conf, "
                                 "etc/systemd/system/lfr-edge.service")
    assert change.unit_file_changed
    assert change.users_file == users_file
    assert _system_file(unit_file) == (b"[Service]\nType=notify\n", "0o644")
    assert not users_file.is_symlink()
    assert not install_system_files(tmp_path, release).replaced  # unchanged: nothing written
    put_back = restore_system_files(change)
    assert os.readlink(users_file) == "/usr/share/lfr-edge-old.conf"
    assert not unit_file.exists()  # there was none
    assert put_back.users_file is None  # a link to nothing is no file to apply
    assert sorted(p.name for p in unit_file.parent.iterdir()) == []  # no temporary files


def test_a_failed_reload_rolls_back_without_restarting_the_new_release(tmp_path: Path) -> None:
    layout = ReleaseLayout(tmp_path)
    layout.base.mkdir(parents=True)
    _fake_release(layout, "0.1.0", b"[Service]\n# 0.1.0\n", None)
    _fake_release(layout, "0.2.0", b"[Service]\n# 0.2.0\n", None)
    layout.switch_current(Version("0.1.0"))
    install_system_files(tmp_path, layout.release_dir(Version("0.1.0")))
    log = tmp_path / "service.log"
    unit_file = tmp_path / UNIT_FILE.target
    control = CommandServiceControl(
        health=("true",), restart=("sh", "-c", f"echo restart $(pwd -P) >> {log}"),
        reload=("sh", "-c", f"tail -n1 {unit_file} >> {log}; grep -q 0.1.0 {unit_file}"))
    outcome = _switch(layout, Version("0.2.0"), Version("0.1.0"), control, 60.0)
    assert outcome == UpdateOutcome(Version("0.2.0"), Version("0.1.0"), healthy=False)
    assert os.readlink(layout.current) == "releases/0.1.0"
    assert unit_file.read_bytes() == b"[Service]\n# 0.1.0\n"
    assert not layout.release_dir(Version("0.2.0")).exists()
    assert log.read_text().splitlines() == [
        "# 0.2.0", "# 0.1.0", f"restart {layout.release_dir(Version('0.1.0')).resolve()}"]


def test_systemd_reads_a_changed_sysusers_file_then_the_units(tmp_path: Path) -> None:
    fake = _fake_systemctl(tmp_path, restart_exit=0, states=[_show("active", 0)])
    sysusers = tmp_path / "systemd-sysusers"
    sysusers.write_text(f"#!/bin/sh\necho sysusers \"$@\" >> {tmp_path}/calls\n")
    sysusers.chmod(0o755)
    layout = ReleaseLayout(tmp_path / "root")
    release = _fake_release(layout, "0.1.0", b"[Service]\n", b"u lfr-edge -\n")
    change = install_system_files(layout.root, release)
    control = SystemdServiceControl(systemctl=str(fake), sysusers=str(sysusers))
    health = control.reload_system_files(change)
    assert health.healthy, health.detail
    users_file = layout.root / SYSUSERS_FILE.target
    assert (tmp_path / "calls").read_text().splitlines() == [
        f"sysusers {users_file}", "daemon-reload"]
    failing = SystemdServiceControl(systemctl=str(fake), sysusers="false")
    health = failing.reload_system_files(change)
    assert not health.healthy
    assert health.detail.startswith(f"false {users_file} exited 1")
    unit_only = SystemFilesChange(tuple(item for item in change.replaced
                                        if item.file is UNIT_FILE))
    assert control.reload_system_files(unit_only).detail == f"ran {fake} daemon-reload"


@pytest.mark.parametrize(("argv", "expected"), [
    (["--root", "ROOT"], ("--root ROOT needs --health-command: systemd restarts only this "
                          "machine's own service")),
    (["--reload-command", "true"], "--reload-command needs --health-command"),
    (["--restart-command", "true"], "--restart-command needs --health-command"),
])
def test_systemd_control_only_for_this_machines_root(
        argv: list[str], expected: str, cli: argparse.ArgumentParser, tmp_path: Path) -> None:
    argv = [str(tmp_path) if item == "ROOT" else item for item in argv]
    args = cli.parse_args(["update", "apply", str(tmp_path / "bundle.lfr"), *argv])
    with pytest.raises(UserInputError, match=re.escape(expected.replace("ROOT",
                                                                      str(tmp_path)))):
        args.func(args)
    assert sorted(tmp_path.iterdir()) == []
