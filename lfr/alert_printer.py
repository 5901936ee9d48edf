"""Alert printers: each alert as one JSON line on stdout, for ``lfr scan`` and ``lfr edge``.

- ``AlertPrinter`` ends ``lfr scan``'s pipeline: it prints each ``MatchAlert`` the matcher
  raised (``alert_json``) and resolves the scan when the stream ends.
- ``SealedAlertPrinter`` is ``lfr edge --print-alerts``: it prints each ``AlertBody`` the uplink
  sealed into the outbox (``alert_body_json``), i.e. exactly what the van gets, with the crop as
  its size and sha256, never its bytes.

Both write through ``AlertLines``: on a ``DaemonThread``, never on the event loop, since a stdout
that blocks (a pipe nobody reads, a paused terminal) must stall only the printer (its bounded
mailbox then holds the pipeline back), not the loop, or no signal handler could run and Ctrl-C
would hang. A write that fails (closed stdout, full disk, a reader gone) raises
``AlertOutputFailed`` at once and the command ends with exit code 74: an alert nobody received
is never counted as written. On a descriptor the bytes go out with ``os.write``, unbuffered, so
nothing is left in a Python buffer that the exit would have to flush into a blocked pipe.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import os
import sys
from dataclasses import dataclass
from typing import IO, Protocol

from actors.unit.detector import StreamEnded
from actors.unit.event_body import AlertBody
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


def alert_body_json(body: AlertBody) -> str:
    """One sealed alert body as the JSON line ``lfr edge --print-alerts`` prints: every field
    as sealed (numbers unrounded), the crop as its size and sha256 instead of its bytes."""
    return json.dumps({
        "event_id": body.event_id, "camera_id": body.camera_id,
        "captured_at": body.captured_at, "subject_id": body.subject_id,
        "watchlist_version": body.watchlist_version, "score": body.score,
        "threshold": body.threshold, "track": body.track, "box": list(body.box),
        "hits": body.hits, "crop_jpeg_bytes": len(body.crop_jpeg),
        "crop_jpeg_sha256": hashlib.sha256(body.crop_jpeg).hexdigest(),
    }, allow_nan=False)  # a checked body holds no NaN: one here is a bug, not a line


class AlertOutputFailed(Exception):
    """The alert output cannot be written: the command must stop, not count unreceived
    alerts."""


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


class AlertLines:
    """The writing half of every alert printer: one line at a time on a ``DaemonThread``,
    counted in ``count`` once written in full. One per printer incarnation (``close`` on stop).
    """

    def __init__(self, out: LineOutput, count: AlertCount) -> None:
        self.out = out
        self.count = count
        self._writer = DaemonThread("alert-writer")

    async def write(self, line: str) -> None:
        """Write ``line``; ``AlertOutputFailed`` saying why and how many went out before."""
        try:
            await self._writer.run(functools.partial(self.out.write_line, line))
        except OSError as exc:  # EPIPE, ENOSPC, EIO, a closed stdout
            reason = exc.strerror or str(exc)
            raise AlertOutputFailed(f"cannot write alerts: {reason}; {self.count.written} "
                                    "alerts written before it") from None
        self.count.written += 1

    async def close(self) -> None:
        """Let the thread end; a write still stuck is left to finish unobserved."""
        await self._writer.close(STOP_WAIT_S)


class AlertPrinter(Actor[MatcherOutput]):
    """``lfr scan``: prints alerts as JSON lines; resolves ``finished`` when the stream has
    ended, or fails it with ``AlertOutputFailed`` the moment an alert cannot be written."""

    def __init__(self, out: LineOutput, finished: asyncio.Future[StreamEnded],
                 count: AlertCount | None = None) -> None:
        self.finished = finished
        self.count = count or AlertCount()
        self._lines = AlertLines(out, self.count)

    async def on_stop(self) -> None:
        await self._lines.close()

    async def receive(self, message: MatcherOutput) -> None:
        if self.finished.done():
            return  # the scan is over (or its output failed): nothing more goes out
        if not isinstance(message, MatchAlert):
            self.finished.set_result(message)
            return
        try:
            await self._lines.write(alert_json(message))
        except AlertOutputFailed as exc:
            self.finished.set_exception(exc)


class SealedAlertPrinter(Actor[AlertBody]):
    """``lfr edge --print-alerts``: prints each alert body the uplink sealed (its
    ``local_copy``); fails ``failed`` with ``AlertOutputFailed`` the moment one cannot be
    written, and prints nothing after that (the node then ends with exit code 74)."""

    def __init__(self, out: LineOutput, failed: asyncio.Future[None],
                 count: AlertCount | None = None) -> None:
        self.failed = failed
        self.count = count or AlertCount()
        self._lines = AlertLines(out, self.count)

    async def on_stop(self) -> None:
        await self._lines.close()

    async def receive(self, message: AlertBody) -> None:
        if self.failed.done():
            return
        try:
            await self._lines.write(alert_body_json(message))
        except AlertOutputFailed as exc:
            self.failed.set_exception(exc)


def stdout_output() -> LineOutput:
    """The process's stdout as a ``LineOutput`` (``ClosedOutput`` when it has none); read at
    call time, since tests and the command line replace ``sys.stdout``."""
    try:
        return DescriptorOutput(sys.stdout.fileno())
    except (AttributeError, OSError, ValueError):  # None, closed, or a stream without an fd
        if sys.stdout is None:
            return ClosedOutput()
        return StreamOutput(sys.stdout)
