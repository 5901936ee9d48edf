"""``run_node``/``run``: exit codes, giving up, signals and the event loop."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from guards.exit_codes import ExitCode
from runtime import (
    Actor,
    ActorSystem,
    Backoff,
    SupervisorConfig,
    SystemConfig,
    run_node,
)
from tests.runtime.helpers import WAIT_S

ROOT = Path(__file__).resolve().parents[2]


class Doomed(Actor[Any]):
    """Can never start."""

    async def on_start(self) -> None:
        raise RuntimeError("disk on fire")

    async def receive(self, message: Any) -> Any:
        return None


class Service(Actor[Any]):
    """Records its stop."""

    def __init__(self, stopped: list[str]) -> None:
        self.stopped = stopped

    async def receive(self, message: Any) -> Any:
        return message

    async def on_stop(self) -> None:
        self.stopped.append("service")


async def _forever() -> None:
    await asyncio.Event().wait()


@pytest.mark.parametrize(("returned", "code"), [(3, 3), (None, 0), (0, 0)])
async def test_run_node_returns_mains_exit_code(returned: int | None, code: int) -> None:
    stopped: list[str] = []

    async def main(system: ActorSystem) -> int | None:
        ref = await system.spawn("service", lambda: Service(stopped))
        assert await ref.ask("hi") == "hi"
        return returned

    assert await asyncio.wait_for(run_node(main, SystemConfig()), WAIT_S) == code
    assert stopped == ["service"]  # the system was stopped on the way out


async def test_run_node_main_raising_exits_with_failure(caplog: pytest.LogCaptureFixture) -> None:
    async def main(system: ActorSystem) -> int:
        raise ValueError("bad config")

    with caplog.at_level(logging.CRITICAL, logger="lfr.runtime"):
        code = await asyncio.wait_for(run_node(main, SystemConfig()), WAIT_S)
    assert code == ExitCode.INTERNAL_ERROR
    assert any("ValueError: bad config" in r.getMessage() for r in caplog.records)


async def test_run_node_exits_gave_up_when_root_supervisor_gives_up(
        caplog: pytest.LogCaptureFixture) -> None:
    config = SystemConfig(root=SupervisorConfig(max_restarts=1, backoff=Backoff(initial_s=0.001)))

    async def main(system: ActorSystem) -> int:
        await system.spawn("doomed", Doomed)
        await _forever()
        return 0

    with caplog.at_level(logging.INFO, logger="lfr.runtime"):
        code = await asyncio.wait_for(run_node(main, config), WAIT_S)
    assert code == ExitCode.INTERNAL_ERROR
    assert int(code) == 70
    critical = [r.getMessage() for r in caplog.records if r.levelno == logging.CRITICAL]
    assert len(critical) == 1
    assert "actor 'doomed'" in critical[0]
    assert "RuntimeError: disk on fire" in critical[0]


async def test_sigterm_stops_run_node_gracefully(caplog: pytest.LogCaptureFixture) -> None:
    stopped: list[str] = []
    main_cancelled: list[bool] = []

    async def main(system: ActorSystem) -> int:
        await system.spawn("service", lambda: Service(stopped))
        os.kill(os.getpid(), signal.SIGTERM)
        try:
            await _forever()
        except asyncio.CancelledError:
            main_cancelled.append(True)
            raise
        return 5

    with caplog.at_level(logging.INFO, logger="lfr.runtime"):
        code = await asyncio.wait_for(run_node(main, SystemConfig()), WAIT_S)
    assert code == ExitCode.TERMINATED
    assert int(code) == 143
    assert main_cancelled == [True]
    assert stopped == ["service"]
    assert any(r.getMessage() == "node stopping on SIGTERM" for r in caplog.records)
    # The handlers are removed again: SIGTERM is back to its default disposition.
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def _run_script(script: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize(("use_uvloop", "loop_module"), [(True, "uvloop"), (False, "asyncio")])
def test_run_uses_uvloop_when_installed(use_uvloop: bool, loop_module: str) -> None:
    pytest.importorskip("uvloop")
    done = _run_script(f"""
        import asyncio
        import runtime

        async def main(system):
            print(type(asyncio.get_running_loop()).__module__)
            return 7

        raise SystemExit(runtime.run(main, use_uvloop={use_uvloop}))
    """)
    assert done.returncode == 7, done.stderr
    assert done.stdout.strip().startswith(loop_module)
