"""Debug mode: the stall watchdog names the actor that blocked the event loop."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

import pytest

from runtime import Actor, ActorSystem, SystemConfig
from runtime.stall_watchdog import Stall, StallWatchdog
from tests.runtime.helpers import eventually


class Sleepy(Actor[Any]):
    """Blocks the event loop, as an actor must never do."""

    async def receive(self, message: Any) -> Any:
        time.sleep(0.3)  # noqa: ASYNC251 - the bug the watchdog exists to find
        return "woke up"


async def test_a_blocking_actor_is_reported_by_name(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="lfr.runtime.stall")
    async with ActorSystem(SystemConfig(stall_threshold_s=0.05)) as system:
        watchdog = system.stall_watchdog
        assert watchdog is not None
        ref = await system.spawn("sleepy", Sleepy)
        assert await ref.ask("nap") == "woke up"
        await eventually(lambda: any(s.actor == "sleepy" for s in watchdog.stalls))
        stall = next(s for s in watchdog.stalls if s.actor == "sleepy")
        assert stall.duration_s > 0.05
        assert stall.where.rsplit(":", 1)[0].endswith(".py")
    warnings = [r.getMessage() for r in caplog.records if r.name == "lfr.runtime.stall"]
    assert any("in actor 'sleepy'" in w for w in warnings), warnings
    assert not any(t.name == "lfr-stall-watchdog" for t in threading.enumerate())


async def test_a_stall_outside_any_actor_names_no_actor() -> None:
    watchdog = StallWatchdog(asyncio.get_running_loop(), threshold_s=0.05)
    watchdog.start()
    try:
        await asyncio.sleep(0.02)
        time.sleep(0.3)  # noqa: ASYNC251 - stall the loop from the test itself
        await eventually(lambda: bool(watchdog.stalls))
    finally:
        watchdog.stop()
    assert all(isinstance(s, Stall) for s in watchdog.stalls)
    assert watchdog.stalls[0].actor is None


async def test_watchdog_is_off_by_default(system: ActorSystem) -> None:
    assert system.stall_watchdog is None
