"""The runtime's exceptions: one small hierarchy so callers can catch exactly what they mean."""

from __future__ import annotations


class RuntimeFault(Exception):
    """Base class of every error raised by the actor runtime."""


class ActorStopped(RuntimeFault):
    """The actor is stopped (or stopping) and will not handle this message.

    Raised by ``tell``/``ask`` on a stopped actor, and set on asks that were still queued when
    their actor stopped.
    """

    def __init__(self, actor: str, detail: str = "") -> None:
        self.actor = actor
        suffix = f": {detail}" if detail else ""
        super().__init__(f"actor {actor!r} is stopped{suffix}")


class MailboxFull(RuntimeFault):
    """A ``reject`` mailbox (or ``tell_nowait`` on a ``block`` mailbox) was at capacity."""

    def __init__(self, actor: str, capacity: int) -> None:
        self.actor = actor
        self.capacity = capacity
        super().__init__(f"mailbox of actor {actor!r} is full ({capacity} messages)")


class MessageDropped(RuntimeFault):
    """A ``drop_oldest`` mailbox evicted this ask to make room for a newer message."""

    def __init__(self, actor: str) -> None:
        self.actor = actor
        super().__init__(f"ask to actor {actor!r} was dropped for a newer message")


class AskTimeout(RuntimeFault, TimeoutError):
    """No reply arrived within the ask's timeout."""

    def __init__(self, actor: str, timeout_s: float) -> None:
        self.actor = actor
        self.timeout_s = timeout_s
        super().__init__(f"actor {actor!r} did not reply within {timeout_s:g} s")


class SupervisorGaveUp(RuntimeFault):
    """A supervisor exceeded its restart intensity and stopped all of its children.

    ``actor`` names the child whose failure broke the limit and ``__cause__`` is its error.
    """

    def __init__(self, supervisor: str, actor: str, error: BaseException, restarts: int,
                 within_s: float) -> None:
        self.supervisor = supervisor
        self.actor = actor
        self.error = error
        super().__init__(
            f"supervisor {supervisor!r} gave up: actor {actor!r} failed with "
            f"{type(error).__name__}: {error} ({restarts} restarts within {within_s:g} s)"
        )


class LinkLost(RuntimeFault, ConnectionError):
    """The transport link to a peer system went down; pending asks over it fail with this."""

    def __init__(self, peer: str, reason: str) -> None:
        self.peer = peer
        self.reason = reason
        super().__init__(f"link to {peer} lost: {reason}")


class RemoteError(RuntimeFault):
    """The remote actor raised while handling an ask; its type name and text travel, not it."""

    def __init__(self, actor: str, error_type: str, message: str) -> None:
        self.actor = actor
        self.error_type = error_type
        self.remote_message = message
        super().__init__(f"remote actor {actor!r} raised {error_type}: {message}")
