"""The bounded worker pool for blocking and CPU-bound calls."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from runtime import Actor, ActorSystem, BlockingPool
from runtime.blocking import WorkersBusy
from tests.runtime.helpers import WAIT_S, eventually, settle


@pytest_asyncio.fixture
async def pool() -> AsyncIterator[BlockingPool]:
    pool = BlockingPool(workers=1, max_pending=1)
    yield pool
    await asyncio.to_thread(pool.shutdown)


async def test_runs_on_another_thread(pool: BlockingPool) -> None:
    assert await pool.run(threading.get_ident) != threading.get_ident()


async def test_passes_arguments_and_returns_the_result(pool: BlockingPool) -> None:
    def combine(a: int, b: int, *, scale: int) -> int:
        return (a + b) * scale

    assert await pool.run(combine, 1, 2, scale=10) == 30
    stats = pool.statistics()
    assert (stats.workers, stats.running_or_queued, stats.waiting, stats.completed) == (1, 0, 0, 1)


async def test_exceptions_propagate(pool: BlockingPool) -> None:
    def fail() -> None:
        raise ZeroDivisionError("in a worker")

    with pytest.raises(ZeroDivisionError, match="in a worker"):
        await pool.run(fail)
    assert pool.statistics().running_or_queued == 0
    assert await pool.run(lambda: 42) == 42  # the slot was released


async def test_is_bounded_and_further_callers_wait(pool: BlockingPool) -> None:
    release = threading.Event()
    calls: list[str] = []

    def hold() -> str:
        calls.append("first")
        release.wait(WAIT_S)
        return "first"

    def quick() -> str:
        calls.append("second")
        return "second"

    first = asyncio.create_task(pool.run(hold))
    await eventually(lambda: calls == ["first"])
    second = asyncio.create_task(pool.run(quick))
    await eventually(lambda: pool.statistics().waiting == 1)
    await settle()
    stats = pool.statistics()
    assert (stats.running_or_queued, stats.waiting) == (1, 1)
    assert not second.done()
    assert calls == ["first"]  # the second call was not even queued in the executor
    release.set()
    assert await asyncio.wait_for(first, WAIT_S) == "first"
    assert await asyncio.wait_for(second, WAIT_S) == "second"
    stats = pool.statistics()
    assert (stats.running_or_queued, stats.waiting, stats.completed) == (0, 0, 2)


async def test_run_ahead_is_taken_before_queued_normal_calls(pool: BlockingPool) -> None:
    # The pool has one worker and one slot per lane: one normal call runs, one waits for a
    # slot, and a call ahead is taken as soon as the worker is free.
    wide = BlockingPool(workers=1, max_pending=2)
    release = threading.Event()
    order: list[str] = []
    try:
        first = asyncio.create_task(wide.run(release.wait, WAIT_S))
        await eventually(lambda: wide.statistics().running_or_queued == 1)
        normal = asyncio.create_task(wide.run(order.append, "normal"))
        await eventually(lambda: wide.statistics().running_or_queued == 2)
        ahead = asyncio.create_task(wide.run_ahead(order.append, "ahead"))
        await eventually(lambda: wide.statistics().running_or_queued == 3)
        release.set()
        await asyncio.wait_for(asyncio.gather(first, normal, ahead), WAIT_S)
    finally:
        await asyncio.to_thread(wide.shutdown)
    assert order == ["ahead", "normal"]


async def test_each_lane_has_its_own_bound(pool: BlockingPool) -> None:
    release = threading.Event()
    first = asyncio.create_task(pool.run(release.wait, WAIT_S))
    await eventually(lambda: pool.statistics().running_or_queued == 1)
    second = asyncio.create_task(pool.run(lambda: "normal"))
    ahead = asyncio.create_task(pool.run_ahead(lambda: "ahead"))
    # max_pending 1: the second normal call waits for a slot, the call ahead takes its lane's.
    await eventually(lambda: (pool.statistics().running_or_queued,
                              pool.statistics().waiting) == (2, 1))
    release.set()
    results = await asyncio.wait_for(asyncio.gather(first, second, ahead), WAIT_S)
    assert list(results) == [True, "normal", "ahead"]


async def test_a_cancelled_caller_whose_call_is_queued_never_runs_it(pool: BlockingPool) -> None:
    release = threading.Event()
    ran: list[str] = []
    first = asyncio.create_task(pool.run(release.wait, WAIT_S))
    await eventually(lambda: pool.statistics().running_or_queued == 1)
    queued = asyncio.create_task(pool.run_ahead(ran.append, "cancelled"))
    await eventually(lambda: pool.statistics().running_or_queued == 2)
    queued.cancel()
    with pytest.raises(asyncio.CancelledError):
        await queued
    release.set()
    await asyncio.wait_for(first, WAIT_S)
    await pool.run(ran.append, "after")
    assert ran == ["after"]


async def test_defaults_scale_with_workers() -> None:
    pool = BlockingPool(workers=3)
    try:
        assert (pool.workers, pool.max_pending) == (3, 6)
    finally:
        pool.shutdown()


class Hasher(Actor[bytes]):
    """Hashes on the worker pool, reporting the thread it ran on."""

    async def receive(self, message: bytes) -> Any:
        def work(data: bytes) -> tuple[int, int]:
            return threading.get_ident(), sum(data)

        return await self.context.run_blocking(work, message)


async def test_actor_run_blocking_uses_the_systems_pool(system: ActorSystem) -> None:
    ref = await system.spawn("hasher", Hasher)
    thread, total = await ref.ask(b"\x01\x02\x03")
    assert total == 6
    assert thread != threading.get_ident()
    assert system.blocking.statistics().completed == 1


async def test_run_on_each_worker_reaches_every_thread_once() -> None:
    pool = BlockingPool(workers=3)
    try:
        threads = await pool.run_on_each_worker(threading.get_ident)
        assert len(threads) == 3
        assert len(set(threads)) == 3
        # The same threads serve later calls: what was set up on them is there.
        later = {await pool.run(threading.get_ident) for _ in range(6)}
        assert later <= set(threads)
    finally:
        await asyncio.to_thread(pool.shutdown)


async def test_run_on_each_worker_raises_the_callers_error() -> None:
    pool = BlockingPool(workers=2)
    calls = iter(range(2))

    def second_fails() -> int:
        if next(calls) == 1:
            raise ValueError("set-up failed")
        return 0

    try:
        with pytest.raises(ValueError, match="set-up failed"):
            await pool.run_on_each_worker(second_fails)
    finally:
        await asyncio.to_thread(pool.shutdown)


async def test_run_on_each_worker_says_when_a_worker_stays_busy() -> None:
    pool = BlockingPool(workers=2, max_pending=4)
    release = threading.Event()
    busy = asyncio.ensure_future(pool.run(release.wait, WAIT_S))
    try:
        await eventually(lambda: pool.statistics().running_or_queued == 1)
        with pytest.raises(WorkersBusy, match="not all of its 2 workers"):
            await pool.run_on_each_worker(lambda: None, timeout_s=0.2)
    finally:
        release.set()
        await busy
        await asyncio.to_thread(pool.shutdown)


def test_fewer_pending_slots_than_workers_is_refused() -> None:
    with pytest.raises(ValueError, match=r"max_pending \(1\) must be at least .* workers \(2\)"):
        BlockingPool(workers=2, max_pending=1)


async def test_cancelling_run_on_each_worker_releases_the_waiting_threads() -> None:
    pool = BlockingPool(workers=2)
    release = threading.Event()
    busy = asyncio.ensure_future(pool.run(release.wait, WAIT_S))
    try:
        await eventually(lambda: pool.statistics().running_or_queued == 1)
        call = asyncio.ensure_future(pool.run_on_each_worker(lambda: None, timeout_s=WAIT_S))
        await eventually(lambda: pool.statistics().running_or_queued == 3)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
    finally:
        release.set()
        await busy
    # No thread is left parked at the barrier for WAIT_S: the pool shuts down at once.
    await asyncio.wait_for(asyncio.to_thread(pool.shutdown), timeout=WAIT_S / 2)
