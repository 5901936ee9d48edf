"""``PipeChild``: one child Python process driven over two anonymous pipes, and the child's side.

A node runs a few jobs that hold the GIL too long for its event loop (the second face model's
descriptor, the unit's hybrid signatures) in a child process of our own interpreter. This
module is the plumbing both share; the protocol spoken over the pipes, its bounds, what is
wiped, the error type and when to retry are each owner's (``models.second_opinion_worker``,
``secure.signing_process``).

The parent's side, ``PipeChild``, guarantees:

- the child is ``sys.executable -I -c PROGRAM REQUEST_FD ANSWER_FD``: our interpreter, isolated
  (``PYTHON*`` variables, the user site and the current folder ignored; the environment is
  otherwise the node's), its stdin and stdout ``/dev/null``, its stderr the node's (a crash's
  traceback reaches the node's log); of our file descriptors it gets the two pipe ends only
  (``pass_fds``, ``close_fds``), never a file or a socket; it runs as the node's user, in the
  node's cgroup, with the node's resource limits;
- it runs in a session of its own, so a signal to the node's process group (a Ctrl-C on the
  terminal) does not reach it; the node ends it by closing the request pipe;
- every wait has a deadline: the ready answer at start, each write, each read. A deadline
  missed, a child that ended or a pipe that broke raises the owner's error type with the
  child's name and what went wrong; the owner then calls ``stop``;
- ``stop`` closes our ends, gives the child 2 s to end by itself, then kills it, and always
  reaps it; a status other than 0 is logged (a number, nothing the child said).

It is not thread-safe: its owner calls it under its own lock. It holds no face or key data
itself: it writes from the caller's buffers and reads into the caller's buffers without
copying (the only bytes it keeps, briefly, are the child's ready answer, which ``start``
returns); wiping those buffers is the caller's job.

The child's side: ``child_program`` (the ``-c`` program: SIGINT ignored, a Ctrl-C is the node's
to handle; then the owner's ``serve(request_fd, answer_fd)``), ``serve_quietly`` (a parent that
went away while the child answered ends the child with status 0, no traceback),
``read_exactly`` and ``write_exactly`` on the child's blocking pipe ends. This module imports
the standard library only, so a child pays little to import it.
"""

from __future__ import annotations

import io
import logging
import os
import select
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Final

__all__ = ["PipeChild", "child_program", "read_exactly", "read_into", "serve_quietly",
           "write_all", "write_exactly"]

STOP_GRACE_S: Final = 2.0
"""How long ``stop`` waits for the child to end by itself (at the end of its request pipe)."""
KILL_WAIT_S: Final = 5.0
"""How long ``stop`` waits for a killed child to be reaped (SIGKILL cannot be ignored)."""


def write_all(fd: int, data: memoryview, deadline: float, *, name: str,
              failure: type[Exception]) -> None:
    """Write ``data`` whole to the non-blocking ``fd`` by ``deadline`` (``time.monotonic``);
    ``failure`` naming ``name`` when the deadline passes or the reader is gone."""
    while data:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([], [fd], [], remaining)[1]:
            raise failure(f"{name} took no request in time")
        try:
            data = data[os.write(fd, data):]
        except BlockingIOError:
            continue
        except OSError as exc:  # BrokenPipeError: the child died
            raise failure(f"{name} is gone: {exc}") from exc


def read_into(fd: int, view: memoryview, deadline: float, *, name: str,
              failure: type[Exception]) -> None:
    """Fill ``view`` from the non-blocking ``fd`` by ``deadline`` (``time.monotonic``);
    ``failure`` naming ``name`` when the deadline passes or the pipe ends first."""
    while view:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
            raise failure(f"{name} did not answer in time")
        try:
            got = os.readv(fd, [view])
        except BlockingIOError:
            continue
        if got == 0:
            raise failure(f"{name} ended")
        view = view[got:]


class PipeChild:
    """One child process at a time and our ends of its two pipes (module docstring). Not
    thread-safe: the owner holds its own lock around every call."""

    def __init__(self, name: str, *, failure: type[Exception], log: logging.Logger) -> None:
        self._name = name  # "the signing process": the subject of every message
        self._failure = failure
        self._log = log
        # Invariant: _child is None exactly when both fds are -1; while a child is set, the
        # fds are our ends of its pipes, non-blocking, and nobody else closes them.
        self._child: subprocess.Popen[bytes] | None = None
        self._requests = -1  # our end of the child's request pipe (write)
        self._answers = -1   # our end of its answer pipe (read)
        self.starts = 0
        """Children started (the process was made; it may have failed to get ready)."""

    @property
    def pid(self) -> int | None:
        """The running child's process id (None: none, or it has ended)."""
        child = self._child
        return child.pid if child is not None and child.poll() is None else None

    @property
    def running(self) -> bool:
        """A child was started, is not stopped and has not ended."""
        return self.pid is not None

    @property
    def request_fd(self) -> int:
        """Our (write) end of the running child's request pipe; -1 without a child."""
        return self._requests

    @property
    def answer_fd(self) -> int:
        """Our (read) end of the running child's answer pipe; -1 without a child."""
        return self._answers

    def start(self, program: str, *, ready_bytes: int, timeout_s: float,
              greeting: memoryview | None = None) -> bytes:
        """Stop any child, start one running ``program`` (``child_program``), write
        ``greeting`` to it if given, and return its first ``ready_bytes`` of answer, all within
        ``timeout_s``; on failure the child is stopped and the owner's error raised. Checking
        the ready answer is the caller's (``stop`` when it is wrong)."""
        self.stop()
        requests_r, requests_w = os.pipe()
        answers_r, answers_w = os.pipe()
        try:
            self._child = subprocess.Popen(  # noqa: S603 (our interpreter, our code)
                [sys.executable, "-I", "-c", program, str(requests_r), str(answers_w)],
                pass_fds=(requests_r, answers_w), stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, close_fds=True, start_new_session=True)
        except OSError as exc:
            for fd in (requests_r, requests_w, answers_r, answers_w):
                os.close(fd)
            raise self._failure(f"cannot start {self._name}: {exc}") from exc
        os.close(requests_r)  # the child's ends: the child holds its own copies
        os.close(answers_w)
        os.set_blocking(requests_w, False)
        os.set_blocking(answers_r, False)
        self._requests, self._answers = requests_w, answers_r
        self.starts += 1
        deadline = time.monotonic() + timeout_s
        ready = bytearray(ready_bytes)
        try:
            if greeting is not None:
                self.write_all(greeting, deadline)
            self.read_into(memoryview(ready), deadline)
        except self._failure:
            self.stop()
            raise
        return bytes(ready)

    def write_all(self, data: memoryview, deadline: float) -> None:
        """Write ``data`` whole to the child by ``deadline`` (``time.monotonic``)."""
        write_all(self._requests, data, deadline, name=self._name, failure=self._failure)

    def read_into(self, view: memoryview, deadline: float) -> None:
        """Fill ``view`` with the child's answer by ``deadline`` (``time.monotonic``)."""
        read_into(self._answers, view, deadline, name=self._name, failure=self._failure)

    def stop(self) -> None:
        """End the child, if any: close our ends (it ends at the end of its request pipe), wait
        ``STOP_GRACE_S``, kill it if it is still there, reap it. Bounded; safe to repeat."""
        for fd in (self._requests, self._answers):
            if fd >= 0:
                os.close(fd)
        self._requests = self._answers = -1
        child, self._child = self._child, None
        if child is None:
            return
        try:
            child.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(timeout=KILL_WAIT_S)
        if child.returncode not in (0, None):
            self._log.warning("%s ended with status %s", self._name, child.returncode)


def child_program(setup: str) -> str:
    """The child's ``python -I -c`` program: ignore SIGINT (the node ends the child by closing
    its request pipe), run ``setup`` (lines that must bind ``serve``, taking the request and
    answer fds and returning the exit status), then exit with ``serve``'s status."""
    return ("import signal, sys\n"
            "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
            f"{setup}"
            "sys.exit(serve(int(sys.argv[1]), int(sys.argv[2])))\n")


def serve_quietly(serve: Callable[[int, int], int], requests: int, answers: int) -> int:
    """``serve(requests, answers)``'s status, or 0 when the answer pipe broke: the parent is
    gone, and nobody is left to answer or to tell."""
    try:
        return serve(requests, answers)
    except BrokenPipeError:
        return 0


def read_exactly(stream: io.FileIO, view: memoryview) -> bool:
    """Fill ``view`` from the blocking ``stream``; False at its end (before ``view`` is full)."""
    got = 0
    while got < len(view):
        n = stream.readinto(view[got:])
        if not n:
            return False
        got += n
    return True


def write_exactly(fd: int, data: bytes | bytearray | memoryview) -> None:
    """Write ``data`` whole to the blocking ``fd`` (``BrokenPipeError``: the reader is gone)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
