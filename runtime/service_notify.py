"""``ServiceNotifier``: the sd_notify protocol, telling systemd how this process is doing.

The protocol (sd_notify(3)): one datagram of newline-separated ``KEY=VALUE`` lines, sent to the
``AF_UNIX`` datagram socket ``$NOTIFY_SOCKET`` names: a file system path (``/run/systemd/
notify``) or an abstract name written with a leading ``@`` (sent with a leading NUL instead).
The kernel attaches the sender's credentials; systemd accepts the message only from the
processes ``NotifyAccess=`` names. ``watchdog_timeout`` reads ``$WATCHDOG_USEC`` and
``$WATCHDOG_PID`` the way sd_watchdog_enabled(3) does.

Guarantees:

- Without ``$NOTIFY_SOCKET`` (not started by systemd, or not ``Type=notify``) the notifier is
  disabled: every call sends nothing and returns False, nothing is logged.
- A value that cannot name a socket (empty, relative, ``@`` alone, longer than ``sun_path``, a
  ``vsock:`` address this module does not speak) disables the notifier too: ``problem`` says
  why, logged once as a warning. Nothing here raises for a bad environment.
- One send is one non-blocking datagram of at most ``MAX_DATAGRAM_BYTES`` (systemd's own read
  buffer: it drops longer ones); a longer message is refused before any socket is opened. A
  send that fails (nobody listening, the manager's queue full, not a datagram socket) returns
  False and is counted; its warning goes through a ``LogBudget``, so a broken socket cannot
  flood the log. The socket is opened and closed per message: nothing stays open.
- Every value is one line: control characters in it are escaped (``guards.log_text.printable``)
  and it is cut at ``MAX_VALUE_CHARS``, so a STATUS text can never add a line (a key) of its
  own. Keys are upper-case names, checked.
- No dependency beyond the standard library's ``socket``.
"""

from __future__ import annotations

import logging
import os
import re
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from guards.log_text import printable
from runtime.log_budget import LogBudget

log = logging.getLogger("lfr.runtime.notify")

MAX_DATAGRAM_BYTES: Final = 4096
"""Longest message sent: systemd reads notifications into a buffer of this size and drops
longer ones, so a longer message is refused here instead."""
MAX_VALUE_CHARS: Final = 200
"""A value (a STATUS text) is cut here: it is one line in ``systemctl status``."""
MAX_SOCKET_NAME_BYTES: Final = 107
"""``sun_path`` holds 108 bytes: a path and its terminating NUL, or an abstract name after
its leading NUL."""
_KEY: Final = re.compile(r"[A-Z][A-Z0-9_]*")
_DIGITS: Final = re.compile(r"[0-9]{1,20}")


class NotifySocketError(ValueError):
    """``$NOTIFY_SOCKET`` holds something that names no socket this module can reach."""


def socket_address(value: str) -> bytes:
    """The ``sendto`` address for a ``$NOTIFY_SOCKET`` value, or ``NotifySocketError``."""
    if value.startswith("@"):
        name = os.fsencode(value[1:])
        if not name:
            raise NotifySocketError("an abstract socket name is empty")
        address = b"\0" + name
    elif value.startswith("/"):
        address = os.fsencode(value)
    elif not value:
        raise NotifySocketError("it is empty")
    else:  # systemd 253+ also speaks vsock:CID:PORT; a unit runs on its own machine's manager
        raise NotifySocketError("not an absolute path nor an @abstract name")
    if b"\0" in address[1:]:
        raise NotifySocketError("it holds a NUL byte")
    if len(address.lstrip(b"\0")) > MAX_SOCKET_NAME_BYTES:
        raise NotifySocketError(f"longer than {MAX_SOCKET_NAME_BYTES} bytes")
    return address


@dataclass(slots=True)
class NotifyStatistics:
    """What the notifier did since it was made."""

    sent: int = 0
    """Datagrams the socket took."""
    failed: int = 0
    """Sends the socket refused (nobody listening, queue full, wrong socket type)."""
    refused: int = 0
    """Messages never sent: longer than ``MAX_DATAGRAM_BYTES``."""


class ServiceNotifier:
    """Sends sd_notify messages to one socket; ``from_environment`` reads ``$NOTIFY_SOCKET``.

    Each method returns True when the datagram was sent, False when the notifier is disabled
    or the send failed (counted in ``statistics``). None of them raises for a socket error.
    """

    def __init__(self, address: bytes | None, *, problem: str | None = None) -> None:
        self._address = address
        # Invariant: a notifier with a problem has no address (it is disabled).
        self.problem = problem if address is None else None
        """Why ``$NOTIFY_SOCKET`` was not used, or None (unset, or in use)."""
        self.statistics = NotifyStatistics()
        shown = ("(none)" if address is None
                 else printable(os.fsdecode(address.replace(b"\0", b"@", 1))))
        self._budget = LogBudget(log, f"notify socket {shown}")

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> ServiceNotifier:
        """The notifier ``$NOTIFY_SOCKET`` asks for (``os.environ`` unless ``environ``)."""
        value = (os.environ if environ is None else environ).get("NOTIFY_SOCKET")
        if value is None:
            return cls(None)
        try:
            return cls(socket_address(value))
        except NotifySocketError as exc:
            problem = f"NOTIFY_SOCKET={printable(value)} is not used: {exc}"
            log.warning("%s", problem)
            return cls(None, problem=problem)

    @property
    def enabled(self) -> bool:
        """Whether messages are sent at all."""
        return self._address is not None

    def ready(self, status: str | None = None) -> bool:
        """``READY=1``: start-up is complete (and the status line, if given)."""
        return self.send([("READY", "1"), *_status(status)])

    def watchdog(self) -> bool:
        """``WATCHDOG=1``: alive and well; resets the service's watchdog timer."""
        return self.send([("WATCHDOG", "1")])

    def status(self, text: str) -> bool:
        """``STATUS=text``: the line ``systemctl status`` shows."""
        return self.send(list(_status(text)))

    def stopping(self, status: str | None = None) -> bool:
        """``STOPPING=1``: the process is shutting down."""
        return self.send([("STOPPING", "1"), *_status(status)])

    def send(self, fields: Sequence[tuple[str, str]]) -> bool:
        """Send ``KEY=VALUE`` lines as one datagram; values are made one printable line."""
        if self._address is None:
            return False
        lines = []
        for key, value in fields:
            if _KEY.fullmatch(key) is None:
                raise ValueError(f"not an sd_notify key: {key!r}")  # a programming error
            lines.append(f"{key}={printable(value, max_chars=MAX_VALUE_CHARS)}")
        payload = "\n".join(lines).encode("utf-8")
        if len(payload) > MAX_DATAGRAM_BYTES:
            self.statistics.refused += 1
            self._budget.warning("%s: a message of %d bytes is over %d and was not sent",
                                 self._budget.subject, len(payload), MAX_DATAGRAM_BYTES)
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                # Never wait on the manager: a full queue is a failed send, not a stalled loop.
                sock.sendto(payload, socket.MSG_DONTWAIT, self._address)
        except OSError as exc:
            self.statistics.failed += 1
            self._budget.warning("%s: cannot notify the service manager: %s",
                                 self._budget.subject, printable(exc))
            return False
        self.statistics.sent += 1
        return True


def _status(text: str | None) -> tuple[tuple[str, str], ...]:
    return () if text is None else (("STATUS", text),)


@dataclass(frozen=True, slots=True)
class WatchdogTimeout:
    """The service's watchdog, as ``$WATCHDOG_USEC`` sets it for this process."""

    timeout_s: float
    """systemd's ``WatchdogSec=``: with no ``WATCHDOG=1`` for this long it stops the process."""

    @property
    def ping_interval_s(self) -> float:
        """How often to ping: half the timeout, as sd_watchdog_enabled(3) advises."""
        return self.timeout_s / 2


def watchdog_timeout(environ: Mapping[str, str] | None = None,
                      pid: int | None = None) -> WatchdogTimeout | None:
    """The watchdog systemd expects pings for, or None: ``$WATCHDOG_USEC`` unset, or
    ``$WATCHDOG_PID`` naming another process (``pid``: this one by default). A value that is
    not a positive number of microseconds is logged and read as no watchdog."""
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC")
    if usec is None:
        return None
    owner = env.get("WATCHDOG_PID")
    if owner is not None:
        if _DIGITS.fullmatch(owner) is None:
            log.warning("WATCHDOG_PID=%s is not a process id: no watchdog pings",
                        printable(owner))
            return None
        if int(owner) != (os.getpid() if pid is None else pid):
            return None  # the watchdog is another process's (a parent that started this one)
    if _DIGITS.fullmatch(usec) is None or int(usec) == 0:
        log.warning("WATCHDOG_USEC=%s is not a positive number of microseconds: no watchdog "
                    "pings", printable(usec))
        return None
    return WatchdogTimeout(int(usec) / 1_000_000)
