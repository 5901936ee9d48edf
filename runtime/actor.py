"""The ``Actor`` base class: a message handler with lifecycle hooks.

An actor's state is touched only by its own loop, one message at a time, so it needs no locks.
Failure semantics (what the supervisor sees):

- An exception raised while handling an ``ask`` is delivered to the asker; the actor keeps
  running. The error belongs to the request (bad input must not kill a node).
- An exception raised while handling a ``tell``, or from ``on_start``, means the actor has failed:
  ``on_failure`` runs, the actor stops, and its supervisor applies its restart strategy.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

if TYPE_CHECKING:
    from runtime.ref import ActorRef
    from runtime.system import ActorSystem

M = TypeVar("M")
P = ParamSpec("P")
T = TypeVar("T")


class ActorContext(Generic[M]):
    """What an actor knows about its place in the system; set before ``on_start`` runs."""

    __slots__ = ("_stop_self", "name", "ref", "system")

    def __init__(self, name: str, ref: ActorRef[M], system: ActorSystem,
                 stop_self: Callable[[], None]) -> None:
        self.name = name
        """The actor's name, unique in its system."""
        self.ref = ref
        """A reference to this actor, to hand to others as a reply address."""
        self.system = system
        """The system the actor runs in."""
        self._stop_self = stop_self

    async def run_blocking(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a CPU-bound or blocking call on the system's bounded worker pool."""
        return await self.system.blocking.run(fn, *args, **kwargs)

    async def run_blocking_ahead(self, fn: Callable[P, T], *args: P.args,
                                 **kwargs: P.kwargs) -> T:
        """As ``run_blocking``, taken before every queued ``run_blocking`` call: for work that
        finishes what is under way (``BlockingPool.run_ahead``)."""
        return await self.system.blocking.run_ahead(fn, *args, **kwargs)

    def stop(self) -> None:
        """Ask the runtime to stop this actor after the current message (a normal exit)."""
        self._stop_self()


class Actor(ABC, Generic[M]):
    """Subclass and implement ``receive``; override the hooks as needed.

    ``M`` is the type of message the actor accepts; ``ActorRef[M].tell`` is checked against it.
    """

    _context: ActorContext[M] | None = None

    @property
    def context(self) -> ActorContext[M]:
        """The actor's context; available from ``on_start`` on."""
        if self._context is None:
            raise RuntimeError(f"{type(self).__name__} has no context before it is started")
        return self._context

    async def on_start(self) -> None:
        """Called once per incarnation before the first message; raising here is a failure."""

    @abstractmethod
    async def receive(self, message: M) -> Any:
        """Handle one message; the return value is the reply to an ``ask``."""

    async def on_stop(self) -> None:
        """Called once when the incarnation ends, after a normal stop or a failure."""

    async def on_failure(self, error: BaseException) -> None:
        """Called when this incarnation failed, before ``on_stop``; for cleanup or reporting."""
