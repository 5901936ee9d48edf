"""``PipeChild`` and the child's helpers: a child that answers, one that never gets ready, one
that dies during a call, one that sends nothing and one that reads nothing each end their wait
by its deadline with the owner's error; the child is ours, isolated, in its own session, holds
only its two pipes, ignores SIGINT, and is killed and reaped when it will not end by itself.
Nothing asserts how fast anything happened: deadlines that must pass are short, the others
generous.

The children run functions of this module (``python -I -c`` imports it by name)."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from guards.pipe_child import (
    PipeChild,
    child_program,
    read_exactly,
    serve_quietly,
    write_exactly,
)

ROOT = Path(__file__).resolve().parents[2]
WAIT_S = 60.0
"""Generous: starting a child on a loaded two-core machine."""
SHORT_S = 0.5
"""A deadline that must pass (the child will not answer)."""
READY = b"R"
LOG = logging.getLogger("lfr.test.pipe_child")


class ChildFailed(RuntimeError):
    """The owner's error type in these tests."""


def program(function: str) -> str:
    """The ``-c`` program of a child that serves with ``function`` of this module."""
    return child_program(f"sys.path.insert(0, {str(ROOT)!r})\n"
                         f"from tests.guards.test_pipe_child import {function} as serve\n")


# The children's sides.

def echo(requests: int, answers: int) -> int:
    """Ready, then each 4-byte request answered reversed; ``die!`` ends it with status 9
    unanswered, ``mute`` and everything after it go unanswered."""
    return serve_quietly(_echo, requests, answers)


def _echo(requests: int, answers: int) -> int:
    write_exactly(answers, READY)
    mute = False
    with os.fdopen(requests, "rb", buffering=0) as stream:
        word = bytearray(4)
        while read_exactly(stream, memoryview(word)):
            if word == b"die!":
                return 9
            mute = mute or word == b"mute"
            if not mute:
                write_exactly(answers, bytes(reversed(word)))
    return 0


def greeted(requests: int, answers: int) -> int:
    """Reads an 8-byte greeting, then gets ready with it reversed; ends at the pipe's end."""
    with os.fdopen(requests, "rb", buffering=0) as stream:
        greeting = bytearray(8)
        if not read_exactly(stream, memoryview(greeting)):
            return 0
        write_exactly(answers, READY + bytes(reversed(greeting)))
        while stream.read(1):
            pass
    return 0


def stuck(requests: int, answers: int) -> int:
    """Never ready, never reads, ignores the end of its pipe: only a kill ends it."""
    threading.Event().wait(600)
    return 0


def deaf(requests: int, answers: int) -> int:
    """Ready, then reads nothing and ignores the end of its pipe: only a kill ends it."""
    write_exactly(answers, READY)
    threading.Event().wait(600)
    return 0


# The parent's side.

@pytest.fixture
def child() -> Iterator[PipeChild]:
    pipe = PipeChild("the test child", failure=ChildFailed, log=LOG)
    try:
        yield pipe
    finally:
        pipe.stop()


def _started(pipe: PipeChild, function: str) -> int:
    """Start a child serving with ``function``; its pid."""
    assert pipe.start(program(function), ready_bytes=1, timeout_s=WAIT_S) == READY
    pid = pipe.pid
    assert pid is not None
    return pid


def _ask(pipe: PipeChild, word: bytes, timeout_s: float = WAIT_S) -> bytes:
    deadline = time.monotonic() + timeout_s
    pipe.write_all(memoryview(word), deadline)
    answer = bytearray(len(word))
    pipe.read_into(memoryview(answer), deadline)
    return bytes(answer)


def _state(pipe: PipeChild) -> tuple[int | None, bool, int, int]:
    return pipe.pid, pipe.running, pipe.request_fd, pipe.answer_fd


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_a_child_that_answers_is_ready_answers_each_request_and_ends_when_stopped(
        child: PipeChild, caplog: pytest.LogCaptureFixture) -> None:
    assert _state(child) == (None, False, -1, -1)
    assert child.start(program("echo"), ready_bytes=1, timeout_s=WAIT_S) == READY
    pid = child.pid
    assert pid is not None
    assert pid != os.getpid()
    assert child.running
    assert child.starts == 1
    assert _ask(child, b"abcd") == b"dcba"
    assert _ask(child, b"1234") == b"4321"
    assert child.pid == pid
    child.stop()
    assert _state(child) == (None, False, -1, -1)
    assert _gone(pid)  # ended and reaped
    assert "ended with status" not in caplog.text  # it ended by itself, with 0
    child.stop()  # again: nothing to do


def test_the_child_is_our_isolated_interpreter_alone_in_its_session_with_only_its_pipes(
        child: PipeChild) -> None:
    pid = _started(child, "echo")
    command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert command[:3] == [os.fsencode(sys.executable), b"-I", b"-c"]
    assert os.getsid(pid) == pid  # a session of its own: the terminal's SIGINT goes elsewhere
    fds = {int(fd): os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
    assert fds[0] == fds[1] == os.devnull
    ours = sorted(f"pipe:[{os.fstat(fd).st_ino}]" for fd in (child.request_fd, child.answer_fd))
    others = sorted(target for fd, target in fds.items() if fd > 2)
    assert others == ours, f"the child holds more than its two pipes: {fds}"


def test_a_sigint_sent_to_the_child_is_ignored(child: PipeChild) -> None:
    pid = _started(child, "echo")
    os.kill(pid, signal.SIGINT)
    assert _ask(child, b"abcd") == b"dcba"
    assert child.pid == pid


def test_the_greeting_is_written_before_the_ready_answer_is_read(child: PipeChild) -> None:
    greeting = bytearray(b"12345678")
    ready = child.start(program("greeted"), ready_bytes=9, timeout_s=WAIT_S,
                        greeting=memoryview(greeting))
    assert ready == READY + b"87654321"
    assert greeting == b"12345678"  # the caller's buffer, the caller's to wipe


def test_a_child_that_never_gets_ready_fails_start_by_its_deadline_and_is_killed(
        child: PipeChild, caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(ChildFailed, match=r"^the test child did not answer in time$"):
        child.start(program("stuck"), ready_bytes=1, timeout_s=SHORT_S)
    assert (child.pid, child.request_fd, child.answer_fd, child.starts) == (None, -1, -1, 1)
    assert "the test child ended with status -9" in caplog.text  # killed and reaped


def test_a_child_that_ends_before_it_is_ready_fails_start(
        child: PipeChild, caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(ChildFailed, match=r"^the test child ended$"):
        child.start("import sys; sys.exit(5)", ready_bytes=1, timeout_s=WAIT_S)
    assert child.pid is None
    assert "the test child ended with status 5" in caplog.text


def test_a_child_that_cannot_be_started_leaves_no_pipe_open(
        child: PipeChild, monkeypatch: pytest.MonkeyPatch) -> None:
    before = set(os.listdir("/proc/self/fd"))
    monkeypatch.setattr(sys, "executable", "/nonexistent/python")
    with pytest.raises(ChildFailed, match=r"^cannot start the test child: "):
        child.start(program("echo"), ready_bytes=1, timeout_s=WAIT_S)
    assert set(os.listdir("/proc/self/fd")) <= before
    assert (child.pid, child.starts) == (None, 0)


def test_a_child_that_dies_during_a_call_ends_the_wait_and_its_status_is_logged(
        child: PipeChild, caplog: pytest.LogCaptureFixture) -> None:
    pid = _started(child, "echo")
    with pytest.raises(ChildFailed, match=r"^the test child ended$"):
        _ask(child, b"die!")
    deadline = time.monotonic() + WAIT_S
    while child.running and time.monotonic() < deadline:  # until reaped: all its pipes closed
        time.sleep(0.01)
    assert not child.running
    with pytest.raises(ChildFailed, match=r"^the test child is gone: "):
        child.write_all(memoryview(b"abcd"), time.monotonic() + WAIT_S)
    child.stop()
    assert _gone(pid)
    assert "the test child ended with status 9" in caplog.text


def test_a_child_that_sends_nothing_fails_the_read_by_its_deadline(child: PipeChild) -> None:
    pid = _started(child, "echo")
    with pytest.raises(ChildFailed, match=r"^the test child did not answer in time$"):
        _ask(child, b"mute", timeout_s=SHORT_S)
    with pytest.raises(ChildFailed, match=r"^the test child did not answer in time$"):
        child.read_into(memoryview(bytearray(1)), time.monotonic() - 1.0)  # already passed
    assert child.pid == pid  # still running: the owner decides, here it stops the child
    child.stop()
    assert _gone(pid)


def test_a_child_that_reads_nothing_fails_the_write_by_its_deadline_and_is_killed(
        child: PipeChild, caplog: pytest.LogCaptureFixture) -> None:
    pid = _started(child, "deaf")
    with pytest.raises(ChildFailed, match=r"^the test child took no request in time$"):
        child.write_all(memoryview(bytes(1 << 20)), time.monotonic() + SHORT_S)  # > a pipe
    child.stop()
    assert _gone(pid)
    assert "the test child ended with status -9" in caplog.text


def test_a_new_start_stops_the_child_before(child: PipeChild) -> None:
    first = _started(child, "echo")
    assert _started(child, "echo") != first
    assert _gone(first)
    assert child.starts == 2
    assert _ask(child, b"wxyz") == b"zyxw"


# The child's helpers.

def test_read_exactly_fills_the_view_across_writes_and_is_false_at_an_early_end() -> None:
    read_end, write_end = os.pipe()
    os.write(write_end, b"ab")
    later = threading.Timer(0.05, lambda: os.write(write_end, b"cdef"))
    later.start()
    with os.fdopen(read_end, "rb", buffering=0) as stream:
        view = memoryview(bytearray(4))
        assert read_exactly(stream, view)
        assert bytes(view) == b"abcd"
        later.join(WAIT_S)
        os.close(write_end)
        assert not read_exactly(stream, view)  # "ef", then the end


def test_write_exactly_writes_more_than_a_pipe_holds() -> None:
    read_end, write_end = os.pipe()
    data = os.urandom(1 << 20)
    got = bytearray()

    def drain() -> None:
        while chunk := os.read(read_end, 1 << 16):
            got.extend(chunk)

    reader = threading.Thread(target=drain)
    reader.start()
    write_exactly(write_end, data)
    os.close(write_end)
    reader.join(WAIT_S)
    assert not reader.is_alive()
    os.close(read_end)
    assert got == data


def test_write_exactly_to_a_pipe_nobody_reads_raises_broken_pipe() -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        with pytest.raises(BrokenPipeError):
            write_exactly(write_end, b"x")
    finally:
        os.close(write_end)


def test_serve_quietly_passes_the_status_on_and_ends_quietly_only_on_a_broken_pipe() -> None:
    def broken(requests: int, answers: int) -> int:
        raise BrokenPipeError

    def failing(requests: int, answers: int) -> int:
        raise ValueError("not a pipe's end")

    assert serve_quietly(lambda requests, answers: requests + answers, 3, 4) == 7
    assert serve_quietly(broken, 3, 4) == 0
    with pytest.raises(ValueError, match="pipe's end"):
        serve_quietly(failing, 3, 4)


def test_the_child_program_ignores_sigint_before_it_serves() -> None:
    text = program("echo")
    assert text.index("signal.SIG_IGN") < text.index("import echo as serve")
    assert text.endswith("sys.exit(serve(int(sys.argv[1]), int(sys.argv[2])))\n")
