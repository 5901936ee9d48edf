"""``Timer``: ticks reach the actor at its interval, wait for mailbox room instead of piling up,
and stop (also when the actor stopped under it)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import pytest_asyncio

from guards.config_checks import ConfigError
from runtime.actor import Actor
from runtime.mailbox import MailboxConfig
from runtime.system import ActorSystem, SystemConfig
from runtime.timer import Timer
from tests.actors.support import eventually


@dataclass(frozen=True, slots=True)
class _Tick:
    pass


class _Counter(Actor[_Tick]):
    def __init__(self, release: asyncio.Event) -> None:
        self.ticks = 0
        self.release = release

    async def receive(self, message: _Tick) -> None:
        self.ticks += 1
        await self.release.wait()


@pytest_asyncio.fixture
async def system() -> AsyncIterator[ActorSystem]:
    started = ActorSystem(SystemConfig(name="timer-test"))
    await started.start()
    yield started
    await started.stop()


async def test_ticks_arrive_and_a_busy_actor_holds_the_timer_back(system: ActorSystem) -> None:
    release = asyncio.Event()
    counter = _Counter(release)
    ref = await system.spawn("counter", lambda: counter, MailboxConfig(capacity=1))
    timer = Timer(ref, _Tick, 0.01, name="counter:timer")
    timer.start()
    await eventually(lambda: counter.ticks == 1)
    await asyncio.sleep(0.2)  # twenty intervals: one tick handled, one waiting, one held
    assert counter.ticks == 1
    assert ref.statistics().depth <= 1
    release.set()
    await eventually(lambda: counter.ticks >= 3)
    await timer.stop()
    stopped_at = counter.ticks
    await asyncio.sleep(0.1)
    assert counter.ticks <= stopped_at + 1  # at most the one already queued


async def test_a_timer_ends_quietly_when_its_actor_stopped(system: ActorSystem) -> None:
    release = asyncio.Event()
    release.set()
    ref = await system.spawn("counter", lambda: _Counter(release), MailboxConfig(capacity=1))
    timer = Timer(ref, _Tick, 0.01, name="counter:timer")
    timer.start()
    await ref.stop()
    await asyncio.sleep(0.05)  # ticks told to a stopped actor: the timer's task ends
    await timer.stop()


def test_an_interval_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="interval_s"):
        Timer(None, _Tick, 0.0, name="x")  # type: ignore[arg-type]
