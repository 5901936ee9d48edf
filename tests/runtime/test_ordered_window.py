"""OrderedWindow: bounded concurrency, in-order results taken by the owner's own task, failures
raised in the owner, cancellation, and the ``ResultsReady`` announcement."""

from __future__ import annotations

import asyncio
import random

import pytest

from runtime.actor import Actor
from runtime.codec import Codec, EncodeError
from runtime.mailbox import MailboxConfig, MailboxPolicy
from runtime.ordered_window import OrderedWindow, ResultsReady, tell_owner
from runtime.system import ActorSystem

WAIT_S = 10.0


async def _job(value: int, gate: asyncio.Event, running: list[int]) -> int:
    running.append(value)
    await gate.wait()
    running.remove(value)
    return value


async def test_results_are_emitted_in_submission_order_even_when_jobs_finish_out_of_order() -> None:
    emitted: list[int] = []

    async def emit(value: int) -> None:
        emitted.append(value)

    window: OrderedWindow[int] = OrderedWindow(3, emit)
    gates = [asyncio.Event() for _ in range(3)]
    running: list[int] = []
    for i in range(3):
        await window.submit(_job(i, gates[i], running))
    gates[2].set()
    gates[1].set()
    await asyncio.sleep(0.01)
    await window.take_ready()
    assert emitted == []  # job 0 still runs: nothing may overtake it
    gates[0].set()
    await asyncio.sleep(0.01)
    await window.take_ready()
    assert emitted == [0, 1, 2]
    await window.close()


async def test_nothing_is_emitted_unless_the_owner_takes_it() -> None:
    emitted: list[int] = []

    async def emit(value: int) -> None:
        emitted.append(value)

    async def quick(value: int) -> int:
        return value

    window: OrderedWindow[int] = OrderedWindow(2, emit)
    await window.submit(quick(1))
    await asyncio.sleep(0.01)
    assert window.ready
    assert emitted == []  # finished, but the window never calls into its owner by itself
    await window.drain()
    assert emitted == [1]
    assert window.in_flight == 0
    await window.close()


async def test_emit_runs_on_the_task_that_takes_the_results() -> None:
    callers: list[asyncio.Task[object] | None] = []

    async def emit(value: int) -> None:
        callers.append(asyncio.current_task())

    gates = [asyncio.Event() for _ in range(4)]
    running: list[int] = []
    window: OrderedWindow[int] = OrderedWindow(2, emit)

    async def owner() -> None:  # stands for an actor's receive
        for i in range(4):
            await window.submit(_job(i, gates[i], running))
        await window.drain()

    task = asyncio.create_task(owner())
    for gate in gates:
        await asyncio.sleep(0.005)
        gate.set()
    await asyncio.wait_for(task, WAIT_S)
    assert callers == [task] * 4
    await window.close()


async def test_at_most_capacity_jobs_are_ever_in_flight() -> None:
    rng = random.Random(3)
    emitted: list[int] = []
    most_running = 0
    running: set[int] = set()

    async def emit(value: int) -> None:
        emitted.append(value)

    async def job(value: int, delay_s: float) -> int:
        nonlocal most_running
        running.add(value)
        most_running = max(most_running, len(running))
        await asyncio.sleep(delay_s)
        running.discard(value)
        return value

    window: OrderedWindow[int] = OrderedWindow(3, emit)
    for i in range(40):
        await window.submit(job(i, rng.uniform(0, 0.004)))
        assert window.in_flight <= 3
    await window.drain()
    assert most_running == 3
    assert emitted == list(range(40))
    await window.close()


async def test_submit_waits_for_the_oldest_job_while_the_window_is_full() -> None:
    emitted: list[int] = []

    async def emit(value: int) -> None:
        emitted.append(value)

    window: OrderedWindow[int] = OrderedWindow(2, emit)
    gates = [asyncio.Event() for _ in range(3)]
    running: list[int] = []
    await window.submit(_job(0, gates[0], running))
    await window.submit(_job(1, gates[1], running))
    third = asyncio.create_task(window.submit(_job(2, gates[2], running)))
    gates[1].set()
    await asyncio.sleep(0.01)
    assert not third.done()  # job 1 finished, but job 0 holds the oldest place
    assert window.in_flight == 2
    assert 2 not in running
    gates[0].set()
    await asyncio.wait_for(third, WAIT_S)
    assert emitted == [0, 1]  # the submitter took both results before starting job 2
    gates[2].set()
    await window.drain()
    assert emitted == [0, 1, 2]
    assert window.emitted == window.submitted == 3
    await window.close()


async def test_a_failed_job_raises_in_the_owner_at_its_turn() -> None:
    emitted: list[int] = []

    async def emit(value: int) -> None:
        emitted.append(value)

    async def value(v: int) -> int:
        return v

    async def boom() -> int:
        raise ValueError("bad frame")

    window: OrderedWindow[int] = OrderedWindow(3, emit)
    await window.submit(value(1))
    await window.submit(boom())
    await window.submit(value(3))
    with pytest.raises(ValueError, match="bad frame"):
        await window.drain()
    assert emitted == [1]  # the results before the failure, none after
    await window.close()


async def test_submit_raises_a_failure_it_takes_and_does_not_start_the_job() -> None:
    async def emit(value: int) -> None:
        return None

    async def boom() -> int:
        raise ValueError("decoder broke")

    started: list[int] = []

    async def later() -> int:
        started.append(1)
        return 1

    window: OrderedWindow[int] = OrderedWindow(1, emit)
    await window.submit(boom())
    with pytest.raises(ValueError, match="decoder broke"):
        await asyncio.wait_for(window.submit(later()), WAIT_S)
    await asyncio.sleep(0.01)
    assert started == []
    assert window.in_flight == 0
    await window.close()


async def test_close_cancels_running_jobs_and_announces_nothing_after() -> None:
    announced: list[int] = []

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

    window: OrderedWindow[int] = OrderedWindow(1, emit, lambda: announced.append(1))
    await window.submit(slow())
    await asyncio.sleep(0)
    await window.close()
    await asyncio.sleep(0.01)
    assert cancelled.is_set()
    assert announced == []


def test_capacity_must_be_positive() -> None:
    async def emit(value: int) -> None:
        return None

    with pytest.raises(ValueError, match="at least 1"):
        OrderedWindow(0, emit)


async def test_on_ready_is_called_once_the_oldest_job_has_finished() -> None:
    announced: list[bool] = []

    async def emit(value: int) -> None:
        return None

    gates = [asyncio.Event() for _ in range(2)]
    running: list[int] = []
    window: OrderedWindow[int] = OrderedWindow(2, emit,
                                               lambda: announced.append(window.ready))
    await window.submit(_job(0, gates[0], running))
    await window.submit(_job(1, gates[1], running))
    gates[1].set()
    await asyncio.sleep(0.01)
    assert announced == []  # a later job finished: nothing can be taken yet
    gates[0].set()
    await asyncio.sleep(0.01)
    assert announced == [True]
    await window.take_ready()
    assert window.in_flight == 0
    await window.close()


class _Owner(Actor[int | ResultsReady]):
    """Submits a job per int told; records what it emitted and on which task."""

    def __init__(self, gates: dict[int, asyncio.Event], emitted: list[int],
                 tasks: list[bool]) -> None:
        self.gates = gates
        self.emitted = emitted
        self.tasks = tasks
        self.loop_task: asyncio.Task[object] | None = None
        self.window: OrderedWindow[int] | None = None

    async def on_start(self) -> None:
        self.window = OrderedWindow(4, self._emit, tell_owner(self.context.ref))

    async def on_stop(self) -> None:
        if self.window is not None:
            await self.window.close()

    async def receive(self, message: int | ResultsReady) -> None:
        assert self.window is not None
        self.loop_task = asyncio.current_task()
        await self.window.take_ready()
        if isinstance(message, int):
            await self.window.submit(_job(message, self.gates[message], []))

    async def _emit(self, value: int) -> None:
        self.tasks.append(asyncio.current_task() is self.loop_task)
        self.emitted.append(value)


async def test_tell_owner_lets_results_reach_an_idle_owner_on_its_own_task() -> None:
    gates = {i: asyncio.Event() for i in range(3)}
    emitted: list[int] = []
    on_own_task: list[bool] = []
    async with ActorSystem() as system:
        owner = await system.spawn("owner", lambda: _Owner(gates, emitted, on_own_task))
        for i in range(3):
            await owner.tell(i)
        await asyncio.sleep(0.01)
        for gate in reversed(gates.values()):
            gate.set()
        async with asyncio.timeout(WAIT_S):
            while len(emitted) < 3:  # noqa: ASYNC110 - no message follows: ResultsReady must
                await asyncio.sleep(0.005)
    assert emitted == [0, 1, 2]
    assert on_own_task == [True, True, True]


async def test_tell_owner_never_pushes_a_queued_message_out_of_a_full_mailbox() -> None:
    release = asyncio.Event()
    handled: list[str] = []

    class Busy(Actor[str | ResultsReady]):
        async def receive(self, message: str | ResultsReady) -> None:
            handled.append(message if isinstance(message, str) else "ready")
            if message == "first":
                await release.wait()

    async with ActorSystem() as system:
        busy = await system.spawn(
            "busy", Busy, MailboxConfig(capacity=1, policy=MailboxPolicy.DROP_OLDEST))
        announce = tell_owner(busy)
        await busy.tell("first")
        await asyncio.sleep(0.01)  # "first" is being handled: the mailbox is empty
        await busy.tell("end of stream")
        announce()  # the mailbox is full: a tell would drop "end of stream"
        release.set()
        async with asyncio.timeout(WAIT_S):
            while len(handled) < 2:  # noqa: ASYNC110 - polling the actor's record
                await asyncio.sleep(0.005)
        announce()  # room again: announced
        async with asyncio.timeout(WAIT_S):
            while len(handled) < 3:  # noqa: ASYNC110 - polling the actor's record
                await asyncio.sleep(0.005)
        assert busy.statistics().dropped == 0
    assert handled == ["first", "end of stream", "ready"]


def test_results_ready_is_in_process_only() -> None:
    with pytest.raises(EncodeError, match="not a registered message"):
        Codec().encode(ResultsReady())
