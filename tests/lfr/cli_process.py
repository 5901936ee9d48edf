"""``lfr`` run as a user runs it: a separate process, to its end or until a signal stops it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from tests.lfr.conftest import REPO_ROOT

LFR = [sys.executable, "-m", "lfr"]
ENV = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}


def lfr(*args: str, timeout_s: float = 120,
        stdout: int | None = subprocess.PIPE) -> subprocess.CompletedProcess[str]:
    """Run ``lfr ARGS`` to its end (a hang fails the test at ``timeout_s``)."""
    return subprocess.run([*LFR, *args], env=ENV, stdout=stdout, stderr=subprocess.PIPE,
                          text=True, timeout=timeout_s, check=False)


@dataclass(frozen=True, slots=True)
class Stopped:
    """How a command stopped by a signal ended."""

    returncode: int
    stderr: str
    """Everything it wrote to stderr."""
    stopped_s: float
    """Seconds from the signal to its exit."""


def stop_with_signal(args: list[str], sig: signal.Signals,
                     running: Callable[[IO[str]], None], *,
                     after_handlers: bool = False) -> Stopped:
    """Start ``lfr ARGS``, wait until ``running(its stderr)`` returns, send ``sig`` and time
    how long it takes to exit. ``after_handlers``: call ``running`` only once the process
    catches SIGTERM, i.e. once ``lfr.__main__`` has installed its stop signals: before that
    the interpreter's own start keeps Python's default (which a loaded machine can stretch
    past a fixed delay)."""
    proc = subprocess.Popen([*LFR, *args], env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        if after_handlers:
            _wait_until_it_catches(proc, signal.SIGTERM)
        running(proc.stderr)
        assert proc.poll() is None, f"lfr {' '.join(args)} ended before the signal"
        sent = time.monotonic()
        proc.send_signal(sig)
        _, rest = proc.communicate(timeout=60)
        stopped_s = time.monotonic() - sent
    finally:
        proc.kill()
        proc.wait()
    return Stopped(proc.returncode, rest, stopped_s)


def _wait_until_it_catches(proc: subprocess.Popen[str], sig: signal.Signals,
                           timeout_s: float = 60.0) -> None:
    """Poll /proc until ``proc`` has a handler for ``sig`` (its ``SigCgt`` mask)."""
    deadline = time.monotonic() + timeout_s
    status = Path(f"/proc/{proc.pid}/status")
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the command ended before it caught the signal"
        for line in status.read_text(encoding="ascii").splitlines():
            if line.startswith("SigCgt:") and int(line.split()[1], 16) >> (sig - 1) & 1:
                return
        time.sleep(0.005)
    raise AssertionError(f"the command did not catch {sig.name} within {timeout_s} s")
