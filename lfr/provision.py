"""``lfr provision``: make this machine a camera unit: its keys, its config, its enrolment record.

Run once on the unit itself (docs/SECURITY.md: a unit's signing key is made where it is used and
never leaves it)::

    lfr provision --unit-id ID --van https://HOST:PORT --van-pubkeys FILE
                  --authority-pubkeys FILE --van-tls-fingerprint HEX --out /etc/lfr-edge
                  [--state-dir /var/lib/lfr-edge] [--camera ID=SOURCE ...] [--force]

What it writes (the install layout of notes/firmware_layout.md):

- into the state folder (``--state-dir``, created 0700 when missing): the unit's new keys,
  ``signing.key`` (0600) and ``public.keys`` (``secure.key_files.write_node_keys``);
- into ``--out``: ``van.keys`` and ``authority.keys`` (copies of the given public-keys files,
  each checked first to hold that role's keys) and ``unit.toml``, whose outbox and audit trail
  lie in the state folder.

Guarantees:

- Every input is checked before anything is written: the unit id, the van's URL, the pin, both
  public-keys files (regular files, that role's keys), every ``--camera``, the two folders.
  Bad input is a ``UserInputError`` naming the flag or file (exit 2).
- An existing identity (``signing.key``, ``public.keys`` or ``unit.toml``) is never replaced
  without ``--force``; the refusal names the file. With ``--force`` each file is replaced by a
  rename, so there is never a moment without one; the outbox and audit trail stay, so they must
  be the same unit id's (another id is refused, naming the file).
- ``unit.toml`` is written to a temporary file in ``--out``, fsynced, loaded back with
  ``load_unit_config`` exactly as ``lfr edge`` will read it, and only then renamed into place:
  a half-written or invalid config never remains. If that check fails, the keys this run made
  are removed again.
- Nothing private is printed: the output is the unit id, its signing key id, the files written
  and the command to run at the van (``lfr van enroll-unit UNIT_ID PUBKEYS_FILE``).
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from guards.exit_codes import ExitCode
from guards.files import UserFileError, file_kind, read_user_file, sync_folder
from guards.log_text import printable
from guards.user_input import UserInputError

if TYPE_CHECKING:
    from secure.key_files import KeyFilePaths
    from secure.node_keys import NodeKeys, NodePublicKeys, NodeRole

# ruff: noqa: PLC0415 - the keys' and cameras' modules load when the command runs (lfr --help
# stays fast: the command line's convention)

DEFAULT_STATE_DIR: Final = "/var/lib/lfr-edge"
"""systemd's ``StateDirectory=lfr-edge``: keys, outbox and audit trail."""
DEFAULT_CAMERA: Final = "cam0=/dev/video0"
"""The camera a unit gets when no ``--camera`` is given: the first V4L2 device."""
CONFIG_FILE: Final = "unit.toml"
VAN_KEYS_FILE: Final = "van.keys"
AUTHORITY_KEYS_FILE: Final = "authority.keys"
OUTBOX_FILE: Final = "outbox.sqlite"
AUDIT_FILE: Final = "audit.log"
_CONFIG_MODE: Final = 0o644  # read by the service's own user; it holds no secret
_PUBLIC_MODE: Final = 0o644


class ProvisionError(UserInputError):
    """``lfr provision`` cannot go on; the text names the flag or file."""


@dataclass(frozen=True, slots=True)
class CameraSpec:
    """One ``--camera ID=SOURCE``, checked."""

    camera_id: str
    """The camera's id (unique within the unit)."""
    source: str
    """A device or stream URL as given, or a video file's absolute path."""


@dataclass(frozen=True, slots=True)
class ProvisionRequest:
    """Everything ``lfr provision`` was asked to do, checked (``check_request``)."""

    unit_id: str
    """The new unit's node id."""
    van_url: str
    """``https://HOST:PORT`` of the van's signaling."""
    van_keys: bytes
    """The van's public-keys file, as read (checked: role van)."""
    van: NodePublicKeys
    """What ``van_keys`` holds."""
    authority_keys: bytes
    """The watchlist authority's public-keys file, as read (checked: role authority)."""
    authority: NodePublicKeys
    """What ``authority_keys`` holds."""
    tls_fingerprint: bytes
    """sha256 of the van's TLS certificate (32 bytes)."""
    cameras: tuple[CameraSpec, ...]
    """At least one camera, ids unique."""
    out_dir: Path
    """Where ``unit.toml``, ``van.keys`` and ``authority.keys`` go (absolute)."""
    state_dir: Path
    """Where the keys, outbox and audit trail live (absolute)."""
    force: bool
    """Replace an existing identity."""


def add_provision_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]
                          ) -> None:
    """Add ``lfr provision`` to ``commands``."""
    provision = commands.add_parser(
        "provision", help="make this machine a camera unit: new keys, unit.toml, and the "
                          "enrolment record for the van",
        description="Generates the unit's keys on this machine (never elsewhere) into the "
                    "state folder, writes unit.toml (checked by loading it as lfr edge does) "
                    "with copies of the van's and the authority's public keys into --out, and "
                    "prints the command to enrol the unit at the van. An existing identity is "
                    "replaced only with --force.")
    provision.add_argument("--unit-id", required=True,
                           help="the unit's node id: 1-64 printable characters")
    provision.add_argument("--van", required=True, metavar="URL",
                           help="the van's signaling address, https://HOST:PORT")
    provision.add_argument("--van-pubkeys", required=True, metavar="FILE",
                           help="the van's public.keys (lfr keys init --role van)")
    provision.add_argument("--authority-pubkeys", required=True, metavar="FILE",
                           help="the watchlist authority's public.keys (lfr keys init --role "
                                "authority)")
    provision.add_argument("--van-tls-fingerprint", required=True, metavar="HEX",
                           help="sha256 of the van's TLS certificate, 64 hex digits with or "
                                "without colons: lfr van tls-init prints it ('TLS sha256 ...'), "
                                "and so does lfr van when it starts ('listening on "
                                "https://... (TLS sha256 ...)')")
    provision.add_argument("--out", required=True, metavar="DIR",
                           help="folder for unit.toml, van.keys and authority.keys "
                                "(/etc/lfr-edge on a unit; created when missing)")
    provision.add_argument("--state-dir", default=DEFAULT_STATE_DIR, metavar="DIR",
                           help="folder for the unit's keys, outbox and audit trail (created "
                                f"0700 when missing; default {DEFAULT_STATE_DIR})")
    provision.add_argument("--camera", action="append", default=[], metavar="ID=SOURCE",
                           help="a camera: a V4L2 device, an rtsp(s):// or http(s):// URL, or a "
                                f"video file (repeatable; default {DEFAULT_CAMERA})")
    provision.add_argument("--force", action="store_true",
                           help="replace an existing identity (signing key, public keys, "
                                "unit.toml); the van must then revoke the unit and enrol it "
                                "again")
    provision.set_defaults(func=_cmd_provision)


def _cmd_provision(args: argparse.Namespace) -> int:
    request = check_request(
        unit_id=args.unit_id, van_url=args.van, van_pubkeys=Path(args.van_pubkeys),
        authority_pubkeys=Path(args.authority_pubkeys),
        tls_fingerprint=args.van_tls_fingerprint, out_dir=Path(args.out),
        state_dir=Path(args.state_dir), cameras=args.camera or [DEFAULT_CAMERA],
        force=args.force)
    return provision(request)


# -- checking the request ------------------------------------------------------------------


def check_request(*, unit_id: str, van_url: str, van_pubkeys: Path, authority_pubkeys: Path,
                  tls_fingerprint: str, out_dir: Path, state_dir: Path, cameras: list[str],
                  force: bool) -> ProvisionRequest:
    """Every input checked, nothing written yet; ``ProvisionError`` naming what is wrong."""
    from actors.van.tls_certificate import parse_fingerprint
    from lfr.config.unit import check_van_url
    from secure.node_keys import NodeRole, check_node_id

    check_node_id(unit_id, "--unit-id")
    try:
        check_van_url(van_url)
    except ValueError as exc:
        raise ProvisionError(f"--van {printable(van_url)}: {printable(exc)}") from None
    van_bytes, van = _public_keys("--van-pubkeys", van_pubkeys, NodeRole.VAN)
    authority_bytes, authority = _public_keys("--authority-pubkeys", authority_pubkeys,
                                              NodeRole.AUTHORITY)
    try:
        fingerprint = parse_fingerprint(tls_fingerprint)
    except ValueError as exc:
        raise ProvisionError(f"--van-tls-fingerprint {printable(tls_fingerprint, max_chars=120)}"
                             f": not a sha256 fingerprint ({printable(exc)})") from None
    out = Path(os.path.abspath(out_dir))
    state = Path(os.path.abspath(state_dir))
    _check_folder("--out", out)
    _check_folder("--state-dir", state)
    if out == state:
        raise ProvisionError(f"--out and --state-dir are the same folder {printable(out)}: the "
                             "config is read-only for the service, the state folder is its own")
    return ProvisionRequest(unit_id, van_url, van_bytes, van, authority_bytes, authority,
                            fingerprint, _cameras(cameras), out, state, force)


def _public_keys(flag: str, path: Path, role: NodeRole) -> tuple[bytes, NodePublicKeys]:
    """The file's bytes and keys; refused unless it is a regular file holding ``role``'s."""
    from secure.key_files import MAX_PUBLIC_KEYS_FILE_BYTES, decode_public_keys

    try:
        data = read_user_file(path, "public-keys file", MAX_PUBLIC_KEYS_FILE_BYTES)
    except UserFileError as exc:
        raise ProvisionError(f"{flag}: {exc}") from None
    try:
        keys = decode_public_keys(data, f"public-keys file {printable(path)}", role)
    except UserInputError as exc:
        raise ProvisionError(f"{flag}: {exc}") from None
    return data, keys


def _check_folder(flag: str, folder: Path) -> None:
    """``folder`` is a folder or can be made one (its parent exists)."""
    try:
        mode = folder.lstat().st_mode
    except FileNotFoundError:
        if not folder.parent.is_dir():
            raise ProvisionError(f"{flag} {printable(folder)}: its parent folder does not "
                                 "exist") from None
        return
    except OSError as exc:
        raise ProvisionError(f"{flag} {printable(folder)}: {exc.strerror or exc}") from None
    if not stat.S_ISDIR(mode):
        kind = "a symbolic link" if stat.S_ISLNK(mode) else (
            "a regular file" if stat.S_ISREG(mode) else file_kind(mode))
        raise ProvisionError(f"{flag} {printable(folder)}: is {kind}, not a folder")


def _cameras(specs: list[str]) -> tuple[CameraSpec, ...]:
    from actors.unit.camera import CameraConfig
    from actors.unit.camera_source import is_live_source
    from actors.unit.event_body import MAX_CAMERA_ID_CHARS
    from lfr.config.unit import MAX_CAMERAS

    if len(specs) > MAX_CAMERAS:
        raise ProvisionError(f"--camera: {len(specs)} cameras; a unit runs at most "
                             f"{MAX_CAMERAS}")
    cameras: list[CameraSpec] = []
    for spec in specs:
        shown = f"--camera {printable(spec, max_chars=200)}"
        camera_id, sep, source = spec.partition("=")
        if not sep or not camera_id or not source:
            raise ProvisionError(f"{shown}: expected ID=SOURCE (such as cam0=/dev/video0)")
        try:
            CameraConfig(source, camera_id=camera_id)  # the checks every camera gets
        except UserInputError as exc:
            raise ProvisionError(f"{shown}: {printable(exc)}") from None
        if len(camera_id) > MAX_CAMERA_ID_CHARS or camera_id.isspace():
            raise ProvisionError(f"{shown}: the id must be 1-{MAX_CAMERA_ID_CHARS} characters, "
                                 "not only spaces")
        if any(camera.camera_id == camera_id for camera in cameras):
            raise ProvisionError(f"{shown}: camera {printable(camera_id)} is named twice")
        if not is_live_source(source):
            path = Path(os.path.abspath(source))
            if not path.is_file():
                raise ProvisionError(f"{shown}: {printable(path)} is not a video file (not a "
                                     "device, an rtsp(s):// or http(s):// URL either)")
            source = str(path)
        cameras.append(CameraSpec(camera_id, source))
    return tuple(cameras)


# -- writing --------------------------------------------------------------------------------


def provision(request: ProvisionRequest) -> int:
    """Make the keys, write the config, print the enrolment record (module docstring)."""
    from secure.key_files import PUBLIC_KEYS_FILE, SIGNING_KEY_FILE
    from secure.node_keys import NodeKeys, NodeRole

    out, state = request.out_dir, request.state_dir
    identity = (state / SIGNING_KEY_FILE, state / PUBLIC_KEYS_FILE, out / CONFIG_FILE)
    existing = [path for path in identity if os.path.lexists(path)]
    if existing and not request.force:
        raise ProvisionError(f"{printable(existing[0])} already exists: this machine has an "
                             "identity already; give --force to replace it (the van must then "
                             "revoke the unit and enrol its new keys)")
    if existing:
        _check_history(request)
    _make_folder(state, 0o700)
    _make_folder(out, 0o755)
    keys = NodeKeys.generate(NodeRole.UNIT, request.unit_id)
    paths = _write_keys(keys, state, replace=request.force)
    try:
        _write_public(out / VAN_KEYS_FILE, request.van_keys)
        _write_public(out / AUTHORITY_KEYS_FILE, request.authority_keys)
        config = _write_config(out / CONFIG_FILE, _config_text(request, paths))
    except BaseException:
        if not request.force:  # a fresh identity that never got its config: take it back
            for path in (paths.signing, paths.public):
                path.unlink(missing_ok=True)
        raise
    _report(request, keys, paths, config, replaced=existing)
    return ExitCode.OK


def _check_history(request: ProvisionRequest) -> None:
    """Replacing an identity keeps the state folder's outbox and audit trail: they must be the
    same unit's (a trail names its unit, and ``lfr edge`` refuses another unit's)."""
    from secure.key_files import PUBLIC_KEYS_FILE, read_public_keys

    state = request.state_dir
    history = [p for p in (state / AUDIT_FILE, state / OUTBOX_FILE) if os.path.lexists(p)]
    if not history:
        return
    try:
        previous: str | None = read_public_keys(state / PUBLIC_KEYS_FILE).node_id
    except UserInputError:
        previous = None
    if previous != request.unit_id:
        owner = f"unit {printable(previous)}" if previous else "an earlier identity"
        raise ProvisionError(f"{printable(history[0])} is the history of {owner}, and "
                             f"--force keeps it; unit {printable(request.unit_id)} needs a "
                             "state folder of its own: move the outbox and the audit trail "
                             "away first (check the trail with lfr audit verify, and keep it)")


def _make_folder(folder: Path, mode: int) -> None:
    try:
        folder.mkdir(mode=mode, exist_ok=True)
    except OSError as exc:
        raise ProvisionError(f"{printable(folder)}: cannot create the folder: "
                             f"{exc.strerror or exc}") from None


def _write_keys(keys: NodeKeys, state: Path, *, replace: bool) -> KeyFilePaths:
    """Write the unit's keys into ``state``: directly (never overwriting) for a new identity,
    else into a fresh folder inside it and renamed over the old files one by one."""
    from secure.key_files import PUBLIC_KEYS_FILE, SIGNING_KEY_FILE, KeyFilePaths, write_node_keys

    if not replace:
        return write_node_keys(keys, state)
    staging = Path(tempfile.mkdtemp(dir=state, prefix=".provision-"))
    try:
        written = write_node_keys(keys, staging)
        paths = KeyFilePaths(state / SIGNING_KEY_FILE, None, state / PUBLIC_KEYS_FILE)
        os.replace(written.signing, paths.signing)
        os.replace(written.public, paths.public)
    except OSError as exc:
        raise ProvisionError(f"{printable(state)}: cannot replace the keys: "
                             f"{exc.strerror or exc}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    sync_folder(state)
    return paths


def _write_public(target: Path, data: bytes) -> None:
    from guards.files import write_file_atomically

    try:
        write_file_atomically(target, data, "public-keys file", mode=_PUBLIC_MODE)
    except UserFileError as exc:
        raise ProvisionError(str(exc)) from None


def _toml_text(value: str) -> str:
    """``value`` as a TOML basic string: backslash, quote and every control character escaped
    (ids are printable already; paths and URLs may hold anything)."""
    escaped = []
    for char in value:
        if char in '"\\':
            escaped.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            escaped.append(f"\\u{ord(char):04x}")
        else:
            escaped.append(char)
    return '"' + "".join(escaped) + '"'


def _config_text(request: ProvisionRequest, paths: KeyFilePaths) -> str:
    from actors.van.tls_certificate import format_fingerprint

    state = request.state_dir
    lines = [
        f"# {CONFIG_FILE} of unit {request.unit_id}, written by lfr provision.",
        "# Read by lfr edge (docs/DELIVERY.md \"Configuration\"); checked: lfr edge --self-test.",
        f"id = {_toml_text(request.unit_id)}",
        f"signing_key = {_toml_text(str(paths.signing))}",
        f"outbox = {_toml_text(str(state / OUTBOX_FILE))}",
        f"audit = {_toml_text(str(state / AUDIT_FILE))}",
        "",
        "[authority]",
        f"public_keys = {_toml_text(AUTHORITY_KEYS_FILE)}",
        "",
        "[van]",
        f"url = {_toml_text(request.van_url)}",
        f"public_keys = {_toml_text(VAN_KEYS_FILE)}",
        f"tls_fingerprint = {_toml_text(format_fingerprint(request.tls_fingerprint))}",
    ]
    for camera in request.cameras:
        lines += ["", "[[cameras]]", f"id = {_toml_text(camera.camera_id)}",
                  f"source = {_toml_text(camera.source)}"]
    return "\n".join(lines) + "\n"


def _write_config(target: Path, text: str) -> Path:
    """Write ``text`` to a temporary file beside ``target``, fsync it, load it back as
    ``lfr edge`` does, then rename it over ``target``; the temporary file never remains."""
    from lfr.config.unit import load_unit_config

    try:
        fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.",
                                    suffix=".tmp")
    except OSError as exc:
        raise ProvisionError(f"{printable(target.parent)}: cannot write {target.name} there: "
                             f"{exc.strerror or exc}") from None
    temporary = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), _CONFIG_MODE)
            out.write(text.encode("utf-8"))
            out.flush()
            os.fsync(out.fileno())
        load_unit_config(temporary)  # relative paths resolve from the same folder
        os.replace(temporary, target)
    except BaseException as exc:  # any failure, Ctrl-C included: no temporary file is left
        temporary.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise ProvisionError(f"{printable(target)}: cannot write: "
                                 f"{exc.strerror or exc}") from None
        raise
    sync_folder(target.parent)
    return target


def _report(request: ProvisionRequest, keys: NodeKeys, paths: KeyFilePaths, config: Path, *,
            replaced: list[Path]) -> None:
    from secure.key_id import format_key_id

    key_id = format_key_id(keys.signing.key_id)
    unit = printable(request.unit_id)
    print(f"provisioned unit {unit}")
    print(f"  signing key id  {key_id}  (Ed25519 + ML-DSA-65, made on this machine)")
    print(f"  wrote {printable(paths.signing)}  (private, mode 0600: never leaves this unit)")
    print(f"  wrote {printable(paths.public)}  (public: the van enrols the unit with it)")
    print(f"  wrote {printable(config)}  (checked: lfr edge loads it)")
    print(f"  wrote {printable(request.out_dir / VAN_KEYS_FILE)}  (van "
          f"{printable(request.van.node_id)}, signing key "
          f"{format_key_id(request.van.verify_key.key_id)})")
    print(f"  wrote {printable(request.out_dir / AUTHORITY_KEYS_FILE)}  (authority "
          f"{printable(request.authority.node_id)}, signing key "
          f"{format_key_id(request.authority.verify_key.key_id)})")
    if replaced:
        print(f"  replaced the identity that was here ({', '.join(printable(p) for p in replaced)}"
              f"): at the van, lfr van revoke-unit {shlex.quote(request.unit_id)} first")
        if (request.state_dir / OUTBOX_FILE).exists():
            print(f"  {printable(request.state_dir / OUTBOX_FILE)} is kept: what it still holds "
                  "was signed by the old key, which the van refuses once it is revoked")
    print("enrolment record for the van:")
    print(f"  unit            {unit}")
    print(f"  signing key id  {key_id}")
    print(f"  public keys     {printable(paths.public)}")
    print("  copy the public keys file to the van, check its key id there, and run:")
    print(f"  lfr van enroll-unit {shlex.quote(request.unit_id)} "
          f"{shlex.quote(str(paths.public))} --config VAN_TOML")
