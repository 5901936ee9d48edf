"""``run(main)``: the entry point of a node process - event loop, signals, exit code.

- uvloop when installed, the standard asyncio loop otherwise.
- SIGTERM/SIGINT stop the node gracefully: ``main`` is cancelled, then every actor is stopped
  newest first, draining mailboxes up to ``SystemConfig.shutdown_drain_s``; exit code 143/130.
- The root supervisor giving up stops the node the same way, with exit code 70 (internal error)
  and one log line naming the actor and the error.
- ``main`` raising ``UserInputError`` exits 2 with its message; raising anything else exits 70
  with the traceback logged. Otherwise the exit code is what ``main`` returns (None means 0).
  Codes: ``guards.exit_codes.ExitCode``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
import threading
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

from guards.exit_codes import ExitCode, StoppedBySignal, for_signal
from guards.log_text import printable
from guards.user_input import UserInputError
from runtime.system import ActorSystem, SystemConfig

log = logging.getLogger("lfr.runtime")

Main = Callable[[ActorSystem], Coroutine[Any, Any, int | None]]
T = TypeVar("T")


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """uvloop's loop factory when uvloop is installed, else asyncio's."""
    try:
        import uvloop  # noqa: PLC0415 - optional: not installed on every platform
    except ImportError:
        return asyncio.new_event_loop
    return uvloop.new_event_loop


def run(main: Main, config: SystemConfig | None = None, *, use_uvloop: bool = True) -> int:
    """Run ``main(system)`` on a fresh actor system until it returns, a signal, or failure."""
    factory = event_loop_factory() if use_uvloop else asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(run_node(main, config or SystemConfig()))


def run_interruptible(main: Callable[[threading.Event], Coroutine[Any, Any, T]]) -> T:
    """Run ``main(stop)`` on a fresh event loop; SIGINT/SIGTERM set ``stop`` and cancel it.

    For commands that run no actor system (benchmarks): their worker threads check ``stop``
    between frames, so the loop's executor shuts down at once. Raises ``StoppedBySignal`` when
    a signal ended ``main``.
    """
    stop = threading.Event()
    received: list[signal.Signals] = []

    async def guarded() -> T:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None

        def on_signal(sig: signal.Signals) -> None:
            received.append(sig)
            stop.set()
            task.cancel()

        with _stop_signals_handled(loop, on_signal):
            return await main(stop)

    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        try:
            return runner.run(guarded())
        except asyncio.CancelledError:
            if received:
                raise StoppedBySignal(received[0]) from None
            raise


async def run_node(main: Main, config: SystemConfig) -> int:
    """The body of ``run`` on an already running loop (also used by tests)."""
    system = ActorSystem(config)
    await system.start()
    stop_requested = asyncio.Event()
    loop = asyncio.get_running_loop()
    received: list[signal.Signals] = []
    tasks: dict[str, asyncio.Task[Any]] = {}
    try:
        with _stop_signals_handled(
                loop, functools.partial(_on_signal, received=received, stop=stop_requested)):
            tasks = {
                "main": asyncio.create_task(main(system), name="node:main"),
                "signal": asyncio.create_task(stop_requested.wait(), name="node:signal"),
                "failure": asyncio.create_task(system.wait_failed(), name="node:failure"),
            }
            try:
                await asyncio.wait(tasks.values(), return_when=asyncio.FIRST_COMPLETED)
                code = _exit_code(tasks, received)
            finally:
                for task in tasks.values():
                    task.cancel()
                await asyncio.gather(*tasks.values(), return_exceptions=True)
    finally:
        await system.stop()
    return code


@contextlib.contextmanager
def _stop_signals_handled(loop: asyncio.AbstractEventLoop,
                          on_signal: Callable[[signal.Signals], None]) -> Iterator[None]:
    """SIGTERM and SIGINT call ``on_signal`` on the loop while inside; default again after."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        yield
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


def _on_signal(sig: signal.Signals, *, received: list[signal.Signals],
               stop: asyncio.Event) -> None:
    received.append(sig)
    stop.set()


def _exit_code(tasks: dict[str, asyncio.Task[Any]], received: list[signal.Signals]) -> int:
    failure = tasks["failure"]
    if failure.done() and not failure.cancelled():
        log.critical("node stopping: %s", printable(failure.result(), max_chars=2000))
        return ExitCode.INTERNAL_ERROR
    if tasks["signal"].done():
        sig = received[0] if received else signal.SIGTERM
        log.info("node stopping on %s", sig.name)
        return for_signal(sig)
    main = tasks["main"]
    if main.cancelled():
        return ExitCode.INTERNAL_ERROR
    error = main.exception()
    if isinstance(error, UserInputError):
        # The user's mistake found once the node was up (a source that will not open): one
        # clear line, no traceback.
        log.error("node stopping: %s", printable(error, max_chars=2000))
        return ExitCode.BAD_INPUT
    if error is not None:
        log.critical("node stopping: main raised %s: %s", type(error).__name__,
                     printable(error, max_chars=2000), exc_info=error)
        return ExitCode.INTERNAL_ERROR
    result = main.result()
    return ExitCode.OK if result is None else int(result)
