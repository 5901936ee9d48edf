"""Real processes for the storage tests: a writer killed with SIGKILL mid-burst, and a process
without write access to a read-only folder. Every wait is bounded, so a stuck child fails the
test instead of hanging.
"""

from __future__ import annotations

import ctypes
import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
WAIT_S = 20.0


def _environment() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO_ROOT)}


def start_writer(script: str, *args: str) -> subprocess.Popen[bytes]:
    """``python -c script args...`` in the repository, its stdout a pipe: it prints a line
    ``ready`` and then one number per line, each after the call it names returned."""
    return subprocess.Popen([sys.executable, "-c", script, *args], cwd=REPO_ROOT,
                            env=_environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def read_numbers(process: subprocess.Popen[bytes], count: int) -> list[int]:
    """The numbers ``process`` printed, read until at least ``count`` (or its end)."""
    assert process.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    buffer = b""
    deadline = time.monotonic() + WAIT_S
    try:
        while buffer.count(b"\n") < count + 1:  # + the "ready" line
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"writer printed too little in {WAIT_S} s: {buffer[-200:]!r}"
            if not selector.select(remaining):
                continue
            chunk = os.read(process.stdout.fileno(), 65536)
            if not chunk:
                break
            buffer += chunk
    finally:
        selector.close()
    _BUFFERS[process.pid] = buffer
    return _numbers(buffer)


_BUFFERS: dict[int, bytes] = {}


def _numbers(buffer: bytes) -> list[int]:
    lines = buffer.split(b"\n")[:-1]  # complete lines only
    return [int(line) for line in lines if line and line != b"ready"]


def kill_and_collect(process: subprocess.Popen[bytes]) -> list[int]:
    """SIGKILL ``process`` and return every number it printed (complete lines)."""
    assert process.stdout is not None
    assert process.stderr is not None
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=WAIT_S)
    rest = process.stdout.read()
    stderr = process.stderr.read().decode(errors="replace")
    process.stdout.close()
    process.stderr.close()
    assert process.returncode == -signal.SIGKILL, f"writer ended on its own: {stderr}"
    return _numbers(_BUFFERS.pop(process.pid, b"") + rest)


def _drop_file_capabilities() -> None:
    """In the child before exec: take CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH out of the
    bounding set, so root obeys file modes in the program it runs."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH):
        if libc.prctl(_PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


_PR_CAPBSET_DROP = 24
_CAP_DAC_OVERRIDE = 1
_CAP_DAC_READ_SEARCH = 2


def run_without_write_access(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -c script args...`` so that a folder of mode 0555 is read-only to it: as
    root (the tests' container), without the capabilities that override file modes."""
    return subprocess.run([sys.executable, "-c", script, *args], cwd=REPO_ROOT,
                          env=_environment(), capture_output=True, text=True, timeout=WAIT_S,
                          check=False,
                          preexec_fn=_drop_file_capabilities if os.geteuid() == 0 else None)
