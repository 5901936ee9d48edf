"""Real ``lfr van`` and unit processes on this machine, with every wait bounded.

A ``NodeProcess`` reads its child's stdout and stderr on two daemon threads into bounded line
lists (the newest ``MAX_LINES`` of each), so a chatty child never blocks on a full pipe and a
test or benchmark can wait for a line with a deadline. Used by ``lfr bench uplink`` and by the
delivery fault tests (kill -9 of either side, the link cut).
"""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Self

REPO_ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 10_000
"""Lines kept per stream (the oldest go first)."""
VAN_READY_TEXT = "listening on"
"""What ``lfr van`` prints on stdout once its signaling endpoint accepts offers."""


class NodeProcess:
    """A child process whose output lines are collected as they come."""

    def __init__(self, name: str, args: Sequence[str], *, cwd: Path = REPO_ROOT) -> None:
        self.name = name
        """For messages: "van", "unit-1"."""
        self.args = list(args)
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(  # noqa: S603 - our own commands, no shell
            self.args, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, errors="replace")
        # Appended by the reader threads, read by the caller: deque appends are atomic; the
        # condition wakes waiters on each new line.
        self.stdout: collections.deque[str] = collections.deque(maxlen=MAX_LINES)
        self.stderr: collections.deque[str] = collections.deque(maxlen=MAX_LINES)
        self._changed = threading.Condition()
        self._readers = [self._reader(self.process.stdout, self.stdout),
                         self._reader(self.process.stderr, self.stderr)]

    def _reader(self, stream: IO[str] | None, lines: collections.deque[str]) -> threading.Thread:
        def read() -> None:
            assert stream is not None  # Popen made both pipes
            for line in stream:
                with self._changed:
                    lines.append(line.rstrip("\n"))
                    self._changed.notify_all()
            with self._changed:
                self._changed.notify_all()

        thread = threading.Thread(target=read, name=f"{self.name} output", daemon=True)
        thread.start()
        return thread

    @property
    def pid(self) -> int:
        """The child's process id."""
        return self.process.pid

    def wait_for(self, found: Callable[[str], bool], timeout_s: float, *,
                 stream: str = "stdout") -> str:
        """The first line of ``stream`` for which ``found`` is true; ``TimeoutError`` (with the
        last lines of both streams) after ``timeout_s`` or when the process ended without it."""
        lines = self.stdout if stream == "stdout" else self.stderr
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                for line in lines:
                    if found(line):
                        return line
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.process.poll() is not None
                                      and not any(t.is_alive() for t in self._readers)):
                    raise TimeoutError(f"{self.name}: no such line within {timeout_s:g} s "
                                       f"(exit {self.process.poll()}); {self.tail()}")
                self._changed.wait(min(remaining, 0.5))

    def count(self, found: Callable[[str], bool], *, stream: str = "stdout") -> int:
        """Lines of ``stream`` so far for which ``found`` is true."""
        with self._changed:
            return sum(1 for line in (self.stdout if stream == "stdout" else self.stderr)
                       if found(line))

    def tail(self, lines: int = 15) -> str:
        """The last lines of stdout and stderr, for failure messages."""
        with self._changed:
            out = list(self.stdout)[-lines:]
            err = list(self.stderr)[-lines:]
        return f"stdout: {out!r}; stderr: {err!r}"

    def cpu_seconds(self) -> float:
        """User + system CPU the child has used so far (Linux ``/proc``; 0.0 once it ended)."""
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks  # utime, stime

    def kill(self) -> None:
        """SIGKILL: the process dies at once, mid-write, as in a crash or a power cut."""
        self.process.kill()
        self.process.wait(timeout=30)

    def stop(self, timeout_s: float = 30.0) -> int:
        """SIGTERM and wait (SIGKILL after ``timeout_s``); returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)
            raise

    def wait(self, timeout_s: float) -> int:
        """Wait for the process to end by itself; ``subprocess.TimeoutExpired`` after
        ``timeout_s`` (the caller kills it)."""
        code = self.process.wait(timeout=timeout_s)
        for reader in self._readers:
            reader.join(timeout=5)
        return code

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)


def start_van(config: Path, *extra: str, ready_timeout_s: float = 60.0,
              trace_file: Path | None = None) -> NodeProcess:
    """``lfr van --config CONFIG``, returned once it prints that it listens; with
    ``trace_file``, run as ``bench.traced_van`` writing its delivery trace there."""
    command = ["-m", "lfr"] if trace_file is None else ["-m", "bench.traced_van",
                                                         str(trace_file)]
    van = NodeProcess("van", [sys.executable, *command, "van", "--config", str(config), *extra])
    try:
        van.wait_for(lambda line: VAN_READY_TEXT in line, ready_timeout_s)
    except BaseException:
        van.__exit__()
        raise
    return van


class BurstUnitProcess(NodeProcess):
    """A ``bench.alert_burst_unit`` process, read through the JSON lines it prints."""

    def linked(self, timeout_s: float) -> None:
        """Wait for its ``{"linked": ...}`` line (its first link to the van is up)."""
        self.wait_for(lambda line: line.startswith('{"linked"'), timeout_s)

    def sealed(self) -> list[str]:
        """The event ids of the alerts it stored in its outbox so far, in that order."""
        return [json.loads(line)["sealed"] for line in list(self.stdout)
                if line.startswith('{"sealed"')]

    def largest_batch(self) -> int:
        """The most envelopes its uplink sent in one ``DeliverBatch``, as of its last
        ``sealed`` line (0 before any)."""
        return max((int(json.loads(line)["largest_batch"]) for line in list(self.stdout)
                    if line.startswith('{"sealed"')), default=0)

    def wait_sealed(self, count: int, timeout_s: float) -> None:
        """Wait until it has stored at least ``count`` alerts."""
        self.wait_for(lambda _line: len(self.sealed()) >= count, timeout_s)

    def summary(self, timeout_s: float) -> dict[str, object]:
        """Its closing ``{"summary": {...}}``."""
        line = self.wait_for(lambda text: text.startswith('{"summary"'), timeout_s)
        summary: dict[str, object] = json.loads(line)["summary"]
        return summary


def start_burst_unit(name: str, config: Path, *args: str) -> BurstUnitProcess:
    """``python -m bench.alert_burst_unit --config CONFIG ARGS`` (see that module)."""
    return BurstUnitProcess(name, [sys.executable, "-m", "bench.alert_burst_unit", "--config",
                                   str(config), *args])
