"""``WatchlistDesk``: answers one unit's watchlist asks (``actors.watchlist_messages``).

One desk per unit (``watchlist:<unit id>``), spawned with its receiver and kept across links;
the unit's link reaches it as ``WATCHLIST_ACTOR`` only, so the unit a desk serves is the one the
link authenticated, never a name inside a message. The desk answers:

- ``WatchlistPoll``: records the unit's report and answers what it must hold (``WatchlistBoard``);
- ``WatchlistFetch``: only for the version the board wants this unit to hold; the signed
  watchlist is sealed (HPKE) to the one-time key the unit sent, bound to the unit, deployment
  and version, and kept as this unit's one transfer (a newer fetch replaces it);
- ``WatchlistChunkWanted``: one chunk of that transfer.

Anything else (a key of the wrong size, a chunk out of range, another transfer's id) is refused
with a ``UserInputError`` the unit receives as its ask's error; the desk keeps running. Memory:
at most one sealed transfer per unit (``MAX_SIGNED_WATCHLIST_BYTES`` plus the seal), dropped when
the transfer is complete or replaced.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass

from actors.van.watchlist_board import WatchlistBoard
from actors.watchlist_messages import (
    CHUNK_BYTES,
    WatchlistChunk,
    WatchlistChunkWanted,
    WatchlistFetch,
    WatchlistNews,
    WatchlistPoll,
    WatchlistTransfer,
    transfer_info,
)
from guards.user_input import UserInputError
from runtime.actor import Actor
from secure.sealing import ML_KEM_768_PUBLIC_BYTES, X25519_BYTES, EncryptionPublicKey

DeskMessage = WatchlistPoll | WatchlistFetch | WatchlistChunkWanted
_transfer_ids = itertools.count(1)


def desk_name(unit_id: str) -> str:
    """The local name of ``unit_id``'s desk."""
    return f"watchlist:{unit_id}"


@dataclass(slots=True)
class _Transfer:
    transfer_id: int
    sealed: bytes
    chunks: int
    sent: set[int]


class DeskRefused(UserInputError):
    """A unit's watchlist ask that cannot be served; the text says why."""


class WatchlistDesk(Actor[DeskMessage]):
    """Serves one unit's watchlist asks (module docstring)."""

    def __init__(self, unit_id: str, board: WatchlistBoard) -> None:
        self.unit_id = unit_id
        self.board = board
        self._transfer: _Transfer | None = None

    async def receive(
        self, message: DeskMessage,
    ) -> WatchlistNews | WatchlistTransfer | WatchlistChunk:
        if isinstance(message, WatchlistPoll):
            return await self.board.news_for(self.unit_id, message)
        if isinstance(message, WatchlistFetch):
            return await self._fetch(message)
        return self._chunk(message)

    async def _fetch(self, fetch: WatchlistFetch) -> WatchlistTransfer:
        self._transfer = None
        if len(fetch.reply_key) != ML_KEM_768_PUBLIC_BYTES + X25519_BYTES:
            raise DeskRefused(f"the reply key must be {ML_KEM_768_PUBLIC_BYTES + X25519_BYTES} "
                              f"bytes, got {len(fetch.reply_key)}")
        try:
            key = EncryptionPublicKey(fetch.reply_key[:ML_KEM_768_PUBLIC_BYTES],
                                      fetch.reply_key[ML_KEM_768_PUBLIC_BYTES:])
        except ValueError as exc:
            raise DeskRefused(f"the reply key is not a valid public key: {exc}") from None
        try:
            signed = self.board.signed_for(self.unit_id, fetch.deployment_id, fetch.version)
        except UserInputError as exc:  # not this unit's version now: refused as the desk's own
            raise DeskRefused(str(exc)) from None
        info = transfer_info(self.unit_id, fetch.deployment_id, fetch.version)
        sealed = await self.context.run_blocking(key.seal, signed, info)
        digest = await self.context.run_blocking(lambda: hashlib.sha256(sealed).digest())
        chunks = -(-len(sealed) // CHUNK_BYTES)
        transfer = _Transfer(next(_transfer_ids), sealed, chunks, set())
        self._transfer = transfer
        return WatchlistTransfer(transfer.transfer_id, len(sealed), chunks, digest)

    def _chunk(self, wanted: WatchlistChunkWanted) -> WatchlistChunk:
        transfer = self._transfer
        if transfer is None or wanted.transfer_id != transfer.transfer_id:
            raise DeskRefused(f"no transfer {wanted.transfer_id} is open for this unit")
        if not 0 <= wanted.index < transfer.chunks:
            raise DeskRefused(f"chunk {wanted.index} is outside 0-{transfer.chunks - 1}")
        start = wanted.index * CHUNK_BYTES
        data = transfer.sealed[start:start + CHUNK_BYTES]
        transfer.sent.add(wanted.index)
        if len(transfer.sent) == transfer.chunks:
            self._transfer = None  # complete: the sealed copy is dropped
        return WatchlistChunk(wanted.index, data)
