"""``lfr update apply``: install a signed release bundle beside the running one, switch to it,
and switch back if it does not come up healthy (A/B with rollback).

Order, each step one ``update:`` line on stdout:

1. take the update lock (another update running: ``busy``); remove what an interrupted update
   left under releases/;
2. read the trusted release key (default ROOT/etc/lfr-edge/release.keys); open the bundle and
   verify its manifest's signature, both halves (``bundle_reader``);
3. refuse a bundle for another architecture or Python than this unit's (``other_arch``), and a
   version lower than or equal to the installed one or to the highest ever committed here
   (``rollback``: removing a release cannot reopen an old version);
4. unpack every file into a scratch folder, each checked against its signed size and sha256;
   a file missing, extra, reordered or changed is refused (``file_corrupt``);
5. install into releases/.staging-*, reached through the name releases/<version> (a link while
   it is built, so the venv's scripts name their final path): ``python -m venv``, then ``pip
   install --no-index --no-deps`` of exactly the bundle's wheels (the unit's pip
   configuration ignored), ``pip check``, every model's sha256 compared with the manifest, the
   firmware files and ``release.json`` copied last; then the link is replaced by the folder
   (a rename): a half install never looks complete;
6. switch ``current`` atomically; install the release's unit and sysusers files into
   ROOT/etc/systemd/system and ROOT/usr/lib/sysusers.d where they differ (``system_files``)
   and have the service manager read them (``systemd-sysusers``, ``systemctl daemon-reload``:
   ``ServiceControl.reload_system_files``); restart the node and wait for it to report healthy
   (``service_control``); healthy: the version becomes the highest committed and releases
   older than the two previous ones are removed; not healthy (or anything fails after the
   switch, Ctrl-C included): ``current`` is switched back, the system files it replaced are
   put back and read again, the node restarted on the previous release, and the failed
   release removed.

Guarantees: every refusal before step 6 leaves the layout as it was (``current``, releases,
highest-version) and raises ``UpdateRefused`` (exit 2) naming what was wrong; a failed health
check ends with ``current`` on the previous release and ``UpdateOutcome.healthy`` False (exit
1). Nothing from the bundle is written anywhere before its signature verified.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from packaging.version import Version

from guards.config_checks import require_between
from guards.files import file_sha256
from guards.log_text import printable
from lfr.release.bundle_manifest import MANIFEST_NAME, ReleaseManifest
from lfr.release.bundle_reader import VerifiedBundle, open_bundle
from lfr.release.refusal import RefusalReason, UpdateRefused
from lfr.release.release_layout import (
    INCOMING_PREFIX,
    STAGING_PREFIX,
    ReleaseLayout,
    remove_tree,
)
from lfr.release.service_control import CommandResult, Health, ServiceControl, run_bounded
from lfr.release.system_files import (
    SystemFilesChange,
    install_system_files,
    restore_system_files,
)
from lfr.release.target import running_arch, running_python_tag
from secure.key_files import read_public_keys
from secure.node_keys import NodeRole

KEEP_PREVIOUS = 2
"""Releases kept besides the current one (the newest of the others); older ones are removed."""
RELEASE_UMASK = 0o022
"""Whatever root's umask: a release is readable by the service's own user, writable by root
only."""
TOOL_TIMEOUT_S = 900.0
"""Longest a venv or pip step may take (installing 40 wheels on an SD card takes minutes)."""


@dataclass(frozen=True, slots=True)
class UpdateRequest:
    """What ``lfr update apply`` was asked to do."""

    bundle: Path
    """The release bundle (untrusted)."""
    root: Path
    """The install layout's root (``/`` on a unit)."""
    release_keys: Path | None
    """The trusted release key's public.keys; None: ROOT/etc/lfr-edge/release.keys."""
    health_deadline_s: float
    """Seconds the restarted node has to report healthy."""
    python: str = sys.executable
    """The interpreter the release's venv is made with (its tag must be the bundle's)."""

    def __post_init__(self) -> None:
        require_between("UpdateRequest.health_deadline_s", self.health_deadline_s, 0.001,
                        3600.0)


@dataclass(frozen=True, slots=True)
class UpdateOutcome:
    """How an update ended (refusals raise instead)."""

    version: Version
    """The bundle's version."""
    previous: Version | None
    """The release ``current`` pointed at before."""
    healthy: bool
    """True: ``current`` is the new release. False: it failed its health check and
    ``current`` is back on ``previous``."""


def say(line: str) -> None:
    """One audit line on stdout."""
    print(f"update: {line}", flush=True)


def apply_update(request: UpdateRequest, control: ServiceControl) -> UpdateOutcome:
    """Verify, install and switch to ``request.bundle`` (module docstring)."""
    layout = ReleaseLayout(request.root)
    trusted = read_public_keys(request.release_keys or layout.release_keys, NodeRole.RELEASE)
    layout.base.mkdir(parents=True, exist_ok=True, mode=0o755)
    with layout.update_lock():
        for name in layout.clean_leftovers():
            say(f"removed {printable(name)}, left by an interrupted update")
        installed = layout.installed_version()
        highest = layout.highest_version()
        say(f"installed release: {installed or 'none'}; highest ever installed: "
            f"{highest or 'none'}")
        with open_bundle(request.bundle, trusted) as bundle:
            manifest = bundle.manifest
            say(f"signature verified (Ed25519 and ML-DSA-65): {manifest.describe()}")
            _check_fits(manifest, request.python, installed, highest)
            _install(bundle, layout, request.python)
        return _switch(layout, manifest.parsed_version, installed, control,
                       request.health_deadline_s)


def _check_fits(manifest: ReleaseManifest, python: str, installed: Version | None,
                highest: Version | None) -> None:
    machine = running_arch()
    if manifest.arch.value != machine:
        raise UpdateRefused(RefusalReason.OTHER_ARCH,
                            f"bundle is for {manifest.arch.value}, this unit is "
                            f"{printable(machine)}")
    tag = _python_tag(python)
    if manifest.python_tag != tag:
        raise UpdateRefused(RefusalReason.OTHER_ARCH,
                            f"bundle is for Python {manifest.python_tag}, this unit's "
                            f"interpreter {printable(python)} is {tag}")
    version = manifest.parsed_version
    for floor, what in ((installed, "the installed release"),
                        (highest, "the highest release ever installed here")):
        if floor is not None and version <= floor:
            raise UpdateRefused(RefusalReason.ROLLBACK,
                                f"bundle version {version} is not newer than {what}, {floor}: "
                                "an older or the same release is never installed again")


def _python_tag(python: str) -> str:
    if python == sys.executable:
        return running_python_tag()
    probe = "import sys; print(f'cp{sys.version_info[0]}{sys.version_info[1]}')"
    result = run_bounded((python, "-c", probe), cwd=None, timeout_s=60.0)
    return result.output.strip() if result.returncode == 0 else "unknown"


def _install(bundle: VerifiedBundle, layout: ReleaseLayout, python: str) -> None:
    manifest = bundle.manifest
    version = manifest.parsed_version
    final = layout.release_dir(version)
    staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{version}-", dir=layout.releases))
    scratch = Path(tempfile.mkdtemp(prefix=INCOMING_PREFIX, dir=layout.base))
    try:
        staging.chmod(0o755)  # mkdtemp makes it 0700; the service's user reads the release
        bundle.unpack(scratch)
        say(f"every file verified: {len(manifest.files)} files, {manifest.total_bytes} bytes, "
            "sizes and sha256 as signed")
        remove_tree(final)  # an earlier attempt at this version; never current (it is older)
        os.symlink(staging.name, final)
        _make_venv(staging, final, scratch, manifest, python)
        shutil.copytree(scratch / "firmware", staging / "firmware")
        for path in (staging / "firmware", *(staging / "firmware").iterdir()):
            path.chmod(0o755 if path.is_dir() else 0o644)
        (staging / MANIFEST_NAME).write_bytes(bundle.manifest_bytes)  # last: marks it whole
        (staging / MANIFEST_NAME).chmod(0o644)
        final.unlink()
        staging.rename(final)
        say(f"installed release {version} into {printable(final)}")
    except UpdateRefused:
        raise
    except OSError as exc:
        raise UpdateRefused(RefusalReason.INSTALL_FAILED,
                            f"release {version} could not be installed: "
                            f"{exc.strerror or exc}") from None
    finally:
        remove_tree(scratch)
        if staging.exists():
            remove_tree(staging)
            if final.is_symlink():
                final.unlink()


def _make_venv(staging: Path, release: Path, files: Path, manifest: ReleaseManifest,
               python: str) -> None:
    """The venv is made in ``staging`` (``venv`` refuses a link) and used through ``release``
    (a link to it), so the scripts pip writes name ``release``; the few files ``venv`` itself
    wrote with the staging path (its pip scripts, activate scripts, pyvenv.cfg) are fixed."""
    _tool((python, "-m", "venv", str(staging)), "create the release's venv (python -m venv)")
    _rename_in_venv(staging, str(staging), str(release))
    venv_python = str(release / "bin" / "python")
    wheels = [str(files / entry.path) for entry in manifest.wheels]
    _tool((venv_python, "-m", "pip", "install", "--no-index", "--no-deps", "--no-cache-dir",
           "--disable-pip-version-check", "--isolated", "--quiet", *wheels),
          f"install the bundle's {len(wheels)} wheels (pip install --no-index --no-deps)")
    _tool((venv_python, "-m", "pip", "check", "--disable-pip-version-check", "--isolated"),
          "check that every dependency is installed (pip check)")
    site = _site_packages(release)
    for model in manifest.models:
        path = site / model.path
        digest = file_sha256(path) if path.is_file() else "missing"
        if digest != model.sha256:
            raise UpdateRefused(RefusalReason.INSTALL_FAILED,
                                f"installed model {printable(model.path)} has sha256 {digest}, "
                                f"the signed manifest says {model.sha256}")
    say(f"venv made, {len(wheels)} wheels installed, pip check passed, "
        f"{len(manifest.models)} models match their signed sha256")


def _rename_in_venv(staging: Path, old: str, new: str) -> None:
    candidates = [*sorted((staging / "bin").iterdir()), staging / "pyvenv.cfg"]
    for path in candidates:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > 64 * 1024:
            continue
        data = path.read_bytes()
        if old.encode() in data:
            path.write_bytes(data.replace(old.encode(), new.encode()))


def _tool(argv: tuple[str, ...], step: str) -> CommandResult:
    """Run a venv or pip step without the unit's pip configuration: no PIP_* variables, no
    configuration file (PIP_CONFIG_FILE=/dev/null makes pip skip them all)."""
    environment = {key: value for key, value in os.environ.items()
                   if not key.startswith("PIP_")}
    environment["PIP_CONFIG_FILE"] = os.devnull
    result = run_bounded(argv, cwd=None, timeout_s=TOOL_TIMEOUT_S, env=environment,
                         umask=RELEASE_UMASK)
    if result.returncode != 0:
        ended = ("did not finish in time" if result.returncode is None
                 else f"exit {result.returncode}")
        raise UpdateRefused(RefusalReason.INSTALL_FAILED,
                            f"could not {step} ({ended}): "
                            f"{printable(result.output, max_chars=2000)}")
    return result


def _site_packages(release: Path) -> Path:
    found = sorted((release / "lib").glob("python3.*/site-packages"))
    if len(found) != 1:
        raise UpdateRefused(RefusalReason.INSTALL_FAILED,
                            f"the venv in {printable(release)} has {len(found)} site-packages "
                            "folders, expected one")
    return found[0]




def _switch(layout: ReleaseLayout, version: Version, previous: Version | None,
            control: ServiceControl, deadline_s: float) -> UpdateOutcome:
    layout.switch_current(version)
    say(f"current: {previous or 'none'} -> {version}")
    change = SystemFilesChange(())
    try:
        # install_system_files puts back what it wrote before it raises: nothing to restore
        change = install_system_files(layout.root, layout.release_dir(version))
        if not change.replaced:
            say("systemd files unchanged")
        health = _reload(control, change, "installed")
        if health.healthy:
            health = control.restart_and_check(layout.current, deadline_s)
    except BaseException as exc:  # Ctrl-C or any failure: never left on an unproven release
        why = printable(str(exc)) if isinstance(exc, Exception) else "interrupted"
        say(f"release {version} was not judged healthy ({why})")
        _roll_back(layout, version, previous, control, deadline_s, change=change)
        raise
    if not health.healthy:
        say(f"release {version} is NOT healthy: {health.detail}")
        _roll_back(layout, version, previous, control, deadline_s, change=change)
        return UpdateOutcome(version, previous, healthy=False)
    say(f"release {version} is healthy: {health.detail}")
    layout.record_highest(version)
    _prune(layout, version)
    return UpdateOutcome(version, previous, healthy=True)


def _reload(control: ServiceControl, change: SystemFilesChange, done: str) -> Health:
    """Have the service manager read the system files ``change`` holds (none: nothing)."""
    if not change.replaced:
        return Health(healthy=True, detail="systemd files unchanged")
    say(f"systemd files {done}: {change.describe()}")
    health = control.reload_system_files(change)
    say(f"systemd reload: {health.detail}")
    return health


def _roll_back(layout: ReleaseLayout, failed: Version, previous: Version | None,
               control: ServiceControl, deadline_s: float, *,
               change: SystemFilesChange) -> None:
    """Back to ``previous``: the link, the system files ``change`` replaced (read again by
    the service manager), then the node restarted there (so nothing runs from the failed
    release any more), then the failed release removed; its version is not recorded, so the
    same bundle may be tried again."""
    layout.switch_current(previous)
    say(f"rolled back: current: {failed} -> {previous or 'none'}")
    try:
        _reload(control, restore_system_files(change), "put back")
        if previous is not None:
            health = control.restart_and_check(layout.current, deadline_s)
            say(f"previous release {previous} after the restart: "
                f"{'healthy' if health.healthy else 'NOT healthy'}: {health.detail}")
    finally:
        remove_tree(layout.release_dir(failed))
        say(f"removed the failed release {failed}")


def _prune(layout: ReleaseLayout, current: Version) -> None:
    others = [version for version in layout.installed_releases() if version != current]
    for version in others[:-KEEP_PREVIOUS] if len(others) > KEEP_PREVIOUS else []:
        remove_tree(layout.release_dir(version))
        say(f"removed release {version} (at most {KEEP_PREVIOUS} previous releases are kept)")
