"""What a command writes, and what happens when it cannot be written.

A command's results go to stdout and its summary and diagnostics to stderr. When either cannot
be written (closed, a full disk, a pipe whose reader is gone), the command fails with
``OutputFailed`` and exit code 74: it never reports success for results nobody received.
``guard_standard_streams`` puts both streams behind ``GuardedStream``, which turns every write
error into ``OutputFailed`` (an ``OSError``, so that ``logging`` swallows it instead of raising
into the code that logged) and stands in for a stream that is closed (``sys.stdout is None``
when the process started with fd 1 closed, where ``print`` would silently do nothing, or print
the summary into the alert stream when stderr is closed).
"""

from __future__ import annotations

import contextlib
import sys
from typing import IO, Any


class OutputFailed(OSError):
    """Results or the summary could not be written; the text says which stream and why."""


class GuardedStream:
    """A text stream whose write errors become ``OutputFailed`` naming the stream."""

    def __init__(self, stream: IO[str] | None, name: str) -> None:
        self._stream = stream
        self.name = name

    def _failed(self, exc: BaseException | None) -> OutputFailed:
        if exc is None:
            return OutputFailed(f"{self.name} is closed")
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return OutputFailed(f"cannot write to {self.name}: {reason}")

    def write(self, text: str) -> int:
        """Write ``text``; ``OutputFailed`` if the stream is closed or the write fails."""
        if self._stream is None:
            raise self._failed(None)
        try:
            return self._stream.write(text)
        except (OSError, ValueError) as exc:  # ValueError: I/O operation on closed file
            raise self._failed(exc) from None

    def flush(self) -> None:
        """Flush; ``OutputFailed`` if that fails."""
        if self._stream is None:
            raise self._failed(None)
        try:
            self._stream.flush()
        except (OSError, ValueError) as exc:
            raise self._failed(exc) from None

    def fileno(self) -> int:
        """The underlying descriptor (``OutputFailed`` when closed)."""
        if self._stream is None:
            raise self._failed(None)
        return self._stream.fileno()

    def isatty(self) -> bool:
        """Whether the stream is a terminal (False when closed)."""
        return self._stream is not None and self._stream.isatty()

    def __getattr__(self, name: str) -> Any:  # encoding, errors, buffer... of the real stream
        if self._stream is None:
            raise self._failed(None)
        return getattr(self._stream, name)


def guard_standard_streams() -> None:
    """Put ``sys.stdout`` and ``sys.stderr`` behind ``GuardedStream`` (idempotent)."""
    if not isinstance(sys.stdout, GuardedStream):
        sys.stdout = GuardedStream(sys.stdout, "stdout")
    if not isinstance(sys.stderr, GuardedStream):
        sys.stderr = GuardedStream(sys.stderr, "stderr")


def flush_quietly() -> None:
    """Flush both standard streams, ignoring failures (the exit code already says them)."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError, AttributeError):
            stream.flush()


def say(text: str) -> None:
    """One line on stderr for the person running the command; nothing if stderr is gone."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        print(text, file=sys.stderr, flush=True)
