"""``[[ice_servers]]``: the STUN/TURN servers a node's peer connections use, in either config.

Both ends may need them in the field: the unit behind a 4G carrier's NAT, the van behind its own
router. None (the default) means host candidates only, enough when the unit reaches the van's
address directly (and what the tests use on loopback). A TURN credential is never shown in logs
or ``repr``; a config holding one should be mode 0600.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from guards.config_checks import require_text
from lfr.config.toml_table import ConfigTable

if TYPE_CHECKING:
    from aiortc import RTCIceServer

MAX_ICE_SERVERS: Final = 8
"""STUN/TURN servers a node is given (one or two in practice)."""
ICE_SCHEMES: Final = ("stun:", "stuns:", "turn:", "turns:")


@dataclass(frozen=True, slots=True)
class IceServer:
    """A STUN or TURN server for a node's peer connections (aiortc's ``RTCIceServer``)."""

    urls: tuple[str, ...]
    """``stun:``, ``stuns:``, ``turn:`` or ``turns:`` URLs of one server."""
    username: str | None = None
    """TURN user name, if the server wants one."""
    credential: str | None = field(default=None, repr=False)
    """TURN password; never shown. A config holding one should be mode 0600."""

    def to_aiortc(self) -> RTCIceServer:
        """The server as aiortc takes it."""
        from aiortc import RTCIceServer  # noqa: PLC0415 - loading a config stays light

        return RTCIceServer(urls=list(self.urls), username=self.username,
                            credential=self.credential)


def read_ice_servers(top: ConfigTable) -> tuple[IceServer, ...]:
    """The ``[[ice_servers]]`` tables of a config (at most ``MAX_ICE_SERVERS``)."""
    return tuple(_ice_server(table) for table in
                 top.tables("ice_servers", ("urls", "username", "credential"),
                            MAX_ICE_SERVERS))


def _ice_server(table: ConfigTable) -> IceServer:
    urls = table.value("urls", list)
    if not urls:
        raise table.error("urls", "must list at least one URL")
    for i, url in enumerate(urls):
        if type(url) is not str or not url.startswith(ICE_SCHEMES):
            raise table.error(f"urls[{i}]", f"must be a string starting with "
                                            f"{', '.join(ICE_SCHEMES)}")
        table.check(f"urls[{i}]", functools.partial(require_text, "value", url))
    username = table.text("username") if "username" in table.data else None
    credential = table.value("credential", str) if "credential" in table.data else None
    if credential is not None and username is None:
        raise table.error("credential", "given without a username")
    return IceServer(tuple(urls), username, credential)
