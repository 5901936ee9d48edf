"""``AuditWriter``: the actor through which event-loop code appends to a node's audit trail.

``AuditLog.append`` writes and fsyncs (about 0.4 ms, more on a busy disk), so the event loop must
not call it. Code that notices something worth recording without being an actor that can wait
(a link coming up, an alert stored, a refused input) calls ``AuditSink.record``, which tells the
writer at once; the writer appends on the blocking pool, in order.

Bounds and failure semantics: the writer's mailbox holds ``WRITER_BACKLOG`` records; beyond that
a record is dropped, counted in ``AuditSink.dropped`` and logged through a budget (the node keeps
running: a full disk must not stop recognition, and the drop is visible in the log and in the
count). A failed append (disk full, the log closed) fails that one record, logged and counted in
``failed``; the writer keeps running. Fields are checked by ``AuditLog.append`` (the privacy
rule): a bad field is a bug in the caller, counted in ``failed`` and logged with its reason.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Final, Protocol

from audit.kinds import AuditKind
from audit.record import AuditFieldError, FieldValue
from runtime.actor import Actor
from runtime.errors import ActorStopped, MailboxFull
from runtime.log_budget import LogBudget
from runtime.mailbox import MailboxConfig, MailboxPolicy
from runtime.ref import ActorRef

log = logging.getLogger("lfr.audit")
WRITER_BACKLOG: Final = 4096
"""Records waiting for the disk; one more is dropped and counted."""
WRITER_MAILBOX: Final = MailboxConfig(WRITER_BACKLOG, MailboxPolicy.REJECT)
"""The writer's mailbox: ``reject`` so that ``record`` never waits."""


class Appender(Protocol):
    """What the writer needs of the log (``audit.log.AuditLog``)."""

    def append(self, kind: AuditKind, /, **fields: FieldValue) -> object:
        """Append one record (blocking)."""
        ...


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One record to append. In-process only."""

    kind: AuditKind
    """What happened."""
    fields: tuple[tuple[str, FieldValue], ...]
    """Its fields (the privacy rule is checked when appended)."""


@dataclass(slots=True)
class AuditCounts:
    """What became of the records handed to the writer."""

    written: int = 0
    """Appended and on disk."""
    dropped: int = 0
    """Dropped because the writer's backlog was full, or the node was stopping."""
    failed: int = 0
    """Refused by the log (a field) or not written (an I/O error)."""
    kinds_failed: dict[str, int] = field(default_factory=dict)
    """Failed records by kind."""


class AuditWriter(Actor[AuditEntry]):
    """Appends each ``AuditEntry`` to ``log`` on the blocking pool (module docstring)."""

    def __init__(self, trail: Appender, counts: AuditCounts) -> None:
        self.trail = trail
        self.counts = counts
        self._log = LogBudget(log, "audit writer")

    async def receive(self, message: AuditEntry) -> None:
        fields = dict(message.fields)
        try:
            await self.context.run_blocking(lambda: self.trail.append(message.kind, **fields))
        except (AuditFieldError, OSError, RuntimeError) as exc:  # this record only
            self.counts.failed += 1
            kind = message.kind.value
            self.counts.kinds_failed[kind] = self.counts.kinds_failed.get(kind, 0) + 1
            self._log.warning("audit: a %s record was not written: %s", kind, exc)
            return
        self.counts.written += 1


class AuditSink:
    """Hands records to an ``AuditWriter`` without ever waiting (module docstring)."""

    def __init__(self, writer: ActorRef[AuditEntry], counts: AuditCounts) -> None:
        self._writer = writer
        self.counts = counts
        self._log = LogBudget(log, "audit sink")

    def record(self, kind: AuditKind, /, **fields: FieldValue) -> None:
        """Queue one record; dropped (counted, logged) when the backlog is full."""
        try:
            self._writer.tell_nowait(AuditEntry(kind, tuple(fields.items())))
        except (MailboxFull, ActorStopped):
            self.counts.dropped += 1
            self._log.warning("audit: a %s record was dropped (%d so far): the writer is behind",
                            kind.value, self.counts.dropped)
