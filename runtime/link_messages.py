"""The runtime's own messages (type codes 1-99): handshake, transport envelopes, link events.

None of them may travel as the payload of a ``RemoteTell``/``RemoteAsk``: a peer must not be
able to tell an actor that a link went down, or replay a handshake inside a link.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from runtime.message import default_registry

T = TypeVar("T")
PROTOCOL_VERSION = 2
"""2: the handshake proves a shared key (``runtime.link_handshake``); 1 had no authentication."""


def _runtime_message(code: int, version: int = 1) -> Any:
    def register(cls: type[T]) -> type[T]:
        default_registry.register(cls, code, version, reserved=True)
        return cls

    return register


@_runtime_message(1, version=2)
@dataclass(frozen=True, slots=True)
class Hello:
    """First frame each side sends on a new link."""

    node: str
    """The sender's system name (the name its key is looked up by)."""
    protocol: int
    """``PROTOCOL_VERSION`` of the sender."""
    nonce: bytes
    """32 fresh random bytes: the challenge the other side's proof must cover."""


@_runtime_message(8)
@dataclass(frozen=True, slots=True)
class HandshakeProof:
    """Second frame of each side: proves knowledge of the link's key (see ``link_handshake``)."""

    mac: bytes
    """HMAC-SHA256 over the role, both names and both nonces."""


@_runtime_message(2)
@dataclass(frozen=True, slots=True)
class RemoteTell:
    """Deliver ``payload`` to the actor named ``target`` on the receiving system."""

    target: str
    """Actor name on the receiving system."""
    payload: Any
    """A registered message."""


@_runtime_message(3)
@dataclass(frozen=True, slots=True)
class RemoteAsk:
    """Ask the actor named ``target``; the answer comes back with the same ``ask_id``."""

    ask_id: int
    """Sender-chosen id, unique among the sender's pending asks on this link."""
    target: str
    """Actor name on the receiving system."""
    payload: Any
    """A registered message."""
    timeout_s: float
    """How long the asker waits; the receiver gives up on the local ask after this."""


@_runtime_message(4)
@dataclass(frozen=True, slots=True)
class RemoteReply:
    """The successful answer to ``RemoteAsk`` ``ask_id``."""

    ask_id: int
    """The ask this answers."""
    payload: Any | None
    """A registered message, or None."""


@_runtime_message(5)
@dataclass(frozen=True, slots=True)
class RemoteFailure:
    """``RemoteAsk`` ``ask_id`` failed on the receiver; raised as ``RemoteError`` at the asker."""

    ask_id: int
    """The ask this answers."""
    error_type: str
    """Class name of the exception."""
    message: str
    """Its text."""


@_runtime_message(6)
@dataclass(frozen=True, slots=True)
class LinkUp:
    """Told to watchers when a link to ``peer`` is established (or re-established)."""

    peer: str
    """The peer system's name."""


@_runtime_message(7)
@dataclass(frozen=True, slots=True)
class LinkDown:
    """Told to watchers when the link to ``peer`` is lost; pending asks failed with LinkLost."""

    peer: str
    """The peer system's name."""
    reason: str
    """Why, for the log and the operator."""


@_runtime_message(9)
@dataclass(frozen=True, slots=True)
class LinkHeartbeat:
    """Sent by each side of an established link every ``LinkConfig.heartbeat_interval_s`` when
    it has sent nothing else: proof of life. Never delivered to an actor."""


LinkEvent = LinkUp | LinkDown
"""What a link watcher receives."""
