"""What a unit's watchlist keeper and its van's watchlist desk say to each other over their link.

Both ends import this module; the link's allow-list (``LinkConfig.exposed``) names exactly these
asks for the van's desk. Type codes 140-149 of the link registry. All asks go from the unit to
the van (the van reaches no actor on a unit), so a "push" is the van's answer to the unit's next
poll, a second or so later::

    unit keeper                                       van desk (one per unit)
      WatchlistPoll(what I hold, refused, ...)  ───▶  records it (the van's view), answers
                                                ◀───  WatchlistNews(wanted version | purge)
      WatchlistFetch(version, reply key)        ───▶  seals the signed watchlist to the key
                                                ◀───  WatchlistTransfer(size, chunks, sha256)
      WatchlistChunkWanted(transfer, i)         ───▶
                                                ◀───  WatchlistChunk(bytes)        (repeated)
      WatchlistPoll(held: v, ...)               ───▶  the van sees the unit holds v

The signed watchlist is sealed (HPKE, ML-KEM-768 + X25519, as events) to a **one-time key the
unit makes in memory for that fetch** (``reply_key``), so nothing on the unit's disk can ever
open a watchlist recorded off the network. Its authority signature is checked by the unit after
opening it (``actors.signed_watchlist``); the link (keyed through signed signaling) already
proves the bytes come from the unit's van. Chunks keep the link's frames small, so alerts keep
flowing between them while a large watchlist moves.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from runtime.message import message

WATCHLIST_ACTOR: Final = "watchlist"
"""The name a unit's link reaches its own watchlist desk by (the van routes it per unit)."""
CHUNK_BYTES: Final = 128 * 1024
"""A transfer's chunk size: about 0.1 s of the data channel, so an alert waits at most that."""
MAX_REASON_CHARS: Final = 500
"""A refusal reason a unit reports is cut to this many characters."""
TRANSFER_INFO_LABEL: Final = b"lfr-edge/watchlist-transfer/v1"
"""HPKE ``info`` label of a sealed transfer; followed by unit id, deployment id and version."""


def transfer_info(unit_id: str, deployment_id: str, version: int) -> bytes:
    """The HPKE ``info`` of one transfer: a copy sealed for another unit, deployment or version
    does not open (ids are printable, so the NUL separators are unambiguous)."""
    return b"\x00".join((TRANSFER_INFO_LABEL, unit_id.encode(), deployment_id.encode(),
                         str(version).encode()))


class HeldState(enum.StrEnum):
    """What a unit holds, as it reports it in every poll."""

    NONE = "none"
    """No watchlist (just started, or never given one): the unit scans nothing."""
    HELD = "held"
    """A verified watchlist, in memory: the unit scans."""
    PURGED = "purged"
    """Dropped on the van's order; its embeddings overwritten."""
    EXPIRED = "expired"
    """Dropped by the unit itself at the watchlist's not-after time."""


@message(140)
@dataclass(frozen=True, slots=True)
class WatchlistPoll:
    """The unit's regular ask (every ``poll_interval_s``): what it holds, what it refused."""

    state: str
    """A ``HeldState`` value."""
    deployment_id: str
    """The held (or last dropped) watchlist's deployment; empty for none."""
    version: int
    """Its version; 0 for none."""
    subjects: int
    """Subjects held in memory now (0 unless held)."""
    refused_version: int = 0
    """The last version the unit refused (0: none) ..."""
    refused_reason: str = ""
    """... and why, as ``actors.signed_watchlist.RefusalReason`` value and text."""


class NewsKind(enum.StrEnum):
    """What the van wants the unit to hold."""

    NOTHING = "nothing"
    """No deployment is active, or no watchlist was pushed to this unit yet."""
    HOLD = "hold"
    """Hold ``deployment_id`` version ``version`` (fetch it unless held)."""
    PURGE = "purge"
    """Drop whatever is held, overwrite it, now (deployment ended or purge commanded)."""


@message(141)
@dataclass(frozen=True, slots=True)
class WatchlistNews:
    """The van's answer to a poll."""

    kind: str
    """A ``NewsKind`` value."""
    deployment_id: str = ""
    """HOLD: the deployment."""
    version: int = 0
    """HOLD: the version."""
    threshold: float = 0.0
    """HOLD: the deployment's alert threshold (cosine): no subject alerts below it."""
    signed_bytes: int = 0
    """HOLD: size of the signed watchlist, before sealing."""


@message(142)
@dataclass(frozen=True, slots=True)
class WatchlistFetch:
    """The unit asks for a version, giving a one-time public key to seal it to."""

    deployment_id: str
    """The deployment the news named."""
    version: int
    """The version the news named."""
    reply_key: bytes
    """Raw ML-KEM-768 public key (1184 bytes) followed by the X25519 public key (32 bytes)."""


@message(143)
@dataclass(frozen=True, slots=True)
class WatchlistTransfer:
    """The van's answer to a fetch: a sealed copy is ready in chunks."""

    transfer_id: int
    """Names this transfer in the chunk asks (a newer fetch replaces it)."""
    sealed_bytes: int
    """Total size of the sealed watchlist."""
    chunks: int
    """Number of chunks (``CHUNK_BYTES`` each, the last one shorter)."""
    sha256: bytes
    """sha256 of the sealed bytes (catches a mix-up; the seal itself catches tampering)."""


@message(144)
@dataclass(frozen=True, slots=True)
class WatchlistChunkWanted:
    """The unit asks for one chunk of a transfer."""

    transfer_id: int
    """The transfer."""
    index: int
    """0-based chunk index."""


@message(145)
@dataclass(frozen=True, slots=True)
class WatchlistChunk:
    """One chunk of the sealed watchlist."""

    index: int
    """Its index."""
    data: bytes
    """``CHUNK_BYTES`` bytes (fewer for the last chunk)."""


DESK_ASKS: Final = (WatchlistPoll, WatchlistFetch, WatchlistChunkWanted)
"""The messages a unit may send its van's desk (``LinkConfig.exposed``)."""
