"""OrderedWindow: bounded concurrency, in-order emission, failure reporting, cancellation."""

from __future__ import annotations

import asyncio

import pytest

from runtime.actor import Actor
from runtime.ordered_window import OrderedWindow, WindowFailed, tell_owner
from runtime.system import ActorSystem


async def _job(value: int, gate: asyncio.Event, running: list[int]) -> int:
    running.append(value)
    await gate.wait()
    running.remove(value)
    return value


async def test_results_are_emitted_in_submission_order_even_when_jobs_finish_out_of_order() -> None:
    emitted: list[int] = []

    async def emit(value: int) -> None:
        emitted.append(value)

    window: OrderedWindow[int] = OrderedWindow(3, emit, lambda exc: None)
    gates = [asyncio.Event() for _ in range(3)]
    running: list[int] = []
    for i in range(3):
        await window.submit(_job(i, gates[i], running))
    await asyncio.sleep(0)
    gates[2].set()
    gates[1].set()
    await asyncio.sleep(0.01)
    assert emitted == []  # job 0 still runs: nothing may overtake it
    gates[0].set()
    await window.drain()
    assert emitted == [0, 1, 2]
    await window.close()


async def test_submit_waits_while_capacity_jobs_are_in_flight() -> None:
    async def emit(value: int) -> None:
        return None

    window: OrderedWindow[int] = OrderedWindow(2, emit, lambda exc: None)
    gate = asyncio.Event()
    running: list[int] = []
    await window.submit(_job(0, gate, running))
    await window.submit(_job(1, gate, running))
    third = asyncio.create_task(window.submit(_job(2, gate, running)))
    await asyncio.sleep(0.01)
    assert not third.done()
    assert window.in_flight == 2
    gate.set()
    await third
    await window.drain()
    assert window.emitted == 3
    await window.close()


async def test_a_failing_job_is_reported_and_stops_emission() -> None:
    emitted: list[int] = []
    failures: list[BaseException] = []

    async def emit(value: int) -> None:
        emitted.append(value)

    async def boom() -> int:
        raise ValueError("bad frame")

    async def fine() -> int:
        return 7

    window: OrderedWindow[int] = OrderedWindow(2, emit, failures.append)
    await window.submit(boom())
    await window.submit(fine())
    await window.drain()
    assert [str(f) for f in failures] == ["bad frame"]
    assert emitted == []
    await window.close()


async def test_close_cancels_running_jobs() -> None:
    async def emit(value: int) -> None:
        return None

    cancelled = asyncio.Event()

    async def slow() -> int:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return 0

    window: OrderedWindow[int] = OrderedWindow(1, emit, lambda exc: None)
    await window.submit(slow())
    await asyncio.sleep(0)
    await window.close()
    assert cancelled.is_set()


def test_capacity_must_be_positive() -> None:
    async def emit(value: int) -> None:
        return None

    async def make() -> None:
        OrderedWindow(0, emit, lambda exc: None)

    with pytest.raises(ValueError, match="at least 1"):
        asyncio.run(make())


async def test_submit_after_a_failure_raises_the_failure_instead_of_hanging() -> None:
    async def emit(value: int) -> None:
        return None

    async def boom() -> int:
        raise ValueError("decoder broke")

    gate = asyncio.Event()
    running: list[int] = []
    window: OrderedWindow[int] = OrderedWindow(1, emit, lambda exc: None)
    await window.submit(boom())
    with pytest.raises(ValueError, match="decoder broke"):
        await asyncio.wait_for(window.submit(_job(1, gate, running)), timeout=5)
    await window.close()


async def test_tell_owner_reports_a_failed_job_to_the_owning_actor() -> None:
    seen: list[BaseException] = []

    class Owner(Actor[WindowFailed]):
        async def receive(self, message: WindowFailed) -> None:
            seen.append(message.error)

    async def emit(value: int) -> None:
        return None

    async def boom() -> int:
        raise ValueError("model file changed")

    async with ActorSystem() as system:
        owner = await system.spawn("owner", Owner)
        window: OrderedWindow[int] = OrderedWindow(1, emit, tell_owner(owner))
        await window.submit(boom())
        await window.drain()
        for _ in range(100):
            if seen:
                break
            await asyncio.sleep(0.01)
        await window.close()
    assert [str(e) for e in seen] == ["model file changed"]
