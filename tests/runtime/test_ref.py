"""Refs and cells: tell/ask semantics, stop semantics and the lifecycle hooks of an actor."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from runtime import (
    Actor,
    ActorRef,
    ActorStopped,
    ActorSystem,
    AskTimeout,
)
from tests.runtime.helpers import WAIT_S, Gate, GatedRecorder, Inbox, Recorder, eventually, settle


class Boom(Exception):
    """The error test actors raise on purpose."""


class Counter(Actor[Any]):
    """Counts ``"add"`` tells; ``"get"`` returns the total; ``"bad"`` raises; ``"stop"`` exits.

    Every hook and message is recorded in ``log`` with the incarnation number.
    """

    def __init__(self, log: list[str], starts: list[int]) -> None:
        self.log = log
        starts[0] += 1
        self.incarnation = starts[0]
        self.total = 0

    def _note(self, event: str) -> None:
        self.log.append(f"{event}#{self.incarnation}")

    async def on_start(self) -> None:
        self._note("on_start")

    async def receive(self, message: Any) -> Any:
        self._note(f"receive:{message}")
        if message == "add":
            self.total += 1
        elif message == "get":
            return self.total
        elif message == "bad":
            raise Boom("bad input")
        elif message == "timeout":
            raise TimeoutError("the actor's own timeout")
        elif message == "stop":
            self.context.stop()
            return "stopping"
        return None

    async def on_stop(self) -> None:
        self._note("on_stop")

    async def on_failure(self, error: BaseException) -> None:
        self._note(f"on_failure:{type(error).__name__}:{error}")


async def _counter(system: ActorSystem, name: str = "counter") -> tuple[ActorRef[Any], list[str],
                                                                        list[int]]:
    log: list[str] = []
    starts = [0]
    ref = await system.spawn(name, lambda: Counter(log, starts))
    return ref, log, starts


async def test_tell_then_ask_sees_the_tells(system: ActorSystem) -> None:
    ref, _, _ = await _counter(system)
    for _ in range(3):
        await ref.tell("add")
    ref.tell_nowait("add")
    assert await ref.ask("get") == 4
    assert ref.name == "counter"
    assert repr(ref) == "ActorRef('counter')"
    assert system.lookup("counter") is ref
    assert system.lookup("nobody") is None


async def test_spawn_refuses_a_duplicate_name(system: ActorSystem) -> None:
    await _counter(system, "dup")
    with pytest.raises(ValueError, match="'dup' already exists"):
        await _counter(system, "dup")


async def test_ask_error_reaches_caller_and_actor_keeps_running(system: ActorSystem) -> None:
    ref, log, starts = await _counter(system)
    await ref.tell("add")
    with pytest.raises(Boom, match="bad input"):
        await ref.ask("bad")
    # Same incarnation, state intact, no failure hooks.
    assert await ref.ask("get") == 1
    assert starts == [1]
    assert not any("on_failure" in e or "on_stop" in e for e in log)
    cell = system.cells()[0]
    assert (cell.metrics.ask_errors, cell.metrics.failures, cell.metrics.restarts) == (1, 0, 0)
    assert system.root.statistics().restarts == 0


async def test_timeout_error_raised_by_the_actor_is_delivered_as_is(system: ActorSystem) -> None:
    ref, _, _ = await _counter(system)
    with pytest.raises(TimeoutError, match="the actor's own timeout") as caught:
        await ref.ask("timeout")
    assert not isinstance(caught.value, AskTimeout)


async def test_ask_timeout_raises_ask_timeout_and_skips_abandoned_asks(
        system: ActorSystem) -> None:
    inbox, gate = Inbox(), Gate()
    ref = await system.spawn("held", lambda: GatedRecorder(inbox, gate))
    await ref.tell("first")
    await gate.entered.wait()
    with pytest.raises(AskTimeout) as caught:
        await ref.ask("abandoned", timeout=0.05)
    assert isinstance(caught.value, TimeoutError)
    assert caught.value.actor == "held"
    assert caught.value.timeout_s == 0.05
    assert "'held' did not reply within 0.05 s" in str(caught.value)
    gate.open()
    assert await ref.ask("next") == "next"
    # The asker gave up before the actor got to it, so it was never handled.
    assert inbox.items == ["first", "next"]


async def test_queued_asks_fail_with_actor_stopped_when_the_actor_stops(
        system: ActorSystem) -> None:
    inbox, gate = Inbox(), Gate()
    ref = await system.spawn("stuck", lambda: GatedRecorder(inbox, gate))
    in_flight = asyncio.create_task(ref.ask("in flight", timeout=30))
    await gate.entered.wait()
    queued = [asyncio.create_task(ref.ask(i, timeout=30)) for i in range(3)]
    await eventually(lambda: ref.statistics().depth == 3)
    await ref.stop(drain_s=0.0)
    results = await asyncio.gather(in_flight, *queued, return_exceptions=True)
    for result in results:
        assert isinstance(result, ActorStopped), result
        assert result.actor == "stuck"
        assert "actor 'stuck' is stopped" in str(result)
    assert "while handling" in str(results[0])
    assert "before this message was handled" in str(results[1])
    assert inbox.items == ["in flight"]


async def test_stop_drains_queued_messages_within_drain_time(system: ActorSystem) -> None:
    ref, _, _ = await _counter(system)
    for _ in range(5):
        await ref.tell("add")
    answer = asyncio.create_task(ref.ask("get"))
    await settle()
    await ref.stop(drain_s=WAIT_S)
    assert await answer == 5


async def test_tell_and_ask_to_a_stopped_actor_raise_actor_stopped(system: ActorSystem) -> None:
    ref, log, _ = await _counter(system)
    alive_before = ref.is_alive
    await ref.stop()
    assert alive_before
    assert not ref.is_alive
    with pytest.raises(ActorStopped, match="'counter' is stopped"):
        await ref.tell("add")
    with pytest.raises(ActorStopped):
        ref.tell_nowait("add")
    with pytest.raises(ActorStopped):
        await ref.ask("get")
    assert log == ["on_start#1", "on_stop#1"]
    await ref.stop()  # stopping twice is harmless
    assert log == ["on_start#1", "on_stop#1"]


async def test_actor_stopping_itself_exits_normally_and_is_not_restarted(
        system: ActorSystem) -> None:
    ref, log, starts = await _counter(system)
    # Queue the stop and an ask behind it before the actor runs.
    stopping = asyncio.create_task(ref.ask("stop"))
    behind = asyncio.create_task(ref.ask("get"))
    assert await stopping == "stopping"
    with pytest.raises(ActorStopped, match="it stopped itself"):
        await behind
    await eventually(lambda: not ref.is_alive)
    # The root restarts failures within ~1 ms; wait well past that to see that it does not.
    await asyncio.sleep(0.05)
    assert starts == [1]
    assert log == ["on_start#1", "receive:stop#1", "on_stop#1"]
    assert system.root.statistics().restarts == 0
    assert system.failure is None
    with pytest.raises(ActorStopped):
        await ref.tell("add")


async def test_hooks_on_a_normal_stop(system: ActorSystem) -> None:
    ref, log, _ = await _counter(system)
    await ref.tell("add")
    await ref.ask("get")
    await ref.stop()
    assert log == ["on_start#1", "receive:add#1", "receive:get#1", "on_stop#1"]


async def test_failed_tell_calls_on_failure_then_on_stop_then_restarts(
        system: ActorSystem) -> None:
    ref, log, starts = await _counter(system)
    await ref.tell("bad")
    await eventually(lambda: starts == [2])
    assert await ref.ask("get") == 0  # the new incarnation starts from scratch
    assert log == [
        "on_start#1", "receive:bad#1", "on_failure:Boom:bad input#1", "on_stop#1",
        "on_start#2", "receive:get#2",
    ]
    cell = system.cells()[0]
    assert (cell.metrics.failures, cell.metrics.restarts) == (1, 1)


async def test_a_failing_tell_from_a_peer_is_counted_not_a_failure(
        system: ActorSystem, caplog: pytest.LogCaptureFixture) -> None:
    ref, _, starts = await _counter(system)
    with caplog.at_level(logging.WARNING, logger="lfr.runtime"):
        for _ in range(20):  # far more than the supervisor's restart budget
            await ref.tell_from_peer("bad")
        await ref.tell_from_peer("add")
        assert await ref.ask("get") == 1  # the same incarnation handled every message
    assert starts == [1]
    cell = system.cells()[0]
    assert (cell.metrics.failures, cell.metrics.restarts) == (0, 0)
    assert cell.metrics.remote_failures == 20
    assert system.failure is None
    dropped = [r.getMessage() for r in caplog.records
               if "tell from a peer failed" in r.getMessage()]
    assert len(dropped) == 20
    assert dropped[0] == ("actor counter: a tell from a peer failed and was dropped "
                          "(str, Boom: bad input)")


async def test_a_failing_ask_from_a_peer_goes_to_the_asker_and_is_counted(
        system: ActorSystem) -> None:
    ref, _, starts = await _counter(system)
    with pytest.raises(Boom):
        await ref.ask("bad", from_peer=True)
    with pytest.raises(Boom):
        await ref.ask("bad")  # a local ask's failure is not a remote one
    cell = system.cells()[0]
    assert (cell.metrics.ask_errors, cell.metrics.remote_failures) == (2, 1)
    assert starts == [1]


class FailingStart(Actor[Any]):
    """Fails in ``on_start`` in its first incarnation only."""

    def __init__(self, log: list[str], starts: list[int]) -> None:
        self.log = log
        starts[0] += 1
        self.incarnation = starts[0]

    async def on_start(self) -> None:
        self.log.append(f"on_start#{self.incarnation}")
        if self.incarnation == 1:
            raise Boom("cannot start")

    async def receive(self, message: Any) -> Any:
        return self.incarnation

    async def on_stop(self) -> None:
        self.log.append(f"on_stop#{self.incarnation}")

    async def on_failure(self, error: BaseException) -> None:
        self.log.append(f"on_failure:{error}#{self.incarnation}")


async def test_failure_in_on_start_is_a_failure(system: ActorSystem) -> None:
    log: list[str] = []
    starts = [0]
    ref = await system.spawn("fragile", lambda: FailingStart(log, starts))
    assert await ref.ask("which") == 2
    assert log == ["on_start#1", "on_failure:cannot start#1", "on_stop#1", "on_start#2"]


class ContextProbe(Actor[Any]):
    """Records what its context says in ``on_start``."""

    def __init__(self, seen: list[Any]) -> None:
        self.seen = seen

    async def on_start(self) -> None:
        self.seen.extend([self.context.name, self.context.ref, self.context.system])

    async def receive(self, message: Any) -> Any:
        return None


async def test_context_is_set_before_on_start(system: ActorSystem) -> None:
    seen: list[Any] = []
    probe = ContextProbe(seen)
    with pytest.raises(RuntimeError, match="no context before it is started"):
        _ = probe.context
    ref = await system.spawn("probe", lambda: probe)
    await ref.ask(None)
    assert seen == ["probe", ref, system]


async def test_many_asks_are_answered_in_order(system: ActorSystem) -> None:
    inbox = Inbox()
    ref = await system.spawn("echo", lambda: Recorder(inbox))
    replies = await asyncio.wait_for(asyncio.gather(*(ref.ask(i) for i in range(100))), WAIT_S)
    assert replies == list(range(100))
    assert inbox.items == list(range(100))
