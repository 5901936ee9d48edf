"""The van dialer: backoff with full jitter and its reset, every failure ending in a redial with
its peer connection closed, stop during an attempt, drop, and (when signaling returns link keys)
a unit dialling a real signaling server. Links run over real aiortc peer connections on
127.0.0.1; the in-process van is ``tests.actors.unit.test_uplink.FakeVan`` unless said otherwise.

Every wait is bounded; nothing asserts how fast anything happened.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aioice.ice
import pytest

from actors.delivery_messages import RECEIVER_ACTOR
from actors.unit.event_body import alert_body
from actors.unit.outbox import Outbox
from actors.unit.signaling_client import SignalingClientConfig
from actors.unit.uplink import Uplink, UplinkStatistics
from actors.unit.van_dialer import DialerConfig, Negotiate, VanDialer
from actors.van.signaling import SignalingService, serve_signaling
from actors.van.tls_certificate import create_tls_certificate, server_ssl_context
from guards.config_checks import ConfigError
from runtime import ActorSystem, Codec, HandshakeRefused, SystemConfig
from runtime.datachannel import DataChannelLimits, DataOnlyPeerConnection
from runtime.link import Link
from secure.node_keys import NodeKeys
from tests.actors.support import WAIT_S, eventually
from tests.actors.unit.test_uplink import (
    SIGNALING,
    UNIT_ID,
    UNIT_KEYS,
    VAN_ID,
    VAN_KEYS,
    FakeVan,
    VanBook,
    VanReceiver,
    match_alert,
)

TEST_S = 90.0
"""Upper bound of one test."""


pytestmark = pytest.mark.usefixtures("loopback_host_candidates")


class RecordingRandom(random.Random):
    """Jitter that records each draw's bounds and returns ``fraction`` of the way up."""

    def __init__(self, fraction: float) -> None:
        super().__init__(0)
        self.fraction = fraction
        self.draws: list[tuple[float, float]] = []

    def uniform(self, a: float, b: float) -> float:
        self.draws.append((a, b))
        return a + (b - a) * self.fraction


@dataclass
class Dialling:
    unit: ActorSystem
    van: ActorSystem
    fake: FakeVan
    dialer: VanDialer
    rng: RecordingRandom
    now: list[float]
    """The dialer's monotonic clock (moved by the test)."""


@asynccontextmanager
async def dialling(config: DialerConfig, *, accepting: bool = True,
                   negotiate: Callable[[FakeVan], Negotiate] | None = None,
                   fraction: float = 0.0) -> AsyncIterator[Dialling]:
    """A unit system with a dialer (not started) and a van; ``negotiate`` makes the dialer's
    signaling from the fake van (its own ``negotiate`` by default)."""
    async with asyncio.timeout(TEST_S):
        unit = ActorSystem(SystemConfig(name=UNIT_ID, shutdown_drain_s=0.2))
        van = ActorSystem(SystemConfig(name=VAN_ID, shutdown_drain_s=0.2))
        book = VanBook()
        await van.spawn(RECEIVER_ACTOR, lambda: VanReceiver(book))
        fake = FakeVan(van, book)
        fake.accepting = accepting
        rng = RecordingRandom(fraction)
        now = [1000.0]
        dialer = VanDialer(unit, UNIT_KEYS, SIGNALING, Codec(), config, rng=rng,
                           negotiate=fake.negotiate if negotiate is None else negotiate(fake),
                           clock=lambda: now[0])
        try:
            yield Dialling(unit, van, fake, dialer, rng, now)
        finally:
            await dialer.stop()
            await fake.close()
            await unit.stop()
            await van.stop()


QUICK = DialerConfig(initial_backoff_s=0.001, max_backoff_s=0.008, open_timeout_s=WAIT_S)


# --- backoff ----------------------------------------------------------------------------------


def test_the_backoff_ceiling_doubles_from_the_initial_wait_up_to_its_cap() -> None:
    config = DialerConfig()
    assert [config.backoff_ceiling_s(n) for n in range(1, 10)] == [
        0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    assert config.backoff_ceiling_s(10**9) == 30.0  # no overflow after a week of failures


async def test_failures_in_a_row_wait_a_full_jitter_draw_below_a_doubling_ceiling() -> None:
    async with dialling(QUICK, accepting=False, fraction=0.5) as net:
        net.dialer.start()
        await eventually(lambda: len(net.rng.draws) >= 6)
        await net.dialer.stop()
        assert net.rng.draws[:6] == [(0.0, 0.001), (0.0, 0.002), (0.0, 0.004), (0.0, 0.008),
                                     (0.0, 0.008), (0.0, 0.008)]
        assert net.dialer.failures == len(net.rng.draws)
        # each failed attempt drew once; stop may have ended one more in progress
        assert net.dialer.attempts - len(net.rng.draws) in (0, 1)
        assert net.dialer.last_error is not None
        assert "signaling failed (unreachable)" in net.dialer.last_error
        assert not net.dialer.connected


async def test_a_link_that_stayed_up_resets_the_backoff_and_a_short_one_does_not() -> None:
    async with dialling(QUICK, accepting=False) as net:
        net.dialer.start()
        await eventually(lambda: net.dialer.failures >= 3)
        net.fake.accepting = True
        first = await net.dialer.wait_link(WAIT_S)
        draws = len(net.rng.draws)
        net.now[0] += QUICK.stable_s  # the link stays up that long
        await net.fake.cut()
        await eventually(lambda: len(net.rng.draws) > draws)
        assert net.rng.draws[draws] == (0.0, QUICK.initial_backoff_s)  # counting from 1 again
        assert net.dialer.failures == 1
        second = await net.dialer.wait_link(WAIT_S)
        assert second is not first
        draws = len(net.rng.draws)
        net.now[0] += QUICK.stable_s / 2  # not long enough
        await net.fake.cut()
        await eventually(lambda: len(net.rng.draws) > draws)
        assert net.rng.draws[draws] == (0.0, 2 * QUICK.initial_backoff_s)
        assert net.dialer.failures == 2
        assert net.dialer.links == 2


# --- every failure ends in a redial, nothing leaks --------------------------------------------


class Failing:
    """Signaling that fails in one way; records every peer connection it was given."""

    def __init__(self, fake: FakeVan, kind: str) -> None:
        self.fake = fake
        self.kind = kind
        self.peer_connections: list[DataOnlyPeerConnection] = []

    async def negotiate(self, unit: NodeKeys, config: SignalingClientConfig,
                        peer_connection: DataOnlyPeerConnection) -> bytes | None:
        self.peer_connections.append(peer_connection)
        if self.kind == "no_key":  # a signaling client that returns no link key
            await self.fake.negotiate(unit, config, peer_connection)
            return None
        if self.kind == "never_opens":  # a key, but no answer applied: the channel never opens
            await peer_connection.setLocalDescription(await peer_connection.createOffer())
            return secrets.token_bytes(32)
        if self.kind == "hangs":
            await asyncio.Event().wait()
        if self.kind == "aiortc_error":
            raise ValueError("None is not in list")  # what aiortc raises on some bad SDPs
        return await self.fake.negotiate(unit, config, peer_connection)


FAILURES = {
    "unreachable": "signaling failed (unreachable)",
    "wrong_key": "the link handshake was refused",
    "no_key": "signaling returned no link key",
    "never_opens": "did not open within",
    "hangs": "signaling took over",
    "aiortc_error": "ValueError: None is not in list",
}


@pytest.mark.parametrize("kind", list(FAILURES))
async def test_every_failed_attempt_closes_its_peer_connection_and_the_dialer_redials(
        kind: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "lfr.unit.dialer")
    config = DialerConfig(initial_backoff_s=0.001, max_backoff_s=0.002, open_timeout_s=0.3,
                          signaling_timeout_s=0.3, handshake_timeout_s=WAIT_S)
    tasks_before = asyncio.all_tasks()
    made: list[Failing] = []

    def failing_signaling(fake: FakeVan) -> Negotiate:
        made.append(Failing(fake, kind))
        return made[0].negotiate

    async with dialling(config, accepting=kind != "unreachable",
                        negotiate=failing_signaling) as net:
        failing = made[0]
        net.fake.wrong_key = kind == "wrong_key"
        net.dialer.start()
        await eventually(lambda: net.dialer.attempts >= 4)
        await net.dialer.stop()
        assert len(failing.peer_connections) >= 3
        assert {pc.connectionState for pc in failing.peer_connections} == {"closed"}
        assert net.dialer.links == 0
        assert net.dialer.last_error is not None
        assert FAILURES[kind] in net.dialer.last_error
        assert FAILURES[kind] in caplog.text
        assert "cannot link to van van-1" in caplog.text
        if kind == "wrong_key":  # the van refused the unit's proof too
            assert any(isinstance(exc, HandshakeRefused) for exc in net.fake.refused)
    me = asyncio.current_task()
    await eventually(lambda: not {task for task in asyncio.all_tasks() - tasks_before - {me}
                                  if not _aioice_consent_after_close(task)})


def _aioice_consent_after_close(task: asyncio.Task[Any]) -> bool:
    """An aioice 0.13 race, not a leak of the dialer: a connection closed while its ICE checks
    complete (here: ``stop`` or the test's van closing during an attempt) finishes ``connect``
    after ``close`` and starts consent checks that nobody stops. They hold no socket (``close``
    closed them) and send nothing (no nominated pair is left), but sleep for ever."""
    frame = task.get_coro().cr_frame  # type: ignore[union-attr]
    connection = frame.f_locals.get("self") if frame is not None else None
    return (isinstance(connection, aioice.ice.Connection)
            and frame.f_code.co_name == "query_consent" and connection._closed)


async def test_stop_during_an_attempt_ends_it_and_closes_its_peer_connection() -> None:
    entered = asyncio.Event()
    given: list[DataOnlyPeerConnection] = []

    async def hang(unit: NodeKeys, config: SignalingClientConfig,
                   peer_connection: DataOnlyPeerConnection) -> bytes:
        given.append(peer_connection)
        entered.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async with dialling(DialerConfig(), negotiate=lambda fake: hang) as net:
        net.dialer.start()
        async with asyncio.timeout(WAIT_S):
            await entered.wait()
            await net.dialer.stop()  # the test's timeout is the bound
        assert [pc.connectionState for pc in given] == ["closed"]
        assert net.dialer.attempts == 1


async def test_stop_while_linked_closes_the_link_and_its_peer_connection() -> None:
    async with dialling(QUICK) as net:
        net.dialer.start()
        link = await net.dialer.wait_link(WAIT_S)
        async with asyncio.timeout(WAIT_S):
            await net.dialer.stop()
        assert link.closed
        assert net.dialer.current() is None
        assert {pc.connectionState for pc in net.fake.unit_peer_connections} == {"closed"}
        await eventually(lambda: all(van_link.closed for van_link in net.fake.links))


# --- the link source --------------------------------------------------------------------------


async def test_a_dropped_link_is_closed_and_a_new_one_dialled(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "lfr.unit.dialer")
    async with dialling(QUICK) as net:
        net.dialer.start()
        first = await net.dialer.wait_link(WAIT_S)
        assert net.dialer.current() is first
        assert net.dialer.connected
        net.dialer.drop(first, "the test gave up on it")
        assert net.dialer.current() is not first
        second = await net.dialer.wait_link(WAIT_S)
        assert second is not first
        assert first.closed
        await eventually(lambda: net.fake.links[0].closed)  # the van saw it end
        net.dialer.drop(first, "a stale drop")  # an old link: nothing happens
        assert net.dialer.current() is second
        assert net.dialer.links == 2
    assert caplog.text.count("van link up (van van-1)") == 2
    assert "van link down: the test gave up on it; redialling in" in caplog.text


async def test_wait_link_times_out_while_no_link_comes() -> None:
    async with dialling(QUICK, accepting=False) as net:
        net.dialer.start()
        with pytest.raises(TimeoutError):
            await net.dialer.wait_link(0.2)
        assert net.dialer.current() is None


async def test_a_link_runs_with_the_configured_heartbeats() -> None:
    config = DialerConfig(initial_backoff_s=0.001, max_backoff_s=0.002, open_timeout_s=WAIT_S,
                          heartbeat_interval_s=0.05, heartbeat_timeout_s=WAIT_S)
    async with dialling(config) as net:
        net.dialer.start()
        await net.dialer.wait_link(WAIT_S)
        await eventually(lambda: bool(net.fake.links)
                         and net.fake.links[0].heartbeats_received >= 3)


# --- construction -----------------------------------------------------------------------------


@pytest.mark.parametrize(("field_name", "value"), [
    ("initial_backoff_s", 0.0), ("max_backoff_s", 0.1), ("stable_s", -1.0),
    ("open_timeout_s", float("nan")), ("signaling_timeout_s", 0.0),
    ("handshake_timeout_s", 0.0), ("heartbeat_interval_s", 20.0),
    ("heartbeat_timeout_s", float("inf")), ("data_channel", "limits")])
def test_config_refuses_bad_values_naming_the_field(field_name: str, value: Any) -> None:
    changes: dict[str, Any] = {field_name: value}
    with pytest.raises(ConfigError, match=f"DialerConfig.*{field_name}"):
        DialerConfig(**changes)


def test_config_takes_data_channel_limits() -> None:
    limits = DataChannelLimits(close_timeout_s=1.0)
    assert DialerConfig(data_channel=limits).data_channel is limits


async def test_the_dialer_refuses_a_system_not_named_after_the_unit_and_a_van_s_keys() -> None:
    system = ActorSystem(SystemConfig(name="not-the-unit"))
    with pytest.raises(ValueError, match="named not-the-unit"):
        VanDialer(system, UNIT_KEYS, SIGNALING, Codec())
    van_system = ActorSystem(SystemConfig(name=VAN_ID))
    with pytest.raises(ValueError, match="as a unit"):
        VanDialer(van_system, VAN_KEYS, SIGNALING, Codec())


async def test_the_dialer_refuses_an_allow_list_of_unregistered_classes() -> None:
    system = ActorSystem(SystemConfig(name=UNIT_ID))
    with pytest.raises(ConfigError, match="not a registered message"):
        VanDialer(system, UNIT_KEYS, SIGNALING, Codec(), exposed={"health": [Link]})


# --- with the real signaling server -----------------------------------------------------------


async def test_a_unit_dials_a_real_signaling_server_and_its_alerts_arrive_across_a_redial(
        tmp_path: Path) -> None:
    """Signed signaling over HTTPS with the pinned certificate, the link key from the offer on
    both sides, the uplink's conversation over the link, a lost link and a redial."""
    async with asyncio.timeout(TEST_S):
        unit = ActorSystem(SystemConfig(name=UNIT_ID, shutdown_drain_s=0.2))
        van = ActorSystem(SystemConfig(name=VAN_ID, shutdown_drain_s=0.2))
        book = VanBook()
        await van.spawn(RECEIVER_ACTOR, lambda: VanReceiver(book))
        fake = FakeVan(van, book)
        files = create_tls_certificate(tmp_path, VAN_ID)
        service = SignalingService(VAN_KEYS, {UNIT_ID: UNIT_KEYS.public()}.get, fake.accept)
        runner, port = await serve_signaling(service, "127.0.0.1", 0,
                                             server_ssl_context(files.certificate, files.key))
        signaling = SignalingClientConfig(f"https://127.0.0.1:{port}", VAN_KEYS.public(),
                                          files.fingerprint)
        dialer = VanDialer(unit, UNIT_KEYS, signaling, Codec(), QUICK)
        outbox = Outbox.open(tmp_path / "outbox.db")
        statistics = UplinkStatistics()
        uplink = await unit.spawn("uplink", lambda: Uplink(
            UNIT_KEYS, VAN_KEYS.public(), outbox, dialer, statistics=statistics))
        dialer.start()
        try:
            for index in range(3):
                await uplink.tell(match_alert(index))
            await eventually(lambda: len(book.stored) == 3 and outbox.depth() == 0)
            await fake.cut()
            for index in range(3, 6):
                await uplink.tell(match_alert(index))
            await eventually(lambda: len(book.stored) == 6 and outbox.depth() == 0)
            assert book.alerts() == [alert_body(match_alert(i), 0) for i in range(6)]
            assert service.answered >= 2  # each connection was signalled
            assert dialer.links >= 2
            assert len(book.resumes) >= 2
        finally:
            await uplink.stop()
            await dialer.stop()
            await fake.close()
            await unit.stop()
            await van.stop()
            await runner.cleanup()
            outbox.close()
