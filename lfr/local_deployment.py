"""A van and its units provisioned in one folder, for running them all on one machine.

What the README's step-by-step section does by hand (``lfr keys init``, ``lfr van tls-init``,
``lfr van enroll-unit``, two config files), done by one call: the uplink benchmark, the
delivery fault tests and the demo start real ``lfr van`` and unit processes from the folder it
writes. Everything is real: fresh keys for every node (private files 0600), a self-signed TLS
certificate whose pin goes into each unit's config, the units enrolled at the van by their
public keys. Nothing is shared between nodes but public keys and the pin.

Layout (``root`` must be empty or absent)::

    root/authority/keys/          the watchlist authority's keys (signs watchlists)
    root/van/van.toml, keys/, tls/, state/ (enrolled-units, events.sqlite, ...),
             authority.public.keys
    root/<unit-id>/unit.toml, keys/, state/ (outbox.sqlite, audit.log), van.public.keys,
             authority.public.keys

A unit's config names no watchlist: start a deployment on the running van and push a signed
watchlist to it (``lfr van deployment start``, ``lfr watchlist sign``, ``lfr watchlist push``);
``watchlist``, when given, is only remembered here for whoever does that.

With ``authority_key_on_van`` the van's config also names the authority's private key
(``[authority] signing_key``), so the console's Watchlist page can sign the lists it builds
(the demo does this). A real deployment keeps that key off the van and signs elsewhere
(docs/THREAT_MODEL.md).
"""

from __future__ import annotations

import shutil
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from actors.van.enrolment import Enrolment
from actors.van.tls_certificate import create_tls_certificate, format_fingerprint
from guards.user_input import UserInputError
from secure.key_files import write_node_keys
from secure.node_keys import NodeKeys, NodeRole, check_node_id


@dataclass(frozen=True, slots=True)
class CameraPlan:
    """One camera of a unit in the deployment."""

    camera_id: str
    """The camera's id in the unit's config."""
    source: Path | str
    """A video file (absolute) or a live URL/device."""
    paced: bool = False
    """Replay a file at its frame rate (a live camera's behaviour)."""
    loop: bool = False
    """A paced file only: start it again at its end, for ever."""


@dataclass(frozen=True, slots=True)
class LocalDeployment:
    """Where ``create_local_deployment`` wrote a van and its units."""

    root: Path
    """The deployment folder."""
    van_id: str
    """The van's node id."""
    van_config: Path
    """``van.toml``."""
    van_url: str
    """``https://127.0.0.1:PORT``, the van's signaling endpoint."""
    console_url: str
    """``http://127.0.0.1:PORT``, the van's operator console."""
    van_signing_key: Path
    """The van's private signing key file (the tests read the event store with it)."""
    van_encryption_key: Path
    """The van's private encryption key file."""
    event_store: Path
    """The van's event store file (created by the van node when it starts)."""
    unit_ids: tuple[str, ...]
    """The units' node ids, in order."""
    unit_configs: tuple[Path, ...]
    """Each unit's ``unit.toml``, in the order of ``unit_ids``."""
    authority_signing_key: Path
    """The watchlist authority's private signing key file (signs the deployment's lists)."""
    watchlist: Path | None = None
    """The watchlist file to sign and push once the van runs, if one was given."""


def free_local_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _toml_text(value: str) -> str:
    """``value`` as a TOML basic string (paths and ids from our own code, escaped anyway)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _write_van(folder: Path, van: NodeKeys, port: int, console_port: int, *,
               authority_public_keys: Path, authority_signing_key: Path | None,
               ) -> tuple[Path, bytes]:
    folder.mkdir(mode=0o700)
    write_node_keys(van, folder / "keys")
    shutil.copyfile(authority_public_keys, folder / "authority.public.keys")
    (folder / "tls").mkdir(mode=0o700)
    tls = create_tls_certificate(folder / "tls", van.node_id)
    (folder / "state").mkdir(mode=0o700)
    config = folder / "van.toml"
    config.write_text(
        f"id = {_toml_text(van.node_id)}\n"
        'state_dir = "state"\n\n'
        "[keys]\n"
        'signing = "keys/signing.key"\n'
        'encryption = "keys/encryption.key"\n\n'
        "[tls]\n"
        f"certificate = {_toml_text(str(tls.certificate))}\n"
        f"key = {_toml_text(str(tls.key))}\n\n"
        "[authority]\n"
        'public_keys = "authority.public.keys"\n'
        + (f"signing_key = {_toml_text(str(authority_signing_key))}\n"
           if authority_signing_key is not None else "")
        + "\n"
        "[signaling]\n"
        'host = "127.0.0.1"\n'
        f"port = {port}\n\n"
        "[console]\n"
        'host = "127.0.0.1"\n'
        f"port = {console_port}\n", encoding="utf-8")
    config.chmod(0o600)
    return config, tls.fingerprint


def _write_unit(folder: Path, unit: NodeKeys, *, van_public_keys: Path, van_url: str,
                fingerprint: bytes, cameras: Sequence[CameraPlan],
                authority_public_keys: Path) -> Path:
    folder.mkdir(mode=0o700)
    paths = write_node_keys(unit, folder / "keys")
    (folder / "state").mkdir(mode=0o700)
    shutil.copyfile(van_public_keys, folder / "van.public.keys")
    shutil.copyfile(authority_public_keys, folder / "authority.public.keys")
    lines = [
        f"id = {_toml_text(unit.node_id)}",
        f"signing_key = {_toml_text(str(paths.signing))}",
        'outbox = "state/outbox.sqlite"',
        "",
        "[authority]",
        'public_keys = "authority.public.keys"',
        "",
        "[van]",
        f"url = {_toml_text(van_url)}",
        'public_keys = "van.public.keys"',
        f"tls_fingerprint = {_toml_text(format_fingerprint(fingerprint))}",
    ]
    for camera in cameras:
        lines += ["", "[[cameras]]", f"id = {_toml_text(camera.camera_id)}",
                  f"source = {_toml_text(str(camera.source))}",
                  f"paced = {'true' if camera.paced else 'false'}",
                  f"loop = {'true' if camera.loop else 'false'}"]
    config = folder / "unit.toml"
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    config.chmod(0o600)
    return config


def create_local_deployment(root: Path, *, units: int, cameras: Sequence[CameraPlan],
                            watchlist: Path | None = None, van_id: str = "van-1",
                            unit_prefix: str = "unit-", port: int | None = None,
                            authority_key_on_van: bool = False) -> LocalDeployment:
    """Provision a van and ``units`` units under ``root`` (see the module docstring). Every
    unit gets the same ``cameras`` and ``watchlist``; the van listens on 127.0.0.1:``port``
    (a free port when None); ``authority_key_on_van``: the van's config names the authority's
    signing key. ``UserInputError`` when ``root`` exists and is not empty."""
    if not 1 <= units <= 1024:
        raise UserInputError(f"a deployment has 1-1024 units, not {units}")
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise UserInputError(f"{root} exists and is not an empty folder")
    check_node_id(van_id, "van id")
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    authority = NodeKeys.generate(NodeRole.AUTHORITY, "authority")
    (root / "authority").mkdir(mode=0o700)
    authority_paths = write_node_keys(authority, root / "authority" / "keys")
    van = NodeKeys.generate(NodeRole.VAN, van_id)
    port = free_local_port() if port is None else port
    van_url = f"https://127.0.0.1:{port}"
    console_port = free_local_port()
    van_config, fingerprint = _write_van(
        root / "van", van, port, console_port, authority_public_keys=authority_paths.public,
        authority_signing_key=authority_paths.signing.resolve() if authority_key_on_van
        else None)
    van_public = root / "van" / "keys" / "public.keys"
    enrolment = Enrolment.open(root / "van" / "state")
    unit_ids: list[str] = []
    unit_configs: list[Path] = []
    for number in range(1, units + 1):
        unit = NodeKeys.generate(NodeRole.UNIT, check_node_id(f"{unit_prefix}{number}"))
        config = _write_unit(root / unit.node_id, unit, van_public_keys=van_public,
                             van_url=van_url, fingerprint=fingerprint, cameras=cameras,
                             authority_public_keys=authority_paths.public)
        enrolment.enrol(root / unit.node_id / "keys" / "public.keys", unit_id=unit.node_id)
        unit_ids.append(unit.node_id)
        unit_configs.append(config)
    return LocalDeployment(root, van_id, van_config, van_url,
                           f"http://127.0.0.1:{console_port}",
                           root / "van" / "keys" / "signing.key",
                           root / "van" / "keys" / "encryption.key",
                           root / "van" / "state" / "events.sqlite",
                           tuple(unit_ids), tuple(unit_configs), authority_paths.signing,
                           watchlist)
