"""Supervision: restart strategies, kept mailboxes, restart intensity, escalation, backoff."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Any

import pytest

from guards.config_checks import ConfigError
from runtime import (
    Actor,
    ActorRef,
    ActorSystem,
    Backoff,
    Strategy,
    Supervisor,
    SupervisorConfig,
    SupervisorGaveUp,
    SystemConfig,
)
from runtime.cell import CellState
from tests.runtime.helpers import WAIT_S, Inbox, eventually

TINY = Backoff(initial_s=0.001, factor=1.0, max_s=0.001)


class Boom(Exception):
    """The error workers raise on purpose."""


class Worker(Actor[Any]):
    """Counts its incarnations in a shared counter; ``"crash"`` as a tell fails it.

    Records ``(name, incarnation, message)`` for every other message and replies with
    ``(name, incarnation)``.
    """

    def __init__(self, name: str, starts: Counter[str], inbox: Inbox) -> None:
        starts[name] += 1
        self.name = name
        self.incarnation = starts[name]
        self.inbox = inbox

    async def receive(self, message: Any) -> Any:
        if message == "crash":
            raise Boom(f"{self.name} crashed")
        self.inbox.put((self.name, self.incarnation, message))
        return (self.name, self.incarnation)


class World:
    """Spawns workers that share one incarnation counter and one inbox."""

    def __init__(self) -> None:
        self.starts: Counter[str] = Counter()
        self.inbox = Inbox()

    async def spawn(self, parent: ActorSystem | Supervisor, name: str) -> ActorRef[Any]:
        return await parent.spawn(name, lambda: Worker(name, self.starts, self.inbox))


def _config(strategy: Strategy = Strategy.ONE_FOR_ONE, max_restarts: int = 5,
            backoff: Backoff = TINY, within_s: float = 30.0) -> SupervisorConfig:
    return SupervisorConfig(strategy=strategy, max_restarts=max_restarts, within_s=within_s,
                            backoff=backoff)


@pytest.mark.parametrize(("strategy", "expected"), [
    (Strategy.ONE_FOR_ONE, {"a": 1, "b": 2, "c": 1}),
    (Strategy.ONE_FOR_ALL, {"a": 2, "b": 2, "c": 2}),
    (Strategy.REST_FOR_ONE, {"a": 1, "b": 2, "c": 2}),
])
async def test_strategy_restarts_exactly_the_right_children(
        strategy: Strategy, expected: dict[str, int]) -> None:
    world = World()
    async with ActorSystem(SystemConfig(root=_config())) as system:
        sup = await system.spawn_supervisor("sup", _config(strategy))
        refs = {name: await world.spawn(sup, name) for name in "abc"}
        await eventually(lambda: world.starts == {"a": 1, "b": 1, "c": 1})
        await refs["b"].tell("crash")
        await eventually(lambda: world.starts == expected)
        await asyncio.sleep(0.05)  # restarts take ~1 ms here: nothing more may happen
        assert world.starts == expected
        for name, ref in refs.items():
            assert await ref.ask("ping") == (name, expected[name])
        assert sup.statistics().restarts == 1
        assert system.root.statistics().restarts == 0
        restarts = {cell.name: cell.metrics.restarts for cell in system.cells()}
        assert restarts == {name: n - 1 for name, n in expected.items()}


async def test_messages_queued_during_a_crash_go_to_the_next_incarnation() -> None:
    world = World()
    slow = Backoff(initial_s=0.2, factor=1.0, max_s=0.2)
    async with ActorSystem(SystemConfig(root=_config(backoff=slow))) as system:
        ref = await world.spawn(system, "w")
        await ref.tell("crash")
        await ref.tell("m1")  # queued behind the crash
        await ref.tell("m2")
        cell = system.cells()[0]
        await eventually(lambda: cell.metrics.failures == 1)
        assert world.starts["w"] == 1  # in its backoff now
        assert ref.is_alive  # a restarting actor still accepts messages
        await ref.tell("m3")  # sent during the backoff
        assert await ref.ask("m4") == ("w", 2)
        assert world.inbox.items == [("w", 2, "m1"), ("w", 2, "m2"), ("w", 2, "m3"),
                                     ("w", 2, "m4")]


async def test_refs_stay_valid_across_restarts(system: ActorSystem) -> None:
    world = World()
    ref = await world.spawn(system, "w")
    for incarnation in (1, 2, 3):
        assert await ref.ask("who") == ("w", incarnation)
        await ref.tell("crash")
        await eventually(lambda: world.starts["w"] == incarnation + 1)  # noqa: B023
    assert system.lookup("w") is ref
    assert await ref.ask("who") == ("w", 4)


async def test_restart_intensity_exceeded_escalates_to_the_parent(
        caplog: pytest.LogCaptureFixture) -> None:
    world = World()
    async with ActorSystem(SystemConfig(root=_config(max_restarts=5))) as system:
        sub = await system.spawn_supervisor("sub", _config(max_restarts=1))
        ref = await world.spawn(sub, "w")
        await ref.tell("crash")  # restart 1 of 1 allowed
        await eventually(lambda: world.starts["w"] == 2)
        assert sub.incarnation == 1
        with caplog.at_level(logging.ERROR, logger="lfr.runtime"):
            await ref.tell("crash")  # one too many: sub gives up, root restarts sub
            await eventually(lambda: sub.incarnation == 2 and world.starts["w"] == 3)
        assert system.root.statistics().restarts == 1
        assert sub.statistics().restarts == 1
        gave_up = [r.getMessage() for r in caplog.records if "gave up" in r.getMessage()]
        assert gave_up == [("supervisor 'sub' gave up: actor 'w' failed with Boom: w crashed "
                            "(1 restarts within 30 s)")]
        assert await ref.ask("after") == ("w", 3)
        assert system.failure is None


async def test_root_giving_up_fails_the_system() -> None:
    world = World()
    async with ActorSystem(SystemConfig(root=_config(max_restarts=1))) as system:
        ref = await world.spawn(system, "w")
        await ref.tell("crash")
        await eventually(lambda: world.starts["w"] == 2)
        assert not system.root.statistics().gave_up
        await ref.tell("crash")
        failure = await asyncio.wait_for(system.wait_failed(), WAIT_S)
        assert system.failure is failure
        assert isinstance(failure, SupervisorGaveUp)
        assert (failure.supervisor, failure.actor) == ("root", "w")
        assert isinstance(failure.error, Boom)
        assert failure.__cause__ is failure.error
        assert "actor 'w' failed with Boom: w crashed" in str(failure)
        assert system.root.statistics().gave_up
        await asyncio.sleep(0.05)
        assert world.starts["w"] == 2  # given up: not restarted again


async def test_nested_give_up_reaching_the_root_names_the_failing_actor() -> None:
    world = World()
    async with ActorSystem(SystemConfig(root=_config(max_restarts=0))) as system:
        mid = await system.spawn_supervisor("mid", _config(max_restarts=0))
        leaf = await mid.spawn_supervisor("leaf", _config(max_restarts=0))
        bystander = await world.spawn(system, "bystander")
        ref = await world.spawn(leaf, "deep")
        await ref.tell("crash")
        failure = await asyncio.wait_for(system.wait_failed(), WAIT_S)
        assert (failure.supervisor, failure.actor) == ("root", "deep")
        assert isinstance(failure.error, Boom)
        assert str(failure.error) == "deep crashed"
        assert leaf.statistics().gave_up
        assert mid.statistics().gave_up
        # Giving up halted every child of the root: the bystander no longer runs.
        states = {cell.name: cell.state for cell in system.cells()}
        assert states == {"bystander": CellState.SUSPENDED, "deep": CellState.SUSPENDED}
        assert bystander.is_alive  # halted, not stopped: the node decides what happens next


async def test_failures_outside_the_window_do_not_count() -> None:
    world = World()
    async with ActorSystem(SystemConfig(root=_config(max_restarts=1, within_s=0.05))) as system:
        ref = await world.spawn(system, "w")
        for expected in (2, 3, 4):
            await asyncio.sleep(0.1)  # let the previous restart leave the window
            await ref.tell("crash")
            await eventually(lambda: world.starts["w"] == expected)  # noqa: B023
        assert system.failure is None
        assert system.root.statistics().restarts == 3


async def test_backoff_grows_between_restarts_in_a_window() -> None:
    world = World()
    backoff = Backoff(initial_s=0.01, factor=2.0, max_s=1.0)
    async with ActorSystem(SystemConfig(root=_config(max_restarts=10, backoff=backoff))) as system:
        ref = await world.spawn(system, "w")
        for expected in (2, 3, 4):
            await ref.tell("crash")
            await eventually(lambda: world.starts["w"] == expected)  # noqa: B023
        stats = system.root.statistics()
        assert stats.recent_backoffs_s == pytest.approx((0.01, 0.02, 0.04))
        assert stats.restarts == 3
        assert not stats.gave_up
        assert stats.children == 1


def test_backoff_delay_grows_exponentially_up_to_the_cap() -> None:
    backoff = Backoff(initial_s=0.1, factor=3.0, max_s=2.0)
    assert backoff.delay(1) == pytest.approx(0.1)
    assert backoff.delay(2) == pytest.approx(0.3)
    assert backoff.delay(3) == pytest.approx(0.9)
    assert backoff.delay(4) == pytest.approx(2.0)  # 2.7 capped
    assert backoff.delay(100) == pytest.approx(2.0)
    assert backoff.delay(0) == pytest.approx(0.1)  # never below the initial delay
    assert isinstance(backoff.delay(1), float)


def test_backoff_defaults() -> None:
    backoff = Backoff()
    assert [backoff.delay(n) for n in (1, 2, 3)] == pytest.approx([0.1, 0.2, 0.4])
    assert backoff.delay(1000) == pytest.approx(10.0)


async def test_a_subtree_that_keeps_giving_up_ends_the_node_whatever_the_timing() -> None:
    # The root's window is so short that no two give-ups of "sub" ever fall inside it: counted
    # per window only, the root would restart the hopeless subtree for ever.
    world = World()
    root = SupervisorConfig(max_restarts=5, within_s=0.01, backoff=TINY, max_escalations=2)
    async with ActorSystem(SystemConfig(root=root)) as system:
        sub = await system.spawn_supervisor("sub", _config(max_restarts=0))
        ref = await world.spawn(sub, "w")
        for incarnation in (2, 3):
            await asyncio.sleep(0.05)  # outside the root's window
            await ref.tell("crash")  # sub gives up; the root absorbs it and restarts sub
            await eventually(lambda: sub.incarnation == incarnation)  # noqa: B023
        assert system.failure is None
        assert system.root.statistics().escalations == 2
        await asyncio.sleep(0.05)
        await ref.tell("crash")  # a third give-up: more than the root absorbs
        failure = await asyncio.wait_for(system.wait_failed(), WAIT_S)
        assert (failure.supervisor, failure.actor) == ("root", "w")
        assert isinstance(failure.error, Boom)


@pytest.mark.parametrize(("make", "message"), [
    (lambda: SupervisorConfig(max_restarts=-1), "max_restarts must be an integer >= 0"),
    (lambda: SupervisorConfig(within_s=0.0), "within_s must be > 0"),
    (lambda: SupervisorConfig(max_escalations=-1), "max_escalations must be an integer >= 0"),
    (lambda: Backoff(initial_s=-0.1), "initial_s must be >= 0"),
    (lambda: Backoff(factor=0.5), "factor must be >= 1"),
    (lambda: Backoff(initial_s=2.0, max_s=1.0), "max_s .* is below initial_s"),
    (lambda: SystemConfig(name=""), "SystemConfig.name is empty"),
    (lambda: SystemConfig(name="a\nb"), "SystemConfig.name holds control characters"),
    (lambda: SystemConfig(blocking_workers=0), "blocking_workers must be an integer >= 1"),
    (lambda: SystemConfig(shutdown_drain_s=float("inf")), "shutdown_drain_s must be >= 0"),
    (lambda: SystemConfig(stall_threshold_s=0.0), "stall_threshold_s must be > 0"),
])
def test_bad_supervision_settings_are_refused(make: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make()
