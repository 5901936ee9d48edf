"""``AlertPrinter``: the end of ``lfr scan``'s pipeline, printing each alert as one JSON line.

Writing happens on a ``DaemonThread``, never on the event loop: a stdout that blocks (a pipe
nobody reads, a paused terminal) must stall only the printer (its bounded mailbox then holds
the pipeline back), not the loop, or no signal handler could run and Ctrl-C would hang. A write
that fails (closed stdout, full disk, a reader gone) fails the scan at once with
``AlertOutputFailed``: an alert nobody received is never counted as written. On a descriptor the
bytes go out with ``os.write``, unbuffered, so nothing is left in a Python buffer that the exit
would have to flush into a blocked pipe.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import sys
from dataclasses import dataclass
from typing import IO, Protocol

from actors.unit.detector import StreamEnded
from actors.unit.match_alert import MatchAlert
from actors.unit.matcher import MatcherOutput
from runtime.actor import Actor
from runtime.daemon_thread import DaemonThread

STOP_WAIT_S = 0.2
"""On stop, how long to wait for a write still in progress before leaving it to its thread."""


def alert_json(alert: MatchAlert) -> str:
    """One alert as the JSON line ``lfr scan`` prints (the crop is not printed)."""
    return json.dumps({
        "subject": alert.subject, "score": round(alert.score, 4), "t": round(alert.t_s, 3),
        "track": alert.track, "camera": alert.camera, "frame": alert.frame_index,
        "box": [round(v, 1) for v in alert.box], "threshold": round(alert.threshold, 4),
        "hits": alert.hits, "captured_at": round(alert.captured_at, 3), "id": alert.alert_id,
    })


class AlertOutputFailed(Exception):
    """The alert output cannot be written: the scan must stop, not count unreceived alerts."""


class LineOutput(Protocol):
    """Where alert lines go; ``write_line`` blocks until written or raises ``OSError``."""

    def write_line(self, line: str) -> None:
        """Write ``line`` and a newline, all of it."""


@dataclass(frozen=True, slots=True)
class DescriptorOutput:
    """Lines written to a file descriptor with ``os.write`` (no Python buffer)."""

    fd: int
    """The descriptor (stdout's, normally)."""

    def write_line(self, line: str) -> None:
        """Write ``line`` and a newline, retrying partial writes (a pipe takes what fits)."""
        data = memoryview(f"{line}\n".encode())
        while data:
            data = data[os.write(self.fd, data):]


@dataclass(frozen=True, slots=True)
class StreamOutput:
    """Lines written to a text stream (tests and benchmarks pass a ``StringIO``)."""

    stream: IO[str]
    """The stream."""

    def write_line(self, line: str) -> None:
        """Write ``line`` and a newline, then flush."""
        self.stream.write(f"{line}\n")
        self.stream.flush()


@dataclass(frozen=True, slots=True)
class ClosedOutput:
    """The process has no stdout (started with fd 1 closed): every alert would be lost."""

    def write_line(self, line: str) -> None:
        """Refuse: nobody can receive the line."""
        raise OSError("stdout is closed")


@dataclass(slots=True)
class AlertCount:
    """Survives restarts of the printer (held by its factory)."""

    written: int = 0
    """Alerts written in full to the output."""


class AlertPrinter(Actor[MatcherOutput]):
    """Prints alerts as JSON lines; resolves ``finished`` when the stream has ended, or fails it
    with ``AlertOutputFailed`` the moment an alert cannot be written."""

    def __init__(self, out: LineOutput, finished: asyncio.Future[StreamEnded],
                 count: AlertCount | None = None) -> None:
        self.out = out
        self.finished = finished
        self.count = count or AlertCount()
        self._writer = DaemonThread("alert-writer")

    async def on_stop(self) -> None:
        await self._writer.close(STOP_WAIT_S)

    async def receive(self, message: MatcherOutput) -> None:
        if self.finished.done():
            return  # the scan is over (or its output failed): nothing more goes out
        if not isinstance(message, MatchAlert):
            self.finished.set_result(message)
            return
        try:
            await self._writer.run(functools.partial(self.out.write_line, alert_json(message)))
        except OSError as exc:  # EPIPE, ENOSPC, EIO, a closed stdout
            reason = exc.strerror or str(exc)
            self.finished.set_exception(AlertOutputFailed(
                f"cannot write alerts: {reason}; {self.count.written} alerts written before it"))
            return
        self.count.written += 1


def stdout_output() -> LineOutput:
    """The process's stdout as a ``LineOutput`` (``ClosedOutput`` when it has none); read at
    call time, since tests and the command line replace ``sys.stdout``."""
    try:
        return DescriptorOutput(sys.stdout.fileno())
    except (AttributeError, OSError, ValueError):  # None, closed, or a stream without an fd
        if sys.stdout is None:
            return ClosedOutput()
        return StreamOutput(sys.stdout)
