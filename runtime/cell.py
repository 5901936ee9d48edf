"""``ActorCell``: the runtime side of one actor - its mailbox, its loop task, its incarnations.

The cell outlives incarnations: a restart replaces the ``Actor`` instance but keeps the mailbox,
so messages queued during a crash and its backoff are handled by the next incarnation.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from guards.log_text import printable
from runtime.actor import Actor, ActorContext
from runtime.actor_metrics import ActorMetrics
from runtime.envelope import Envelope
from runtime.errors import ActorStopped
from runtime.log_budget import LogBudget
from runtime.mailbox import Mailbox, MailboxConfig
from runtime.ref import ActorRef

if TYPE_CHECKING:
    from runtime.system import ActorSystem

M = TypeVar("M")
log = logging.getLogger("lfr.runtime")


class FailureListener(Protocol):
    """Who hears that a child failed or exited (its supervisor)."""

    def child_exited(self, child: Any, incarnation: int, error: BaseException | None) -> None:
        """``error`` is None for a normal exit (the actor stopped itself)."""


class CellState(enum.Enum):
    """Lifecycle of a cell: NEW -> RUNNING <-> SUSPENDED, then STOPPING -> STOPPED for good."""

    NEW = "new"
    RUNNING = "running"
    SUSPENDED = "suspended"
    """No incarnation runs (it failed or was halted); the mailbox stays open and keeps
    accepting messages while the supervisor decides."""
    STOPPING = "stopping"
    STOPPED = "stopped"


class ActorCell(Generic[M]):
    """Owns one actor's mailbox and loop task; driven by its supervisor."""

    def __init__(self, system: ActorSystem, name: str, factory: Callable[[], Actor[M]],
                 mailbox: MailboxConfig, listener: FailureListener) -> None:
        self.system = system
        self.name = name
        self.factory = factory
        self.mailbox: Mailbox = Mailbox(name, mailbox)
        self.metrics: ActorMetrics = ActorMetrics()
        self.ref: ActorRef[M] = ActorRef(self)
        self.state = CellState.NEW
        self._listener = listener
        # Invariant: _task is None or the one loop task of the current incarnation.
        self._task: asyncio.Task[None] | None = None
        self._actor: Actor[M] | None = None
        self._stop_requested = False
        # Counts started incarnations, so a supervisor can ignore a stale failure report.
        self.incarnation = 0
        # Bounds the lines peers' failing tells write; metrics.remote_failures counts them all.
        self._peer_log = LogBudget(log, f"actor {printable(name)}")

    # --- driven by the supervisor -------------------------------------------------------------

    async def start(self) -> None:
        """Start a new incarnation; a failure in the factory or ``on_start`` is reported."""
        self._stop_requested = False
        self.incarnation += 1
        self._task = asyncio.create_task(self._run(), name=f"actor:{self.name}")

    async def restart(self) -> None:
        """End the current incarnation (if any) and start a fresh one on the same mailbox."""
        if self.state in (CellState.STOPPING, CellState.STOPPED):
            return  # stopped for good (or by itself): nothing to restart
        await self.halt()
        self.metrics.restarts += 1
        await self.start()

    async def halt(self) -> None:
        """End the current incarnation (if any) but keep the mailbox open for a later start."""
        await self._end_incarnation()
        if self.state is CellState.RUNNING:
            self.state = CellState.SUSPENDED

    async def stop(self, drain_s: float) -> None:
        """Stop for good: refuse new messages, drain for up to ``drain_s`` s, then cancel."""
        if self.state in (CellState.STOPPING, CellState.STOPPED):
            return
        self.state = CellState.STOPPING
        self.mailbox.close()
        task = self._task
        if task is not None and not task.done():
            # The loop exits by itself once the closed mailbox is empty.
            done, _ = await asyncio.wait({task}, timeout=drain_s)
            if not done:
                await self._end_incarnation()
        await self._finish_incarnation()
        for envelope in self.mailbox.take_all():
            envelope.fail(ActorStopped(self.name, "stopped before this message was handled"))
        self._peer_log.flush()
        self.state = CellState.STOPPED

    # --- the loop -----------------------------------------------------------------------------

    async def _run(self) -> None:
        error: BaseException | None = None
        try:
            await self._begin_incarnation()
            await self._loop()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - supervision boundary: any failure goes to the supervisor
            error = exc
        if error is not None:
            self.state = CellState.SUSPENDED
            self.metrics.failures += 1
            await self._report_failure(error)
        elif self.state is CellState.RUNNING:
            # The actor stopped itself: a normal exit, not restarted.
            await self._finish_incarnation()
            self.mailbox.close()
            for envelope in self.mailbox.take_all():
                envelope.fail(ActorStopped(self.name, "it stopped itself"))
            self.state = CellState.STOPPED
            self._listener.child_exited(self, self.incarnation, None)

    async def _begin_incarnation(self) -> None:
        actor = self.factory()
        actor._context = ActorContext(self.name, self.ref, self.system, self._request_stop)
        self._actor = actor
        if self.state is not CellState.STOPPING:
            self.state = CellState.RUNNING
        await actor.on_start()

    async def _loop(self) -> None:
        actor = self._actor
        assert actor is not None
        mailbox = self.mailbox
        metrics = self.metrics
        histogram = metrics.handling
        while not self._stop_requested:
            envelope = mailbox.get_nowait()
            if envelope is None:
                if not await mailbox.wait_nonempty():
                    return  # closed and drained
                continue
            reply = envelope.reply
            if reply is not None and reply.done():
                continue  # the asker gave up (timeout or cancellation) before we got to it
            started = time.perf_counter_ns()
            try:
                result = await actor.receive(envelope.message)
            except asyncio.CancelledError:
                envelope.fail(ActorStopped(self.name, "stopped while handling this message"))
                raise
            except Exception as exc:
                if reply is None and not envelope.from_peer:
                    raise  # a failed tell fails the actor
                self._message_failed(envelope, exc)
            else:
                if reply is not None and not reply.done():
                    reply.set_result(result)
            finally:
                metrics.processed += 1
                histogram.observe(time.perf_counter_ns() - started)

    def _message_failed(self, envelope: Envelope, error: Exception) -> None:
        """An ask's failure goes to its asker; a peer's tell's failure is counted and logged.

        A peer's message is outside this node's control: its failure is that message's, or a
        dozen bad tells from outside would spend the supervisor's restart budget.
        """
        metrics = self.metrics
        if envelope.from_peer:
            metrics.remote_failures += 1
        reply = envelope.reply
        if reply is None:
            # The error's text may quote the peer's data: escaped so it cannot forge log lines.
            # Budgeted: a peer decides how many of these there are.
            self._peer_log.warning(
                "actor %s: a tell from a peer failed and was dropped (%s, %s: %s)",
                printable(self.name), type(envelope.message).__name__, type(error).__name__,
                printable(error))
            return
        metrics.ask_errors += 1
        if not reply.done():
            reply.set_exception(error)

    def _request_stop(self) -> None:
        self._stop_requested = True

    # --- incarnation bookkeeping --------------------------------------------------------------

    async def _end_incarnation(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            # Waiting for the cancelled loop is the point: stop() returns only when it is gone.
            await asyncio.gather(task, return_exceptions=True)
        await self._finish_incarnation()

    async def _finish_incarnation(self) -> None:
        actor, self._actor = self._actor, None
        if actor is None:
            return
        try:
            await actor.on_stop()
        except Exception:  # supervision boundary: a broken on_stop must not block shutdown
            log.exception("actor %r: on_stop raised", self.name)

    async def _report_failure(self, error: BaseException) -> None:
        actor = self._actor
        if actor is not None:
            try:
                await actor.on_failure(error)
            except Exception:  # supervision boundary: the original failure is what matters
                log.exception("actor %r: on_failure raised", self.name)
        await self._finish_incarnation()
        self._listener.child_exited(self, self.incarnation, error)
