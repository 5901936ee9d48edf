"""``ServiceWatchdog``: a node tells systemd it is ready, alive and healthy, or stopping.

Under systemd (``firmware/lfr-edge.service``: ``Type=notify``, ``WatchdogSec=``) the node

- sends ``WATCHDOG=1`` every ``$WATCHDOG_USEC``/2 from the moment it starts (the models'
  warm-up included), but **only while it is healthy**;
- sends ``READY=1`` once, when the node calls ``ready()`` (its supervision tree has started),
  if it is healthy then;
- sends ``STATUS=`` with a short state (the node's own line, or what is wrong) whenever it
  changes;
- sends ``STOPPING=1`` (with the reason, if the node stops unhealthy) in ``stop()``.

Healthy (``root_problem`` and the tick's own lateness) means:

- the root supervisor has not given up: ``SupervisorStatistics.gave_up`` is set the moment it
  decides to (before it halts its children), ``ActorSystem.failure`` once it has;
- the event loop turns: the pings come from a task on the node's own loop, so a loop stuck in
  synchronous code sends none and systemd stops the node after ``WatchdogSec``. A tick that
  wakes more than ``stall_limit_s`` late (a quarter of ``WatchdogSec``) means the loop was
  stuck that long even if it came back: that tick sends no ping and says so, so systemd
  restarts a node whose loop stalls like that (the link's heartbeats, the uplink and the
  watchlist keeper all run on it).

An unhealthy node sends no ``WATCHDOG=1``: the root giving up ends the node by itself (exit 70,
``runtime.node``), and whatever else holds a node up unhealthy is ended by systemd's watchdog;
``Restart=`` then starts it again.

Guarantees: without ``$NOTIFY_SOCKET`` nothing is sent and no task is started. Otherwise one
task, owned by the node: ``start`` makes it, ``stop`` cancels it and waits at most
``STOP_WAIT_S`` for it, then sends ``STOPPING=1``; the task's only wait is one tick's sleep.
Nothing here raises into the node: a failed send is counted by the notifier, and a failing
status callback is logged and replaced by a fixed text.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from guards.config_checks import ConfigError, require_positive
from guards.log_text import printable
from runtime.service_notify import ServiceNotifier, WatchdogTimeout, watchdog_timeout
from runtime.system import ActorSystem

log = logging.getLogger("lfr.service")

STATUS_INTERVAL_S: Final = 5.0
"""How often the status is looked at when systemd expects no pings (no ``WatchdogSec=``)."""
STOP_WAIT_S: Final = 5.0
"""How long ``stop`` waits for the cancelled task (it only ever sleeps, so at once)."""
TICK_RANGE_S: Final = (0.05, 3600.0)
"""The tick is kept in this range whatever ``$WATCHDOG_USEC`` says: a WatchdogSec of a few
milliseconds must not make the node spin, nor a huge one overflow the loop's timer."""


@dataclass(frozen=True, slots=True)
class WatchdogConfig:
    """When the service watchdog looks at the node and what it calls a stall."""

    tick_s: float
    """Seconds between two looks: each checks health, pings when due and healthy, and sends
    the status when it changed. Half of ``WatchdogSec`` when systemd expects pings."""
    pings: bool
    """Whether systemd expects ``WATCHDOG=1`` from this process (``$WATCHDOG_USEC``)."""
    stall_limit_s: float
    """A tick waking this much later than due means the event loop was stuck that long: that
    tick sends no ping. Invariant: below ``tick_s``, so a withheld ping is a real stall."""

    def __post_init__(self) -> None:
        require_positive("WatchdogConfig.tick_s", self.tick_s)
        require_positive("WatchdogConfig.stall_limit_s", self.stall_limit_s)
        if self.stall_limit_s >= self.tick_s:
            raise ConfigError(f"WatchdogConfig.stall_limit_s ({self.stall_limit_s}) must be "
                             f"below tick_s ({self.tick_s})")

    @classmethod
    def for_timeout(cls, timeout: WatchdogTimeout | None) -> WatchdogConfig:
        """Pings every ``timeout``/2 (within ``TICK_RANGE_S``) and a stall limit of half
        that; or, with no watchdog, a status look every ``STATUS_INTERVAL_S``."""
        if timeout is None:
            return cls(STATUS_INTERVAL_S, pings=False, stall_limit_s=STATUS_INTERVAL_S / 2)
        low, high = TICK_RANGE_S
        tick_s = min(max(timeout.ping_interval_s, low), high)
        return cls(tick_s, pings=True, stall_limit_s=tick_s / 2)


@dataclass(slots=True)
class WatchdogStatistics:
    """What the service watchdog did."""

    ready: bool = False
    """``READY=1`` was sent."""
    pings: int = 0
    """``WATCHDOG=1`` sent."""
    withheld: int = 0
    """Ticks that sent no ping because the node was unhealthy."""
    stalls: int = 0
    """Ticks that woke more than ``stall_limit_s`` late."""
    last_problem: str | None = None
    """What was wrong at the last tick, or None when it was healthy."""


def root_problem(system: ActorSystem) -> str | None:
    """Why the node's supervision tree is not healthy, or None."""
    failure = system.failure
    if failure is not None:
        return f"the root supervisor gave up: {printable(failure, max_chars=120)}"
    if system.root.statistics().gave_up:
        return "the root supervisor gave up"
    return None


class ServiceWatchdog:
    """Notifies systemd for one node; ``start()`` it with the node, ``await stop()`` at the end.

    ``describe`` gives the node's state in a few words for ``STATUS=`` (called on the loop at
    each tick; it must not block).
    """

    def __init__(self, system: ActorSystem, notifier: ServiceNotifier, config: WatchdogConfig,
                 describe: Callable[[], str]) -> None:
        self._system = system
        self._notifier = notifier
        self.config = config
        self._describe = describe
        self.statistics = WatchdogStatistics()
        self._task: asyncio.Task[None] | None = None
        self._status: str | None = None  # the last STATUS sent
        self._stopped = False

    @classmethod
    def from_environment(cls, system: ActorSystem, describe: Callable[[], str],
                         environ: Mapping[str, str] | None = None) -> ServiceWatchdog:
        """The watchdog ``$NOTIFY_SOCKET``, ``$WATCHDOG_USEC`` and ``$WATCHDOG_PID`` ask for
        (``os.environ`` unless ``environ``)."""
        return cls(system, ServiceNotifier.from_environment(environ),
                   WatchdogConfig.for_timeout(watchdog_timeout(environ)), describe)

    @property
    def notifier(self) -> ServiceNotifier:
        """The sd_notify socket (its statistics count the sends)."""
        return self._notifier

    def start(self) -> None:
        """Start pinging (no task at all without ``$NOTIFY_SOCKET``)."""
        if self._task is not None or self._stopped or not self._notifier.enabled:
            return
        self._task = asyncio.get_running_loop().create_task(self._run(),
                                                            name="service-watchdog")

    def ready(self) -> None:
        """The node's tree has started: ``READY=1`` once, if the node is healthy now."""
        if self.statistics.ready or self._stopped or not self._notifier.enabled:
            return
        problem = root_problem(self._system)
        if problem is not None:
            log.error("not telling systemd the node is ready: %s", problem)
            return
        self.statistics.ready = True
        self._status = self._state()
        self._notifier.ready(self._status)

    async def stop(self) -> None:
        """Stop pinging and send ``STOPPING=1``; idempotent."""
        if self._stopped:
            return
        self._stopped = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait([task], timeout=STOP_WAIT_S)
        if self._notifier.enabled:
            problem = root_problem(self._system)
            self._notifier.stopping("stopping" if problem is None else f"stopping: {problem}")

    async def _run(self) -> None:
        due = time.monotonic()
        while True:
            late_s = time.monotonic() - due
            self._tick(late_s)
            due = time.monotonic() + self.config.tick_s
            await asyncio.sleep(self.config.tick_s)

    def _tick(self, late_s: float) -> None:
        problem = root_problem(self._system)
        if problem is None and late_s > self.config.stall_limit_s:
            self.statistics.stalls += 1
            problem = f"the event loop was stuck for {late_s:.1f} s"
        fields: list[tuple[str, str]] = []
        if problem is None:
            if self.config.pings:
                fields.append(("WATCHDOG", "1"))
                self.statistics.pings += 1
        else:
            self.statistics.withheld += 1
            if problem != self.statistics.last_problem:
                log.error("not telling systemd the node is well: %s", problem)
        self.statistics.last_problem = problem
        status = self._state() if problem is None else f"unhealthy: {problem}"
        if status != self._status:
            self._status = status
            fields.append(("STATUS", status))
        if fields:  # one datagram a tick: the ping and the new status together
            self._notifier.send(fields)

    def _state(self) -> str:
        try:
            return self._describe()
        except Exception:  # a status line must never stop the pings; the bug is logged
            log.exception("the node's status line failed")
            return "running"
