"""When each envelope reached each stage of its delivery: timestamps for ``lfr bench uplink``.

The unit's uplink and the van's receiver call ``mark(unit, seq, stage)`` as an envelope passes
each ``Stage``; ``lfr bench uplink`` turns the marks of both processes into its per-stage
breakdown of the latency (docs/DELIVERY.md, "Latency end to end"). A mark is a DEBUG record of
the ``lfr.trace.delivery`` logger carrying ``record.trace`` (a ``DeliveryMark``), so it costs one
``isEnabledFor`` check unless a process turned that logger on: ``lfr van -v`` prints the marks
like any debug line, the benchmark's processes write them as JSON lines
(``bench.trace_lines``). A mark holds the unit id, the sequence number, the stage and the time:
nothing from the body (no crop, no subject, no score).
"""

from __future__ import annotations

import enum
import logging
import time
from dataclasses import dataclass
from typing import Final

TRACE_LOG: Final = logging.getLogger("lfr.trace.delivery")
"""The marks' logger; off (above DEBUG) unless a process enables it."""


class Stage(enum.StrEnum):
    """The stages of one envelope's delivery, in order."""

    SEALED = "sealed"
    """Unit: the envelope is in the outbox (``Outbox.append`` returned)."""
    SENT = "sent"
    """Unit: its ``Deliver`` was handed to the link (encoded and queued on the channel)."""
    STARTED = "started"
    """Van: the receiver began handling the ``Deliver``."""
    VERIFIED = "verified"
    """Van: the signatures held, the envelope was opened and its body checked."""
    STORED = "stored"
    """Van: the envelope is committed to the event store."""
    RECEIPT = "receipt"
    """Unit: the van's ``Receipt`` for it arrived."""


@dataclass(frozen=True, slots=True)
class DeliveryMark:
    """One envelope reaching one stage."""

    unit: str
    """The unit that sealed the envelope."""
    seq: int
    """Its sequence number at that unit."""
    stage: Stage
    """The stage reached."""
    at: float
    """When (``time.time()``: seconds since the epoch)."""


def enabled() -> bool:
    """Whether marks are recorded (the logger is on at DEBUG)."""
    return TRACE_LOG.isEnabledFor(logging.DEBUG)


def mark(unit: str, seq: int, stage: Stage, at: float | None = None) -> None:
    """Record that envelope ``seq`` of ``unit`` reached ``stage`` at ``at`` (default: now);
    nothing when marks are off."""
    if not TRACE_LOG.isEnabledFor(logging.DEBUG):
        return
    trace = DeliveryMark(unit, seq, stage, time.time() if at is None else at)
    # makeRecord and handle: what debug() does, without looking up the caller's frame
    TRACE_LOG.handle(TRACE_LOG.makeRecord(
        TRACE_LOG.name, logging.DEBUG, __file__, 0, "unit %r seq %d: %s at %.6f",
        (unit, seq, stage.value, trace.at), None, extra={"trace": trace}))
