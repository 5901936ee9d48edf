"""``LogBudget``: at most so many warnings per window from one source a peer can drive.

Whatever a peer can repeat - connections that fail their handshake, frames that do not decode,
tells that fail - would otherwise write one log line each, and a peer that repeats them fills
the disk and drowns every other line. Each such source (a server, a link, an actor) owns one
budget: the first ``lines`` warnings of a window are logged as they come, the rest are only
counted, and one summary line says how many were left out. The caller keeps its own counters of
the events themselves; the budget bounds the log, never the counting.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

LOG_LINES_PER_WINDOW = 20
"""Warnings logged per source and window before the rest are only counted."""
LOG_WINDOW_S = 10.0
"""Length of a budget's window, in seconds."""


class LogBudget:
    """At most ``lines`` warnings per ``window_s`` for ``subject`` (who the lines are about,
    already printable); a summary line counts the ones left out."""

    def __init__(self, logger: logging.Logger, subject: str, *,
                 lines: int = LOG_LINES_PER_WINDOW, window_s: float = LOG_WINDOW_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._log = logger
        self.subject = subject
        self._lines = lines
        self._window_s = window_s
        self._clock = clock
        self._window_start = -float("inf")
        self._used = 0
        # Warnings left out since the last summary; logged by the first warning of a later
        # window, or by ``flush`` when the source goes away.
        self._suppressed = 0
        self.suppressed_total = 0
        """Warnings left out of the log over the budget's life."""

    def warning(self, text: str, *args: object) -> None:
        """Log ``text % args`` as a warning if this window has room; count it otherwise."""
        now = self._clock()
        if now - self._window_start >= self._window_s:
            self.flush()
            self._window_start, self._used = now, 0
        if self._used < self._lines:
            self._used += 1
            self._log.warning(text, *args, stacklevel=2)
        else:
            self._suppressed += 1
            self.suppressed_total += 1

    def flush(self) -> None:
        """Log the summary of the warnings left out since the last one, if any."""
        if self._suppressed:
            self._log.warning("%s: %d more warnings were not logged (at most %d per %g s)",
                              self.subject, self._suppressed, self._lines, self._window_s)
            self._suppressed = 0
