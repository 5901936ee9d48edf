"""``lfr release build``: a real x86_64 bundle built once per session from a clone of this
checkout (the locked wheels fetched by pip through its cache), then read back as a unit reads
it; the lock's markers chosen for the target, not this machine; the manifest and the container
read strictly (every refusal named).

``built_release`` and ``second_release`` are shared with test_update_apply.py (one build per
session whichever module runs first)."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from guards.user_input import UserInputError
from lfr.release.bundle_build import BuildError, BuildRequest, build_release
from lfr.release.bundle_manifest import (
    MANIFEST_NAME,
    MAX_MANIFEST_BYTES,
    SIGNATURE_NAME,
    ReleaseManifest,
    decode_manifest,
    encode_manifest,
)
from lfr.release.bundle_reader import open_bundle
from lfr.release.bundle_tar import BundleTarReader
from lfr.release.lock_file import LockFileError, parse_lock, read_lock, select
from lfr.release.refusal import RefusalReason, UpdateRefused
from lfr.release.target import Arch
from secure.key_files import write_node_keys
from secure.node_keys import NodeKeys, NodePublicKeys, NodeRole

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVICE = "firmware/lfr-edge.service"
_STAND_IN_SERVICE = (b"[Unit]\nDescription=lfr-edge camera unit (stand-in: the checkout had no "
                     b"unit file yet)\n[Service]\nType=notify\nExecStart=/opt/lfr-edge/current/"
                     b"bin/lfr edge --config /etc/lfr-edge/unit.toml\n")


@dataclass(frozen=True)
class BuiltRelease:
    """A bundle built by ``build_release`` and what made it."""

    bundle: Path
    manifest: ReleaseManifest
    keys: NodeKeys
    public_keys: Path
    source: Path
    build_s: float


_BUILT: dict[str, BuiltRelease] = {}


def built_release(factory: pytest.TempPathFactory) -> BuiltRelease:
    """Release 0.1.0 for x86_64, built once per session with the wheels pip downloads."""
    if "first" not in _BUILT:
        work = factory.mktemp("release")
        source = work / "source"
        # A clone of what is committed: other work in progress in the checkout stays out.
        subprocess.run(["git", "clone", "--quiet", str(REPO_ROOT), str(source)], check=True,
                       timeout=300)
        if not (source / SERVICE).exists():
            (source / SERVICE).write_bytes(_STAND_IN_SERVICE)
        keys = NodeKeys.generate(NodeRole.RELEASE, "release-test")
        paths = write_node_keys(keys, work / "key")
        started = time.monotonic()
        manifest = build_release(BuildRequest(
            arch=Arch.X86_64, key_file=paths.signing, version="0.1.0",
            out=work / "lfr-edge-0.1.0-x86_64.lfr", source=source, wheelhouse=None))
        _BUILT["first"] = BuiltRelease(work / "lfr-edge-0.1.0-x86_64.lfr", manifest, keys,
                                       paths.public, source, time.monotonic() - started)
    return _BUILT["first"]


def second_release(factory: pytest.TempPathFactory) -> BuiltRelease:
    """Release 0.2.0 of the same source, its wheels taken from a wheelhouse (the first
    bundle's wheels) instead of the index."""
    if "second" not in _BUILT:
        first = built_release(factory)
        work = factory.mktemp("release-2")
        (work / "wheelhouse").mkdir()
        with open_bundle(first.bundle, public_of(first)) as bundle:
            bundle.unpack(work / "wheelhouse")
        key_file = first.public_keys.with_name("signing.key")
        started = time.monotonic()
        manifest = build_release(BuildRequest(
            arch=Arch.X86_64, key_file=key_file, version="0.2.0",
            out=work / "lfr-edge-0.2.0-x86_64.lfr", source=first.source,
            wheelhouse=work / "wheelhouse" / "wheels"))
        _BUILT["second"] = BuiltRelease(work / "lfr-edge-0.2.0-x86_64.lfr", manifest,
                                        first.keys, first.public_keys, first.source,
                                        time.monotonic() - started)
    return _BUILT["second"]


def public_of(release: BuiltRelease) -> NodePublicKeys:
    return release.keys.public()


@pytest.fixture(scope="session")
def first(tmp_path_factory: pytest.TempPathFactory) -> BuiltRelease:
    return built_release(tmp_path_factory)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- the lock, chosen for the target -------------------------------------------------------


def test_the_lock_is_chosen_for_the_target_not_this_machine() -> None:
    entries = read_lock(REPO_ROOT / "requirements.lock")
    numpy_lines = [entry for entry in entries if entry.name == "numpy"]
    assert len(numpy_lines) == 2  # one for Python < 3.12, one for >= 3.12
    for arch in Arch:
        chosen = {entry.name: entry for entry in select(entries, arch)}
        assert chosen["numpy"].version == numpy_lines[0].version  # the Python 3.11 line
        assert {"ai-edge-litert", "dlib-bin", "uvloop"} <= set(chosen)
        assert "tflite-runtime" not in chosen  # only where LiteRT has no wheels
        assert "colorama" not in chosen  # Windows only
    armv7 = [entry for entry in entries if entry.name == "tflite-runtime"]
    assert armv7
    assert not any(entry.applies_to(arch) for entry in armv7 for arch in Arch)


@pytest.mark.parametrize(("text", "expected"), [
    ("numpy>=1.26 --hash=sha256:" + "a" * 64, "is not pinned"),
    ("numpy==1.0", "has no sha256"),
    ("-e ./local", "option lines are not allowed"),
    ("numpy==1.0 --index-url http://x --hash=sha256:" + "a" * 64, "only --hash"),
    ("numpy @ https://example.com/n.whl --hash=sha256:" + "a" * 64, "is not pinned"),
    ("# only a comment", "holds no requirement"),
])
def test_a_lock_line_that_is_not_pinned_and_hashed_is_refused(text: str, expected: str) -> None:
    with pytest.raises(LockFileError, match=expected):
        parse_lock(text, "test.lock")


def test_overlapping_markers_are_refused() -> None:
    text = (f"numpy==1.0 ; python_version < '3.12' --hash=sha256:{'a' * 64}\n"
            f"numpy==2.0 ; sys_platform == 'linux' --hash=sha256:{'b' * 64}\n")
    with pytest.raises(LockFileError, match="lists numpy twice for x86_64"):
        select(parse_lock(text, "test.lock"), Arch.X86_64)


# -- the built bundle --------------------------------------------------------------------------


def test_the_bundle_holds_every_locked_wheel_the_models_and_the_unit_file(
        first: BuiltRelease, tmp_path: Path) -> None:
    manifest = first.manifest
    print(f"built {first.bundle.name}: {first.bundle.stat().st_size} bytes in "
          f"{first.build_s:.1f} s")
    assert (manifest.version, manifest.arch, manifest.python_tag) == ("0.1.0", Arch.X86_64,
                                                                     "cp311")
    # Read back as a unit does: signature by the release key, then every file's hash.
    with open_bundle(first.bundle, public_of(first)) as bundle:
        assert bundle.manifest == manifest
        bundle.unpack(tmp_path)
    locked = select(read_lock(REPO_ROOT / "requirements.lock"), Arch.X86_64)
    wheels = [entry for entry in manifest.wheels if entry.path != manifest.project_wheel]
    assert len(wheels) == len(locked)
    for entry, lock in zip(wheels, locked, strict=True):
        name = Path(entry.path).name
        assert name.lower().replace("_", "-").startswith(f"{lock.name}-{lock.version}-")
        assert entry.sha256 in lock.sha256  # the very file the lock allows
        assert "x86_64" in name or name.endswith("-none-any.whl")
        assert _sha256((tmp_path / entry.path).read_bytes()) == entry.sha256
    assert manifest.project_wheel.startswith("wheels/lfr_edge-")
    firmware = [entry.path for entry in manifest.files if entry.path.startswith("firmware/")]
    assert firmware == [SERVICE, *(f"firmware/{path.name}" for path in
                                   sorted((first.source / "firmware").glob("*.conf")))]
    assert (tmp_path / SERVICE).read_bytes() == (first.source / SERVICE).read_bytes()
    # Each model is listed with the sha256 of the file the source holds and the wheel carries.
    models = {Path(entry.path).name: entry for entry in manifest.models}
    assert set(models) == {path.name for path in (first.source / "models" / "data").iterdir()
                           if path.suffix in {".tflite", ".dat"}}
    with zipfile.ZipFile(tmp_path / manifest.project_wheel) as wheel:
        for entry in manifest.models:
            data = wheel.read(entry.path)
            assert _sha256(data) == entry.sha256 == _sha256(
                (first.source / entry.path).read_bytes())
            assert len(data) == entry.size


def test_the_container_is_manifest_signature_then_the_files_in_order(
        first: BuiltRelease) -> None:
    names = []
    with open(first.bundle, "rb") as stream:
        reader = BundleTarReader(stream, max_bytes=first.bundle.stat().st_size)
        while (header := reader.next_member()) is not None:
            names.append(header.name)
            if header.name == MANIFEST_NAME:
                manifest_bytes = reader.read_small(header, MAX_MANIFEST_BYTES)
    assert names == [MANIFEST_NAME, SIGNATURE_NAME,
                     *(entry.path for entry in first.manifest.files)]
    document = json.loads(manifest_bytes)
    assert document["format"] == 1
    assert all(set(item) == {"path", "sha256", "size"} for item in document["files"])


def test_a_wheelhouse_build_takes_the_same_locked_wheels(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    second = second_release(tmp_path_factory)
    first = built_release(tmp_path_factory)
    print(f"wheelhouse build: {second.build_s:.1f} s")
    assert second.manifest.version == "0.2.0"
    assert [(entry.path, entry.sha256) for entry in second.manifest.wheels
            if entry.path != second.manifest.project_wheel] == [
        (entry.path, entry.sha256) for entry in first.manifest.wheels
        if entry.path != first.manifest.project_wheel]


def test_a_wheel_the_lock_does_not_allow_fails_the_build(first: BuiltRelease,
                                                         tmp_path: Path) -> None:
    (tmp_path / "unpacked").mkdir()
    with open_bundle(first.bundle, public_of(first)) as bundle:
        bundle.unpack(tmp_path / "unpacked")
    wheelhouse = tmp_path / "unpacked" / "wheels"
    victim = next(wheelhouse.glob("idna-*.whl"))
    data = bytearray(victim.read_bytes())
    data[-30] ^= 0xFF  # same name, other bytes
    victim.write_bytes(bytes(data))
    out = tmp_path / "bundle.lfr"
    with pytest.raises(BuildError, match=r"could not fetch the locked wheels.*(?i:hash)"):
        build_release(BuildRequest(arch=Arch.X86_64,
                                   key_file=first.public_keys.with_name("signing.key"),
                                   version="0.3.0", out=out, source=first.source,
                                   wheelhouse=wheelhouse))
    assert not out.exists()


def test_only_a_release_key_signs_a_bundle(first: BuiltRelease, tmp_path: Path) -> None:
    paths = write_node_keys(NodeKeys.generate(NodeRole.AUTHORITY, "authority-1"), tmp_path)
    with pytest.raises(BuildError, match="is a authority key, not a release key"):
        build_release(BuildRequest(arch=Arch.X86_64, key_file=paths.signing, version="0.3.0",
                                   out=tmp_path / "b.lfr", source=first.source,
                                   wheelhouse=None))


@pytest.mark.parametrize("version", ["", "1.0-banana", "01.0", "v1.0", "1.0 "])
def test_a_version_that_is_not_pep_440_in_normal_form_is_refused(version: str,
                                                                  tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="version"):
        BuildRequest(arch=Arch.X86_64, key_file=tmp_path / "k", version=version,
                     out=tmp_path / "b", source=tmp_path, wheelhouse=None)


def test_an_existing_bundle_is_never_overwritten(first: BuiltRelease, tmp_path: Path) -> None:
    out = tmp_path / "taken.lfr"
    out.write_bytes(b"keep me")
    with pytest.raises(UserInputError, match="already exists"):
        build_release(BuildRequest(arch=Arch.X86_64,
                                   key_file=first.public_keys.with_name("signing.key"),
                                   version="0.3.0", out=out, source=first.source,
                                   wheelhouse=tmp_path / "no-such-folder"))
    assert out.read_bytes() == b"keep me"


# -- the manifest, read strictly ---------------------------------------------------------------


def _document(first: BuiltRelease) -> dict[str, object]:
    loaded: dict[str, object] = json.loads(encode_manifest(first.manifest))
    return loaded


def test_the_manifest_round_trips(first: BuiltRelease) -> None:
    assert decode_manifest(encode_manifest(first.manifest)) == first.manifest


@pytest.mark.parametrize(("edit", "reason", "expected"), [
    (lambda d: d.update(extra=1), RefusalReason.MALFORMED, "unknown keys"),
    (lambda d: d.pop("models"), RefusalReason.MALFORMED, "missing keys"),
    (lambda d: d.update(format=2), RefusalReason.UNSUPPORTED_FORMAT, "format 2"),
    (lambda d: d.update(arch="armv7l"), RefusalReason.OTHER_ARCH, "arch 'armv7l'"),
    (lambda d: d.update(version="1.0-banana"), RefusalReason.MALFORMED, "not a PEP 440"),
    (lambda d: d["files"][0].update(path="wheels/../../etc/x.whl"), RefusalReason.MALFORMED,
     "not allowed"),
    (lambda d: d["files"][0].update(path="/etc/passwd"), RefusalReason.MALFORMED,
     "not allowed"),
    (lambda d: d["files"][-1].update(path="firmware/.hidden"), RefusalReason.MALFORMED,
     "not allowed"),
    (lambda d: d["files"].append(dict(d["files"][0])), RefusalReason.MALFORMED,
     "listed twice"),
    (lambda d: d["files"][0].update(size=2**40), RefusalReason.OVERSIZE, "over the limit"),
    (lambda d: d["files"][0].update(size=True), RefusalReason.MALFORMED, "size"),
    (lambda d: d["files"][0].update(sha256="A" * 64), RefusalReason.MALFORMED, "sha256"),
    (lambda d: d["models"][0].update(path="../models/x.tflite"), RefusalReason.MALFORMED,
     "not a relative path"),
    (lambda d: d.update(project_wheel="firmware/lfr-edge.service"), RefusalReason.MALFORMED,
     "not one of its wheels"),
])
def test_a_manifest_field_out_of_bounds_is_refused(
        first: BuiltRelease, edit: object, reason: RefusalReason, expected: str) -> None:
    document = _document(first)
    edit(document)  # type: ignore[operator]
    with pytest.raises(UpdateRefused, match=expected) as refused:
        decode_manifest(json.dumps(document).encode())
    assert refused.value.reason is reason


@pytest.mark.parametrize(("data", "expected"), [
    (b'{"format": 1, "format": 1}', "appears twice"),
    (b'{"format": NaN}', "NaN is not allowed"),
    (b"\xff\xfe", "not JSON"),
    (b"[" * 100_000, "not JSON"),
    (b"[]", "not a JSON object"),
])
def test_a_manifest_that_is_not_strict_json_is_refused(data: bytes, expected: str) -> None:
    with pytest.raises(UpdateRefused, match=expected):
        decode_manifest(data)


def test_an_oversized_manifest_is_refused_before_it_is_parsed() -> None:
    with pytest.raises(UpdateRefused, match="over the limit") as refused:
        decode_manifest(b" " * (MAX_MANIFEST_BYTES + 1))
    assert refused.value.reason is RefusalReason.OVERSIZE


# -- the container, read strictly --------------------------------------------------------------


def _tar(*members: tarfile.TarInfo | tuple[str, bytes],
         tar_format: int = tarfile.USTAR_FORMAT) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tar_format) as archive:
        for member in members:
            if isinstance(member, tarfile.TarInfo):
                archive.addfile(member)
            else:
                info = tarfile.TarInfo(member[0])
                info.size = len(member[1])
                archive.addfile(info, io.BytesIO(member[1]))
    return buffer.getvalue()


def _special(name: str, kind: bytes, target: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


def _read_all(data: bytes) -> list[str]:
    reader = BundleTarReader(io.BytesIO(data), max_bytes=1 << 20)
    names = []
    while (header := reader.next_member()) is not None:
        names.append(header.name)
        reader.read_small(header, 1 << 20)
    return names


@pytest.mark.parametrize(("data", "expected"), [
    (_tar(("../../etc/cron.d/x", b"x")), "not allowed"),
    (_tar(("wheels/../../x.whl", b"x")), "not allowed"),
    (_tar(("/etc/passwd", b"x")), "not allowed"),
    (_tar(("wheels/.hidden", b"x")), "not allowed"),
    (_tar(_special("release.json", tarfile.SYMTYPE, "/etc/shadow")), "not a regular file"),
    (_tar(_special("release.json", tarfile.LNKTYPE, "x")), "not a regular file"),
    (_tar(_special("wheels", tarfile.DIRTYPE)), "not allowed|not a regular file"),
    (_tar(_special("dev", tarfile.CHRTYPE)), "not a regular file"),
    (_tar(("a" * 120, b"x"), tar_format=tarfile.PAX_FORMAT), "not allowed|not a regular"),
    (_tar(("release.json", b"x"), tar_format=tarfile.GNU_FORMAT), "not POSIX ustar"),
    (_tar(("release.json", b"x"))[:700], "ends inside"),
    (_tar(("release.json", b"x")) + b"junk", "after the end"),
    (b"\x01" + _tar(("release.json", b"x"))[1:], "checksum"),
])
def test_a_member_that_is_not_an_allowed_regular_file_is_refused(data: bytes,
                                                                 expected: str) -> None:
    with pytest.raises(UpdateRefused, match=expected) as refused:
        _read_all(data)
    assert refused.value.reason is RefusalReason.MALFORMED


def test_a_member_over_its_limit_is_refused_on_its_header() -> None:
    data = _tar(("release.json", b"x" * 5000))
    reader = BundleTarReader(io.BytesIO(data), max_bytes=len(data))
    header = reader.next_member()
    assert header is not None
    with pytest.raises(UpdateRefused, match="5000 bytes, over its limit of 4096") as refused:
        reader.read_small(header, 4096)
    assert refused.value.reason is RefusalReason.OVERSIZE


def test_reading_stops_at_the_bundle_limit() -> None:
    data = _tar(("a", b"x" * 10_000))
    with pytest.raises(UpdateRefused, match="over the limit of 5000 bytes") as refused:
        _read_all_with_limit(data, 5000)
    assert refused.value.reason is RefusalReason.OVERSIZE


def _read_all_with_limit(data: bytes, limit: int) -> None:
    reader = BundleTarReader(io.BytesIO(data), max_bytes=limit)
    while (header := reader.next_member()) is not None:
        reader.copy_to(header, lambda chunk: None)
