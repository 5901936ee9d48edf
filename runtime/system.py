"""``ActorSystem``: one node's actors, their supervision tree, worker pool and metrics."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TypeVar

from guards.config_checks import (
    require_at_least,
    require_non_negative,
    require_positive,
    require_text,
)
from runtime.actor import Actor
from runtime.blocking import BlockingPool
from runtime.cell import ActorCell
from runtime.errors import SupervisorGaveUp
from runtime.mailbox import MailboxConfig
from runtime.metrics_export import prometheus_text
from runtime.ref import ActorRef
from runtime.stall_watchdog import StallWatchdog
from runtime.supervisor import Supervisor, SupervisorConfig

M = TypeVar("M")
log = logging.getLogger("lfr.runtime")


@dataclass(frozen=True, slots=True)
class SystemConfig:
    """Settings of one actor system (one node)."""

    name: str = "node"
    """The node's name, used in logs and as the peer name on transport links."""
    root: SupervisorConfig = field(default_factory=SupervisorConfig)
    """Strategy and restart intensity of the root supervisor; if it gives up, the node stops."""
    blocking_workers: int | None = None
    """Threads for ``run_blocking`` (None: one per CPU core)."""
    shutdown_drain_s: float = 1.0
    """On stop, how long actors may keep handling queued messages before being cancelled (s).
    Short, so that Ctrl-C and SIGTERM end a node within 2 s."""
    stall_threshold_s: float | None = None
    """Debug mode: report event-loop stalls longer than this (s), naming the actor; None: off."""

    def __post_init__(self) -> None:
        require_text("SystemConfig.name", self.name)
        if self.blocking_workers is not None:
            require_at_least("SystemConfig.blocking_workers", self.blocking_workers, 1)
        require_non_negative("SystemConfig.shutdown_drain_s", self.shutdown_drain_s)
        if self.stall_threshold_s is not None:
            require_positive("SystemConfig.stall_threshold_s", self.stall_threshold_s)


class ActorSystem:
    """Create inside a running event loop; ``async with ActorSystem() as system: ...``."""

    def __init__(self, config: SystemConfig | None = None) -> None:
        self.config = config or SystemConfig()
        self.name = self.config.name
        self.root = Supervisor(self, "root", self.config.root, parent=None)
        self.blocking = BlockingPool(self.config.blocking_workers)
        # Every cell ever spawned, by unique name (the transport routes by these names).
        self._cells: dict[str, ActorCell[Any]] = {}
        self._failure: asyncio.Future[SupervisorGaveUp] = (
            asyncio.get_running_loop().create_future())
        self._watchdog: StallWatchdog | None = None
        self._started = False
        self._stopped = False

    async def start(self) -> None:
        """Start the root supervisor (and the stall watchdog in debug mode)."""
        if self._started:
            return
        self._started = True
        await self.root.start()
        if self.config.stall_threshold_s is not None:
            self._watchdog = StallWatchdog(asyncio.get_running_loop(),
                                           self.config.stall_threshold_s)
            self._watchdog.start()

    async def spawn(self, name: str, factory: Callable[[], Actor[M]],
                    mailbox: MailboxConfig | None = None) -> ActorRef[M]:
        """Start an actor under the root supervisor."""
        await self.start()
        return await self.root.spawn(name, factory, mailbox)

    async def spawn_supervisor(self, name: str,
                               config: SupervisorConfig | None = None) -> Supervisor:
        """Start a supervisor under the root supervisor."""
        await self.start()
        return await self.root.spawn_supervisor(name, config)

    def register(self, cell: ActorCell[Any]) -> None:
        """Record a new cell; names are unique within a system."""
        if cell.name in self._cells:
            raise ValueError(f"an actor named {cell.name!r} already exists in {self.name!r}")
        self._cells[cell.name] = cell

    def lookup(self, name: str) -> ActorRef[Any] | None:
        """The ref of the actor called ``name``, or None."""
        cell = self._cells.get(name)
        return cell.ref if cell is not None else None

    def cells(self) -> list[ActorCell[Any]]:
        """Every cell, in spawn order."""
        return list(self._cells.values())

    def metrics_text(self) -> str:
        """Every actor's metrics in the Prometheus text exposition format."""
        return prometheus_text(self.cells())

    @property
    def stall_watchdog(self) -> StallWatchdog | None:
        """The watchdog in debug mode, else None."""
        return self._watchdog

    # --- failure and shutdown -----------------------------------------------------------------

    def root_gave_up(self, error: SupervisorGaveUp) -> None:
        """Called by the root supervisor when restarts did not help: the node must stop."""
        if not self._failure.done():
            self._failure.set_result(error)

    async def wait_failed(self) -> SupervisorGaveUp:
        """Wait until the root supervisor gives up; returns its error."""
        return await asyncio.shield(self._failure)

    @property
    def failure(self) -> SupervisorGaveUp | None:
        """The root supervisor's error once it gave up, else None."""
        return self._failure.result() if self._failure.done() else None

    async def stop(self) -> None:
        """Stop every actor newest first, draining mailboxes up to the configured deadline."""
        if self._stopped:
            return
        self._stopped = True
        await self.root.stop(self.config.shutdown_drain_s)
        if self._watchdog is not None:
            self._watchdog.stop()
        await asyncio.to_thread(self.blocking.shutdown)

    async def __aenter__(self) -> ActorSystem:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()
