"""``LinkKeys``: the secrets links authenticate with, read from a key file only its owner reads.

Until devices carry their own keys, both ends of a link are given a key file. Each line is
``<peer name> <key in hex>`` (the key of the link to that peer) or ``* <key in hex>`` (one key
shared with every peer not named); ``#`` starts a comment. A peer's claimed name selects the key
it must prove it knows, so a peer with a named key cannot pass for another named peer. Keys are
at least 32 bytes (64 hex digits). The file must be a regular file owned by the user running the
node with no group or other permission bits (``chmod 600``), or it is refused; its mode and its
content are read from one open descriptor (``guards.files.open_regular_file``).

Keys never appear in a log or a ``repr``.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from guards.files import UserFileError, read_private_file
from guards.log_text import printable

MIN_KEY_BYTES = 32
"""256-bit keys at least: the HMAC-SHA256 handshake is no stronger than its key."""
MAX_KEY_FILE_BYTES = 64 * 1024
"""A key file is a few lines; anything larger is not one."""
MAX_PEER_NAME_CHARS = 64
"""Longest node name a peer may claim (names are logged and used as dictionary keys)."""
ANY_PEER = "*"
"""The name of the shared key's line in a key file."""


class KeyFileError(UserFileError):
    """A key file is missing, readable by others, malformed or holds a key too short."""


def valid_peer_name(name: str) -> bool:
    """True for a name a node may go by: 1-64 printable characters, not ``*``."""
    return (0 < len(name) <= MAX_PEER_NAME_CHARS and name.isprintable() and name != ANY_PEER
            and not name.isspace())


class LinkKeys:
    """Which key authenticates the link to which peer; built by ``from_file`` or ``shared``."""

    __slots__ = ("_by_peer", "_shared", "source")

    def __init__(self, by_peer: dict[str, bytes], shared: bytes | None, source: str) -> None:
        for peer, key in (*by_peer.items(), *((("*", shared),) if shared is not None else ())):
            if len(key) < MIN_KEY_BYTES:
                raise ValueError(f"the key for {printable(peer)} in {source} has {len(key)} "
                                 f"bytes; at least {MIN_KEY_BYTES} are needed")
        self._by_peer = dict(by_peer)
        self._shared = shared
        self.source = source
        """Where the keys came from (a file name), for messages; never the keys."""

    @classmethod
    def shared(cls, key: bytes) -> LinkKeys:
        """One key for every peer (tests; nodes read a key file)."""
        return cls({}, key, "a shared key")

    @classmethod
    def from_file(cls, path: Path | str) -> LinkKeys:
        """Read and check a key file; raises ``KeyFileError`` naming the file and the problem."""
        shown = printable(path)
        try:
            text = _read_private(path, shown).decode("ascii")
        except UnicodeDecodeError:
            raise KeyFileError(f"key file {shown}: not ASCII text") from None
        by_peer: dict[str, bytes] = {}
        shared: bytes | None = None
        for number, line in enumerate(text.splitlines(), start=1):
            fields = line.split("#", 1)[0].split()
            if not fields:
                continue
            where = f"key file {shown} line {number}"
            if len(fields) != 2:  # "<peer> <key>"
                raise KeyFileError(f"{where}: expected '<peer name> <hex key>' or '* <hex key>'")
            peer, key = fields[0], _hex_key(fields[1], where)
            if peer in by_peer or (peer == ANY_PEER and shared is not None):
                raise KeyFileError(f"{where}: a second key for {printable(peer)}")
            if peer == ANY_PEER:
                shared = key
            elif valid_peer_name(peer):
                by_peer[peer] = key
            else:
                raise KeyFileError(f"{where}: {printable(peer)} is not a valid peer name")
        if not by_peer and shared is None:
            raise KeyFileError(f"key file {shown}: holds no key")
        return cls(by_peer, shared, f"key file {shown}")

    def key_for(self, peer: str) -> bytes | None:
        """The key of the link to ``peer``: its own key, else the shared one, else None."""
        return self._by_peer.get(peer, self._shared)

    def __repr__(self) -> str:
        # Names of the peers, never a key.
        return (f"LinkKeys({self.source}, peers={sorted(self._by_peer)}, "
                f"shared={self._shared is not None})")


def write_shared_key_file(path: Path | str) -> Path:
    """Create a new key file at ``path`` (mode 0600) holding one random shared key.

    For tests, benchmarks and demos; refuses to overwrite an existing file.
    """
    target = Path(path)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write(f"# lfr link key: give this file to both ends, readable by their owner only\n"
                  f"{ANY_PEER} {secrets.token_hex(MIN_KEY_BYTES)}\n")
    return target


def _read_private(path: Path | str, shown: str) -> bytes:
    """The key file's bytes (``guards.files.read_private_file``: 0600, owned by us, no link)."""
    try:
        return read_private_file(path, "key file", MAX_KEY_FILE_BYTES)
    except UserFileError as exc:
        raise KeyFileError(str(exc)) from None


def _hex_key(text: str, where: str) -> bytes:
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise KeyFileError(f"{where}: the key is not hexadecimal") from None
    if len(key) < MIN_KEY_BYTES:
        raise KeyFileError(f"{where}: the key has {len(key)} bytes; at least {MIN_KEY_BYTES} "
                           f"are needed ({2 * MIN_KEY_BYTES} hex digits)")
    return key
