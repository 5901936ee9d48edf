"""Stopping a system: drain within the deadline, cancel what is stuck, newest actors first."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from runtime import Actor, ActorStopped, ActorSystem, SystemConfig
from tests.runtime.helpers import WAIT_S, Gate, GatedRecorder, Inbox, eventually


class SlowWorker(Actor[Any]):
    """Takes a few ms per message (awaiting, not blocking) and records it."""

    def __init__(self, inbox: Inbox) -> None:
        self.inbox = inbox

    async def receive(self, message: Any) -> Any:
        await asyncio.sleep(0.002)
        self.inbox.put(message)
        return message


class StopRecorder(Actor[Any]):
    """Records its name in a shared list when it stops."""

    def __init__(self, name: str, stopped: list[str]) -> None:
        self.name = name
        self.stopped = stopped

    async def receive(self, message: Any) -> Any:
        return None

    async def on_stop(self) -> None:
        self.stopped.append(self.name)


def _stop_recorder(name: str, stopped: list[str]) -> Callable[[], StopRecorder]:
    return lambda: StopRecorder(name, stopped)


async def test_stop_drains_every_queued_message_within_the_deadline() -> None:
    inbox = Inbox()
    system = ActorSystem(SystemConfig(shutdown_drain_s=WAIT_S))
    await system.start()
    ref = await system.spawn("worker", lambda: SlowWorker(inbox))
    for i in range(20):
        await ref.tell(i)
    asks = [asyncio.create_task(ref.ask(f"ask{i}", timeout=30)) for i in range(3)]
    await eventually(lambda: ref.statistics().received == 23)
    assert len(inbox.items) < 23  # most of it is still queued
    await system.stop()
    assert inbox.items == [*range(20), "ask0", "ask1", "ask2"]
    assert [await a for a in asks] == ["ask0", "ask1", "ask2"]
    assert not ref.is_alive


async def test_stop_cancels_a_handler_stuck_past_the_deadline() -> None:
    inbox, gate = Inbox(), Gate()
    stopped: list[str] = []
    system = ActorSystem(SystemConfig(shutdown_drain_s=0.1))
    await system.start()
    await system.spawn("other", lambda: StopRecorder("other", stopped))
    ref = await system.spawn("stuck", lambda: GatedRecorder(inbox, gate))  # never opened
    in_flight = asyncio.create_task(ref.ask("in flight", timeout=30))
    await gate.entered.wait()
    queued = [asyncio.create_task(ref.ask(i, timeout=30)) for i in range(2)]
    await eventually(lambda: ref.statistics().depth == 2)
    await asyncio.wait_for(system.stop(), WAIT_S)
    results = await asyncio.gather(in_flight, *queued, return_exceptions=True)
    assert all(isinstance(r, ActorStopped) and r.actor == "stuck" for r in results), results
    assert inbox.items == ["in flight"]
    assert stopped == ["other"]  # the actors spawned before it still stopped


async def test_actors_stop_in_reverse_start_order() -> None:
    stopped: list[str] = []
    async with ActorSystem() as system:
        for name in ("a", "b"):
            await system.spawn(name, _stop_recorder(name, stopped))
        sub = await system.spawn_supervisor("sub")
        for name in ("c", "d"):
            await sub.spawn(name, _stop_recorder(name, stopped))
        await system.spawn("e", lambda: StopRecorder("e", stopped))
    assert stopped == ["e", "d", "c", "b", "a"]


async def test_stop_is_idempotent() -> None:
    stopped: list[str] = []
    system = ActorSystem()
    await system.spawn("a", lambda: StopRecorder("a", stopped))
    await system.stop()
    await system.stop()
    assert stopped == ["a"]
