"""``unit.toml``: the unit's id and signing key, its van, its watchlist authority, its cameras,
outbox, audit trail, health reports, ICE servers and accelerator.

A unit's config names no watchlist file: watchlists reach a unit only from its van, signed by
the authority, and live in memory only (docs/WATCHLISTS.md). A ``watchlist`` key is refused with
that explanation.

``[accelerator]`` is optional: without it (or with ``kind = "cpu"``) the unit runs the vendored
models on the CPU. ``kind = "edgetpu"`` names the Edge TPU compiled models (``*_edgetpu.tflite``,
each with its sha256, checked when ``lfr.unit_models`` loads it), the runtime library and the
device; there is no silent fallback to the CPU. Every key of the table is checked here, and a
key that does not belong to its kind is refused, naming it."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from guards.config_checks import ConfigError, require_text
from guards.log_text import printable
from lfr.config.ice_servers import IceServer, read_ice_servers
from lfr.config.toml_table import ConfigTable, read_toml

DEFAULT_AUDIT_FILE: Final = "audit.log"
"""The unit's audit trail, beside its outbox, unless ``audit`` says otherwise."""
MAX_CAMERAS: Final = 16
"""Cameras one unit runs (each its own camera and detector pipeline)."""
DEFAULT_HEALTH_INTERVAL_S: Final = 5.0
"""Seconds between two health reports unless ``[health] interval_s`` says otherwise."""
HEALTH_INTERVAL_RANGE_S: Final = (1.0, 300.0)
"""``[health] interval_s`` lies in this range: at least a second (a report is an envelope in
the outbox and a row at the van), at most five minutes (the van calls a unit silent after a few
missed reports)."""
DEFAULT_EDGETPU_LIBRARY: Final = "libedgetpu.so.1"
"""The Edge TPU runtime library (Debian/Coral package ``libedgetpu1-std``) unless
``[accelerator] library`` says otherwise."""
EDGETPU_SUFFIX: Final = "_edgetpu.tflite"
"""How the Edge TPU compiler names what it writes; any other file is refused for the TPU."""
_SHA256_HEX: Final = re.compile(r"[0-9a-f]{64}")
# "usb", "pci", "usb:0", "pci:1" or ":0" (the n-th Edge TPU of any kind), as libedgetpu takes it
_EDGETPU_DEVICE: Final = re.compile(r"(?:usb|pci)(?::[0-9]{1,3})?|:[0-9]{1,3}")


@dataclass(frozen=True, slots=True)
class CameraEntry:
    """One ``[[cameras]]`` table, checked by ``CameraConfig`` as well."""

    camera_id: str
    """``id``: the camera's name in frames and alerts; unique within the unit."""
    source: str
    """``source``: a video file (relative to the config's folder; must exist), an ``rtsp://``,
    ``rtsps://`` or ``http(s)://`` URL, or a device such as ``/dev/video0``."""
    paced: bool = False
    """``paced``: files only, replay at the frame rate instead of as fast as possible."""
    loop: bool = False
    """``loop``: paced files only, start again at the end, for ever (a demo's camera)."""


@dataclass(frozen=True, slots=True)
class EdgeTpuModel:
    """One Edge TPU compiled model file and the sha256 it must have."""

    file: Path
    """The ``*_edgetpu.tflite`` file (absolute; relative in the config to its folder)."""
    sha256: str
    """64 lower-case hex digits; ``lfr.unit_models`` refuses a file with any other digest."""

    def __post_init__(self) -> None:
        if not self.file.name.endswith(EDGETPU_SUFFIX):
            raise ConfigError(f"EdgeTpuModel.file must be an Edge TPU compiled model "
                              f"(*{EDGETPU_SUFFIX}), got {printable(self.file.name)}")
        if not _SHA256_HEX.fullmatch(self.sha256):
            raise ConfigError("EdgeTpuModel.sha256 must be 64 lower-case hex digits")


@dataclass(frozen=True, slots=True)
class EdgeTpuConfig:
    """``[accelerator]`` with ``kind = "edgetpu"``: both models run on a Coral Edge TPU."""

    detector: EdgeTpuModel
    """``detector_model`` and ``detector_sha256``: BlazeFace full-range compiled for the TPU
    (input 1x192x192x3)."""
    embedder: EdgeTpuModel
    """``embedder_model`` and ``embedder_sha256``: MobileFaceNet compiled for the TPU (input
    2x112x112x3). A watchlist holds the embedder's id and sha256, so the lists this unit takes
    must have been built with this file."""
    library: str = DEFAULT_EDGETPU_LIBRARY
    """``library``: the Edge TPU runtime library, a name the dynamic loader finds or a path."""
    device: str | None = None
    """``device``: ``usb``, ``pci``, ``usb:N``, ``pci:N`` or ``:N``; None (absent): the first
    Edge TPU found."""

    def __post_init__(self) -> None:
        require_text("EdgeTpuConfig.library", self.library)
        if self.device is not None and not _EDGETPU_DEVICE.fullmatch(self.device):
            raise ConfigError(f"EdgeTpuConfig.device must be usb, pci, usb:N, pci:N or :N, got "
                              f"{printable(self.device)}")


@dataclass(frozen=True, slots=True)
class UnitConfig:
    """``unit.toml``: who the unit is, its van, its cameras and its outbox."""

    file: Path
    """The config file itself (absolute)."""
    unit_id: str
    """``id``: the unit's node id, the one its keys were made for and the van enrolled."""
    signing_key: Path
    """``signing_key``: the unit's private signing key file (``signing.key``, 0600)."""
    outbox: Path
    """``outbox``: the outbox database; created if absent, its folder must exist."""
    van_url: str
    """``van.url``: ``https://HOST:PORT`` of the van's signaling endpoint."""
    van_public_keys: Path
    """``van.public_keys``: the van's ``public.keys`` file (role van)."""
    van_tls_fingerprint: bytes = field(repr=False)
    """``van.tls_fingerprint``: sha256 of the van's certificate, 64 hex digits with or without
    colons (``lfr`` prints it as ``AB:CD:...``); the only certificate the unit accepts."""
    cameras: tuple[CameraEntry, ...]
    """``[[cameras]]``: one or more, ids unique."""
    authority_public_keys: Path
    """``authority.public_keys``: the watchlist authority's ``public.keys`` (role authority);
    a watchlist is accepted only with both halves of its signature."""
    audit: Path
    """``audit``: the unit's audit trail (hash-chained, append-only); by default ``audit.log``
    beside the outbox."""
    health_interval_s: float = DEFAULT_HEALTH_INTERVAL_S
    """``health.interval_s``: seconds between two health reports to the van, in
    ``HEALTH_INTERVAL_RANGE_S``."""
    ice_servers: tuple[IceServer, ...] = ()
    """``[[ice_servers]]``: STUN/TURN servers; none (the default) means host candidates only."""
    accelerator: EdgeTpuConfig | None = None
    """``[accelerator]``: the Edge TPU and its compiled models; None (no table, or
    ``kind = "cpu"``): the vendored models on the CPU."""


def load_unit_config(path: Path | str) -> UnitConfig:
    """A unit's config from ``path``; ``NodeConfigError`` naming the file and key."""
    from actors.van.tls_certificate import parse_fingerprint  # noqa: PLC0415
    from secure.key_files import read_public_keys  # noqa: PLC0415
    from secure.node_keys import NodeRole, check_node_id  # noqa: PLC0415

    file, data = read_toml(path)
    top = ConfigTable(file, data, "", ("id", "signing_key", "outbox", "watchlist", "van",
                                       "authority", "audit", "cameras", "health",
                                       "ice_servers", "accelerator"))
    if "watchlist" in data:
        raise top.error("watchlist", "a unit's config names no watchlist file any more: the van "
                        "pushes a signed watchlist (lfr watchlist push), which the unit keeps in "
                        "memory only; remove this key and give [authority] public_keys")
    unit_id = top.text("id")
    top.check("id", lambda: check_node_id(unit_id, "id"))
    signing_key = top.path("signing_key", kind="file")
    outbox = top.path("outbox", kind="parent")
    authority = top.table("authority", ("public_keys",))
    authority_keys = authority.path("public_keys", kind="file")
    authority.check("public_keys", lambda: read_public_keys(authority_keys, NodeRole.AUTHORITY))
    audit = (top.path("audit", kind="parent") if "audit" in data
             else outbox.parent / DEFAULT_AUDIT_FILE)
    van = top.table("van", ("url", "public_keys", "tls_fingerprint"))
    url = van.text("url")
    van.check("url", lambda: check_van_url(url))
    public_keys = van.path("public_keys", kind="file")
    van.check("public_keys", lambda: read_public_keys(public_keys, NodeRole.VAN))
    pin = van.text("tls_fingerprint")
    fingerprint = van.check("tls_fingerprint", lambda: parse_fingerprint(pin))
    cameras = _cameras(top)
    health_interval_s = _health_interval(top.table("health", ("interval_s",), required=False))
    ice_servers = read_ice_servers(top)
    accelerator = _accelerator(top.table("accelerator", _ACCELERATOR_KEYS, required=False))
    return UnitConfig(file, unit_id, signing_key, outbox, url, public_keys, fingerprint,
                      cameras, authority_keys, audit, health_interval_s, ice_servers,
                      accelerator=accelerator)


def check_van_url(url: str) -> None:
    """``ValueError`` unless ``url`` is ``https://HOST:PORT`` (what ``van.url`` takes)."""
    parts = urlsplit(url)
    if parts.scheme != "https":
        raise ValueError("must start with https:// (signaling is always TLS)")
    if not parts.hostname or parts.username is not None or parts.password is not None:
        raise ValueError("must be https://HOST:PORT, with no user or password")
    if parts.port is None:  # raises ValueError for a port out of range
        raise ValueError("must name the port: https://HOST:PORT")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("must be https://HOST:PORT only (no path, query or fragment)")


def _health_interval(health: ConfigTable) -> float:
    if "interval_s" not in health.data:
        return DEFAULT_HEALTH_INTERVAL_S
    value = health.data["interval_s"]
    # An integer or a float, never a bool (true is not a number of seconds here).
    if type(value) not in (int, float):
        value = health.value("interval_s", float)  # raises, naming the type it got
    low, high = HEALTH_INTERVAL_RANGE_S
    if not low <= value <= high:  # NaN and the infinities fail this too
        raise health.error("interval_s", f"must lie in {low:g}-{high:g} seconds, got {value!r}")
    return float(value)


_CAMERA_FIELDS: Final = {"CameraConfig.source": "source", "CameraConfig.camera_id": "id",
                          "CameraConfig.loop": "loop"}


def _cameras(top: ConfigTable) -> tuple[CameraEntry, ...]:
    from actors.unit.camera import CameraConfig  # noqa: PLC0415 - loads PyAV
    from actors.unit.camera_source import is_live_source  # noqa: PLC0415
    from actors.unit.event_body import MAX_CAMERA_ID_CHARS  # noqa: PLC0415

    tables = top.tables("cameras", ("id", "source", "paced", "loop"), MAX_CAMERAS)
    if not tables:
        raise top.error("cameras", "missing: at least one [[cameras]] table is required")
    cameras: list[CameraEntry] = []
    for table in tables:
        # CameraConfig checks both (the same checks as everywhere a camera is made)
        camera_id, source = table.value("id", str), table.value("source", str)
        paced = table.value("paced", bool, False)  # noqa: FBT003
        loop = table.value("loop", bool, False)  # noqa: FBT003
        try:
            CameraConfig(source, camera_id=camera_id, paced=paced, loop=loop)
        except ConfigError as exc:
            text = str(exc)
            key = next((k for name, k in _CAMERA_FIELDS.items() if text.startswith(name)), None)
            raise table.error(key, text) from None
        if len(camera_id) > MAX_CAMERA_ID_CHARS or camera_id.isspace():
            # Every alert and health report names the camera: the van refuses longer ids.
            raise table.error("id", f"must be 1-{MAX_CAMERA_ID_CHARS} characters, not only "
                                    f"spaces (got {len(camera_id)})")
        if not is_live_source(source):
            source = str(table.path("source", kind="file"))
        if any(camera.camera_id == camera_id for camera in cameras):
            raise table.error("id", f"camera {printable(camera_id)} is named twice; camera ids "
                                    "are unique within a unit")
        cameras.append(CameraEntry(camera_id, source, paced, loop))
    return tuple(cameras)


_ACCELERATOR_KEYS: Final = ("kind", "detector_model", "detector_sha256", "embedder_model",
                            "embedder_sha256", "library", "device")
_ACCELERATOR_KINDS: Final = ("cpu", "edgetpu")


def _accelerator(table: ConfigTable) -> EdgeTpuConfig | None:
    if not table.data:
        return None  # no [accelerator] table: the CPU
    kind = table.text("kind")
    if kind not in _ACCELERATOR_KINDS:
        raise table.error("kind", f"must be one of {', '.join(_ACCELERATOR_KINDS)}, got "
                                  f"{printable(kind, max_chars=40)}")
    if kind == "cpu":
        extra = next((key for key in table.data if key != "kind"), None)
        if extra is not None:
            raise table.error(extra, 'only with kind = "edgetpu" (the CPU runs the vendored '
                                     "models, pinned in models/model_file.py)")
        return None
    detector = _edgetpu_model(table, "detector")
    embedder = _edgetpu_model(table, "embedder")
    library = table.text("library", DEFAULT_EDGETPU_LIBRARY)
    device = table.text("device") if "device" in table.data else None
    if device is not None:
        table.check("device", lambda: _check_device(device))
    return EdgeTpuConfig(detector, embedder, library, device)


def _edgetpu_model(table: ConfigTable, which: str) -> EdgeTpuModel:
    key = f"{which}_model"
    path = table.path(key, kind="file")
    if not path.name.endswith(EDGETPU_SUFFIX):
        raise table.error(key, f"{printable(path)} is not an Edge TPU compiled model (its name "
                               f"must end in {EDGETPU_SUFFIX}, as edgetpu_compiler writes it)")
    digest = table.text(f"{which}_sha256")
    if not _SHA256_HEX.fullmatch(digest.lower()):
        raise table.error(f"{which}_sha256", "must be 64 hex digits (sha256sum of the file)")
    return EdgeTpuModel(path, digest.lower())


def _check_device(device: str) -> None:
    if not _EDGETPU_DEVICE.fullmatch(device):
        raise ValueError("must be usb, pci, usb:N, pci:N or :N (N: which one, from 0)")
