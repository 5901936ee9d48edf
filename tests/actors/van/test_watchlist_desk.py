"""The van's watchlist desk for one unit: it answers polls through the board, seals exactly the
version the board wants this unit to hold to the unit's one-time key, bound to the unit,
deployment and version, and hands it out in chunks; everything else is refused with a clear
``DeskRefused`` while the desk keeps running."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from actors.van.watchlist_board import WatchlistBoard
from actors.van.watchlist_desk import DeskMessage, DeskRefused, WatchlistDesk, desk_name
from actors.watchlist_messages import (
    CHUNK_BYTES,
    NewsKind,
    WatchlistChunk,
    WatchlistChunkWanted,
    WatchlistFetch,
    WatchlistNews,
    WatchlistTransfer,
    transfer_info,
)
from guards.user_input import UserInputError
from runtime.ref import ActorRef
from runtime.system import ActorSystem
from secure.sealing import EncryptionKeyPair, SealedOpenFailed
from tests.actors.support import WAIT_S
from tests.actors.van.test_watchlist_board import Clock, make_watchlist, open_board, poll, sign


@pytest.fixture
def board(tmp_path: Path, system: ActorSystem) -> Iterator[WatchlistBoard]:
    board, store = open_board(tmp_path / "deployments.sqlite", system, Clock())
    with store:
        yield board


async def desk_for(system: ActorSystem, board: WatchlistBoard,
                   unit: str = "unit-a") -> ActorRef[DeskMessage]:
    return await system.spawn(desk_name(unit), lambda: WatchlistDesk(unit, board))


def reply_key(pair: EncryptionKeyPair) -> bytes:
    public = pair.public_key
    return public.ml_kem_768_public + public.x25519_public


async def fetch_all(desk: ActorRef[DeskMessage], transfer: WatchlistTransfer) -> bytes:
    parts = []
    for index in range(transfer.chunks):
        chunk = await desk.ask(WatchlistChunkWanted(transfer.transfer_id, index), timeout=WAIT_S)
        assert isinstance(chunk, WatchlistChunk)
        assert chunk.index == index
        parts.append(chunk.data)
    return b"".join(parts)


def failures(system: ActorSystem, unit: str = "unit-a") -> tuple[int, int]:
    """(failures, restarts) of the desk's cell: a refused ask is neither."""
    cell = next(c for c in system.cells() if c.name == desk_name(unit))
    return cell.metrics.failures, cell.metrics.restarts


async def test_a_unit_gets_the_version_it_is_to_hold_sealed_to_its_key_in_chunks(
        system: ActorSystem, board: WatchlistBoard) -> None:
    await board.start_deployment("dep-1", 0.6)
    signed = sign(make_watchlist(400, seed=1))  # several chunks
    await board.push(signed)
    desk = await desk_for(system, board)
    news = await desk.ask(poll(), timeout=WAIT_S)
    assert isinstance(news, WatchlistNews)
    assert news.kind == NewsKind.HOLD.value
    assert news.signed_bytes == len(signed)

    pair = EncryptionKeyPair.generate()
    transfer = await desk.ask(WatchlistFetch("dep-1", 1, reply_key(pair)), timeout=WAIT_S)
    assert isinstance(transfer, WatchlistTransfer)
    assert transfer.chunks == -(-transfer.sealed_bytes // CHUNK_BYTES) > 1
    sealed = await fetch_all(desk, transfer)
    assert len(sealed) == transfer.sealed_bytes
    assert hashlib.sha256(sealed).digest() == transfer.sha256
    assert pair.open(sealed, transfer_info("unit-a", "dep-1", 1)) == signed
    # Bound to this unit, deployment and version: under any other it does not open.
    for info in (transfer_info("unit-b", "dep-1", 1), transfer_info("unit-a", "dep-2", 1),
                 transfer_info("unit-a", "dep-1", 2)):
        with pytest.raises(SealedOpenFailed):
            pair.open(sealed, info)
    # Complete: the sealed copy is dropped, its chunks are no longer served.
    with pytest.raises(DeskRefused, match=f"no transfer {transfer.transfer_id} is open"):
        await desk.ask(WatchlistChunkWanted(transfer.transfer_id, 0), timeout=WAIT_S)
    assert failures(system) == (0, 0)


@pytest.mark.parametrize(("deployment", "version", "unit_version"), [
    ("dep-1", 1, 2),  # an older version than the one it is to hold
    ("dep-1", 3, 2),  # a version that was never pushed
    ("dep-0", 2, 2),  # another deployment
    ("dep-1", 2, None),  # a version pushed to another unit only
])
async def test_a_unit_can_fetch_only_the_version_the_board_wants_for_it(
        system: ActorSystem, board: WatchlistBoard, deployment: str, version: int,
        unit_version: int | None) -> None:
    await board.start_deployment("dep-1", 0.6)
    await board.push(sign(version=1), ["unit-b"])
    await board.push(sign(version=2), ["unit-b"] if unit_version is None else [])
    assert board.wanted("unit-a") == unit_version
    desk = await desk_for(system, board)
    key = reply_key(EncryptionKeyPair.generate())
    with pytest.raises(DeskRefused, match=f"version {version} is not what this unit"):
        await desk.ask(WatchlistFetch(deployment, version, key), timeout=WAIT_S)
    # The desk keeps running and still serves what the unit may have.
    if unit_version is not None:
        transfer = await desk.ask(WatchlistFetch("dep-1", unit_version, key), timeout=WAIT_S)
        assert isinstance(transfer, WatchlistTransfer)
    assert failures(system) == (0, 0)


async def test_without_a_deployment_nothing_can_be_fetched(
        system: ActorSystem, board: WatchlistBoard) -> None:
    desk = await desk_for(system, board)
    with pytest.raises(DeskRefused):
        await desk.ask(WatchlistFetch("dep-1", 1, reply_key(EncryptionKeyPair.generate())),
                       timeout=WAIT_S)


@pytest.mark.parametrize("key", [b"", b"\x01" * 1215, b"\x01" * 1217, b"\x01" * 4096])
async def test_a_reply_key_of_the_wrong_size_is_refused_naming_both_sizes(
        system: ActorSystem, board: WatchlistBoard, key: bytes) -> None:
    await board.start_deployment("dep-1", 0.6)
    await board.push(sign())
    desk = await desk_for(system, board)
    with pytest.raises(DeskRefused, match=f"must be 1216 bytes, got {len(key)}"):
        await desk.ask(WatchlistFetch("dep-1", 1, key), timeout=WAIT_S)
    assert isinstance(await desk.ask(poll(), timeout=WAIT_S), WatchlistNews)
    assert failures(system) == (0, 0)


async def test_a_reply_key_that_is_no_public_key_is_refused(
        system: ActorSystem, board: WatchlistBoard) -> None:
    await board.start_deployment("dep-1", 0.6)
    await board.push(sign())
    desk = await desk_for(system, board)
    with pytest.raises(DeskRefused, match="not a valid public key"):
        await desk.ask(WatchlistFetch("dep-1", 1, b"\xff" * 1216), timeout=WAIT_S)
    assert failures(system) == (0, 0)


async def test_chunks_out_of_range_or_of_another_transfer_are_refused(
        system: ActorSystem, board: WatchlistBoard) -> None:
    await board.start_deployment("dep-1", 0.6)
    await board.push(sign())
    desk = await desk_for(system, board)
    key = reply_key(EncryptionKeyPair.generate())
    with pytest.raises(DeskRefused, match="no transfer 1 is open"):  # before any fetch
        await desk.ask(WatchlistChunkWanted(1, 0), timeout=WAIT_S)
    first = await desk.ask(WatchlistFetch("dep-1", 1, key), timeout=WAIT_S)
    assert isinstance(first, WatchlistTransfer)
    assert first.chunks == 1
    for index in (-1, 1, 2**40):
        with pytest.raises(DeskRefused, match=f"chunk {index} is outside 0-0"):
            await desk.ask(WatchlistChunkWanted(first.transfer_id, index), timeout=WAIT_S)
    with pytest.raises(DeskRefused, match=f"no transfer {first.transfer_id + 1000} is open"):
        await desk.ask(WatchlistChunkWanted(first.transfer_id + 1000, 0), timeout=WAIT_S)
    # A newer fetch replaces the transfer: the older one's id is refused.
    second = await desk.ask(WatchlistFetch("dep-1", 1, key), timeout=WAIT_S)
    assert isinstance(second, WatchlistTransfer)
    assert second.transfer_id != first.transfer_id
    with pytest.raises(DeskRefused, match=f"no transfer {first.transfer_id} is open"):
        await desk.ask(WatchlistChunkWanted(first.transfer_id, 0), timeout=WAIT_S)
    chunk = await desk.ask(WatchlistChunkWanted(second.transfer_id, 0), timeout=WAIT_S)
    assert isinstance(chunk, WatchlistChunk)
    assert len(chunk.data) == second.sealed_bytes
    # A refused fetch drops the open transfer too.
    third = await desk.ask(WatchlistFetch("dep-1", 1, key), timeout=WAIT_S)
    assert isinstance(third, WatchlistTransfer)
    with pytest.raises(DeskRefused):
        await desk.ask(WatchlistFetch("dep-1", 1, b"short"), timeout=WAIT_S)
    with pytest.raises(DeskRefused, match=f"no transfer {third.transfer_id} is open"):
        await desk.ask(WatchlistChunkWanted(third.transfer_id, 0), timeout=WAIT_S)
    assert failures(system) == (0, 0)


async def test_a_units_desk_serves_that_unit_only_whatever_the_message_says(
        system: ActorSystem, board: WatchlistBoard) -> None:
    await board.start_deployment("dep-1", 0.6)
    await board.push(sign(), ["unit-b"])
    desk_a = await desk_for(system, board, "unit-a")
    desk_b = await desk_for(system, board, "unit-b")
    key = reply_key(EncryptionKeyPair.generate())
    with pytest.raises(DeskRefused):
        await desk_a.ask(WatchlistFetch("dep-1", 1, key), timeout=WAIT_S)
    assert isinstance(await desk_b.ask(WatchlistFetch("dep-1", 1, key), timeout=WAIT_S),
                      WatchlistTransfer)
    # The poll is recorded for the desk's unit, not for anyone the message could name.
    await desk_a.ask(poll(), timeout=WAIT_S)
    assert set(board.views()) == {"unit-a"}


async def test_a_poll_the_store_refuses_fails_that_ask_only(
        system: ActorSystem, board: WatchlistBoard) -> None:
    await board.start_deployment("dep-1", 0.6)
    desk = await desk_for(system, board)
    # A unit reporting a negative subject count: its ask fails, the desk runs on.
    with pytest.raises(UserInputError, match="subject count"):
        await desk.ask(poll(subjects=-1, refused_version=1, refused_reason="x"),
                       timeout=WAIT_S)
    assert isinstance(await desk.ask(poll(), timeout=WAIT_S), WatchlistNews)
    assert failures(system) == (0, 0)
