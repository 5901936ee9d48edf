"""``lfr release build``: one signed bundle for one architecture, from a source checkout.

Steps (each printed as one line on stdout):

1. the release key is read (``secure.key_files``; a release key only) and the version checked
   (PEP 440, normal form);
2. the source checkout is found (``--source``, default the current folder);
3. the lock's lines for the target are chosen by evaluating their markers against the target
   (``lock_file.select``), and those wheels fetched with ``pip download --require-hashes
   --only-binary=:all: --no-deps --platform ...`` (or taken from ``--wheelhouse`` with
   ``--no-index``); each file must then be a wheel of exactly that name and version, for a tag
   the target runs, with a sha256 the lock lists;
4. the source is copied (every file git tracks or would track: ``git ls-files --cached
   --others --exclude-standard``, so nothing ignored such as ``build/`` or ``.venv`` reaches
   the wheel) and the project wheel built in the copy with the locked build tools (``pip
   wheel --no-deps --no-build-isolation``; the running setuptools and wheel must be the
   versions ``requirements-build.lock`` pins);
5. the models are listed from inside the project wheel (``models/data/``) with their sha256;
6. the manifest is made, signed and written with the files into the bundle (``bundle_tar``).

Guarantees: the bundle is written only when every step succeeded, never over an existing file;
temporary files are removed whatever happens; every failure is a ``UserInputError`` naming the
step and what was wrong (pip's last lines included).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename

from guards.config_checks import require_positive
from guards.files import file_sha256, read_user_file
from guards.log_text import printable
from guards.user_input import UserInputError
from lfr.release.bundle_manifest import (
    MANIFEST_NAME,
    MAX_FILE_BYTES,
    SIGNATURE_NAME,
    BundleFile,
    ReleaseManifest,
    encode_manifest,
    parse_version,
    sign_manifest,
)
from lfr.release.bundle_tar import SourceMember, write_bundle
from lfr.release.lock_file import LockedRequirement, read_lock, select
from lfr.release.refusal import UpdateRefused
from lfr.release.target import PYTHON_TAG, PYTHON_VERSION, Arch
from secure.key_files import read_node_keys
from secure.node_keys import NodeKeys, NodeRole

LOCK_FILE = "requirements.lock"
"""The runtime lock, at the checkout's top."""
BUILD_LOCK_FILE = "requirements-build.lock"
"""The build tools' lock."""
SERVICE_FILE = "firmware/lfr-edge.service"
"""The systemd unit every bundle carries."""
MODELS_FOLDER = "models/data/"
"""Where the models lie inside the project wheel."""
MODEL_SUFFIXES = (".tflite", ".dat")
"""What counts as a model there (TFLite and dlib files; the self-test's photo does not)."""
MAX_FIRMWARE_FILE_BYTES = 64 * 1024
"""A unit file or drop-in is a few KB."""
_TOOL_TAIL_CHARS = 2000


class BuildError(UserInputError):
    """A step of the build failed; the text names the step and why."""


@dataclass(frozen=True, slots=True)
class BuildRequest:
    """What ``lfr release build`` was asked for."""

    arch: Arch
    """The target architecture."""
    key_file: Path
    """The release key's ``signing.key``."""
    version: str
    """The release version (PEP 440, normal form)."""
    out: Path
    """Where the bundle goes (must not exist)."""
    source: Path
    """The source checkout."""
    wheelhouse: Path | None
    """A folder to take the dependency wheels from instead of the index (still hash-checked)."""
    tool_timeout_s: float = 1800.0
    """How long pip may take for one step (a slow link fetches ~200 MB)."""

    def __post_init__(self) -> None:
        parse_version(self.version)
        require_positive("BuildRequest.tool_timeout_s", self.tool_timeout_s)


def build_release(request: BuildRequest) -> ReleaseManifest:
    """Build, sign and write the bundle ``request`` describes; returns its manifest."""
    _check_out(request.out)  # before minutes of work, not after
    keys = _release_key(request.key_file)
    source = _checked_source(request.source)
    _say(f"release {request.version} for {request.arch.value}: signing with release key "
         f"{keys.public().describe()}")
    locked = select(read_lock(source / LOCK_FILE), request.arch)
    _check_build_tools(source / BUILD_LOCK_FILE)
    with tempfile.TemporaryDirectory(prefix="lfr-release-") as scratch:
        work = Path(scratch)
        wheels = _fetch_dependencies(locked, request, work / "deps")
        _say(f"fetched {len(wheels)} locked wheels for {request.arch.value}"
             + (f" from {printable(request.wheelhouse)}" if request.wheelhouse else ""))
        project_wheel = _build_project_wheel(source, work, request.tool_timeout_s)
        _say(f"built {project_wheel.name}")
        models = _models_in(project_wheel)
        _say("models in the wheel: " + ", ".join(
            f"{Path(m.path).name} {m.sha256[:12]}" for m in models))
        firmware = _firmware_files(source)
        members = [(f"wheels/{project_wheel.name}", project_wheel),
                   *((f"wheels/{wheel.name}", wheel) for wheel in wheels),
                   *((f"firmware/{path.name}", path) for path in firmware)]
        built_at = time.time()
        manifest = ReleaseManifest(
            version=request.version, arch=request.arch, python_tag=PYTHON_TAG,
            built_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(built_at)),
            signer_id=keys.node_id, signer_key_id=keys.signing.key_id,
            project_wheel=f"wheels/{project_wheel.name}",
            files=tuple(_entry(name, path) for name, path in members), models=models)
        manifest_bytes = encode_manifest(manifest)
        signature = sign_manifest(manifest_bytes, keys)
        size = write_bundle(request.out, [
            SourceMember(MANIFEST_NAME, manifest_bytes), SourceMember(SIGNATURE_NAME, signature),
            *(SourceMember(name, path) for name, path in members)], mtime=int(built_at))
    _say(f"wrote {printable(request.out)}: {len(members)} files, {size} bytes, "
         f"{manifest.describe()}")
    return manifest


def _say(line: str) -> None:
    print(f"release build: {line}", flush=True)


def _check_out(out: Path) -> None:
    if os.path.lexists(out):
        raise BuildError(f"--out {printable(out)} already exists; a bundle is never "
                         "overwritten")
    if not out.parent.is_dir():
        raise BuildError(f"--out {printable(out)}: folder {printable(out.parent)} does not "
                         "exist")


def _release_key(path: Path) -> NodeKeys:
    keys = read_node_keys(path)
    if keys.role is not NodeRole.RELEASE:
        raise BuildError(f"--key {printable(path)} is a {keys.role.value} key, not a release "
                         "key (make one with `lfr keys init --role release`)")
    return keys


def _checked_source(path: Path) -> Path:
    source = path.resolve()
    for name in ("pyproject.toml", LOCK_FILE, BUILD_LOCK_FILE, SERVICE_FILE):
        if not (source / name).is_file():
            raise BuildError(f"source {printable(source)} has no {name}: run from a source "
                             "checkout of lfr-edge (or give --source)")
    return source


def _check_build_tools(build_lock: Path) -> None:
    """The running setuptools and wheel must be the locked ones (``make`` installs them)."""
    for entry in read_lock(build_lock):
        if entry.name not in {"setuptools", "wheel"}:
            continue
        try:
            installed = importlib.metadata.version(entry.name)
        except importlib.metadata.PackageNotFoundError:
            installed = "none"
        if installed != entry.version:
            raise BuildError(f"build tool {entry.name} is {installed}, {BUILD_LOCK_FILE} pins "
                             f"{entry.version}: install the locked build tools (pip install "
                             f"--require-hashes --no-deps -r {BUILD_LOCK_FILE})")


def _build_project_wheel(source: Path, work: Path, timeout_s: float) -> Path:
    copy = work / "source"
    listed = _run(["git", "-C", str(source), "ls-files", "-z", "--cached", "--others",
                   "--exclude-standard"], "list the checkout's files (git)", timeout_s)
    for name in filter(None, listed.split("\0")):
        origin = source / name
        if not origin.is_file() or origin.is_symlink():
            continue  # deleted but still tracked, or a link: the wheel takes regular files
        target = copy / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(origin, target)
    out = work / "project"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
          "--no-cache-dir", "--disable-pip-version-check", "--quiet", "-w", str(out),
          str(copy)], "build the project wheel (pip wheel)", timeout_s)
    built = sorted(out.glob("*.whl"))
    if len(built) != 1:
        raise BuildError(f"pip wheel made {len(built)} wheels, expected one")
    return built[0]


def _fetch_dependencies(locked: tuple[LockedRequirement, ...], request: BuildRequest,
                        into: Path) -> list[Path]:
    requirements = into.with_name("requirements-target.txt")
    requirements.write_text("".join(entry.requirement_line() + "\n" for entry in locked))
    command = [sys.executable, "-m", "pip", "download", "--require-hashes",
               "--only-binary=:all:", "--no-deps", "--disable-pip-version-check", "--quiet",
               "--python-version", ".".join(map(str, PYTHON_VERSION)),
               "--implementation", "cp", "--abi", PYTHON_TAG, "-d", str(into),
               "-r", str(requirements)]
    for tag in request.arch.platform_tags():
        command += ["--platform", tag]
    if request.wheelhouse is not None:
        if not request.wheelhouse.is_dir():
            raise BuildError(f"--wheelhouse {printable(request.wheelhouse)} is not a folder")
        command += ["--no-index", "--find-links", str(request.wheelhouse)]
    _run(command, f"fetch the locked wheels for {request.arch.value} (pip download)",
         request.tool_timeout_s)
    return _check_wheels(locked, request.arch, into)


def _check_wheels(locked: tuple[LockedRequirement, ...], arch: Arch, folder: Path
                  ) -> list[Path]:
    """One wheel per locked requirement: its name, version, a tag the target runs, and a
    sha256 the lock lists. pip checked the hashes too; this does not trust that it did."""
    supported = _supported_tags(arch)
    by_name = {entry.name: entry for entry in locked}
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        try:
            name, version, _, tags = parse_wheel_filename(path.name)
        except InvalidWheelFilename:
            raise BuildError(f"pip download left {printable(path.name)}, not a wheel"
                             ) from None
        entry = by_name.get(canonicalize_name(name))
        if entry is None or str(version) != entry.version or name in found:
            raise BuildError(f"pip download left {printable(path.name)}, which is not one "
                             "locked wheel for the target")
        if not tags & supported:
            raise BuildError(f"{printable(path.name)} does not run on {arch.value} CPython "
                             f"{PYTHON_TAG}")
        digest = file_sha256(path)
        if digest not in entry.sha256:
            raise BuildError(f"{printable(path.name)} has sha256 {digest}, which the lock "
                             f"does not list for {entry.name}=={entry.version}")
        found[entry.name] = path
    missing = sorted(set(by_name) - set(found))
    if missing:
        raise BuildError(f"no wheel for {arch.value} of: {', '.join(missing)}")
    return [found[name] for name in sorted(found)]


def _supported_tags(arch: Arch) -> frozenset[Tag]:
    platforms = list(arch.platform_tags())
    return frozenset((*cpython_tags(PYTHON_VERSION, [PYTHON_TAG], platforms),
                      *compatible_tags(PYTHON_VERSION, PYTHON_TAG, platforms)))


def _models_in(wheel: Path) -> tuple[BundleFile, ...]:
    models = []
    with zipfile.ZipFile(wheel) as archive:
        for info in sorted(archive.infolist(), key=lambda item: item.filename):
            if info.is_dir() or not info.filename.startswith(MODELS_FOLDER) or (
                    not info.filename.endswith(MODEL_SUFFIXES)):
                continue
            hasher = hashlib.sha256()
            with archive.open(info) as member:
                for chunk in iter(lambda: member.read(1 << 20), b""):
                    hasher.update(chunk)
            models.append(BundleFile(info.filename, hasher.hexdigest(), info.file_size))
    if not models:
        raise BuildError(f"the project wheel {printable(wheel.name)} holds no model under "
                         f"{MODELS_FOLDER}")
    return tuple(models)


def _firmware_files(source: Path) -> list[Path]:
    files = [source / SERVICE_FILE, *sorted((source / "firmware").glob("*.conf"))]
    for path in files:
        read_user_file(path, "firmware file", MAX_FIRMWARE_FILE_BYTES)  # regular, bounded
    return files


def _entry(name: str, path: Path) -> BundleFile:
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise BuildError(f"{printable(name)} has {size} bytes, over the bundle's limit of "
                         f"{MAX_FILE_BYTES} per file")
    try:
        return BundleFile(name, file_sha256(path), size)
    except UpdateRefused as exc:
        raise BuildError(f"cannot put {printable(name)} in a bundle: {exc}") from None




def _run(command: list[str], step: str, timeout_s: float) -> str:
    """Run a tool; its stdout, or ``BuildError`` naming ``step`` with the tool's last words."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s,  # noqa: S603 - our own argv
                              check=False)
    except subprocess.TimeoutExpired:
        raise BuildError(f"could not {step}: no answer within {timeout_s:.0f} s") from None
    except OSError as exc:
        raise BuildError(f"could not {step}: {exc.strerror or exc}") from None
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip()[-_TOOL_TAIL_CHARS:]
        raise BuildError(f"could not {step} (exit {done.returncode}): "
                         f"{printable(tail, max_chars=_TOOL_TAIL_CHARS)}")
    return done.stdout

