"""The delivery trace of a benchmark process as JSON lines: written as it happens, read after.

``install(fd)`` turns the ``lfr.trace`` loggers on (``lfr.trace.delivery``: the uplink's and the
receiver's ``DeliveryMark``; ``lfr.trace.frames``: a data channel's ``FrameArrival``) and writes
each record as one JSON line on the file descriptor ``fd``, with one ``os.write`` (a process
killed or ended with ``os._exit`` loses at most the line in flight; nothing is buffered). The
records hold unit ids, sequence numbers, sizes and times only. ``read_marks`` and
``read_arrivals`` parse such lines back; any other line is skipped.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable

from actors.delivery_trace import TRACE_LOG, DeliveryMark, Stage
from runtime.datachannel import FRAME_TRACE_LOG, FrameArrival

MARK_KEY = "mark"
"""The key of a ``DeliveryMark`` line: ``{"mark": [unit, seq, stage, at]}``."""
FRAME_KEY = "frame"
"""The key of a ``FrameArrival`` line: ``{"frame": [peer, size, at]}``."""


class TraceLineHandler(logging.Handler):
    """Writes ``record.trace`` of trace records as JSON lines on a file descriptor."""

    def __init__(self, fd: int) -> None:
        super().__init__(logging.DEBUG)
        self._fd = fd

    def emit(self, record: logging.LogRecord) -> None:
        trace = getattr(record, "trace", None)
        if isinstance(trace, DeliveryMark):
            line = {MARK_KEY: [trace.unit, trace.seq, trace.stage.value, trace.at]}
        elif isinstance(trace, FrameArrival):
            line = {FRAME_KEY: [trace.peer, trace.size, trace.at]}
        else:
            return
        try:
            os.write(self._fd, (json.dumps(line) + "\n").encode())
        except OSError:  # a benchmark's reader went away: the trace is lost, the node goes on
            self.handleError(record)


def install(fd: int, *, frames: bool) -> None:
    """Record delivery marks (and frame arrivals when ``frames``) as JSON lines on ``fd``."""
    handler = TraceLineHandler(fd)
    loggers = [TRACE_LOG, FRAME_TRACE_LOG] if frames else [TRACE_LOG]
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
        logger.addHandler(handler)
        logger.propagate = False  # only here: not on the process's own log


def read_marks(lines: Iterable[str]) -> list[DeliveryMark]:
    """The delivery marks among ``lines``."""
    marks: list[DeliveryMark] = []
    for line in lines:
        if line.startswith('{"' + MARK_KEY + '"'):
            unit, seq, stage, at = json.loads(line)[MARK_KEY]
            marks.append(DeliveryMark(str(unit), int(seq), Stage(stage), float(at)))
    return marks


def read_arrivals(lines: Iterable[str]) -> list[FrameArrival]:
    """The frame arrivals among ``lines``."""
    arrivals: list[FrameArrival] = []
    for line in lines:
        if line.startswith('{"' + FRAME_KEY + '"'):
            peer, size, at = json.loads(line)[FRAME_KEY]
            arrivals.append(FrameArrival(str(peer), int(size), float(at)))
    return arrivals
