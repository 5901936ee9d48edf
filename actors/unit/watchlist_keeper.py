"""``WatchlistKeeper``: gets the unit's watchlist from its van, holds it in memory only, drops it.

Every ``poll_interval_s`` (and at once after any change) the keeper asks the van's desk over the
current link what the unit should hold, telling it what the unit holds and what it last refused
(``actors.watchlist_messages``): that report is the van's view of the unit. The answer is one
of three:

- **hold deployment D version v**: unless it holds exactly that (or refused it already), the
  keeper makes a one-time HPKE key pair in memory, fetches the watchlist sealed to it in chunks,
  opens it, verifies it (``actors.signed_watchlist``: both halves of the authority's signature,
  the payload's hash, this unit's embedder, a version above any held of D since the unit started,
  the validity window) and installs it in the ``WatchlistGate``, where the detectors and the
  matcher find it. The old list stays in use until the new one is verified; a refused one leaves
  the current list in place, and the refusal (reason and version) goes to the van in the next
  poll and into the audit trail. A refused version is not fetched again, except one refused as
  not yet valid (clocks differ), retried every ``retry_not_yet_valid_s``.
- **purge**: the held list is dropped and its embeddings overwritten (``Gallery.wipe``) at once.
- **nothing**: the unit holds nothing and should hold nothing.

At the list's ``not_after`` the keeper drops it by itself (checked at every tick), whether or not
the van is reachable. So a unit **without a watchlist scans nothing**: it starts with none, and
after a restart it has none until the van gives it one again.

Privacy: the watchlist never touches the disk (not even sealed); the one-time private key lives
only for its fetch; the opened bytes, the decoded arrays' buffers and the dropped gallery are
overwritten with zeros (``secure.memory_wipe``). The audit trail gets versions, counts and the
payload's sha256, never an embedding.

Failure semantics: a link that fails or a poll answered with nonsense ends that tick (logged
through a budget); the next tick tries again. A transfer the van botched (wrong answer, size,
chunk or hash) is refused as ``malformed``, like a sealed copy that does not open. Nothing the
van sends can fail the actor: every answer is checked, every wait has a timeout, every size is
bounded before memory is taken.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Protocol

from actors.signed_watchlist import (
    MAX_SIGNED_WATCHLIST_BYTES,
    RefusalReason,
    VerifiedWatchlist,
    WatchlistRefused,
    read_signed_watchlist,
    verify_signed_watchlist,
)
from actors.unit.watchlist_gate import (
    HeldWatchlist,
    WatchlistGate,
    held_gallery,
    wipe_watchlist,
)
from actors.watchlist_messages import (
    CHUNK_BYTES,
    MAX_REASON_CHARS,
    WATCHLIST_ACTOR,
    HeldState,
    NewsKind,
    WatchlistChunk,
    WatchlistChunkWanted,
    WatchlistFetch,
    WatchlistNews,
    WatchlistPoll,
    WatchlistTransfer,
    transfer_info,
)
from audit.kinds import AuditKind
from guards.config_checks import require_at_least, require_positive
from guards.log_text import printable
from runtime.actor import Actor
from runtime.errors import AskTimeout, LinkLost, RemoteError
from runtime.link import TooManyAsks
from runtime.link_keys import valid_peer_name
from runtime.log_budget import LogBudget
from runtime.timer import Timer
from secure.memory_wipe import wipe_buffer
from secure.node_keys import NodePublicKeys
from secure.sealing import SEAL_OVERHEAD_BYTES, EncryptionKeyPair, SealedOpenFailed

if TYPE_CHECKING:
    from runtime.link import Link, RemoteActorRef

log = logging.getLogger("lfr.unit.watchlist")

MAX_SEALED_BYTES: Final = MAX_SIGNED_WATCHLIST_BYTES + SEAL_OVERHEAD_BYTES
"""Largest sealed transfer a unit accepts."""
MAX_REFUSALS_KEPT: Final = 256
"""Refused versions remembered (so not fetched again); beyond this the oldest is forgotten, so
a van announcing ever new versions cannot grow the keeper's memory without bound."""

@dataclass(frozen=True, slots=True)
class KeeperConfig:
    """Timing and bounds of the watchlist keeper."""

    poll_interval_s: float = 1.0
    """Seconds between two polls of the van; also how often expiry is checked."""
    ask_timeout_s: float = 10.0
    """Timeout of each ask of the van (poll, fetch, one chunk), in seconds."""
    transfer_timeout_s: float = 120.0
    """A whole fetch (all chunks, opening and verifying) must finish within this (s)."""
    chunks_in_flight: int = 4
    """Chunk asks outstanding at once (keeps the data channel busy across round trips)."""
    retry_not_yet_valid_s: float = 30.0
    """A version refused as not yet valid is fetched again after this many seconds."""

    def __post_init__(self) -> None:
        for name in ("poll_interval_s", "ask_timeout_s", "transfer_timeout_s",
                     "retry_not_yet_valid_s"):
            require_positive(f"KeeperConfig.{name}", getattr(self, name))
        require_at_least("KeeperConfig.chunks_in_flight", self.chunks_in_flight, 1)


@dataclass(slots=True)
class KeeperStatistics:
    """Counters of the keeper, surviving its restarts (held by its factory)."""

    polls: int = 0
    """Polls the van answered."""
    fetches: int = 0
    """Transfers completed (opened and verified or refused)."""
    accepted: int = 0
    """Watchlists installed."""
    refused: int = 0
    """Watchlists refused (by reason in ``refusals``)."""
    purged: int = 0
    """Watchlists dropped on the van's order."""
    expired: int = 0
    """Watchlists dropped at their not-after time."""
    failures: int = 0
    """Polls or transfers that failed (link, timeout, nonsense answer)."""
    refusals: dict[str, int] = field(default_factory=dict)
    """Refusals by reason."""
    state: HeldState = HeldState.NONE
    """What the unit reports holding."""
    last_deployment: str = ""
    """The deployment of the list held or last dropped."""
    last_version: int = 0
    """Its version."""


class Audit(Protocol):
    """What the keeper needs of the audit trail (``audit.log.AuditLog``)."""

    def append(self, kind: AuditKind, /, **fields: str | int | float | bool | None) -> object:
        """Append one record (blocking: called on a pool thread)."""
        ...


@dataclass(frozen=True, slots=True)
class _Tick:
    """The keeper's own timer message. In-process only."""


class VanAnswerRefused(Exception):
    """The van's desk answered something that makes no sense."""


class WatchlistKeeper(Actor[_Tick]):
    """Holds the unit's watchlist (module docstring)."""

    def __init__(self, unit_id: str, gate: WatchlistGate, current_link: Callable[[], Link | None],
                 *, authority: NodePublicKeys, model_id: str, model_sha256: str,
                 second_model_id: str | None = None, second_model_sha256: str | None = None,
                 audit: Audit | None = None, config: KeeperConfig | None = None,
                 statistics: KeeperStatistics | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        """``current_link``: the link up now or None (``VanDialer.current``); ``authority``:
        the only key whose watchlists are accepted; ``model_id``/``model_sha256``: this unit's
        embedder, ``second_model_*`` its second face model (a list made with others is refused)."""
        self.unit_id = unit_id
        self.gate = gate
        self._current_link = current_link
        self.authority = authority
        self.model_id = model_id
        self.model_sha256 = model_sha256
        self.second_model = (second_model_id, second_model_sha256)
        self.audit = audit
        self.config = config or KeeperConfig()
        self.statistics = statistics or KeeperStatistics()
        self._clock = clock
        self._timer: Timer[_Tick] | None = None
        self._log = LogBudget(log, "watchlist keeper")
        # (deployment, version) -> (reason, when): not fetched again (module docstring).
        # Invariant: at most MAX_REFUSALS_KEPT entries, oldest refusal first.
        self._refused: dict[tuple[str, int], tuple[RefusalReason, float]] = {}
        self._last_refusal: tuple[int, str] = (0, "")

    async def on_start(self) -> None:
        self._timer = Timer(self.context.ref, _Tick, self.config.poll_interval_s,
                            name=f"{self.context.name}:timer")
        self._timer.start()
        await self.context.ref.tell(_Tick())

    async def on_stop(self) -> None:
        if self._timer is not None:
            await self._timer.stop()

    async def receive(self, message: _Tick) -> None:
        await self._expire_if_due()
        link = self._current_link()
        if link is None:
            return
        try:
            await self._poll_once(link)
        except (LinkLost, AskTimeout, RemoteError, TooManyAsks, VanAnswerRefused,
                TimeoutError) as exc:
            self.statistics.failures += 1
            self._log.warning("watchlist: asking the van failed: %s", printable(exc))

    # -- one poll ------------------------------------------------------------------------------

    async def _poll_once(self, link: Link) -> None:
        desk: RemoteActorRef[Any] = link.ref(WATCHLIST_ACTOR)
        news = await desk.ask(self._report(), timeout=self.config.ask_timeout_s)
        if not isinstance(news, WatchlistNews):
            raise VanAnswerRefused(f"a poll was answered with a {type(news).__name__}")
        self.statistics.polls += 1
        kind = _news_kind(news)
        if kind is NewsKind.PURGE:
            if await self._drop(HeldState.PURGED, "purged on the van's order"):
                await self._poll_once_after_change(desk)
        elif kind is NewsKind.HOLD:
            await self._hold(desk, news)

    def _report(self) -> WatchlistPoll:
        held = self.gate.held
        refused_version, reason = self._last_refusal
        return WatchlistPoll(
            state=self.statistics.state.value,
            deployment_id=held.deployment_id if held else self.statistics.last_deployment,
            version=held.version if held else self.statistics.last_version,
            subjects=held.subjects if held else 0,
            refused_version=refused_version, refused_reason=reason)

    async def _hold(self, desk: RemoteActorRef[Any], news: WatchlistNews) -> None:
        held = self.gate.held
        wanted = (news.deployment_id, news.version)
        if held is not None and (held.deployment_id, held.version) == wanted:
            return
        refused = self._refused.get(wanted)
        if refused is not None:
            reason, when = refused
            if (reason is not RefusalReason.NOT_YET_VALID
                    or self._clock() - when < self.config.retry_not_yet_valid_s):
                return
        try:
            async with asyncio.timeout(self.config.transfer_timeout_s):
                verified = await self._fetch(desk, news)
        except WatchlistRefused as exc:
            await self._refuse(news, exc)
            return
        await self._install(news, verified)
        await self._poll_once_after_change(desk)

    async def _poll_once_after_change(self, desk: RemoteActorRef[Any]) -> None:
        # Tell the van at once what changed, rather than a tick later.
        answer = await desk.ask(self._report(),
                                timeout=self.config.ask_timeout_s)
        if not isinstance(answer, WatchlistNews):
            raise VanAnswerRefused(f"a poll was answered with a {type(answer).__name__}")

    # -- the transfer --------------------------------------------------------------------------

    async def _fetch(self, desk: RemoteActorRef[Any], news: WatchlistNews) -> VerifiedWatchlist:
        """Fetch, open and verify the version ``news`` names; ``WatchlistRefused`` when it is
        not acceptable (also for a transfer the van botched: sizes, hash, seal)."""
        if not 0 < news.signed_bytes <= MAX_SIGNED_WATCHLIST_BYTES:
            raise WatchlistRefused(RefusalReason.OVERSIZE,
                                   f"the van announced {news.signed_bytes} bytes (at most "
                                   f"{MAX_SIGNED_WATCHLIST_BYTES})")
        reply = EncryptionKeyPair.generate()  # one-time, in memory only
        try:
            public = reply.public_key
            try:
                transfer = _transfer(await desk.ask(
                    WatchlistFetch(news.deployment_id, news.version,
                                   public.ml_kem_768_public + public.x25519_public),
                    timeout=self.config.ask_timeout_s))
                sealed = await self._chunks(desk, transfer, news.signed_bytes)
            except VanAnswerRefused as exc:
                # Botched by the van (not lost: a link failure or a timeout is retried): refused
                # like a bad file, so it is reported, audited and not fetched again.
                raise WatchlistRefused(RefusalReason.MALFORMED,
                                       f"the van's transfer is not valid: {exc}") from None
            try:
                return await self.context.run_blocking(self._open_and_verify, reply, sealed,
                                                       news)
            finally:
                wipe_buffer(sealed)
        finally:
            del reply  # the private key dies with this fetch

    async def _chunks(self, desk: RemoteActorRef[Any], transfer: WatchlistTransfer,
                      signed_bytes: int) -> bytearray:
        size = transfer.sealed_bytes
        expected_size = signed_bytes + SEAL_OVERHEAD_BYTES
        if size != expected_size or size > MAX_SEALED_BYTES:
            raise VanAnswerRefused(f"the transfer holds {size} bytes, the news announced "
                                   f"{expected_size}")
        chunks = -(-size // CHUNK_BYTES)
        if transfer.chunks != chunks or len(transfer.sha256) != 32:
            raise VanAnswerRefused(f"the transfer of {size} bytes claims {transfer.chunks} "
                                   f"chunks (expected {chunks}) or a bad hash")
        buffer = bytearray(size)
        next_index = 0
        lock = asyncio.Lock()

        async def worker() -> None:
            nonlocal next_index
            while True:
                async with lock:
                    index, next_index = next_index, next_index + 1
                if index >= chunks:
                    return
                chunk = await desk.ask(
                    WatchlistChunkWanted(transfer.transfer_id, index),
                    timeout=self.config.ask_timeout_s)
                start = index * CHUNK_BYTES
                want = min(CHUNK_BYTES, size - start)
                if (not isinstance(chunk, WatchlistChunk) or chunk.index != index
                        or len(chunk.data) != want):
                    raise VanAnswerRefused(f"chunk {index} of the transfer is not what was "
                                           "asked for")
                buffer[start:start + want] = chunk.data

        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(min(self.config.chunks_in_flight, chunks)):
                    group.create_task(worker())
        except BaseExceptionGroup as group_error:
            wipe_buffer(buffer)
            raise group_error.exceptions[0] from None
        if not hmac.compare_digest(hashlib.sha256(buffer).digest(), transfer.sha256):
            wipe_buffer(buffer)
            raise VanAnswerRefused("the transfer's bytes do not match its sha256")
        return buffer

    def _open_and_verify(self, reply: EncryptionKeyPair, sealed: bytearray,
                         news: WatchlistNews) -> VerifiedWatchlist:
        """On a pool thread: open the transfer and verify what it holds."""
        try:
            signed = reply.open(bytes(sealed), transfer_info(self.unit_id, news.deployment_id,
                                                             news.version))
        except SealedOpenFailed as exc:
            raise WatchlistRefused(RefusalReason.MALFORMED,
                                   f"the sealed transfer does not open: {exc}") from None
        try:
            verified = verify_signed_watchlist(
                read_signed_watchlist(signed), authority=self.authority,
                model_id=self.model_id, model_sha256=self.model_sha256,
                second_model_id=self.second_model[0], second_model_sha256=self.second_model[1],
                held_version=self.gate.highest_version(news.deployment_id),
                now=self._clock())
        finally:
            wipe_buffer(signed)
        manifest = verified.manifest
        if (manifest.deployment_id, manifest.version) != (news.deployment_id, news.version):
            raise WatchlistRefused(
                RefusalReason.MALFORMED,
                f"the van announced deployment {printable(news.deployment_id)} version "
                f"{news.version} but sent {printable(manifest.deployment_id)} version "
                f"{manifest.version}")
        return verified

    # -- changes -------------------------------------------------------------------------------

    async def _install(self, news: WatchlistNews, verified: VerifiedWatchlist) -> None:
        manifest = verified.manifest
        try:
            gallery = await self.context.run_blocking(held_gallery, verified.watchlist,
                                                      news.threshold)
        finally:
            wipe_watchlist(verified.watchlist)
        held = HeldWatchlist(manifest.deployment_id, manifest.version, news.threshold,
                             manifest.not_after, verified.payload_sha256, gallery)
        old = self.gate.install(held)
        if old is not None:
            old.gallery.wipe()
        self.statistics.accepted += 1
        self.statistics.fetches += 1
        self.statistics.state = HeldState.HELD
        self.statistics.last_deployment, self.statistics.last_version = (held.deployment_id,
                                                                         held.version)
        log.info("watchlist: holding deployment %s version %d: %d subjects, until %s",
                 printable(held.deployment_id), held.version, held.subjects,
                 time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(held.not_after)))
        await self._audit(AuditKind.WATCHLIST_ACCEPTED, deployment=held.deployment_id,
                          version=held.version, subjects=held.subjects,
                          payload_sha256=held.payload_sha256, threshold=held.threshold,
                          not_after=held.not_after)

    async def _refuse(self, news: WatchlistNews, exc: WatchlistRefused) -> None:
        reason = exc.reason
        # At most MAX_REASON_CHARS in all: printable's "...(N more chars)" tail would take a
        # long text past what the audit (and the van's) take, failing the refusal's record.
        text = printable(f"{reason.value}: {exc}", max_chars=MAX_REASON_CHARS)
        if len(text) > MAX_REASON_CHARS:
            text = text[:MAX_REASON_CHARS - 3] + "..."
        key = (news.deployment_id, news.version)
        self._refused.pop(key, None)  # re-inserted as the newest
        self._refused[key] = (reason, self._clock())
        while len(self._refused) > MAX_REFUSALS_KEPT:
            del self._refused[next(iter(self._refused))]
        self._last_refusal = (news.version, text)
        self.statistics.refused += 1
        self.statistics.fetches += 1
        self.statistics.refusals[reason.value] = self.statistics.refusals.get(reason.value,
                                                                               0) + 1
        log.warning("watchlist: refused deployment %s version %d: %s",
                    printable(news.deployment_id), news.version, text)
        await self._audit(AuditKind.WATCHLIST_REFUSED, deployment=news.deployment_id,
                          version=news.version, reason=reason.value, detail=text)

    async def _expire_if_due(self) -> None:
        held = self.gate.held
        if self.gate.expired() or (held is not None and self._clock() >= held.not_after):
            await self._drop(HeldState.EXPIRED, "its not-after time has passed")

    async def _drop(self, state: HeldState, why: str) -> bool:
        """Drop and overwrite what is held; False when nothing was."""
        old = self.gate.clear()
        if old is None:
            return False
        subjects = old.subjects
        old.gallery.wipe()
        if state is HeldState.EXPIRED:
            self.statistics.expired += 1
        else:
            self.statistics.purged += 1
        self.statistics.state = state
        self.statistics.last_deployment, self.statistics.last_version = (old.deployment_id,
                                                                         old.version)
        log.info("watchlist: dropped deployment %s version %d (%d subjects, overwritten): %s",
                 printable(old.deployment_id), old.version, subjects, why)
        kind = (AuditKind.WATCHLIST_EXPIRED if state is HeldState.EXPIRED
                else AuditKind.WATCHLIST_PURGED)
        await self._audit(kind, deployment=old.deployment_id, version=old.version,
                          subjects=subjects, payload_sha256=old.payload_sha256)
        return True

    async def _audit(self, kind: AuditKind, **fields: str | int | float | bool | None) -> None:
        if self.audit is not None:
            await self.context.run_blocking(self.audit.append, kind, **fields)


def _transfer(answer: object) -> WatchlistTransfer:
    if not isinstance(answer, WatchlistTransfer):
        raise VanAnswerRefused(f"a fetch was answered with a {type(answer).__name__}")
    return answer


def _news_kind(news: WatchlistNews) -> NewsKind:
    try:
        kind = NewsKind(news.kind)
    except ValueError:
        raise VanAnswerRefused(f"unknown news kind {printable(news.kind, max_chars=40)}") from None
    if kind is NewsKind.HOLD and not (valid_peer_name(news.deployment_id)
                                      and news.version >= 1 and 0.0 < news.threshold < 1.0):
        # The deployment id goes into the audit trail, which takes only printable ids.
        raise VanAnswerRefused("news to hold a watchlist without a deployment id of 1-64 "
                               "printable characters, a version or a threshold in (0, 1)")
    return kind
