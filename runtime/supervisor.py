"""Supervision in the Erlang/Akka sense: a supervisor restarts failed children by a strategy.

A supervisor owns an ordered list of children (actor cells and nested supervisors). When a child
fails it applies its strategy after an exponential backoff. If more than ``max_restarts`` failures
happen within ``within_s`` seconds it gives up: it halts all its children and escalates to its own
supervisor, which treats it as one failed child. The root supervisor giving up fails the system.

Escalations are not forgotten by the window: a child supervisor that gave up has already spent its
own restart budget, and giving up can take longer than the parent's window (backoffs grow), so a
parent that only counted restarts per window would restart a hopeless subtree for ever. Each
supervisor therefore also counts the give-ups of its child supervisors over its whole life and
gives up itself after ``max_escalations`` of them, whatever their timing.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, TypeVar

from guards.config_checks import (
    ConfigError,
    require_at_least,
    require_non_negative,
    require_positive,
)
from guards.log_text import printable
from runtime.cell import ActorCell
from runtime.errors import SupervisorGaveUp
from runtime.mailbox import MailboxConfig

if TYPE_CHECKING:
    from runtime.actor import Actor
    from runtime.ref import ActorRef
    from runtime.system import ActorSystem

M = TypeVar("M")
log = logging.getLogger("lfr.runtime")


class Strategy(enum.Enum):
    """Which children a supervisor restarts when one fails."""

    ONE_FOR_ONE = "one_for_one"
    """Only the failed child."""
    ONE_FOR_ALL = "one_for_all"
    """Every child: for children that only work together."""
    REST_FOR_ONE = "rest_for_one"
    """The failed child and every child started after it (they depend on it)."""


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential delay before a restart, growing with the restarts in the current window."""

    initial_s: float = 0.1
    """Delay before the first restart in a window, in seconds."""
    factor: float = 2.0
    """Each further restart in the window waits this many times longer."""
    max_s: float = 10.0
    """Upper bound of the delay, in seconds."""

    def __post_init__(self) -> None:
        require_non_negative("Backoff.initial_s", self.initial_s)
        if not (math.isfinite(self.factor) and self.factor >= 1.0):
            raise ConfigError(f"Backoff.factor must be >= 1, got {self.factor!r}")
        require_non_negative("Backoff.max_s", self.max_s)
        if self.max_s < self.initial_s:
            raise ConfigError(f"Backoff.max_s ({self.max_s}) is below initial_s "
                              f"({self.initial_s})")

    def delay(self, attempt: int) -> float:
        """Delay in seconds before restart number ``attempt`` (1-based) in the window."""
        return float(min(self.max_s, self.initial_s * self.factor ** max(0, attempt - 1)))


@dataclass(frozen=True, slots=True)
class SupervisorConfig:
    """How a supervisor reacts to failing children."""

    strategy: Strategy = Strategy.ONE_FOR_ONE
    """Which children are restarted when one fails."""
    max_restarts: int = 5
    """Restarts allowed within ``within_s`` before the supervisor gives up and escalates."""
    within_s: float = 30.0
    """Length of the restart-intensity window, in seconds."""
    backoff: Backoff = field(default_factory=Backoff)
    """Delay before each restart."""
    max_escalations: int = 3
    """Give-ups of child supervisors this supervisor absorbs (restarting the child) over its
    whole life; the next one makes it give up too, whatever the timing."""

    def __post_init__(self) -> None:
        require_at_least("SupervisorConfig.max_restarts", self.max_restarts, 0)
        require_positive("SupervisorConfig.within_s", self.within_s)
        require_at_least("SupervisorConfig.max_escalations", self.max_escalations, 0)


class Child(Protocol):
    """What a supervisor needs of a child: actor cells and supervisors both qualify."""

    name: str
    incarnation: int

    async def start(self) -> None: ...
    async def restart(self) -> None: ...
    async def halt(self) -> None: ...
    async def stop(self, drain_s: float) -> None: ...


@dataclass(frozen=True, slots=True)
class SupervisorStatistics:
    """Counters of one supervisor."""

    children: int
    """Direct children."""
    restarts: int
    """Restart decisions taken (one per handled failure)."""
    recent_backoffs_s: tuple[float, ...]
    """The last few backoff delays applied, oldest first, in seconds."""
    gave_up: bool
    """True once the restart intensity was exceeded."""
    escalations: int
    """Give-ups of child supervisors absorbed so far (see ``max_escalations``)."""


class Supervisor:
    """Owns children, restarts them by its strategy, escalates when restarts do not help."""

    def __init__(self, system: ActorSystem, name: str, config: SupervisorConfig,
                 parent: Supervisor | None) -> None:
        self.system = system
        self.name = name
        self.config = config
        self.parent = parent
        self.incarnation = 1
        # Start order; stops and halts walk it backwards.
        self.children: list[Child] = []
        # Failure reports waiting to be handled; each child has at most one per incarnation,
        # so this stays at most len(children) long.
        self._reports: asyncio.Queue[tuple[Child, int, BaseException | None]] = asyncio.Queue()
        # Monotonic times (s) of the restarts inside the current intensity window.
        self._restart_times: deque[float] = deque()
        self._recent_backoffs: deque[float] = deque(maxlen=16)
        self._restarts = 0
        # Give-ups of child supervisors over this supervisor's life; never reset by the window
        # (invariant: <= config.max_escalations while this supervisor has not given up).
        self._escalations = 0
        self._gave_up = False
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    # --- building the tree --------------------------------------------------------------------

    async def spawn(self, name: str, factory: Callable[[], Actor[M]],
                    mailbox: MailboxConfig | None = None) -> ActorRef[M]:
        """Create and start an actor as the last child of this supervisor."""
        cell = ActorCell(self.system, name, factory, mailbox or MailboxConfig(), self)
        self.system.register(cell)
        self.children.append(cell)
        await cell.start()
        return cell.ref

    async def spawn_supervisor(self, name: str,
                               config: SupervisorConfig | None = None) -> Supervisor:
        """Create and start a nested supervisor as the last child of this one."""
        child = Supervisor(self.system, name, config or SupervisorConfig(), self)
        self.children.append(child)
        await child.start()
        return child

    def statistics(self) -> SupervisorStatistics:
        """Current counters."""
        return SupervisorStatistics(
            children=len(self.children), restarts=self._restarts,
            recent_backoffs_s=tuple(self._recent_backoffs), gave_up=self._gave_up,
            escalations=self._escalations,
        )

    # --- Child protocol (driven by the parent) --------------------------------------------------

    async def start(self) -> None:
        """Start handling failure reports."""
        self._task = asyncio.create_task(self._supervise(), name=f"supervisor:{self.name}")

    async def restart(self) -> None:
        """Halt every child, forget past restarts and start every child again."""
        await self.halt()
        self._restart_times.clear()
        self._gave_up = False
        self.incarnation += 1
        for child in self.children:
            await child.restart()
        await self.start()

    async def halt(self) -> None:
        """Stop handling reports and end every child's incarnation, newest child first."""
        await self._cancel_task()
        for child in reversed(self.children):
            await child.halt()
        self._drain_reports()

    async def stop(self, drain_s: float) -> None:
        """Stop for good: children newest first, sharing one drain deadline of ``drain_s`` s."""
        self._stopping = True
        await self._cancel_task()
        deadline = time.monotonic() + drain_s
        for child in reversed(self.children):
            await child.stop(max(0.0, deadline - time.monotonic()))
        self._drain_reports()

    # --- failure handling ---------------------------------------------------------------------

    def child_exited(self, child: Child, incarnation: int, error: BaseException | None) -> None:
        """Called by a child whose incarnation ended by itself (error None: a normal exit)."""
        self._reports.put_nowait((child, incarnation, error))

    async def _supervise(self) -> None:
        while True:
            child, incarnation, error = await self._reports.get()
            if error is None:
                log.info("actor %r stopped by itself", child.name)
            elif incarnation == child.incarnation and not self._stopping:
                await self._handle_failure(child, error)

    async def _handle_failure(self, child: Child, error: BaseException) -> None:
        now = time.monotonic()
        window = self._restart_times
        while window and now - window[0] > self.config.within_s:
            window.popleft()
        if len(window) >= self.config.max_restarts:
            await self._give_up(child, error)
            return
        if isinstance(error, SupervisorGaveUp):
            self._escalations += 1
            if self._escalations > self.config.max_escalations:
                log.error("%s gave up %d times, more than %s absorbs (%d)",
                          _describe(child, error), self._escalations, self.name,
                          self.config.max_escalations)
                await self._give_up(child, error)
                return
        window.append(now)
        delay = self.config.backoff.delay(len(window))
        self._recent_backoffs.append(delay)
        self._restarts += 1
        log.warning("%s failed (%s: %s); %s restarts it in %.2f s (%s)",
                    _describe(child, error), type(_root_error(error)).__name__,
                    printable(_root_error(error), max_chars=1000), self.name, delay,
                    self.config.strategy.value)
        await asyncio.sleep(delay)
        for target in reversed(self._siblings_to_restart(child)):
            await target.halt()
        for target in self._siblings_to_restart(child):
            await target.restart()

    def _siblings_to_restart(self, failed: Child) -> list[Child]:
        strategy = self.config.strategy
        if strategy is Strategy.ONE_FOR_ONE:
            return [failed]
        if strategy is Strategy.ONE_FOR_ALL:
            return list(self.children)
        return self.children[self.children.index(failed):]

    async def _give_up(self, child: Child, error: BaseException) -> None:
        self._gave_up = True
        actor = error.actor if isinstance(error, SupervisorGaveUp) else child.name
        root = _root_error(error)
        gave_up = SupervisorGaveUp(self.name, actor, root, self.config.max_restarts,
                                   self.config.within_s)
        gave_up.__cause__ = root
        log.error("%s", printable(gave_up, max_chars=1000))
        for target in reversed(self.children):
            await target.halt()
        if self.parent is not None:
            self.parent.child_exited(self, self.incarnation, gave_up)
        else:
            self.system.root_gave_up(gave_up)

    async def _cancel_task(self) -> None:
        task, self._task = self._task, None
        if task is not None and task is not asyncio.current_task() and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def _drain_reports(self) -> None:
        while not self._reports.empty():
            self._reports.get_nowait()


def _root_error(error: BaseException) -> BaseException:
    return error.error if isinstance(error, SupervisorGaveUp) else error


def _describe(child: Child, error: BaseException) -> str:
    if isinstance(error, SupervisorGaveUp):
        return f"supervisor {child.name!r} (actor {error.actor!r})"
    return f"actor {child.name!r}"
