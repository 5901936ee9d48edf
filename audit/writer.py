"""``AuditWriter``: the actor through which event-loop code appends to a node's audit trail.

An fsync costs about 0.4 ms, more on a busy disk, so the event loop must not append. Code that
notices something worth recording without being an actor that can wait (a link coming up, an
alert stored, a refused input) calls ``AuditSink.record``, which tells the writer at once.

Group commit: the writer takes each record off its mailbox at once into its queue, and one
task it owns appends the queue on the blocking pool, everything waiting at that moment (up to
``GROUP_RECORDS``) with one write and one fsync (``AuditLog.append_all``); what arrives
meanwhile is the next group. A burst of alerts stored by the van is so one fsync, not one per
alert. Order is kept: records reach the log in the order they were told, chained one after the
other. No caller waits for a record to be on disk (``record`` never waits): what the trail
promises is order, the chain and, for every record counted ``written``, that it was fsynced
before it was counted.

Bounds and failure semantics: the mailbox and the queue each hold ``WRITER_BACKLOG`` records;
beyond that a record is dropped, counted in ``AuditSink.dropped`` and logged through a budget
(the node keeps running: a full disk must not stop recognition, and the drop is visible in the
log and in the count). A failed write (disk full, the log closed) fails the records of its
group, none of which is written, logged and counted in ``failed``; the writer keeps running.
Fields are checked by the log (the privacy rule): a bad field is a bug in the caller, that
record alone counted in ``failed`` and logged with its reason. On stop the writer appends what
it holds, waiting at most ``STOP_WRITE_S``; what is still queued then is counted dropped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol

from audit.kinds import AuditKind
from audit.log import MAX_GROUP_RECORDS, Pending
from audit.record import AuditFieldError, AuditRecord, FieldValue
from runtime.actor import Actor
from runtime.errors import ActorStopped, MailboxFull
from runtime.log_budget import LogBudget
from runtime.mailbox import MailboxConfig, MailboxPolicy
from runtime.ref import ActorRef

log = logging.getLogger("lfr.audit")
WRITER_BACKLOG: Final = 4096
"""Records waiting in the writer's mailbox, and again in its queue; one more is dropped and
counted."""
WRITER_MAILBOX: Final = MailboxConfig(WRITER_BACKLOG, MailboxPolicy.REJECT)
"""The writer's mailbox: ``reject`` so that ``record`` never waits."""
GROUP_RECORDS: Final = MAX_GROUP_RECORDS
"""Most records appended with one fsync."""
STOP_WRITE_S: Final = 5.0
"""How long stopping waits for the records the writer holds to be written."""


class Appender(Protocol):
    """What the writer needs of the log (``audit.log.AuditLog``)."""

    def append_all(self, pending: Sequence[Pending], /) -> list[AuditRecord | AuditFieldError]:
        """Append a group of records with one fsync (blocking): each record, or the error
        that refused it."""
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
    groups: int = 0
    """Groups written, each with one fsync (``written / groups``: records per fsync)."""


class AuditWriter(Actor[AuditEntry]):
    """Appends each ``AuditEntry`` to ``trail`` in order, in groups (module docstring)."""

    def __init__(self, trail: Appender, counts: AuditCounts) -> None:
        self.trail = trail
        self.counts = counts
        self._log = LogBudget(log, "audit writer")
        # Records told and not yet handed to the log, oldest first; at most WRITER_BACKLOG.
        self._queue: list[AuditEntry] = []
        # The task appending the queue, group by group, until it is empty; owned here (on_stop
        # awaits it). None when the queue is empty and nothing is being written.
        self._appending: asyncio.Task[None] | None = None

    async def receive(self, message: AuditEntry) -> None:
        done = self._appending
        if done is not None and done.done():
            self._appending = None
            done.result()  # a bug in appending (not an I/O error) fails the actor: supervised
        if len(self._queue) >= WRITER_BACKLOG:
            self._drop(message.kind)
            return
        self._queue.append(message)
        if self._appending is None:
            self._appending = asyncio.create_task(self._append_queue(),
                                                  name=f"{self.context.name} appending")

    async def on_stop(self) -> None:
        """Append what is queued, for at most ``STOP_WRITE_S``; the rest is counted dropped
        (a group on the blocking pool when the wait ends may still reach the log: its call
        cannot be stopped, only no longer awaited)."""
        if self._queue and self._appending is None:
            self._appending = asyncio.create_task(self._append_queue(),
                                                  name=f"{self.context.name} appending")
        task = self._appending
        if task is None:
            return
        done, _ = await asyncio.wait({task}, timeout=STOP_WRITE_S)
        if not done:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self._appending = None
        for entry in self._queue:
            self._drop(entry.kind)
        self._queue.clear()

    async def _append_queue(self) -> None:
        """Append the queue group by group until it is empty (what arrives meanwhile joins it).
        A group's records leave the queue only once the log has answered for them."""
        while self._queue:
            group = self._queue[:GROUP_RECORDS]
            pending = [(entry.kind, dict(entry.fields)) for entry in group]
            try:
                results = await self.context.run_blocking(self.trail.append_all, pending)
            except (OSError, RuntimeError) as exc:  # this group only: nothing of it written
                del self._queue[:len(group)]
                for entry in group:
                    self._failed(entry.kind)
                self._log.warning("audit: %d records (%s first) were not written: %s",
                                  len(group), group[0].kind.value, exc)
                continue
            del self._queue[:len(group)]
            self.counts.groups += 1
            for entry, result in zip(group, results, strict=True):
                if isinstance(result, AuditFieldError):  # that record only
                    self._failed(entry.kind)
                    self._log.warning("audit: a %s record was not written: %s",
                                      entry.kind.value, result)
                else:
                    self.counts.written += 1

    def _failed(self, kind: AuditKind) -> None:
        self.counts.failed += 1
        self.counts.kinds_failed[kind.value] = self.counts.kinds_failed.get(kind.value, 0) + 1

    def _drop(self, kind: AuditKind) -> None:
        self.counts.dropped += 1
        self._log.warning("audit: a %s record was dropped (%d so far): the writer is behind or "
                          "stopping", kind.value, self.counts.dropped)


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
