"""Signed, WHIP-style signaling on 127.0.0.1 over HTTPS with a pinned self-signed certificate:
the happy path ends with a link over the data channel; every refusal has its test."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
import pytest
from aiortc import RTCPeerConnection

from actors.unit.signaling_client import (
    SignalingClientConfig,
    SignalingFailed,
    check_answer,
    negotiate,
    post_offer,
)
from actors.van.signaling import (
    ANSWER_CONTEXT,
    CODEC,
    LINK_KEY_BYTES,
    OFFER_CONTEXT,
    AnswerPayload,
    OfferPayload,
    SignalingConfig,
    SignalingRefused,
    SignalingService,
    Signed,
    seal_link_key,
    serve_signaling,
    sign_payload,
)
from actors.van.tls_certificate import create_tls_certificate, server_ssl_context
from bench.fuzz_signaling import data_channel_offer
from guards.config_checks import ConfigError
from runtime import ActorSystem, Codec, LinkKeys, SystemConfig
from runtime.datachannel import (
    DataChannelFrameChannel,
    DataOnlyPeerConnection,
    create_link_channel,
    open_link,
)
from runtime.log_budget import LOG_LINES_PER_WINDOW, LogBudget
from secure.hybrid_signature import ED25519_SIGNATURE_BYTES
from secure.node_keys import NodeKeys, NodeRole
from tests.runtime.helpers import WAIT_S, eventually
from tests.runtime.link_support import Add, GetTotal, Service, Total, service_link_config

TEST_S = 30.0
UNIT_ID = "unit-1"
OTHER_UNIT_ID = "unit-5"
"""A second enrolled unit, for what one unit must not do to another."""


pytestmark = pytest.mark.usefixtures("loopback_host_candidates")


@dataclass
class Van:
    service: SignalingService
    unit: NodeKeys
    other_unit: NodeKeys
    client_config: SignalingClientConfig
    connections: list[tuple[str, DataOnlyPeerConnection, bytes]]


@asynccontextmanager
async def running_van(tmp_path: Path, clock: Callable[[], float] = time.time,
                      **config: Any) -> AsyncIterator[Van]:
    """A van serving signaling on a random port with ``clock``; two enrolled units."""
    async with asyncio.timeout(TEST_S):
        van_keys = NodeKeys.generate(NodeRole.VAN, "van")
        unit = NodeKeys.generate(NodeRole.UNIT, UNIT_ID)
        other_unit = NodeKeys.generate(NodeRole.UNIT, OTHER_UNIT_ID)
        files = create_tls_certificate(tmp_path, "van")
        connections: list[tuple[str, DataOnlyPeerConnection, bytes]] = []
        service = SignalingService(
            van_keys, {UNIT_ID: unit.public(), OTHER_UNIT_ID: other_unit.public()}.get,
            lambda unit_id, pc, key: connections.append((unit_id, pc, key)),
            SignalingConfig(**config), clock=clock)
        runner, port = await serve_signaling(service, "127.0.0.1", 0,
                                             server_ssl_context(files.certificate, files.key))
        client_config = SignalingClientConfig(f"https://127.0.0.1:{port}", van_keys.public(),
                                              files.fingerprint)
        try:
            yield Van(service, unit, other_unit, client_config, connections)
        finally:
            for _, pc, _key in connections:
                await pc.close()
            await runner.cleanup()


def offer_body(van: Van, sdp: str, *, unit: NodeKeys | None = None,
               timestamp_s: float | None = None, nonce: bytes | None = None,
               sealed_link_key: bytes | None = None) -> bytes:
    """A signed offer of ``unit`` (the enrolled one by default) with a link key sealed to
    ``van`` for it, unless ``sealed_link_key`` is given."""
    unit = unit or van.unit
    nonce = nonce or secrets.token_bytes(32)
    van_key = van.client_config.van.encryption_key
    assert van_key is not None
    if sealed_link_key is None:
        sealed_link_key = seal_link_key(secrets.token_bytes(LINK_KEY_BYTES), van_key,
                                        unit.node_id, nonce)
    payload = OfferPayload(unit.node_id,
                           int((time.time() if timestamp_s is None else timestamp_s) * 1000),
                           nonce, sdp, sealed_link_key)
    return sign_payload(payload, unit.signing, OFFER_CONTEXT)


async def refused(van: Van, body: bytes, reason: str, status: int,
                  unit_id: str = UNIT_ID) -> None:
    with pytest.raises(SignalingFailed, match=f"{status}: {reason}"):
        await post_offer(van.client_config, unit_id, body)
    assert van.service.refusals[reason] == 1
    assert van.service.answered == 0


# --- the happy path -----------------------------------------------------------------------


async def test_a_signed_offer_is_answered_and_a_link_runs_over_the_data_channel(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with running_van(tmp_path) as van:
        van_system = ActorSystem(SystemConfig(name="van", shutdown_drain_s=0.2))
        unit_system = ActorSystem(SystemConfig(name=UNIT_ID, shutdown_drain_s=0.2))
        service = Service()
        await van_system.spawn("svc", lambda: service)
        codec = Codec()
        van_side: asyncio.Future[DataChannelFrameChannel] = \
            asyncio.get_running_loop().create_future()

        def connected(unit_id: str, pc: DataOnlyPeerConnection, key: bytes) -> None:
            van.connections.append((unit_id, pc, key))
            pc.on("datachannel", lambda channel: van_side.set_result(
                DataChannelFrameChannel(channel, pc, 1 << 20)))

        van.service._connected = connected
        unit_pc = DataOnlyPeerConnection()
        unit_channel = create_link_channel(unit_pc, 1 << 20)
        link_key = await negotiate(van.unit, van.client_config, unit_pc)
        assert len(link_key) == LINK_KEY_BYTES
        await unit_channel.wait_open(WAIT_S)
        van_channel = await asyncio.wait_for(van_side, WAIT_S)
        # Each side knows only the key signaling gave it: the link proves they are the same.
        unit_config = dataclasses.replace(service_link_config(),
                                          keys=LinkKeys({"van": link_key}, None, "signaling"))
        van_config = dataclasses.replace(
            service_link_config(), keys=LinkKeys({UNIT_ID: van.connections[0][2]}, None,
                                                 "signaling"))
        unit_link, van_link = await asyncio.gather(
            open_link(unit_system, unit_channel, unit_config, codec, initiator=True),
            open_link(van_system, van_channel, van_config, codec, initiator=False))
        runs = [asyncio.create_task(link.run()) for link in (unit_link, van_link)]
        try:
            await unit_link.ref("svc").tell(Add(7))
            await eventually(lambda: service.total == 7)
            assert await unit_link.ref("svc").ask(GetTotal(), timeout=WAIT_S) == Total(7)
            assert van.service.answered == 1
            assert van.connections[0][0] == UNIT_ID
            assert van.connections[0][2] == link_key
            assert link_key.hex() not in caplog.text
            assert repr(link_key)[2:-1] not in caplog.text
        finally:
            for run in runs:
                run.cancel()
            await asyncio.gather(*runs, return_exceptions=True)
            await unit_pc.close()
            await unit_system.stop()
            await van_system.stop()


# --- refused by the van -------------------------------------------------------------------


async def test_an_unknown_unit_is_refused(tmp_path: Path) -> None:
    async with running_van(tmp_path) as van:
        stranger = NodeKeys.generate(NodeRole.UNIT, "unit-9")
        await refused(van, offer_body(van, await data_channel_offer(), unit=stranger),
                      "unknown_unit", 403, "unit-9")


async def test_a_node_enrolled_as_anything_but_a_unit_is_refused(tmp_path: Path) -> None:
    async with running_van(tmp_path) as van:
        posing = NodeKeys.generate(NodeRole.AUTHORITY, UNIT_ID)
        van.service._enrolled = {UNIT_ID: posing.public()}.get
        await refused(van, offer_body(van, await data_channel_offer(), unit=posing),
                      "unknown_unit", 403)


@pytest.mark.parametrize(("offset", "half"), [(0, "ed25519"), (ED25519_SIGNATURE_BYTES + 5,
                                                                "ml-dsa-65")])
async def test_each_signature_half_is_checked(tmp_path: Path, offset: int, half: str,
                                              caplog: pytest.LogCaptureFixture) -> None:
    async with running_van(tmp_path) as van:
        signed = CODEC.decode(offer_body(van, await data_channel_offer()))
        signature = bytearray(signed.signature)
        signature[offset] ^= 1
        body = CODEC.encode(Signed(signed.payload, bytes(signature)))
        with caplog.at_level(logging.WARNING, "lfr.van.signaling"):
            await refused(van, body, "bad_signature", 403)
        assert f"the {half} half does not verify" in caplog.text


@pytest.mark.parametrize("skew_s", [-31.0, 31.0])
async def test_a_stale_or_future_timestamp_is_refused(tmp_path: Path, skew_s: float) -> None:
    async with running_van(tmp_path) as van:
        body = offer_body(van, await data_channel_offer(), timestamp_s=time.time() + skew_s)
        await refused(van, body, "stale", 403)


async def test_a_replayed_offer_is_refused(tmp_path: Path) -> None:
    async with running_van(tmp_path) as van:
        body = offer_body(van, await data_channel_offer())
        await post_offer(van.client_config, UNIT_ID, body)
        with pytest.raises(SignalingFailed, match="409: replayed"):
            await post_offer(van.client_config, UNIT_ID, body)
        assert van.service.answered == 1


async def test_a_forged_offer_does_not_burn_its_nonce(tmp_path: Path) -> None:
    async with running_van(tmp_path) as van:
        nonce, sdp = secrets.token_bytes(32), await data_channel_offer()
        forger = NodeKeys.generate(NodeRole.UNIT, UNIT_ID)  # right id, wrong key
        await refused(van, offer_body(van, sdp, unit=forger, nonce=nonce), "bad_signature",
                      403)
        await post_offer(van.client_config, UNIT_ID, offer_body(van, sdp, nonce=nonce))


async def test_a_link_key_sealed_to_another_van_is_refused(tmp_path: Path) -> None:
    async with running_van(tmp_path) as van:
        nonce = secrets.token_bytes(32)
        other = NodeKeys.generate(NodeRole.VAN, "van").public().encryption_key
        assert other is not None
        sealed = seal_link_key(secrets.token_bytes(LINK_KEY_BYTES), other, UNIT_ID, nonce)
        await refused(van, offer_body(van, await data_channel_offer(), nonce=nonce,
                                      sealed_link_key=sealed), "bad_link_key", 403)
        assert van.connections == []


async def test_a_link_key_sealed_for_another_offer_is_refused(tmp_path: Path) -> None:
    """A sealed key is bound to its unit and nonce: lifted into another offer, it stays shut."""
    async with running_van(tmp_path) as van:
        van_key = van.client_config.van.encryption_key
        assert van_key is not None
        sdp = await data_channel_offer()
        other_nonce = secrets.token_bytes(32)
        for unit_id, nonce in ((UNIT_ID, other_nonce), ("unit-2", None)):
            sealed = seal_link_key(secrets.token_bytes(LINK_KEY_BYTES), van_key, unit_id,
                                   nonce or secrets.token_bytes(32))
            with pytest.raises(SignalingFailed, match="403: bad_link_key"):
                await post_offer(van.client_config, UNIT_ID,
                                 offer_body(van, sdp, sealed_link_key=sealed))
        assert van.service.refusals["bad_link_key"] == 2
        assert van.connections == []


async def test_a_sealed_link_key_of_the_wrong_length_is_malformed(tmp_path: Path) -> None:
    async with running_van(tmp_path) as van:
        van_key = van.client_config.van.encryption_key
        assert van_key is not None
        nonce = secrets.token_bytes(32)
        sealed = seal_link_key(secrets.token_bytes(LINK_KEY_BYTES), van_key, UNIT_ID, nonce)
        await refused(van, offer_body(van, await data_channel_offer(), nonce=nonce,
                                      sealed_link_key=sealed + b"\x00"), "malformed", 400)


async def test_an_offer_of_version_1_without_a_link_key_is_malformed(tmp_path: Path) -> None:
    async with running_van(tmp_path) as van:
        payload = msgpack.packb([310, 1, {"unit_id": UNIT_ID,
                                          "timestamp_ms": int(time.time() * 1000),
                                          "nonce": secrets.token_bytes(32),
                                          "sdp": await data_channel_offer()}])
        body = CODEC.encode(Signed(payload, van.unit.signing.sign(payload,
                                                                  OFFER_CONTEXT).to_bytes()))
        await refused(van, body, "malformed", 400)


async def test_the_van_may_refuse_a_unit_when_it_is_handed_over(tmp_path: Path) -> None:
    """``connected`` raising ``SignalingRefused`` (a unit limit) answers that refusal and closes
    the peer connection it was handed."""
    async with running_van(tmp_path) as van:
        handed: list[DataOnlyPeerConnection] = []

        def full(unit_id: str, pc: DataOnlyPeerConnection, key: bytes) -> None:
            handed.append(pc)
            raise SignalingRefused("too_many_units", "64 units are connected", 503)

        van.service._connected = full
        await refused(van, offer_body(van, await data_channel_offer()), "too_many_units", 503)
        assert len(handed) == 1
        assert handed[0].connectionState == "closed"


async def test_an_oversize_body_is_refused(tmp_path: Path) -> None:
    async with running_van(tmp_path, max_body_bytes=8192) as van:
        await refused(van, bytes(8193), "oversize", 413)


async def test_a_malformed_body_is_refused(tmp_path: Path) -> None:
    async with running_van(tmp_path) as van:
        await refused(van, b"\x93\x01\x02", "malformed", 400)


async def test_an_offer_posted_for_another_unit_is_refused(tmp_path: Path) -> None:
    async with running_van(tmp_path) as van:
        await refused(van, offer_body(van, await data_channel_offer()), "unit_mismatch", 400,
                      "unit-2")


async def test_an_offer_with_a_video_section_is_refused(tmp_path: Path) -> None:
    async with running_van(tmp_path) as van:
        plain = RTCPeerConnection()
        try:
            plain.createDataChannel("lfr-link")
            plain.addTransceiver("video")
            sdp = (await plain.createOffer()).sdp
        finally:
            await plain.close()
        await refused(van, offer_body(van, sdp), "media_refused", 400)
        assert van.connections == []


# --- one unit's share of the replay cache -------------------------------------------------

NO_KEY = bytes(1168)
"""A sealed link key of the right length that opens with no key: the offer is signed, its
nonce remembered, and then refused as ``bad_link_key`` (the cheapest flood an enrolled unit
can make)."""


async def post_as(van: Van, unit: NodeKeys, sdp: str, **fields: Any) -> bytes:
    """Post an offer signed by ``unit`` for itself; the answer (``SignalingFailed`` if
    refused)."""
    return await post_offer(van.client_config, unit.node_id,
                            offer_body(van, sdp, unit=unit, **fields))


async def test_a_unit_flooding_offers_is_refused_after_its_share_and_another_is_answered(
        tmp_path: Path) -> None:
    async with running_van(tmp_path, max_offers_per_unit=3) as van:
        sdp = await data_channel_offer()
        for _ in range(3):
            with pytest.raises(SignalingFailed, match="403: bad_link_key"):
                await post_as(van, van.unit, sdp, sealed_link_key=NO_KEY)
        for _ in range(4):  # over its share: refused before anything else, and not remembered
            with pytest.raises(SignalingFailed, match="429: too_many_offers"):
                await post_as(van, van.unit, sdp, sealed_link_key=NO_KEY)
        assert len(van.service._replays) == 3
        # It locked out itself, valid offers too ...
        with pytest.raises(SignalingFailed, match="429: too_many_offers"):
            await post_as(van, van.unit, sdp)
        # ... and nobody else.
        await post_as(van, van.other_unit, sdp)
        assert van.service.answered == 1
        assert [unit_id for unit_id, _, _ in van.connections] == [OTHER_UNIT_ID]
        assert van.service.refusals == {"bad_link_key": 3, "too_many_offers": 5}


async def test_a_units_share_frees_up_as_the_window_passes(tmp_path: Path) -> None:
    now = [time.time()]
    async with running_van(tmp_path, clock=lambda: now[0], max_offers_per_unit=2,
                           freshness_window_s=30.0) as van:
        sdp = await data_channel_offer()
        start = now[0]
        for _ in range(2):
            with pytest.raises(SignalingFailed, match="403: bad_link_key"):
                await post_as(van, van.unit, sdp, sealed_link_key=NO_KEY, timestamp_s=start)
        now[0] = start + 29.0  # both nonces still in the window
        with pytest.raises(SignalingFailed, match="429: too_many_offers"):
            await post_as(van, van.unit, sdp, timestamp_s=now[0])
        assert van.service._replays.held_by(UNIT_ID, now[0]) == 2
        now[0] = start + 31.0  # both left it: the share is free again
        assert van.service._replays.held_by(UNIT_ID, now[0]) == 0
        await post_as(van, van.unit, sdp, timestamp_s=now[0])
        assert van.service.answered == 1
        assert van.service._replays.held_by(UNIT_ID, now[0]) == 1


async def test_a_replay_is_refused_as_such_also_at_the_units_share(tmp_path: Path) -> None:
    async with running_van(tmp_path, max_offers_per_unit=1) as van:
        sdp = await data_channel_offer()
        body = offer_body(van, sdp)
        await post_offer(van.client_config, UNIT_ID, body)
        with pytest.raises(SignalingFailed, match="409: replayed"):
            await post_offer(van.client_config, UNIT_ID, body)
        with pytest.raises(SignalingFailed, match="429: too_many_offers"):
            await post_as(van, van.unit, sdp)
        assert van.service.answered == 1


async def test_the_bound_of_the_whole_cache_stays(tmp_path: Path) -> None:
    """Units within their shares can still fill the cache together: then every unit is
    refused (``replay_cache_full``) rather than an unexpired nonce forgotten."""
    async with running_van(tmp_path, max_offers_per_unit=2, max_remembered_nonces=3) as van:
        sdp = await data_channel_offer()
        for unit in (van.unit, van.unit, van.other_unit):
            with pytest.raises(SignalingFailed, match="403: bad_link_key"):
                await post_as(van, unit, sdp, sealed_link_key=NO_KEY)
        with pytest.raises(SignalingFailed, match="503: replay_cache_full"):
            await post_as(van, van.other_unit, sdp)
        with pytest.raises(SignalingFailed, match="429: too_many_offers"):
            await post_as(van, van.unit, sdp)
        assert len(van.service._replays) == 3


async def test_refusal_lines_are_bounded_while_every_refusal_is_counted(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A peer decides how many refusals there are: the log gets the budget's lines, the
    counters get every one."""
    async with running_van(tmp_path) as van:
        budget = LogBudget(logging.getLogger("lfr.van.signaling"), "signaling refusals",
                           clock=lambda: 0.0)  # one window for the whole test
        van.service._log = budget
        with caplog.at_level(logging.WARNING, "lfr.van.signaling"):
            for _ in range(LOG_LINES_PER_WINDOW + 5):
                with pytest.raises(SignalingFailed, match="400: malformed"):
                    await post_offer(van.client_config, UNIT_ID, b"\x93\x01\x02")
        lines = [r for r in caplog.records if "refused an offer" in r.getMessage()]
        assert len(lines) == LOG_LINES_PER_WINDOW
        assert budget.suppressed_total == 5
        assert van.service.refusals["malformed"] == LOG_LINES_PER_WINDOW + 5


def test_the_share_of_a_unit_must_be_at_least_one() -> None:
    with pytest.raises(ConfigError, match="max_offers_per_unit"):
        SignalingConfig(max_offers_per_unit=0)


async def test_offers_beyond_the_concurrency_limit_are_refused_at_once(tmp_path: Path) -> None:
    async with running_van(tmp_path, max_concurrent_offers=1) as van:
        van.service._in_flight = 1  # one offer is being answered
        await refused(van, offer_body(van, await data_channel_offer()), "busy", 503)


# --- refused by the unit ------------------------------------------------------------------


async def test_a_wrong_pinned_fingerprint_is_refused_before_the_offer_is_sent(
        tmp_path: Path) -> None:
    async with running_van(tmp_path) as van:
        config = dataclasses.replace(van.client_config, tls_fingerprint=bytes(32))
        with pytest.raises(SignalingFailed) as failure:
            await post_offer(config, UNIT_ID, offer_body(van, await data_channel_offer()))
        assert failure.value.reason == "wrong_certificate"
        assert sum(van.service.refusals.values()) == van.service.answered == 0


async def signed_answer(van: Van) -> tuple[bytes, bytes]:
    """A real answer from the van to a fresh offer, and the offer's nonce."""
    nonce = secrets.token_bytes(32)
    body = offer_body(van, await data_channel_offer(), nonce=nonce)
    return await post_offer(van.client_config, UNIT_ID, body), nonce


async def test_an_answer_whose_sdp_was_altered_is_refused(tmp_path: Path) -> None:
    async with running_van(tmp_path) as van:
        body, nonce = await signed_answer(van)
        assert check_answer(body, van.client_config, UNIT_ID, nonce, time.time())
        signed = CODEC.decode(body)
        answer = CODEC.decode(signed.payload)
        # A man in the middle puts its own DTLS fingerprint in, keeping the van's signature.
        spliced = dataclasses.replace(answer, sdp=answer.sdp.replace(
            "a=fingerprint:sha-256 ", "a=fingerprint:sha-256 00:", 1))
        assert spliced.sdp != answer.sdp
        forged = CODEC.encode(Signed(CODEC.encode(spliced), signed.signature))
        with pytest.raises(SignalingFailed) as failure:
            check_answer(forged, van.client_config, UNIT_ID, nonce, time.time())
        assert failure.value.reason == "bad_signature"


async def test_an_answer_to_another_offer_or_stale_is_refused(tmp_path: Path) -> None:
    async with running_van(tmp_path) as van:
        body, nonce = await signed_answer(van)
        config = van.client_config
        for args, reason in (((UNIT_ID, secrets.token_bytes(32), time.time()),
                              "nonce_mismatch"),
                             (("unit-2", nonce, time.time()), "wrong_unit"),
                             ((UNIT_ID, nonce, time.time() + 60), "stale")):
            with pytest.raises(SignalingFailed) as failure:
                check_answer(body, config, *args)
            assert failure.value.reason == reason


async def test_an_answer_signed_by_another_van_is_refused(tmp_path: Path) -> None:
    async with running_van(tmp_path) as van:
        body, nonce = await signed_answer(van)
        answer = CODEC.decode(CODEC.decode(body).payload)
        other = NodeKeys.generate(NodeRole.VAN, "van")
        forged = sign_payload(answer, other.signing, ANSWER_CONTEXT)
        with pytest.raises(SignalingFailed) as failure:
            check_answer(forged, van.client_config, UNIT_ID, nonce, time.time())
        assert failure.value.reason == "bad_signature"
        assert isinstance(answer, AnswerPayload)


async def test_a_van_that_is_unreachable_fails_within_the_timeout(tmp_path: Path) -> None:
    async with running_van(tmp_path) as van:
        config = dataclasses.replace(van.client_config, van_url="https://127.0.0.1:9",
                                     connect_timeout_s=1.0, request_timeout_s=2.0)
        async with asyncio.timeout(WAIT_S):
            with pytest.raises(SignalingFailed) as failure:
                await post_offer(config, UNIT_ID, b"x")
        assert failure.value.reason == "unreachable"


async def test_an_answer_from_the_vans_key_under_another_van_id_is_refused(
        tmp_path: Path) -> None:
    async with running_van(tmp_path) as van:
        body, nonce = await signed_answer(van)
        answer = CODEC.decode(CODEC.decode(body).payload)
        renamed = sign_payload(dataclasses.replace(answer, van_id="van-2"),
                               van.service.van.signing, ANSWER_CONTEXT)
        with pytest.raises(SignalingFailed) as failure:
            check_answer(renamed, van.client_config, UNIT_ID, nonce, time.time())
        assert failure.value.reason == "wrong_van"


async def test_a_signed_answer_with_a_video_section_is_refused(tmp_path: Path) -> None:
    async with running_van(tmp_path) as van:
        body, nonce = await signed_answer(van)
        answer = CODEC.decode(CODEC.decode(body).payload)
        video = answer.sdp + "m=video 9 UDP/TLS/RTP/SAVPF 96\r\n"
        signed = sign_payload(dataclasses.replace(answer, sdp=video), van.service.van.signing,
                              ANSWER_CONTEXT)
        with pytest.raises(SignalingFailed) as failure:
            check_answer(signed, van.client_config, UNIT_ID, nonce, time.time())
        assert failure.value.reason == "media_refused"


async def test_an_answer_that_takes_too_long_is_refused_and_its_connection_closed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def never(self: Any) -> Any:
        await asyncio.sleep(TEST_S)

    monkeypatch.setattr(DataOnlyPeerConnection, "createAnswer", never)
    async with running_van(tmp_path, negotiation_timeout_s=0.2) as van:
        await refused(van, offer_body(van, await data_channel_offer()), "negotiation_failed",
                      504)
        assert van.connections == []
