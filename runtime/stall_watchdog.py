"""Debug aid: report event-loop stalls longer than a threshold, naming the actor that caused it.

A heartbeat callback on the loop stamps the time every ``interval_s``. A watchdog thread checks
the stamp; when it is older than ``threshold_s`` the loop is stuck in synchronous code, and the
thread reads the loop thread's stack (``sys._current_frames``) to find the actor whose
``receive`` is running. One report per stall, logged when the stall is first seen and counted.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
from dataclasses import dataclass
from types import FrameType

from runtime.cell import ActorCell

log = logging.getLogger("lfr.runtime.stall")


@dataclass(frozen=True, slots=True)
class Stall:
    """One detected stall."""

    actor: str | None
    """Name of the actor running when the stall was seen; None if no actor was on the stack."""
    duration_s: float
    """How long the loop had been stuck when it was seen, in seconds."""
    where: str
    """``file:line`` of the innermost frame of the loop thread."""


class StallWatchdog:
    """Watches one event loop from a daemon thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop, threshold_s: float = 0.1,
                 interval_s: float | None = None) -> None:
        self.threshold_s = threshold_s
        self.interval_s = interval_s or threshold_s / 4
        self.stalls: list[Stall] = []
        """Every stall seen, oldest first (bounded to the last 100)."""
        self._loop = loop
        self._loop_thread = threading.get_ident()
        self._beat = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="lfr-stall-watchdog",
                                        daemon=True)
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        """Start the heartbeat (on the loop) and the watchdog thread. Call from the loop."""
        self._loop_thread = threading.get_ident()
        self._heartbeat()
        self._thread.start()

    def stop(self) -> None:
        """Stop both and wait for the thread."""
        self._stop.set()
        if self._handle is not None:
            self._handle.cancel()
        self._thread.join()

    def _heartbeat(self) -> None:
        self._beat = time.monotonic()
        self._handle = self._loop.call_later(self.interval_s, self._heartbeat)

    def _watch(self) -> None:
        reported_beat = -1.0
        while not self._stop.wait(self.interval_s):
            beat = self._beat
            stuck_s = time.monotonic() - beat
            if stuck_s > self.threshold_s and beat != reported_beat:
                reported_beat = beat
                frame = sys._current_frames().get(self._loop_thread)
                stall = Stall(_actor_on_stack(frame), stuck_s, _where(frame))
                self.stalls = [*self.stalls[-99:], stall]
                log.warning("event loop stalled for more than %.0f ms in actor %s at %s",
                            stuck_s * 1000, repr(stall.actor) if stall.actor else "(none)",
                            stall.where)


def _actor_on_stack(frame: FrameType | None) -> str | None:
    # The loop of ActorCell holds the cell as ``self``; the innermost one is the running actor.
    while frame is not None:
        owner = frame.f_locals.get("self") if frame.f_code.co_name == "_loop" else None
        if isinstance(owner, ActorCell):
            return str(owner.name)
        frame = frame.f_back
    return None


def _where(frame: FrameType | None) -> str:
    if frame is None:
        return "(unknown)"
    return f"{frame.f_code.co_filename}:{frame.f_lineno}"
