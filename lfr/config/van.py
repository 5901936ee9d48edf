"""``van.toml``: the van's id, state folder, key and TLS files, where it listens, and the
watchlist authority's keys.

``[authority] signing_key`` is optional: when a van is also where the authority signs (a small
force's single laptop), the console's Watchlist page signs the lists it builds with it
(docs/CONSOLE.md). It is checked when the config is read, so a van never starts with a key it
cannot use: the authority's private key file (``guards.files.read_private_file``: a regular
file of this user, not a link, 0600 or stricter), of role authority, whose public half is the
configured ``public_keys`` (same id, same signing key id). A key that fails any of these ends
the van with exit 2 naming ``authority.signing_key``."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final

from guards.log_text import printable
from lfr.config.ice_servers import IceServer, read_ice_servers
from lfr.config.toml_table import ConfigTable, read_toml

if TYPE_CHECKING:
    from secure.node_keys import NodeKeys, NodePublicKeys

EVENT_STORE_FILE: Final = "events.sqlite"
"""The van's event store, in its state folder beside the enrolment file."""
DEPLOYMENT_STORE_FILE: Final = "deployments.sqlite"
"""Deployments, their sealed watchlists and the units' watchlist states, in the state folder."""
AUDIT_FILE: Final = "audit.log"
"""The van's audit trail, in the state folder."""
CONTROL_SOCKET_FILE: Final = "control.sock"
"""The Unix socket (0600) the operators' commands reach the running van by."""
CONTROL_KEY_FILE: Final = "control.key"
"""The control socket's link key (0600), made by the van when it first starts."""


@dataclass(frozen=True, slots=True)
class ListenAddress:
    """An IP address and TCP port to listen on."""

    host: str
    """An IP address (v4 or v6), not a host name: binding never waits on DNS."""
    port: int
    """1-65535."""


DEFAULT_SIGNALING: Final = ListenAddress("127.0.0.1", 8443)
"""Where the van's signaling listens unless ``[signaling]`` says otherwise."""
DEFAULT_CONSOLE: Final = ListenAddress("127.0.0.1", 8080)
"""Where the operator console listens unless ``[console]`` says otherwise."""
DEFAULT_MAX_UNITS: Final = 64
"""Units connected at once unless ``signaling.max_units`` says otherwise."""
MAX_UNITS: Final = 1024
"""No more than the enrolment holds (``actors.van.enrolment.MAX_UNITS``)."""


@dataclass(frozen=True, slots=True)
class VanConfig:
    """``van.toml``: who the van is, where it keeps its state and keys, where it listens."""

    file: Path
    """The config file itself (absolute); relative paths in it were taken from its folder."""
    van_id: str
    """``id``: the van's node id, the one its keys were made for (``lfr keys init --id``)."""
    state_dir: Path
    """``state_dir``: an existing folder holding the enrolment registry and the event store."""
    signing_key: Path
    """``keys.signing``: the van's private signing key file (``signing.key``, 0600)."""
    encryption_key: Path
    """``keys.encryption``: the van's private encryption key file (``encryption.key``, 0600)."""
    tls_certificate: Path
    """``tls.certificate``: the van's self-signed certificate (PEM) whose sha256 units pin."""
    tls_key: Path
    """``tls.key``: that certificate's private key (PEM, 0600)."""
    signaling: ListenAddress = field(default_factory=lambda: DEFAULT_SIGNALING)
    """``signaling.host``/``signaling.port``: where units post their offers (always HTTPS with
    the certificate above). Loopback by default; another address for units on the network."""
    console: ListenAddress = field(default_factory=lambda: DEFAULT_CONSOLE)
    """``console.host``/``console.port``: the operator console (docs/CONSOLE.md). Loopback
    only: it shows biometric crops, and is served without TLS (on loopback nobody else sees
    the connection); reach it from another machine through an SSH tunnel."""
    max_units: int = DEFAULT_MAX_UNITS
    """``signaling.max_units``: units connected (or connecting) at once, 1-1024; one more is
    refused in signaling (503) until one drops. A unit connecting again replaces its old link
    and does not count twice."""
    ice_servers: tuple[IceServer, ...] = ()
    """``[[ice_servers]]``: STUN/TURN servers of the van's peer connections (docs/DELIVERY.md);
    none (the default) means host candidates only."""
    authority_public_keys: Path | None = None
    """``authority.public_keys``: the watchlist authority's ``public.keys``; the van refuses a
    push signed by any other key. Required (None only for configs made in tests)."""
    authority_signing_key: Path | None = None
    """``authority.signing_key``: optional; the authority's private ``signing.key`` when the
    authority signs on this van (module docstring). Checked when read: role authority, 0600,
    the private half of ``authority_public_keys``. None: the console offers the built list
    for signing elsewhere (``lfr watchlist sign``)."""

    @property
    def event_store(self) -> Path:
        """The event store's file in ``state_dir``."""
        return self.state_dir / EVENT_STORE_FILE

    @property
    def deployment_store(self) -> Path:
        """The deployment store's file in ``state_dir``."""
        return self.state_dir / DEPLOYMENT_STORE_FILE

    @property
    def audit(self) -> Path:
        """The van's audit trail in ``state_dir``."""
        return self.state_dir / AUDIT_FILE

    @property
    def control_socket(self) -> Path:
        """The control socket in ``state_dir``."""
        return self.state_dir / CONTROL_SOCKET_FILE

    @property
    def control_key(self) -> Path:
        """The control socket's key file in ``state_dir``."""
        return self.state_dir / CONTROL_KEY_FILE


def _listen(table: ConfigTable, default: ListenAddress) -> ListenAddress:
    host = table.text("host", default.host)
    table.check("host", lambda: ipaddress.ip_address(host))
    port = table.value("port", int, default.port)
    if not 1 <= port <= 65535:
        raise table.error("port", f"must be 1-65535, got {port}")
    return ListenAddress(host, port)


def _max_units(table: ConfigTable) -> int:
    max_units = table.value("max_units", int, DEFAULT_MAX_UNITS)
    if not 1 <= max_units <= MAX_UNITS:
        raise table.error("max_units", f"must be 1-{MAX_UNITS}, got {max_units}")
    return max_units


def read_authority_signing_key(path: Path, public: NodePublicKeys) -> NodeKeys:
    """The authority's private keys from ``path``, which must be of role authority and the
    private half of ``public`` (the configured ``public_keys``); ``KeyFileError`` (a
    ``UserInputError``) naming what is wrong, the file's mode and owner included."""
    from secure.key_files import KeyFileError, read_node_keys  # noqa: PLC0415
    from secure.node_keys import NodeRole  # noqa: PLC0415

    keys = read_node_keys(path)
    if keys.role is not NodeRole.AUTHORITY:
        raise KeyFileError(f"{printable(path)}: the signing key of {keys.role.value} "
                           f"{printable(keys.node_id)}, not of an authority")
    if (keys.node_id != public.node_id
            or keys.signing.verify_key.key_id != public.verify_key.key_id):
        raise KeyFileError(f"{printable(path)}: the key of authority "
                           f"{printable(keys.node_id)} ({keys.signing.verify_key.key_id.hex()})"
                           f", not of the configured authority {printable(public.node_id)} "
                           f"({public.verify_key.key_id.hex()}): lists it signs would be "
                           "refused")
    return keys


def load_van_config(path: Path | str) -> VanConfig:
    """The van's config from ``path``; ``NodeConfigError`` naming the file and key."""
    from secure.key_files import read_public_keys  # noqa: PLC0415 - keeps lfr --help light
    from secure.node_keys import NodeRole, check_node_id  # noqa: PLC0415

    file, data = read_toml(path)
    top = ConfigTable(file, data, "", ("id", "state_dir", "keys", "tls", "signaling", "console",
                                       "ice_servers", "authority"))
    van_id = top.text("id")
    top.check("id", lambda: check_node_id(van_id, "id"))
    state_dir = top.path("state_dir", kind="folder")
    keys = top.table("keys", ("signing", "encryption"))
    tls = top.table("tls", ("certificate", "key"))
    signaling = top.table("signaling", ("host", "port", "max_units"), required=False)
    console = top.table("console", ("host", "port"), required=False)
    authority = top.table("authority", ("public_keys", "signing_key"))
    authority_keys = authority.path("public_keys", kind="file")
    public = authority.check("public_keys",
                             lambda: read_public_keys(authority_keys, NodeRole.AUTHORITY))
    signing_key = (authority.path("signing_key", kind="file")
                   if "signing_key" in authority.data else None)
    if signing_key is not None:
        authority.check("signing_key", lambda: read_authority_signing_key(signing_key, public))
    config = VanConfig(file, van_id, state_dir, keys.path("signing", kind="file"),
                       keys.path("encryption", kind="file"),
                       tls.path("certificate", kind="file"), tls.path("key", kind="file"),
                       _listen(signaling, DEFAULT_SIGNALING), _listen(console, DEFAULT_CONSOLE),
                       _max_units(signaling), read_ice_servers(top), authority_keys,
                       signing_key)
    if not ipaddress.ip_address(config.console.host).is_loopback:
        raise top.error("console.host", "the console listens on loopback only (127.0.0.1 or "
                        "::1): it shows face crops and is served without TLS; use an SSH "
                        f"tunnel to reach it from elsewhere; got {printable(config.console.host)}")
    return config
