"""``LinkConfig``: the key, the limits and the exposed actors of one node's links.

Everything a peer can make this node hold is bounded here: links, connections still in their
handshake, bytes buffered while a frame arrives, asks in either direction, and time spent on a
handshake or a half-sent frame. The defaults suit a camera unit linked to one van; each can be
set per endpoint.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from guards.config_checks import ConfigError, require_at_least, require_positive, require_text
from runtime.link_keys import LinkKeys, valid_peer_name
from runtime.message import RESERVED_CODES, MessageRegistry

HANDSHAKE_FRAME_BYTES = 1024
"""Largest frame read before a peer is authenticated (a ``Hello`` or a proof is ~150 bytes), so
an unauthenticated connection can make this node buffer no more than this plus read-ahead."""


@dataclass(frozen=True, slots=True)
class LinkConfig:
    """Settings of a ``LinkServer`` or ``LinkClient``; ``keys`` and ``exposed`` have no default
    on purpose: no link without a key, no actor reachable unless named."""

    keys: LinkKeys
    """Keys the handshake proves (``LinkKeys.from_file``); a peer without one is refused."""
    exposed: Mapping[str, Collection[type[Any]]] = field(default_factory=dict)
    """Actors a peer may reach, by name, each with the message classes a peer may send it.
    Any other name is answered as if no such actor existed; any other class is refused before
    the actor sees it. Runtime messages (type codes 1-99) can never be listed."""
    routes: Mapping[str, str] = field(default_factory=dict)
    """Exposed names that reach an actor of another local name: ``{"receiver":
    "receiver:unit-1"}`` lets each of a van's links call its peer's own actor by one fixed name.
    Every key must be in ``exposed``; a name not listed here reaches the actor of that name."""
    max_links: int = 8
    """Authenticated links a server holds at once; while that many are up, a new connection
    is closed at once, and a handshake that would make one more is refused (both counted).
    Connections still in their handshake do not count here: see ``max_handshakes``."""
    max_handshakes: int = 16
    """Connections a server holds at once that are still in their handshake. One more evicts
    the oldest of them (closed and counted) instead of being refused, so silent connections
    cannot lock a peer out: a genuine handshake takes about 1 ms on loopback, and an attacker
    would have to open this many connections within it. Each one still has
    ``handshake_timeout_s``."""
    max_pending_asks: int = 256
    """Asks this node sent over one link and still awaits; one more raises ``TooManyAsks``."""
    max_peer_asks: int = 32
    """Asks from the peer being answered at once on one link; one more is answered at once
    with a ``RemoteFailure`` "too many pending asks" instead of being queued."""
    max_frame_bytes: int = 4 * 1024 * 1024
    """Largest frame an authenticated peer may send (4 MiB), checked on the length prefix
    before any of it is read; a larger one closes the link. Match events are a few KB; frames
    never cross."""
    read_ahead_bytes: int = 64 * 1024
    """The stream reader's limit: beyond twice this, unread bytes pause the socket. A link
    therefore buffers at most ``max_frame_bytes`` plus ``2 * read_ahead_bytes``."""
    handshake_timeout_s: float = 5.0
    """Deadline of the whole handshake, from accept or connect, in seconds."""
    partial_frame_timeout_s: float = 30.0
    """Once a frame's length has arrived, its body must follow within this many seconds or the
    link closes (a peer cannot park half a frame in this node's memory)."""
    max_ask_timeout_s: float = 60.0
    """A peer's ask is served for at most this long, whatever timeout the peer asked for (s)."""
    heartbeat_interval_s: float = 5.0
    """Each side sends a ``LinkHeartbeat`` when it has sent nothing for this long (s)."""
    heartbeat_timeout_s: float = 15.0
    """A link on which nothing at all arrived for this long is closed as dead (s): the peer's
    heartbeats stopped, so its process, host or network is gone even if no error said so.
    Must exceed ``heartbeat_interval_s``."""
    close_timeout_s: float = 5.0
    """Closing a link waits at most this long for its channel to close (s): a stream's close
    waits until its unsent data is taken, which a peer that stopped reading never does."""

    def __post_init__(self) -> None:
        if not isinstance(self.keys, LinkKeys):
            raise ConfigError(f"LinkConfig.keys must be LinkKeys, got {type(self.keys).__name__}")
        for name in ("max_links", "max_handshakes", "max_pending_asks", "max_peer_asks"):
            require_at_least(f"LinkConfig.{name}", getattr(self, name), 1)
        require_at_least("LinkConfig.max_frame_bytes", self.max_frame_bytes,
                         HANDSHAKE_FRAME_BYTES)
        require_at_least("LinkConfig.read_ahead_bytes", self.read_ahead_bytes, 1024)
        for name in ("handshake_timeout_s", "partial_frame_timeout_s", "max_ask_timeout_s",
                     "heartbeat_interval_s", "heartbeat_timeout_s", "close_timeout_s"):
            require_positive(f"LinkConfig.{name}", getattr(self, name))
        if self.heartbeat_timeout_s <= self.heartbeat_interval_s:
            raise ConfigError(f"LinkConfig.heartbeat_timeout_s ({self.heartbeat_timeout_s:g}) "
                              "must exceed LinkConfig.heartbeat_interval_s "
                              f"({self.heartbeat_interval_s:g})")
        exposed: dict[str, frozenset[type[Any]]] = {}
        for actor, classes in self.exposed.items():
            require_text("LinkConfig.exposed actor name", actor)
            if not valid_peer_name(actor):
                raise ConfigError(f"LinkConfig.exposed: {actor!r} is not a valid actor name")
            listed: Any = classes  # a str would pass for a collection here: checked at run time
            if (isinstance(listed, str | bytes) or not listed
                    or not all(isinstance(cls, type) for cls in listed)):
                raise ConfigError(f"LinkConfig.exposed[{actor!r}] must list the message classes "
                                  "a peer may send it")
            exposed[actor] = frozenset(classes)
        for alias, actor in self.routes.items():
            if alias not in exposed:
                raise ConfigError(f"LinkConfig.routes: {alias!r} is not an exposed name")
            if not isinstance(actor, str) or not actor:
                raise ConfigError(f"LinkConfig.routes[{alias!r}] must name a local actor")
        # Frozen: nobody widens the allow-list after the links were built on it.
        object.__setattr__(self, "exposed", MappingProxyType(exposed))
        object.__setattr__(self, "routes", MappingProxyType(dict(self.routes)))

    def local_name(self, exposed_name: str) -> str:
        """The local actor a peer reaches by ``exposed_name``."""
        return self.routes.get(exposed_name, exposed_name)

    def check_registered(self, registry: MessageRegistry) -> None:
        """Every exposed class is an application message of ``registry`` (not a runtime one)."""
        for actor, classes in self.exposed.items():
            for cls in classes:
                spec = registry.spec_for_class(cls)
                if spec is None:
                    raise ConfigError(f"LinkConfig.exposed[{actor!r}]: {cls.__qualname__} is not "
                                      "a registered message")
                if spec.code in RESERVED_CODES:
                    raise ConfigError(f"LinkConfig.exposed[{actor!r}]: {cls.__qualname__} is a "
                                      "runtime message; a peer may never send it")
