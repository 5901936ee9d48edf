"""``lfr.service_watchdog``: READY=1, WATCHDOG=1 only while healthy, STATUS and STOPPING=1,
received on a real AF_UNIX datagram socket standing in for systemd's; first from a running
``lfr edge`` node (in-process, as tests/lfr/test_edge_node.py runs it), then from a small actor
system whose root supervisor really gives up, and with a really stuck event loop."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from actors.unit.outbox import Outbox
from lfr.edge_node import EDGE_ROOT, load_edge_unit, serve_edge
from lfr.service_watchdog import ServiceWatchdog, WatchdogConfig
from runtime import Actor, ActorSystem, SupervisorConfig, SystemConfig
from runtime.service_notify import ServiceNotifier, socket_address, watchdog_timeout
from secure.node_keys import NodeKeys
from tests.lfr.cli_process import ENV, LFR
from tests.lfr.conftest import CLIP
from tests.lfr.test_edge_node import NoVan, nobody_listening, unit_config
from tests.lfr.test_edge_node import van as van  # noqa: PLC0414 - the fixture, re-exported

WAIT_S = 60.0
"""Upper bound of every wait for a message (a few ticks here; the machine is shared)."""
Message = list[str]


class Manager:
    """A datagram socket bound where ``NOTIFY_SOCKET`` points, read on the event loop."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.0)
        self.messages: list[Message] = []

    async def next(self, timeout_s: float = WAIT_S) -> Message:
        async with asyncio.timeout(timeout_s):
            data = await asyncio.get_running_loop().sock_recv(self.sock, 65536)
        message = data.decode("utf-8").split("\n")
        self.messages.append(message)
        return message

    async def until(self, wanted: Callable[[Message], bool],
                    timeout_s: float = WAIT_S) -> list[Message]:
        """Every message up to and including the first ``wanted`` one."""
        seen: list[Message] = []
        async with asyncio.timeout(timeout_s):
            while not seen or not wanted(seen[-1]):
                seen.append(await self.next())
        return seen

    def waiting(self) -> list[Message]:
        """The messages already queued, without waiting."""
        queued: list[Message] = []
        while True:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                return queued
            queued.append(data.decode("utf-8").split("\n"))


@pytest.fixture
def manager(tmp_path: Path) -> Any:
    listening = Manager(tmp_path / "notify")
    yield listening
    listening.sock.close()


def has(key: str) -> Callable[[Message], bool]:
    return lambda message: key in message


def status_of(message: Message) -> str | None:
    return next((line.removeprefix("STATUS=") for line in message
                 if line.startswith("STATUS=")), None)


# -- a running lfr edge node -----------------------------------------------------------------------


@pytest_asyncio.fixture
async def system() -> AsyncIterator[ActorSystem]:
    async with ActorSystem(SystemConfig(name="unit-1", root=EDGE_ROOT)) as running:
        yield running


async def test_a_running_node_says_ready_then_pings_and_says_stopping_when_it_stops(
        tmp_path: Path, van: NodeKeys, manager: Manager, system: ActorSystem) -> None:
    # A camera that never ends (a looping paced file) and no watchlist: the node runs until
    # it is stopped, its detectors dropping every frame.
    camera = {"id": "gate", "source": str(CLIP), "paced": True, "loop": True}
    unit = load_edge_unit(unit_config(tmp_path, [camera]))
    outbox = Outbox.open(unit.config.outbox)
    environ = {"NOTIFY_SOCKET": str(manager.path), "WATCHDOG_USEC": "2000000",
               "WATCHDOG_PID": str(os.getpid())}
    serving = asyncio.create_task(serve_edge(system, unit=unit, outbox=outbox,
                                             print_alerts=False, dialer=NoVan(),
                                             service_environ=environ))
    try:
        before = await manager.until(has("READY=1"))
        assert status_of(before[-1]) == ("running: 1 camera, no watchlist, van not linked, "
                                         "0 alerts sealed")
        assert status_of(before[0]) == "starting"
        after = [await manager.next() for _ in range(3)]
        assert sum(has("WATCHDOG=1")(message) for message in after) >= 2
        assert not serving.done()
    finally:
        serving.cancel()
        await asyncio.gather(serving, return_exceptions=True)
        outbox.close()
    assert serving.cancelled()
    messages = manager.messages + manager.waiting()
    assert messages[-1] == ["STOPPING=1", "STATUS=stopping"]
    assert sum(has("READY=1")(message) for message in messages) == 1
    # Nothing after STOPPING=1 (the task was cancelled and awaited first).
    assert [index for index, message in enumerate(messages)
            if "STOPPING=1" in message] == [len(messages) - 1]


async def test_a_node_of_files_is_ready_while_its_cameras_wait_for_the_watchlist(
        tmp_path: Path, van: NodeKeys, manager: Manager, system: ActorSystem) -> None:
    # Every camera a file and no van: the cameras wait for a watchlist for ever, yet the
    # node is up and must not be killed for a slow start.
    unit = load_edge_unit(unit_config(tmp_path, [{"id": "gate", "source": str(CLIP)}]))
    outbox = Outbox.open(unit.config.outbox)
    environ = {"NOTIFY_SOCKET": str(manager.path), "WATCHDOG_USEC": "2000000"}
    serving = asyncio.create_task(serve_edge(system, unit=unit, outbox=outbox,
                                             print_alerts=False, dialer=NoVan(),
                                             service_environ=environ))
    try:
        ready = await manager.until(has("READY=1"))
        assert status_of(ready[-1]) == "ready: the cameras wait for the van's watchlist"
        await manager.until(has("WATCHDOG=1"))
        assert not serving.done()
    finally:
        serving.cancel()
        await asyncio.gather(serving, return_exceptions=True)
        outbox.close()
    assert manager.waiting()[-1] == ["STOPPING=1", "STATUS=stopping"]


def test_lfr_edge_as_systemd_starts_it_notifies_and_says_stopping_on_sigterm(
        tmp_path: Path, van: NodeKeys) -> None:
    # The command as the unit file runs it: its own process (uvloop, signals, run_edge), the
    # environment systemd gives a Type=notify service with WatchdogSec=2s, the real dialer
    # (no van listens) and a camera that never ends.
    camera = {"id": "gate", "source": str(CLIP), "paced": True, "loop": True}
    config = unit_config(tmp_path, [camera], van_url=nobody_listening())
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(tmp_path / "notify"))
        sock.settimeout(WAIT_S)
        env = {**ENV, "NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "2000000"}
        proc = subprocess.Popen([*LFR, "edge", "--config", str(config)], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            seen: list[Message] = []
            while not seen or "READY=1" not in seen[-1]:
                seen.append(sock.recv(65536).decode().split("\n"))
            assert status_of(seen[-1]) == ("running: 1 camera, no watchlist, van not linked, "
                                           "0 alerts sealed")
            assert sock.recv(65536).decode().split("\n")[0] == "WATCHDOG=1"
            proc.send_signal(signal.SIGTERM)
            _, stderr = proc.communicate(timeout=WAIT_S)
        finally:
            proc.kill()
            proc.wait()
        assert proc.returncode == 143, stderr[-2000:]
        rest: list[Message] = []
        while "STOPPING=1" not in (rest[-1] if rest else []):
            rest.append(sock.recv(65536).decode().split("\n"))
        assert rest[-1] == ["STOPPING=1", "STATUS=stopping"]


# -- a root supervisor that gives up, a stuck loop -----------------------------------------


class Breakable(Actor[str]):
    """Fails its incarnation on ``"break"``."""

    async def receive(self, message: str) -> None:
        if message == "break":
            raise RuntimeError("broken on purpose")


TICKS = WatchdogConfig(tick_s=0.2, pings=True, stall_limit_s=0.15)
"""Five looks a second; a tick more than 0.15 s late is a stall."""


def watchdog_for(system: ActorSystem, manager: Manager,
                 config: WatchdogConfig = TICKS) -> ServiceWatchdog:
    return ServiceWatchdog(system, ServiceNotifier(socket_address(str(manager.path))), config,
                           lambda: "running")


async def test_pings_stop_when_the_root_supervisor_gives_up(manager: Manager) -> None:
    config = SystemConfig(name="unit-1", root=SupervisorConfig(max_restarts=0))
    async with ActorSystem(config) as system:
        breakable = await system.spawn("breakable", Breakable)
        watchdog = watchdog_for(system, manager)
        watchdog.start()
        await manager.until(has("WATCHDOG=1"))
        await breakable.tell("break")
        unhealthy = await manager.until(
            lambda message: (status_of(message) or "").startswith("unhealthy: "))
        said = status_of(unhealthy[-1]) or ""
        assert said.startswith("unhealthy: the root supervisor gave up")
        assert "WATCHDOG=1" not in unhealthy[-1]
        assert system.failure is not None
        # Five more looks: not one ping among them, and no READY=1 for a node that gave up.
        await watchdog_looks(watchdog, times=5)
        watchdog.ready()
        assert not any("WATCHDOG=1" in message or "READY=1" in message
                       for message in manager.waiting())
        assert watchdog.statistics.withheld >= 5
        await watchdog.stop()
    stopping = await manager.next()
    assert stopping[0] == "STOPPING=1"
    assert status_of(stopping) is not None
    assert (status_of(stopping) or "").startswith("stopping: the root supervisor gave up")


async def watchdog_looks(watchdog: ServiceWatchdog, *, times: int) -> None:
    """Wait until the watchdog has looked ``times`` more times."""
    def looks() -> int:
        return watchdog.statistics.withheld + watchdog.statistics.pings

    start = looks()
    async with asyncio.timeout(WAIT_S):
        while looks() < start + times:  # noqa: ASYNC110 - counters, no event
            await asyncio.sleep(0.05)


async def test_a_stuck_event_loop_withholds_its_ping_and_says_so(manager: Manager) -> None:
    async with ActorSystem(SystemConfig(name="unit-1")) as system:
        watchdog = watchdog_for(system, manager)
        watchdog.start()
        await manager.until(has("WATCHDOG=1"))
        time.sleep(1.0)  # noqa: ASYNC251 - the point: the loop is stuck, the next tick late
        stuck = await manager.until(
            lambda message: (status_of(message) or "").startswith("unhealthy: "))
        assert (status_of(stuck[-1]) or "").startswith(
            "unhealthy: the event loop was stuck for ")
        assert "WATCHDOG=1" not in stuck[-1]
        assert watchdog.statistics.stalls >= 1
        # The loop turns again: the status comes back and so do the pings.
        back = await manager.until(lambda message: status_of(message) == "running")
        await manager.until(has("WATCHDOG=1"))
        assert back
        await watchdog.stop()


async def test_ready_is_sent_once_and_stop_is_idempotent(manager: Manager) -> None:
    async with ActorSystem(SystemConfig(name="unit-1")) as system:
        watchdog = watchdog_for(system, manager)
        watchdog.start()
        watchdog.ready()
        watchdog.ready()
        await watchdog.stop()
        await watchdog.stop()
        watchdog.ready()
    messages = manager.waiting()
    assert [message for message in messages if "READY=1" in message] == [
        ["READY=1", "STATUS=running"]]
    assert [message for message in messages if "STOPPING=1" in message] == [
        ["STOPPING=1", "STATUS=stopping"]]
    assert "STOPPING=1" in messages[-1]


# -- the environment -----------------------------------------------------------------------


def watchdog_tasks() -> list[asyncio.Task[Any]]:
    return [task for task in asyncio.all_tasks() if task.get_name() == "service-watchdog"]


async def test_without_notify_socket_nothing_is_sent_and_no_task_runs(
        manager: Manager) -> None:
    async with ActorSystem(SystemConfig(name="unit-1")) as system:
        watchdog = ServiceWatchdog.from_environment(
            system, lambda: "running", {"WATCHDOG_USEC": "400000"})
        watchdog.start()
        assert watchdog_tasks() == []
        watchdog.ready()
        await watchdog.stop()
    assert not watchdog.notifier.enabled
    assert watchdog.notifier.statistics.sent == 0
    assert not watchdog.statistics.ready
    assert manager.waiting() == []


@pytest.mark.parametrize("value", ["", "relative/notify", "@", "vsock:2:9", "/" + "x" * 300])
async def test_a_notify_socket_that_names_no_socket_is_ignored(value: str) -> None:
    async with ActorSystem(SystemConfig(name="unit-1")) as system:
        watchdog = ServiceWatchdog.from_environment(
            system, lambda: "running", {"NOTIFY_SOCKET": value, "WATCHDOG_USEC": "400000"})
        watchdog.start()
        watchdog.ready()
        await watchdog.stop()
    assert watchdog.notifier.problem is not None
    assert watchdog.notifier.statistics.sent == 0


async def test_a_notify_socket_nobody_listens_on_fails_each_send_and_the_node_goes_on(
        tmp_path: Path) -> None:
    async with ActorSystem(SystemConfig(name="unit-1")) as system:
        watchdog = ServiceWatchdog.from_environment(
            system, lambda: "running",
            {"NOTIFY_SOCKET": str(tmp_path / "nobody"), "WATCHDOG_USEC": "400000"})
        watchdog.start()
        watchdog.ready()
        async with asyncio.timeout(WAIT_S):
            while watchdog.notifier.statistics.failed < 4:  # noqa: ASYNC110 - counters only
                await asyncio.sleep(0.05)
        await watchdog.stop()
        assert system.failure is None
    assert watchdog.notifier.statistics.sent == 0
    assert watchdog_tasks() == []


async def test_a_watchdog_meant_for_another_process_sends_no_pings_but_ready(
        manager: Manager) -> None:
    async with ActorSystem(SystemConfig(name="unit-1")) as system:
        watchdog = ServiceWatchdog.from_environment(
            system, lambda: "running",
            {"NOTIFY_SOCKET": str(manager.path), "WATCHDOG_USEC": "400000",
             "WATCHDOG_PID": str(os.getppid())})
        assert not watchdog.config.pings
        watchdog.start()
        watchdog.ready()
        assert await manager.until(has("READY=1"))
        await watchdog.stop()
    assert watchdog.statistics.pings == 0
    assert not any("WATCHDOG=1" in message for message in manager.messages + manager.waiting())


async def test_a_failing_status_line_does_not_stop_the_pings(manager: Manager) -> None:
    def broken() -> str:
        raise RuntimeError("status bug")

    async with ActorSystem(SystemConfig(name="unit-1")) as system:
        watchdog = ServiceWatchdog(system, ServiceNotifier(socket_address(str(manager.path))),
                                   TICKS, broken)
        watchdog.start()
        first = await manager.until(has("WATCHDOG=1"))
        await manager.until(has("WATCHDOG=1"))
        await watchdog.stop()
    assert any(status_of(message) == "running" for message in first)


@pytest.mark.parametrize(("usec", "tick_s"), [
    ("30000000", 15.0), ("1", 0.05), ("99999999999999999999", 3600.0)])
def test_the_tick_is_half_the_watchdog_timeout_within_bounds(usec: str, tick_s: float) -> None:
    config = WatchdogConfig.for_timeout(watchdog_timeout({"WATCHDOG_USEC": usec}))
    assert config.pings
    assert config.tick_s == tick_s
    assert config.stall_limit_s == tick_s / 2
