"""Restarting the node after a switch and deciding whether it came up healthy.

``ServiceControl`` is the interface the installer uses: ``reload_system_files(change)``
makes the service manager read the system files the update just installed or put back
(``system_files``), and ``restart_and_check(current, deadline_s)`` restarts the node from the
release ``current`` points at and returns a ``Health`` (healthy or not, and why) within about
``deadline_s`` plus a settle period. Two implementations:

- ``SystemdServiceControl``: for a changed sysusers file ``systemd-sysusers FILE`` (creates
  the service's user if missing), for a changed unit file ``systemctl daemon-reload``; then
  ``systemctl reset-failed`` (a crashing release may have hit
  the start limit, which would refuse the rollback's restart), then ``systemctl restart
  lfr-edge.service``, which for a ``Type=notify`` unit returns only once the node sent
  READY=1 (or failed); then healthy means
  ``ActiveState=active`` and ``NRestarts`` unchanged over ``settle_s`` (a node that crashes
  just after READY is restarted by ``Restart=always`` and is caught there).
- ``CommandServiceControl``: for tests, units without systemd and a first install (the
  service is not set up yet): an optional reload command run when a system file changed
  (without one nothing is reloaded, and the audit line says so), an optional restart command,
  then a health command run in the new ``current`` release; exit 0 within the deadline means
  healthy.

Guarantees: every command runs with a timeout in its own process group, killed whole when the
time is up; at most ``MAX_OUTPUT_BYTES`` of its output are kept (the tail, on disk while it
runs, never in memory whole), and shown through ``printable``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from guards.config_checks import require_non_negative, require_positive, require_text
from guards.log_text import printable
from lfr.release.system_files import SystemFilesChange

MAX_OUTPUT_BYTES = 2000
"""The tail of a command's output kept for the message."""
SYSTEMCTL_TIMEOUT_S = 30.0
"""How long one ``systemctl show`` may take."""
RELOAD_TIMEOUT_S = 120.0
"""How long ``systemd-sysusers``, ``systemctl daemon-reload`` or a reload command may take
(a reload re-runs every generator; slow on an SD card)."""
_PROPERTIES = "--property=ActiveState,SubState,Result,NRestarts,Type"


@dataclass(frozen=True, slots=True)
class Health:
    """Whether the node came up healthy after a restart."""

    healthy: bool
    """True when it did, within the deadline."""
    detail: str
    """What was seen, for the audit line (printable)."""


class ServiceControl(Protocol):
    """Reloads the system files, restarts the node from ``current`` and judges its health."""

    def reload_system_files(self, change: SystemFilesChange) -> Health:
        """Make the service manager read the system files in ``change`` (called only when
        it holds some); not healthy: the update must not go on with them."""
        ...

    def restart_and_check(self, current: Path, deadline_s: float) -> Health:
        """Restart the node (now running ``current``) and wait at most ``deadline_s`` (plus a
        settle period) for it to be healthy."""
        ...


@dataclass(frozen=True, slots=True)
class CommandResult:
    """How a bounded command ended."""

    returncode: int | None
    """Its exit status; None when it was killed at the deadline."""
    output: str
    """The tail of its stdout and stderr as it wrote them (show it through ``printable``)."""


def run_bounded(argv: tuple[str, ...], *, cwd: Path | None, timeout_s: float,
                env: dict[str, str] | None = None, umask: int = -1) -> CommandResult:
    """Run ``argv`` in its own process group (environment ``env``, default this process's;
    ``umask`` when not -1); kill the group at ``timeout_s``."""
    with tempfile.TemporaryFile() as output:
        try:
            process = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL,  # noqa: S603 - argv given by the operator or built here
                                       stdout=output, stderr=subprocess.STDOUT,
                                       start_new_session=True, env=env,
                                       umask=umask)
        except OSError as exc:
            return CommandResult(127, f"cannot run {argv[0]}: {exc.strerror or exc}")
        try:
            returncode: int | None = process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            returncode = None
        finally:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)  # the group, grandchildren included
            process.wait()
        size = output.seek(0, os.SEEK_END)
        output.seek(max(0, size - MAX_OUTPUT_BYTES))
        tail = output.read(MAX_OUTPUT_BYTES).decode("utf-8", "replace").strip()
    return CommandResult(returncode, tail)


def _healthy(detail: str) -> Health:
    return Health(healthy=True, detail=detail)


def _unhealthy(detail: str) -> Health:
    return Health(healthy=False, detail=detail)


def _describe(result: CommandResult, timeout_s: float) -> str:
    if result.returncode is None:
        ended = f"did not finish within {timeout_s:g} s (killed)"
    else:
        ended = f"exited {result.returncode}"
    shown = printable(result.output, max_chars=MAX_OUTPUT_BYTES)
    return ended + (f": {shown}" if shown else "")


@dataclass(frozen=True, slots=True)
class CommandServiceControl:
    """Restart and health by commands (module docstring)."""

    health: tuple[str, ...]
    """The health command, run with the new ``current`` release as its working folder (a
    relative program such as ``bin/lfr`` is found there); exit 0 means healthy."""
    restart: tuple[str, ...] | None = None
    """The restart command, run first (None: nothing is restarted)."""
    reload: tuple[str, ...] | None = None
    """Run when a system file changed, before the restart (None: nothing is reloaded; a
    first install leaves that to the person who then enables the service)."""

    def __post_init__(self) -> None:
        for name, argv in (("health", self.health), ("restart", self.restart),
                           ("reload", self.reload)):
            if argv is not None:
                if not argv:
                    raise ValueError(f"CommandServiceControl.{name} is empty")
                require_text(f"CommandServiceControl.{name}", argv[0])

    def reload_system_files(self, change: SystemFilesChange) -> Health:
        """Run the reload command, if there is one."""
        if self.reload is None:
            return _healthy(f"not reloaded (no reload command): {change.describe()}")
        result = run_bounded(self.reload, cwd=None, timeout_s=RELOAD_TIMEOUT_S)
        if result.returncode != 0:
            return _unhealthy("reload command " + _describe(result, RELOAD_TIMEOUT_S))
        return _healthy("reload command exited 0")

    def restart_and_check(self, current: Path, deadline_s: float) -> Health:
        """Run the restart command (if any), then the health command, both within
        ``deadline_s`` in all."""
        require_positive("deadline_s", deadline_s)
        release = current.resolve()
        started = time.monotonic()
        if self.restart is not None:
            result = run_bounded(self._in(release, self.restart), cwd=release,
                                 timeout_s=deadline_s)
            if result.returncode != 0:
                return _unhealthy("restart command " + _describe(result, deadline_s))
        left = max(0.001, deadline_s - (time.monotonic() - started))
        result = run_bounded(self._in(release, self.health), cwd=release, timeout_s=left)
        if result.returncode == 0:
            return _healthy("health command exited 0")
        return _unhealthy("health command " + _describe(result, left))

    @staticmethod
    def _in(release: Path, argv: tuple[str, ...]) -> tuple[str, ...]:
        program = argv[0]
        if "/" in program and not os.path.isabs(program):
            program = str(release / program)
        return (program, *argv[1:])


@dataclass(frozen=True, slots=True)
class SystemdServiceControl:
    """Restart and health through systemd (module docstring)."""

    unit: str = "lfr-edge.service"
    """The service's unit name."""
    settle_s: float = 10.0
    """How long the service must stay active without an automatic restart after READY."""
    poll_s: float = 1.0
    """How often its state is read while settling."""
    systemctl: str = "systemctl"
    """The systemctl program."""
    sysusers: str = "systemd-sysusers"
    """The systemd-sysusers program."""

    def __post_init__(self) -> None:
        require_text("SystemdServiceControl.unit", self.unit)
        require_non_negative("SystemdServiceControl.settle_s", self.settle_s)
        require_positive("SystemdServiceControl.poll_s", self.poll_s)
        require_text("SystemdServiceControl.systemctl", self.systemctl)
        require_text("SystemdServiceControl.sysusers", self.sysusers)

    def reload_system_files(self, change: SystemFilesChange) -> Health:
        """``systemd-sysusers FILE`` for a changed sysusers file, then ``systemctl
        daemon-reload`` for a changed unit file."""
        steps: list[tuple[str, ...]] = []
        if change.users_file is not None:
            steps.append((self.sysusers, str(change.users_file)))
        if change.unit_file_changed:
            steps.append((self.systemctl, "daemon-reload"))
        for argv in steps:
            result = run_bounded(argv, cwd=None, timeout_s=RELOAD_TIMEOUT_S)
            if result.returncode != 0:
                return _unhealthy(printable(" ".join(argv)) + " "
                                  + _describe(result, RELOAD_TIMEOUT_S))
        ran = "; ".join(printable(" ".join(argv)) for argv in steps)
        return _healthy(f"ran {ran}" if steps else "nothing to reload")

    def restart_and_check(self, current: Path, deadline_s: float) -> Health:
        """``systemctl restart`` within ``deadline_s``, then active and not restarted for
        ``settle_s``."""
        require_positive("deadline_s", deadline_s)
        # A release that kept crashing may have hit the unit's start limit; a rollback's
        # restart must not be refused for it. Its outcome does not matter (nothing to reset).
        run_bounded((self.systemctl, "reset-failed", self.unit), cwd=None,
                    timeout_s=SYSTEMCTL_TIMEOUT_S)
        result = run_bounded((self.systemctl, "restart", self.unit), cwd=None,
                             timeout_s=deadline_s)
        if result.returncode != 0:
            return _unhealthy(f"systemctl restart {self.unit} " + _describe(result,
                                                                              deadline_s))
        state = self._show()
        if state.get("ActiveState") != "active":
            return _unhealthy(f"{self.unit} is {self._state_text(state)} after the restart")
        restarts = state.get("NRestarts")
        settle_end = time.monotonic() + self.settle_s
        while time.monotonic() < settle_end:
            time.sleep(min(self.poll_s, max(0.0, settle_end - time.monotonic())))
            state = self._show()
            if state.get("ActiveState") != "active" or state.get("NRestarts") != restarts:
                return _unhealthy(f"{self.unit} did not stay up: "
                                     f"{self._state_text(state)}, NRestarts "
                                     f"{printable(restarts)} -> "
                                     f"{printable(state.get('NRestarts'))}")
        ready = ("READY=1 received" if state.get("Type") == "notify"
                 else f"Type={printable(state.get('Type'))}, no readiness notification")
        return _healthy(f"{self.unit} active ({ready}), no restart in {self.settle_s:g} s")

    def _show(self) -> dict[str, str]:
        result = run_bounded((self.systemctl, "show", self.unit, _PROPERTIES), cwd=None,
                             timeout_s=SYSTEMCTL_TIMEOUT_S)
        if result.returncode != 0:
            return {"ActiveState": "unknown", "Result": _describe(result,
                                                                  SYSTEMCTL_TIMEOUT_S)}
        state = {}
        for line in result.output.splitlines():
            key, sep, value = line.partition("=")
            if sep:
                state[key.strip()] = value.strip()
        return state

    @staticmethod
    def _state_text(state: dict[str, str]) -> str:
        return printable(f"{state.get('ActiveState', '?')}/{state.get('SubState', '?')} "
                         f"(result {state.get('Result', '?')})")
