"""Ctrl-C and SIGTERM for commands that run no event loop: a graceful stop, and a forced one.

Graceful: the signal raises ``KeyboardInterrupt`` (SIGINT) or ``StoppedBySignal`` (SIGTERM) in
the main thread, the command unwinds (temporary files removed) and ``lfr`` exits 130/143.

Forced: Python runs a signal handler only between two bytecodes of the main thread, so a long
native call (numpy over a million rows, faiss, FFmpeg) holds the stop up, and native code that
polls for signals may swallow the exception. The C-level handler also writes the signal's number
to a wakeup pipe at once; a watchdog thread waiting on it ends the process with the signal's
exit code if the graceful stop has not done so within ``FORCED_EXIT_AFTER_S``.

A command that runs an event loop (a node, the benchmarks) hands its signals to the loop, which
takes over the wakeup pipe while it runs; those stop gracefully (see ``runtime.node``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from types import FrameType

from guards.exit_codes import StoppedBySignal

FORCED_EXIT_AFTER_S = 1.5
"""Time the graceful stop gets before the process is ended: a stop never takes 2 s."""
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


_received: list[int] = []
"""Stop signals received so far by this process, in order (appended by the handler)."""
_installed: list[bool] = []
"""Non-empty once ``install_stop_signals`` has run in this process."""


def install_stop_signals() -> None:
    """Install both stops for this process (main thread only; once: later calls do nothing).
    The command line does this before anything else, so a signal during start-up (imports,
    model loading) stops cleanly."""
    if _installed:
        return
    _installed.append(True)
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    threading.Thread(target=_watchdog, args=(read_fd,), name="stop-watchdog",
                     daemon=True).start()
    for stop_signal in STOP_SIGNALS:
        signal.signal(stop_signal, _raise_stop)


def stop_signal_received() -> int | None:
    """The first stop signal this process received, or None. A command failing after one is a
    consequence of the stop (a library may turn the interrupt into its own error), not a bug."""
    return _received[0] if _received else None


def quiet_stop_signals() -> None:
    """After the command has finished: a signal during the exit is only recorded (no exception
    raised into the interpreter's teardown, where it would be printed and ignored)."""
    for stop_signal in STOP_SIGNALS:
        signal.signal(stop_signal, _record_stop)


def _record_stop(signum: int, frame: FrameType | None) -> None:
    _received.append(signum)


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    _received.append(signum)
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise StoppedBySignal(signum)


def _watchdog(read_fd: int) -> None:
    while True:
        try:
            received = os.read(read_fd, 1)
        except OSError:
            return
        if not received:
            return
        if received[0] in STOP_SIGNALS:
            break
    time.sleep(FORCED_EXIT_AFTER_S)
    stopped = StoppedBySignal(received[0])
    with contextlib.suppress(OSError):
        os.write(sys.stderr.fileno(), f"lfr: stopped by {stopped} (forced)\n".encode())
    os._exit(stopped.exit_code)
