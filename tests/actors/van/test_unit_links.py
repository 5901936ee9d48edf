"""The van's unit links over real aiortc peer connections in this process: signed signaling on
127.0.0.1 over HTTPS hands each unit to ``UnitLinks``, which runs the link with the key from
signaling and routes the unit's asks to its own receiver. One link per unit, bounded units, a
refused channel label, heartbeat silence, and stop."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from actors.delivery_messages import (
    RECEIVER_ACTOR,
    BatchReceipt,
    Deliver,
    DeliverBatch,
    EnvelopeOutcome,
    Outcome,
    Receipt,
    Resume,
    ResumePoint,
)
from actors.unit.signaling_client import (
    SignalingClientConfig,
    SignalingFailed,
    negotiate,
    post_offer,
)
from actors.van.signaling import (
    LINK_KEY_BYTES,
    OFFER_CONTEXT,
    OfferPayload,
    SignalingService,
    seal_link_key,
    serve_signaling,
    sign_payload,
)
from actors.van.tls_certificate import create_tls_certificate, server_ssl_context
from actors.van.unit_links import UnitLinkEvent, UnitLinks, UnitLinksConfig
from runtime import ActorSystem, Codec, HandshakeRefused, LinkConfig, LinkKeys, SystemConfig
from runtime.datachannel import (
    DataChannelFrameChannel,
    DataOnlyPeerConnection,
    create_link_channel,
    open_link,
)
from runtime.link import Link
from tests.actors.support import eventually
from tests.actors.van.delivery_support import OTHER_UNIT_ID, UNIT_ID, Van, alert, make_van

TEST_S = 60.0
"""Upper bound of one test: nothing here may hang the suite."""
WAIT_S = 20.0
VAN_ID = "van-1"


pytestmark = pytest.mark.usefixtures("loopback_host_candidates")


@dataclass
class VanSide:
    van: Van
    system: ActorSystem
    links: UnitLinks
    service: SignalingService
    client_config: SignalingClientConfig
    events: list[UnitLinkEvent]

    def lines(self) -> list[str]:
        return [event.line() for event in self.events]


@asynccontextmanager
async def van_side(tmp_path: Path, **config: Any) -> AsyncIterator[VanSide]:
    """A van with two enrolled units, serving signaling on a random port into ``UnitLinks``."""
    async with asyncio.timeout(TEST_S):
        van = make_van(tmp_path, UNIT_ID, OTHER_UNIT_ID)
        system = ActorSystem(SystemConfig(name=VAN_ID, shutdown_drain_s=0.2))
        await system.start()
        events: list[UnitLinkEvent] = []
        receivers = await system.spawn_supervisor("receivers")
        links = UnitLinks(system, receivers, van.store, signers=van.enrolment.lookup,
                          van_key=van.encryption, config=UnitLinksConfig(**config),
                          on_event=events.append)
        enrolled = {unit_id: keys.public() for unit_id, keys in van.units.items()}
        service = SignalingService(van.keys, enrolled.get, links.connected)
        files = create_tls_certificate(tmp_path, VAN_ID)
        runner, port = await serve_signaling(service, "127.0.0.1", 0,
                                             server_ssl_context(files.certificate, files.key))
        client = SignalingClientConfig(f"https://127.0.0.1:{port}", van.keys.public(),
                                       files.fingerprint)
        try:
            yield VanSide(van, system, links, service, client, events)
        finally:
            await links.stop()
            await runner.cleanup()
            await system.stop()
            van.store.close()


@dataclass
class UnitSide:
    """A unit's end: its own actor system, peer connection, link and the link's run task."""

    system: ActorSystem
    pc: DataOnlyPeerConnection
    link: Link
    run: asyncio.Task[str]
    closed: list[bool] = field(default_factory=list)

    async def ask(self, message: Resume | Deliver | DeliverBatch) -> Any:
        return await self.link.ref(RECEIVER_ACTOR).ask(message, timeout=WAIT_S)

    async def ended(self) -> str:
        async with asyncio.timeout(WAIT_S):
            return await asyncio.shield(self.run)

    async def close(self) -> None:
        if self.closed:
            return
        self.closed.append(True)
        self.run.cancel()
        await asyncio.gather(self.run, return_exceptions=True)
        await self.pc.close()
        await self.system.stop()


def unit_link_config(key: bytes, **settings: Any) -> LinkConfig:
    return LinkConfig(keys=LinkKeys({VAN_ID: key}, None, "the key from signaling"), **settings)


@asynccontextmanager
async def dialled(side: VanSide, unit_id: str = UNIT_ID, *, key: bytes | None = None,
                  **settings: Any) -> AsyncIterator[UnitSide]:
    """A unit that signalled, opened the link channel and linked with the key from signaling
    (or ``key``) and the link ``settings``."""
    system = ActorSystem(SystemConfig(name=unit_id, shutdown_drain_s=0.2))
    await system.start()
    pc = DataOnlyPeerConnection()
    unit: UnitSide | None = None
    try:
        channel = create_link_channel(pc, 1 << 20)
        link_key = await negotiate(side.van.units[unit_id], side.client_config, pc)
        await channel.wait_open(WAIT_S)
        link = await open_link(system, channel, unit_link_config(key or link_key, **settings),
                               Codec(), initiator=True)
        unit = UnitSide(system, pc, link, asyncio.create_task(link.run()))
        yield unit
    finally:
        if unit is not None:
            await unit.close()
        else:
            await pc.close()
            await system.stop()


def signed_offer(side: VanSide, sdp: str) -> bytes:
    """A valid signed offer of ``UNIT_ID`` with ``sdp``, made by hand."""
    nonce = secrets.token_bytes(32)
    van_key = side.client_config.van.encryption_key
    assert van_key is not None
    payload = OfferPayload(UNIT_ID, int(time.time() * 1000), nonce, sdp,
                           seal_link_key(secrets.token_bytes(LINK_KEY_BYTES), van_key, UNIT_ID,
                                         nonce))
    return sign_payload(payload, side.van.units[UNIT_ID].signing, OFFER_CONTEXT)


# -- a unit's link -----------------------------------------------------------------------------


async def test_a_unit_links_with_the_key_from_signaling_and_reaches_its_receiver(
        tmp_path: Path) -> None:
    async with van_side(tmp_path) as side, dialled(side) as unit:
        assert await unit.ask(Resume(1, 0)) == ResumePoint(0)
        envelope = side.van.seal(alert(1), 1)
        assert await unit.ask(Deliver(envelope, 1)) == Receipt(1, Outcome.STORED, 1)
        assert await unit.ask(Deliver(envelope, 1)) == Receipt(1, Outcome.DUPLICATE, 1)
        assert [event.sealed for event in side.van.store.by_unit(UNIT_ID)] == [envelope]
        assert side.links.linked_units() == (UNIT_ID,)
        assert side.lines() == [f"unit {UNIT_ID} connected"]
        statistics = side.links.statistics()[UNIT_ID]
        assert (statistics.stored_alerts, statistics.duplicates) == (1, 1)
        # a batch over the same link: one frame, one receipt, each envelope's outcome
        batch = (envelope, side.van.seal(alert(2), 2), side.van.seal(alert(3), 3))
        assert await unit.ask(DeliverBatch(batch, 1)) == BatchReceipt(
            (EnvelopeOutcome(1, Outcome.DUPLICATE), EnvelopeOutcome(2, Outcome.STORED),
             EnvelopeOutcome(3, Outcome.STORED)), 3)
        assert (statistics.stored_alerts, statistics.duplicates) == (3, 2)


async def test_each_unit_reaches_only_its_own_receiver(tmp_path: Path) -> None:
    async with van_side(tmp_path) as side, dialled(side) as one, \
            dialled(side, OTHER_UNIT_ID) as two:
        await one.ask(Deliver(side.van.seal(alert(1), 1), 1))
        # unit-2 relays unit-1's envelope: its receiver refuses it.
        relayed = await two.ask(Deliver(side.van.seal(alert(2), 2), 1))
        assert relayed.outcome is Outcome.REFUSED
        assert relayed.reason.startswith("wrong_unit")
        own = await two.ask(Deliver(side.van.seal(alert(1), 1, unit=OTHER_UNIT_ID), 1))
        assert own == Receipt(1, Outcome.STORED, 1)
        assert side.links.linked_units() == (UNIT_ID, OTHER_UNIT_ID)
        assert [e.seq for e in side.van.store.by_unit(UNIT_ID)] == [1]


async def test_a_unit_without_the_key_from_signaling_is_refused_its_link(
        tmp_path: Path) -> None:
    async with van_side(tmp_path) as side:
        with pytest.raises(HandshakeRefused):
            async with dialled(side, key=bytes(32)):
                pass
        await eventually(lambda: len(side.events) == 1, timeout_s=WAIT_S)
        assert side.events[0].kind == "failed"
        assert "link handshake refused" in side.events[0].reason
        assert side.links.linked_units() == ()


# -- one link per unit -------------------------------------------------------------------------


async def test_a_second_connection_of_a_unit_replaces_the_first(tmp_path: Path) -> None:
    async with van_side(tmp_path) as side, dialled(side) as first:
        assert await first.ask(Resume(1, 0)) == ResumePoint(0)
        async with dialled(side) as second:
            await first.ended()  # the van closed the old link
            assert await second.ask(Deliver(side.van.seal(alert(1), 1), 1)) == Receipt(
                1, Outcome.STORED, 1)
            assert side.links.linked_units() == (UNIT_ID,)
            assert side.links.replaced == 1
            replaced = f"unit {UNIT_ID} dropped: replaced by a new connection of the unit"
            assert side.lines() == [f"unit {UNIT_ID} connected", replaced,
                                    f"unit {UNIT_ID} connected"]
            statistics = side.links.statistics()[UNIT_ID]
            assert (statistics.resumes, statistics.stored_alerts) == (1, 1)  # one receiver


async def test_units_beyond_the_limit_are_refused_in_signaling(tmp_path: Path) -> None:
    async with van_side(tmp_path, max_units=1) as side, dialled(side):
        with pytest.raises(SignalingFailed, match="503: too_many_units"):
            async with dialled(side, OTHER_UNIT_ID):
                pass
        assert side.service.refusals["too_many_units"] == 1
        assert side.links.refused_units == 1
        async with dialled(side) as again:  # the same unit again replaces, not counts
            assert await again.ask(Resume(1, 0)) == ResumePoint(0)


# -- the data channel --------------------------------------------------------------------------


async def test_a_data_channel_with_another_label_is_refused(tmp_path: Path) -> None:
    async with van_side(tmp_path) as side:
        pc = DataOnlyPeerConnection()
        try:
            wrapped = DataChannelFrameChannel(pc.createDataChannel("chat"), pc, 1 << 20)
            await negotiate(side.van.units[UNIT_ID], side.client_config, pc)
            await eventually(lambda: len(side.events) == 1, timeout_s=WAIT_S)
            assert side.events[0].kind == "failed"
            assert "labelled 'chat'" in side.events[0].reason
            assert side.links.refused_channels == 1
            with contextlib.suppress(ConnectionError):
                await wrapped.wait_open(WAIT_S)
            await eventually(lambda: pc.connectionState == "closed"
                             or wrapped._ended is not None, timeout_s=WAIT_S)
        finally:
            await pc.close()


async def test_a_second_data_channel_is_closed_and_the_link_runs_on(tmp_path: Path) -> None:
    async with van_side(tmp_path) as side, dialled(side) as unit:
        extra = unit.pc.createDataChannel("lfr-link")
        await eventually(lambda: side.links.refused_channels == 1, timeout_s=WAIT_S)
        await eventually(lambda: extra.readyState == "closed", timeout_s=WAIT_S)
        assert await unit.ask(Resume(1, 0)) == ResumePoint(0)
        assert side.links.linked_units() == (UNIT_ID,)


async def test_a_unit_that_offers_but_never_opens_its_channel_is_dropped(
        tmp_path: Path) -> None:
    async with van_side(tmp_path, channel_timeout_s=0.5) as side:
        pc = DataOnlyPeerConnection()
        try:
            create_link_channel(pc, 1 << 20)
            await pc.setLocalDescription(await pc.createOffer())
            # The offer is answered, but the unit never applies the answer: no ICE, no channel.
            await post_offer(side.client_config, UNIT_ID,
                             signed_offer(side, pc.localDescription.sdp))
            await eventually(lambda: len(side.events) == 1, timeout_s=WAIT_S)
            assert side.events[0].kind == "failed"
            assert "no data channel within 0.5 s" in side.events[0].reason
            assert side.links.linked_units() == ()
        finally:
            await pc.close()


# -- ending ------------------------------------------------------------------------------------


async def test_a_silent_unit_is_dropped_by_heartbeat_timeout(tmp_path: Path) -> None:
    async with van_side(tmp_path, heartbeat_interval_s=0.1, heartbeat_timeout_s=0.5) as side, \
            dialled(side, heartbeat_interval_s=1000.0, heartbeat_timeout_s=2000.0) as unit:
        await unit.ended()
        await eventually(lambda: len(side.events) == 2, timeout_s=WAIT_S)
        dropped = side.events[1]
        assert dropped.kind == "dropped"
        assert "heartbeat timeout 0.5 s" in dropped.reason
        assert side.links.linked_units() == ()


async def test_a_unit_that_hangs_up_is_dropped(tmp_path: Path) -> None:
    async with van_side(tmp_path) as side, dialled(side) as unit:
        await unit.close()
        await eventually(lambda: len(side.events) == 2, timeout_s=WAIT_S)
        assert side.events[1].kind == "dropped"
        assert side.links.linked_units() == ()


async def test_stop_closes_every_link_and_refuses_new_units(tmp_path: Path) -> None:
    async with van_side(tmp_path) as side, dialled(side) as one, \
            dialled(side, OTHER_UNIT_ID) as two:
        await side.links.stop()
        await one.ended()
        await two.ended()
        assert side.links.linked_units() == ()
        assert sorted(side.lines()[2:]) == [f"unit {unit} dropped: the van is stopping"
                                            for unit in (UNIT_ID, OTHER_UNIT_ID)]
        with pytest.raises(SignalingFailed, match="503: stopping"):
            async with dialled(side):
                pass


def test_the_config_is_checked() -> None:
    with pytest.raises(ValueError, match="max_units"):
        UnitLinksConfig(max_units=1025)
    with pytest.raises(ValueError, match="heartbeat_timeout_s"):
        UnitLinksConfig(heartbeat_interval_s=2.0, heartbeat_timeout_s=1.0)
    with pytest.raises(ValueError, match="receiver_mailbox"):
        UnitLinksConfig(max_peer_asks=64, receiver_mailbox=32)
