"""Where a node's links may listen: a private Unix socket, or TCP on loopback only.

A Unix socket is created with mode 0600 (only this user may connect), replacing only a socket
file a previous run left behind (never a live socket or another kind of file). TCP listens and
dials on loopback IP addresses only, since links are authenticated but not encrypted yet.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import stat

from guards.config_checks import ConfigError
from guards.log_text import printable

UNIX_SOCKET_MODE = 0o600
"""Only the user running the node may connect to its socket."""


def require_loopback(host: str) -> None:
    """Refuse a TCP address that is not a loopback IP (``ConfigError`` saying why)."""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ConfigError(f"TCP links use loopback IP addresses only (127.0.0.1, ::1) until they "
                          f"are encrypted; got {printable(host)!r}")


MAX_UNIX_SOCKET_PATH_BYTES = 107
"""Linux's limit on a Unix socket's path (``sun_path`` is 108 bytes with its NUL)."""


def bind_private_unix_socket(path: str) -> socket.socket:
    """A Unix socket bound at ``path`` with mode 0600, not yet listening; ``ConfigError``
    naming the path when it is longer than the kernel allows."""
    if len(os.fsencode(path)) > MAX_UNIX_SOCKET_PATH_BYTES:
        raise ConfigError(f"link socket {printable(path)} is {len(os.fsencode(path))} bytes "
                          f"long; a Unix socket's path may have at most "
                          f"{MAX_UNIX_SOCKET_PATH_BYTES}: use a shorter folder")
    _remove_stale_socket(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        # No peer can connect before listen() (asyncio calls it), so no window is left open
        # between bind and chmod, whatever the umask.
        os.chmod(path, UNIX_SOCKET_MODE)
    except BaseException:
        sock.close()
        raise
    return sock


def _remove_stale_socket(path: str) -> None:
    """Remove a socket file left by an earlier run; refuse a live socket or any other file."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ConfigError(f"link socket {printable(path)} exists and is not a socket; "
                          "refusing to replace it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)  # a listener with a full backlog is alive too
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # nobody listens: left by a previous run of this node
        return
    finally:
        probe.close()
    raise ConfigError(f"link socket {printable(path)}: another process is listening on it")
