"""``Uplink``: the unit's alerts and health reports, sealed into the outbox and sent to its van.

One actor, two halves (docs/DELIVERY.md, "Over the link: the uplink"):

- **Sealing** (``receive``). A ``MatchAlert`` becomes an ``AlertBody``
  (``alert_body(alert, watchlist_version)``), is encoded, and is sealed to the van's encryption
  key and signed with the unit's key under the sequence number the outbox gives it, so the
  number is in its signed header (on the worker pool: crypto, SQLite and an fsync never run on
  the event loop; the signature itself in a child process, ``UplinkConfig.signing_process``,
  given the header and ciphertext only). **Sealed ahead**: while the store task commits the
  envelopes before it, the next one is sealed under the number after theirs (at most
  ``MAX_SEALED_AHEAD`` unstored), and each commit stores every envelope sealed by then in one
  transaction with one fsync (``Outbox.append_sealed``); nothing is sent before it is stored.
  Only once it is stored does ``local_copy`` get the body: what it prints is exactly what the
  van will get. A ``HealthBody`` is sealed the same way as a health report. While alerts are
  held (below) envelopes are appended one at a time instead (``Outbox.append(kind, seal)``), as
  is everything sealed ahead whose store the outbox refused (sealed again under the number it
  gives then). A stop stores what was sealed ahead first. Nothing unsealed is written or
  logged.
- **Sending** (a task the actor owns). For each link its ``LinkSource`` offers (the
  ``VanDialer``): ``Resume(first_pending, last_assigned)``, apply the ``ResumePoint``, then send
  what the outbox holds in sequence order as ``DeliverBatch`` asks, at most ``batches_in_flight``
  (1) of them and ``window`` envelopes awaiting their ``BatchReceipt``: the first envelope ready
  while fewer batches are in flight goes at once, alone; the ones that become ready while the
  batches in flight are answered go together as the next batch (at most ``batch_envelopes`` and
  ``batch_bytes``). An envelope appended while the link is up is sent from memory, exactly as
  stored, when it follows the last one sent (else the outbox is read). Acknowledgements (the
  cumulative mark; single envelopes above it) delete from the outbox; nothing else does. They
  are applied in one call once nothing is in flight or being sealed, at once while alerts are
  held, and at the latest ``UplinkConfig.ack_delay_s`` after a receipt: a burst's receipts cost
  one transaction, after it. A refused envelope stays and is sent again after the next
  reconnect (a batch the van refuses whole, too large, counts as each of its envelopes
  refused). A lost link, a receipt that does not come, or an error answer drops what was in
  flight (it is still in the outbox), and the next link starts with ``Resume`` again: delivery is
  at-least-once and in order per link, and the van deduplicates by sequence number.

**When the outbox is full** no alert is dropped. Alerts the outbox refuses (``OutboxFull``) wait
in memory, in order, at most ``UplinkConfig.held_alerts`` of them; newer alerts queue behind them
so the order never changes. ``statistics.outbox_full`` is set (the health reporter puts it in the
next report; this actor also sets it in every report it seals while it holds alerts), and the
held alerts are appended again after every acknowledgement that deleted something and every
``held_retry_s``. When the held list is full too, ``receive`` waits for room: the matcher then
waits on this actor's bounded ``BLOCK`` mailbox (backpressure, not loss). While it waits,
health reports queued behind the alerts cannot be read, so the actor seals the alarm itself: at
once and then every ``blocked_health_s``, the newest health report it received again, with
``outbox_full`` set and its clock, uptime and outbox figures brought up to date (its camera and
face counts stay those of that report). Health reports always fit: the outbox keeps a reserve
for them. Held alerts are in memory only: a stop or a crash while the outbox is full loses them
(the stop appends what still fits first and logs how many are lost).

**Nothing the van answers can crash the actor.** An answer of the wrong type, a receipt for
another envelope, a mark that goes back below the link's ``ResumePoint`` or above the last
number the outbox assigned are counted (``bad_answers``), logged (printable, through a
``LogBudget``), and the link is dropped (``LinkSource.drop``: the dialer redials) rather than
trusted; nothing is deleted on such an answer. A receipt may carry an older mark than an earlier
receipt on the same link (it is only information; the highest is used).

A failure of the actor's own tasks (the outbox's disk) fails the actor at its next message
(health reports come every few seconds), and its supervisor restarts it like any failed actor.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Final, Protocol

from actors import delivery_trace
from actors.delivery_messages import (
    MAX_BATCH_BYTES,
    MAX_BATCH_ENVELOPES,
    RECEIVER_ACTOR,
    BatchReceipt,
    DeliverBatch,
    Outcome,
    Receipt,
    Resume,
    ResumePoint,
)
from actors.unit.detector import StreamEnded
from actors.unit.event_body import (
    AlertBody,
    EventBody,
    EventBodyError,
    HealthBody,
    alert_body,
    encode_body,
    event_kind,
)
from actors.unit.match_alert import MatchAlert
from actors.unit.outbox import (
    MAX_ADVANCE_SEQ,
    MAX_PAGE,
    EnvelopeKind,
    EnvelopeTooLarge,
    Outbox,
    OutboxFull,
    PendingEnvelope,
    SequenceMoved,
)
from audit.kinds import AuditKind
from audit.record import FieldValue
from guards.config_checks import ConfigError, require_at_least, require_positive
from guards.log_text import printable
from runtime.actor import Actor
from runtime.errors import AskTimeout, LinkLost, RemoteError, RuntimeFault
from runtime.link import Link, RemoteActorRef, TooManyAsks
from runtime.log_budget import LogBudget
from runtime.ref import ActorRef
from secure.envelope import EventKind, seal_envelope
from secure.hybrid_signature import Signer
from secure.node_keys import NodeKeys, NodePublicKeys, NodeRole
from secure.sealing import EncryptionPublicKey
from secure.signing_process import SigningProcess

log = logging.getLogger("lfr.unit.uplink")

UplinkMessage = MatchAlert | StreamEnded | HealthBody
"""What the uplink accepts: the matcher's alerts and stream ends, the health reporter's
reports."""

MAX_WINDOW: Final = 32
"""Most envelopes in flight: the van answers at most ``LinkConfig.max_peer_asks`` (32) asks of a
link at once, and its data channel queues at most 8 MiB (32 of the largest envelopes, 245 KiB
each, fit)."""
MAX_SEALED_AHEAD: Final = 4
"""Envelopes sealed ahead and not stored yet, at most: the next alert is sealed while the outbox
commits the ones before it, and each commit stores every one sealed by then (one transaction,
one fsync). A fifth waits for the store."""
STOP_STORE_S: Final = 10.0
"""At stop, the envelopes sealed ahead are stored within this many seconds (else logged as
lost: the outbox is failing)."""
MAX_REFUSAL_CHARS: Final = 300
"""A van's refusal reason is cut here (``Receipt.reason`` is at most this long)."""
_KINDS: Final[dict[EnvelopeKind, EventKind]] = {"alert": EventKind.ALERT,
                                                "health": EventKind.HEALTH}


@dataclass(frozen=True, slots=True)
class UplinkConfig:
    """How the uplink sends and holds."""

    window: int = 16
    """Envelopes in flight (sent in ``DeliverBatch`` asks awaiting their ``BatchReceipt``), 1 to
    ``MAX_WINDOW``. Keeps the van's receive queue bounded (docs/TRANSPORT.md)."""
    batches_in_flight: int = 1
    """``DeliverBatch`` asks awaiting their answer at once, 1 to ``window``. While this many are
    in flight, the envelopes that become ready wait and then go together as the next batch; the
    first envelope ready when fewer are in flight goes at once (no wait to form a batch). One
    (measured against two, docs/DELIVERY.md: the same p99 for one unit, lower for four, and
    less of the van's CPU: larger batches)."""
    batch_envelopes: int = 8
    """Most envelopes in one batch, 1 to ``MAX_BATCH_ENVELOPES`` (16)."""
    batch_bytes: int = 128 * 1024
    """Most bytes of envelopes in one batch, 1 to ``MAX_BATCH_BYTES`` (about 245 KiB); one
    envelope larger than this goes alone. aiortc's data channel carries about 1.5 MB/s in bulk
    and the van checks a batch only once all of it arrived: small batches keep the first
    envelope of a batch from waiting for the transfer of the others."""
    receipt_timeout_s: float = 15.0
    """A ``Receipt`` that does not come within this many seconds drops the link (the van is
    stuck; the dialer redials and the envelope is sent again)."""
    resume_timeout_s: float = 10.0
    """Seconds for the van's ``ResumePoint``; then the link is dropped likewise."""
    held_alerts: int = 256
    """Alerts kept in memory while the outbox refuses them (``OutboxFull``), in order; one more
    makes ``receive`` wait for room (backpressure to the matcher). About 6.4 MB of 25 KB
    alerts."""
    held_retry_s: float = 5.0
    """While alerts are held, the outbox is tried again at least this often (s), besides after
    every acknowledgement that deleted something."""
    blocked_health_s: float = 30.0
    """While ``receive`` waits for room, the alarm health report is sealed this often (s)."""
    link_wait_s: float = 5.0
    """One wait for a link lasts at most this long (s), then the sender waits again: no wait is
    unbounded."""
    idle_check_s: float = 1.0
    """While it waits for receipts or new envelopes, the sender looks this often (s) whether its
    link is still up (a link that closes while nothing is in flight says nothing)."""
    signing_process: bool = True
    """Sign in a child process (``secure.signing_process``: the hybrid signature's 1.5-2 ms of
    CPU, GIL held, run on another core while the event loop sends), falling back to this
    process for a while when the child fails; False signs on the worker pool, here."""
    ack_delay_s: float = 0.25
    """The van's acknowledgements are applied to the outbox (deleting what they cover, one
    transaction with its fsync) once no envelope is in flight and none is being sealed, at once
    while alerts are held, and otherwise at the latest this long (s) after the first receipt
    not applied yet: the receipts of a burst cost one transaction, after the burst, instead of
    one each during it, competing with its appends for the outbox and the disk.
    Until then the envelopes stay in the outbox (after a crash they go again; the van answers
    ``DUPLICATE``)."""

    def __post_init__(self) -> None:
        require_at_least("UplinkConfig.window", self.window, 1)
        if self.window > MAX_WINDOW:
            raise ConfigError(f"UplinkConfig.window must be at most {MAX_WINDOW} (what the van "
                              f"answers at once), got {self.window!r}")
        require_at_least("UplinkConfig.held_alerts", self.held_alerts, 1)
        for name, value, most in (("batches_in_flight", self.batches_in_flight, self.window),
                                  ("batch_envelopes", self.batch_envelopes,
                                   MAX_BATCH_ENVELOPES),
                                  ("batch_bytes", self.batch_bytes, MAX_BATCH_BYTES)):
            require_at_least(f"UplinkConfig.{name}", value, 1)
            if value > most:
                raise ConfigError(f"UplinkConfig.{name} must be at most {most}, got {value!r}")
        for name in ("receipt_timeout_s", "resume_timeout_s", "held_retry_s",
                     "blocked_health_s", "link_wait_s", "idle_check_s", "ack_delay_s"):
            require_positive(f"UplinkConfig.{name}", getattr(self, name))


@dataclass(slots=True)
class UplinkStatistics:
    """What the uplink did since the node started: plain counters the health reporter reads.
    Pass one object to every incarnation's ``Uplink`` so restarts keep counting."""

    alerts_sealed: int = 0
    """Alerts sealed into the outbox."""
    health_sealed: int = 0
    """Health reports sealed into the outbox (alarm reports included)."""
    alarm_reports: int = 0
    """Of ``health_sealed``, alarm reports this actor sealed while waiting for room."""
    health_refused: int = 0
    """Health reports the outbox could not take (a newer one supersedes them)."""
    unsealable: int = 0
    """Alerts and health reports that break a body limit (``EventBodyError``) or could never
    fit the outbox: they can never be delivered and were dropped, each logged as an error."""
    batches_sent: int = 0
    """``DeliverBatch`` asks sent."""
    largest_batch: int = 0
    """The most envelopes sent in one ``DeliverBatch``."""
    delivered: int = 0
    """Envelopes the van stored (``STORED`` receipts)."""
    duplicates: int = 0
    """Envelopes the van had already (``DUPLICATE`` receipts: a redelivery)."""
    refused: int = 0
    """``REFUSED`` receipts; those envelopes stay in the outbox and go again after a
    reconnect."""
    last_refusal: str | None = None
    """The van's reason of the last refusal (printable, at most 300 characters)."""
    bad_answers: int = 0
    """Answers of the van that made no sense (module docstring); each dropped the link."""
    lost_below_van_mark: int = 0
    """Envelopes numbered at or below a van's mark this outbox never reached (a new outbox
    file with a clock behind the old one's numbers): undeliverable, deleted, logged."""
    held_alerts: int = 0
    """Alerts held in memory now because the outbox is full."""
    outbox_full: bool = False
    """The alarm: an alert was refused by the outbox and is held (cleared once none is)."""
    blocked: bool = False
    """``receive`` waits for room in the held list (the matcher is held back)."""
    connected: bool = False
    """A link is up and its ``Resume`` was answered."""
    resumes: int = 0
    """``ResumePoint``s received (one per link that got that far)."""
    acknowledged_up_to: int = 0
    """The van's mark for this unit, as last heard."""
    streams_ended: int = 0
    """``StreamEnded`` messages (camera streams that ended)."""


class AuditRecorder(Protocol):
    """Where the uplink records for the unit's audit trail (``audit.writer.AuditSink``)."""

    def record(self, kind: AuditKind, /, **fields: FieldValue) -> None:
        """Queue one record without waiting."""
        ...


MAX_ALERTS_RECORDED: Final = 1000
"""Alerts one acknowledgement records one by one; the outbox holds fewer in practice."""


class LinkSource(Protocol):
    """Where the uplink gets its link to the van (``VanDialer``)."""

    def current(self) -> Link | None:
        """The link that is up now, or None."""

    async def wait_link(self, timeout_s: float) -> Link:
        """The link once one is up; ``TimeoutError`` if none is within ``timeout_s``."""

    def drop(self, link: Link, reason: str) -> None:
        """Close ``link`` (if it is still the current one) because of ``reason``; the source
        then offers a new link. Never raises."""


@dataclass(frozen=True, slots=True)
class _Unstored:
    """An envelope sealed ahead, waiting for the store task."""

    envelope: PendingEnvelope
    """Sealed under the number it is to be stored as."""
    body: EventBody
    """What it holds (for ``_on_stored``, and for a repair that seals it again)."""


class VanAnswerRefused(Exception):
    """The van answered something that makes no sense; the link is dropped."""


@dataclass(slots=True)
class _LinkState:
    """The sender's view of one link; dropped with it."""

    resume_mark: int
    """The van's mark in its ``ResumePoint``: no receipt on this link may go below it."""
    mark: int
    """The highest mark heard on this link."""
    applied: int
    """The mark the outbox was acknowledged up to on this link; at most ``mark``."""
    singles: list[int]
    """Envelopes above the mark the van acknowledged alone, not deleted yet."""
    ack_due: float | None
    """Loop time by which the acknowledgements heard must be applied; None when every one
    heard was (``mark == applied`` and no ``singles``)."""
    cursor: int
    """The highest sequence number sent on this link (or skipped by ``Resume``): the next
    envelopes sent are above it, so a refused one is not sent again on this link."""
    first_pending: int
    """The outbox's lowest waiting number as last read, for ``DeliverBatch.first_pending`` (it
    only grows, so a stale value claims less, never more)."""


class Uplink(Actor[UplinkMessage]):
    """Seals alerts and health reports into the outbox and sends them to the van (module
    docstring)."""

    def __init__(self, unit: NodeKeys, van: NodePublicKeys, outbox: Outbox, links: LinkSource,
                 config: UplinkConfig | None = None, *, watchlist_version: int = 0,
                 local_copy: ActorRef[AlertBody] | None = None,
                 statistics: UplinkStatistics | None = None,
                 clock: Callable[[], float] = time.time,
                 audit: AuditRecorder | None = None) -> None:
        """``clock``: seconds since the epoch, for the alarm health reports; ``audit``: the
        unit's trail (``audit.writer.AuditSink``): each alert sealed (``alert_raised``) and
        each alert the van acknowledged (``alert_sent``) is recorded, never its crop."""
        if unit.role is not NodeRole.UNIT:
            raise ValueError(f"the uplink seals as a unit, not a {unit.role.value}")
        if van.role is not NodeRole.VAN or van.encryption_key is None:
            raise ValueError("the uplink seals to a van's public keys")
        self._unit = unit
        # What signs the envelopes: the unit's key here, or a SigningProcess with it (started
        # in on_start, closed in on_stop).
        self._signer: Signer = unit.signing
        self._signing_process: SigningProcess | None = None
        self._van_key: EncryptionPublicKey = van.encryption_key
        self._outbox = outbox
        self._links = links
        self._config = config or UplinkConfig()
        self._watchlist_version = watchlist_version
        self._local_copy = local_copy
        self._audit = audit
        # Alerts the last resume acknowledged, handed from the pool thread to the loop.
        self._acknowledged_at_resume: list[int] = []
        self.statistics = statistics or UplinkStatistics()
        """Counters for the health reporter (shared across incarnations when passed in)."""
        self._clock = clock
        # Alerts the outbox refused, oldest first; invariant: at most config.held_alerts, and
        # every alert here is older than any alert appended since it was held (new alerts go
        # behind them while any is held).
        self._held: collections.deque[AlertBody] = collections.deque()
        # Every append and every envelope sealed ahead (and the resume point, which may move
        # numbering) holds this lock: the order of appends is the order of alerts, and
        # local_copy hears them in that order. Nobody waits for the store task holding it.
        self._append_lock = asyncio.Lock()
        # Envelopes sealed ahead, not stored yet, oldest first; invariants: at most
        # MAX_SEALED_AHEAD, numbered consecutively from the outbox's next number (unless
        # _broken), only the store task removes them (each stored, in order).
        self._unstored: collections.deque[_Unstored] = collections.deque()
        # The number the next envelope sealed ahead gets; None when the outbox must be asked
        # (after an append, a repair or a resume moved numbering). Invariant: None only while
        # nothing is unstored.
        self._next_seq: int | None = None
        # A store of envelopes sealed ahead was refused (the outbox is full, or the numbers
        # moved): the ones still unstored are appended one by one instead (_repair).
        self._broken = False
        self._storing = False               # the store task's transaction is running
        self._store_wake = asyncio.Event()  # set when an envelope was sealed ahead
        self._stored = asyncio.Event()      # set when the store task stored or repaired
        self._room = asyncio.Event()        # set when the held list shrank (or a task failed)
        self._retry_held = asyncio.Event()  # set when acknowledgements deleted something
        self._progress = asyncio.Event()    # set by appends and finished asks: the sender looks
        # Envelopes just appended, in sequence order, for the sender to send without reading
        # them back; invariant: at most config.window (the oldest go first: the sender then
        # reads them from the outbox), each exactly as stored.
        self._fresh: collections.deque[PendingEnvelope] = collections.deque()
        # The last number the outbox assigned as this actor knows it (appends and pages read);
        # a mark above it is nonsense. Read from the outbox in on_start.
        self._last_assigned = 0
        self._last_health: HealthBody | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._task_failure: BaseException | None = None
        # The van decides how many refusals and bad answers there are.
        self._log = LogBudget(log, "uplink")

    # -- lifecycle -----------------------------------------------------------------------------

    async def on_start(self) -> None:
        self._last_assigned = (await self.context.run_blocking(self._outbox.statistics)).last_seq
        if self._config.signing_process:
            process = SigningProcess(self._unit.signing)
            self._signing_process = process
            await self.context.run_blocking(process.start)  # a failure signs here (logged)
            self._signer = process
        self._tasks = [asyncio.create_task(self._guarded(self._send_loop(), "sender"),
                                           name="uplink sender"),
                       asyncio.create_task(self._guarded(self._store_loop(), "store"),
                                           name="uplink store"),
                       asyncio.create_task(self._guarded(self._hold_loop(), "holder"),
                                           name="uplink holder")]

    async def on_stop(self) -> None:
        try:  # what was sealed ahead is stored before the store task goes
            async with asyncio.timeout(STOP_STORE_S):
                await self._settled()
        except Exception:  # on_stop must finish: the outbox may be what failed
            log.exception("uplink: storing the envelopes sealed ahead at stop failed; %d are "
                          "lost", len(self._unstored))
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        self.statistics.connected = False
        if self._held and not self._unstored:  # (unstored left: the outbox failed above)
            try:
                await self._drain_held()
            except Exception:  # on_stop must finish: the outbox may be what failed
                log.exception("uplink: appending the held alerts at stop failed")
        if self._held:
            log.error("uplink: stopping with %d alerts held in memory (the outbox was "
                      "full): they are lost", len(self._held))
        if self._signing_process is not None:
            process, self._signing_process = self._signing_process, None
            await self.context.run_blocking(process.close)
        self._log.flush()

    async def _guarded(self, work: Coroutine[Any, Any, None], name: str) -> None:
        """Run one of the actor's tasks; an unexpected error fails the actor (module
        docstring) instead of vanishing with the task."""
        try:
            await work
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # supervision boundary: handed to the actor, which fails
            log.exception("uplink: its %s task failed", name)
            self._task_failure = exc
            self._room.set()  # a receive waiting for room fails now

    def _raise_if_failed(self) -> None:
        if self._task_failure is not None:
            raise RuntimeError("an uplink task failed") from self._task_failure

    # -- sealing -------------------------------------------------------------------------------

    async def receive(self, message: UplinkMessage) -> None:
        self._raise_if_failed()
        if isinstance(message, MatchAlert):
            await self._take_alert(message)
        elif isinstance(message, HealthBody):
            await self._take_health(message)
        else:
            self.statistics.streams_ended += 1
            log.info("uplink: the stream of camera %s ended after %d frames",
                     printable(message.camera), message.frames)

    async def _take_alert(self, alert: MatchAlert) -> None:
        try:
            body = alert_body(alert, alert.watchlist_version or self._watchlist_version)
        except EventBodyError as exc:
            self._unsealable("an alert", exc)
            return
        if not self._held and await self._append_alert(body):
            return
        if len(self._held) >= self._config.held_alerts:
            log.warning("uplink: %d alerts held and the outbox full: taking no more messages "
                        "until the van acknowledges some", len(self._held))
            self.statistics.blocked = True
            try:
                while len(self._held) >= self._config.held_alerts:
                    await self._wait_for_room()
            finally:
                self.statistics.blocked = False
        self._held.append(body)
        self.statistics.held_alerts = len(self._held)
        self._retry_held.set()  # an acknowledgement may have made room since the refusal

    async def _take_health(self, report: HealthBody) -> None:
        if self.statistics.outbox_full and not report.outbox_full:
            report = dataclasses.replace(report, outbox_full=True)
        self._last_health = report
        await self._append_health(report)

    async def _append_alert(self, body: AlertBody) -> bool:
        """Seal ``body`` into the outbox; False if the outbox is full (keep it), True when it is
        no longer this actor's to keep (stored or sealed ahead, or dropped as one that can
        never be stored)."""
        try:
            if await self._seal_ahead("alert", body):
                return True
            async with self._exclusive():
                return await self._append_alert_now(body)
        except (EventBodyError, EnvelopeTooLarge) as exc:
            self._unsealable("an alert", exc)
            return True

    async def _append_alert_now(self, body: AlertBody) -> bool:
        """``_append_alert`` one at a time: the append lock held, nothing unstored."""
        try:
            appended = await self._append("alert", body)
        except OutboxFull:
            if not self.statistics.outbox_full:
                log.warning("uplink: the outbox is full; alerts are held in memory (at most "
                            "%d) until the van acknowledges some", self._config.held_alerts)
            self.statistics.outbox_full = True
            return False
        await self._on_stored(appended, body)
        return True

    async def _append_health(self, report: HealthBody) -> bool:
        """Seal a health report into the outbox; whether it was stored (or sealed ahead)."""
        try:
            if await self._seal_ahead("health", report):
                return True
            async with self._exclusive():
                return await self._append_health_now(report)
        except (EventBodyError, EnvelopeTooLarge) as exc:
            self._unsealable("a health report", exc)
            return False

    async def _append_health_now(self, report: HealthBody) -> bool:
        """``_append_health`` one at a time: the append lock held, nothing unstored."""
        try:
            appended = await self._append("health", report)
        except OutboxFull as exc:
            self.statistics.health_refused += 1
            self._log.warning("uplink: a health report was not stored: %s", exc)
            return False
        await self._on_stored(appended, report)
        return True

    async def _append(self, kind: EnvelopeKind, body: EventBody) -> PendingEnvelope:
        """On the pool: encode, seal with the number the outbox assigns, store (one at a time;
        the caller holds the append lock and nothing is unstored)."""
        appended = await self.context.run_blocking(self._seal_into_outbox, kind, body)
        self._next_seq = None  # the outbox numbered it: ask it again before sealing ahead
        return appended

    def _seal_into_outbox(self, kind: EnvelopeKind, body: EventBody) -> PendingEnvelope:
        """On a pool thread: the sealed envelope of ``body``, appended to the outbox."""
        payload = self._payload(kind, body)
        sealed: list[bytes] = []

        def seal(seq: int) -> bytes:
            sealed.append(self._seal(kind, payload, seq))
            return sealed[-1]

        seq = self._outbox.append(kind, seal)
        return PendingEnvelope(seq, kind, sealed[-1])

    @staticmethod
    def _payload(kind: EnvelopeKind, body: EventBody) -> bytes:
        """The bytes sealed for ``body`` (``EventBodyError`` for a body the van refuses)."""
        payload = encode_body(body)
        if _KINDS[kind] is not event_kind(body):
            raise ValueError(f"a {type(body).__name__} is not sealed as {kind}")
        return payload

    def _seal(self, kind: EnvelopeKind, payload: bytes, seq: int) -> bytes:
        """On a pool thread: ``payload`` sealed to the van and signed, numbered ``seq``."""
        unit = self._unit
        return seal_envelope(payload, kind=_KINDS[kind], unit_id=unit.node_id, sequence=seq,
                             signing_key=self._signer, van_key=self._van_key)

    async def _on_stored(self, appended: PendingEnvelope, body: EventBody) -> None:
        """``appended`` is in the outbox: count it, hand it to the sender from memory, and
        tell the trail and the local copy of an alert (in the order of the outbox)."""
        delivery_trace.mark(self._unit.node_id, appended.seq, delivery_trace.Stage.SEALED)
        self._last_assigned = max(self._last_assigned, appended.seq)
        self._fresh.append(appended)
        if len(self._fresh) > self._config.window:  # the sender is behind: it reads the outbox
            self._fresh.popleft()
        self._progress.set()
        if not isinstance(body, AlertBody):
            self.statistics.health_sealed += 1
            return
        self.statistics.alerts_sealed += 1
        if self._audit is not None:
            self._audit.record(
                AuditKind.ALERT_RAISED, seq=appended.seq, camera=body.camera_id,
                subject=body.subject_id, score=round(body.score, 4),
                threshold=round(body.threshold, 4), watchlist_version=body.watchlist_version,
                crop_sha256=hashlib.sha256(body.crop_jpeg).hexdigest())
        if not self._held:
            self.statistics.outbox_full = False
        await self._tell_local_copy(body)

    # -- sealing ahead -------------------------------------------------------------------------

    def _may_seal_ahead(self) -> bool:
        """Whether envelopes are sealed ahead: not while alerts are held or the outbox is full
        (then one at a time, each append's outcome deciding the next step)."""
        return not self._held and not self.statistics.outbox_full and not self._broken

    async def _seal_ahead(self, kind: EnvelopeKind, body: EventBody) -> bool:
        """Seal ``body`` under the next number while the store task commits the envelopes
        before it; False (nothing done) when envelopes are not sealed ahead now."""
        if not self._may_seal_ahead():
            return False
        # at most held_alerts too: a repair holds every alert unstored (held is empty now)
        ahead = min(MAX_SEALED_AHEAD, self._config.held_alerts)
        await self._wait(lambda: len(self._unstored) < ahead)
        async with self._append_lock:
            if not self._may_seal_ahead():
                return False
            if self._next_seq is None:  # nothing is unstored (invariant): ask the outbox
                self._next_seq = await self.context.run_blocking(self._outbox.next_seq)
            seq = self._next_seq
            sealed = await self.context.run_blocking(self._seal_ahead_on_pool, kind, body, seq)
            self._next_seq = seq + 1
            self._unstored.append(_Unstored(PendingEnvelope(seq, kind, sealed), body))
            self._store_wake.set()
        return True

    def _seal_ahead_on_pool(self, kind: EnvelopeKind, body: EventBody, seq: int) -> bytes:
        return self._seal(kind, self._payload(kind, body), seq)

    async def _store_loop(self) -> None:
        """For ever: store what was sealed ahead, everything sealed by then in one
        transaction, and tell each one's ``_on_stored`` in order; after a refusal, append the
        ones left one by one (``_repair``)."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._config.idle_check_s):
                    await self._store_wake.wait()
            self._store_wake.clear()
            while self._unstored and not self._broken:
                batch = list(self._unstored)
                self._storing = True  # until every one of the batch was told: order
                try:
                    await self.context.run_blocking(
                        self._outbox.append_sealed, [item.envelope for item in batch])
                    for item in batch:
                        await self._on_stored(item.envelope, item.body)
                    for _ in batch:
                        self._unstored.popleft()
                except (OutboxFull, EnvelopeTooLarge, SequenceMoved):
                    self._broken = True  # nothing of the batch was stored
                finally:
                    self._storing = False
                self._stored.set()
            if self._broken:
                async with self._append_lock:
                    await self._repair()
                self._stored.set()

    async def _repair(self) -> None:
        """The append lock held, the outbox refused a store of envelopes sealed ahead: append
        each unstored one on its own, in order (sealed again under the number the outbox gives
        it); an alert the outbox refuses, and every alert after it, is held (module docstring).
        Alerts are sealed ahead only while none is held, at most ``held_alerts`` of them: the
        held list stays within its bound."""
        items = list(self._unstored)
        self._unstored.clear()
        self._broken = False
        self._next_seq = None
        for item in items:
            body = item.body
            if isinstance(body, AlertBody):
                if self._held or not await self._append_alert_guarded(body):
                    self._held.append(body)
                    self.statistics.held_alerts = len(self._held)
                    self._retry_held.set()
            elif isinstance(body, HealthBody):
                try:
                    await self._append_health_now(body)
                except (EventBodyError, EnvelopeTooLarge) as exc:
                    self._unsealable("a health report", exc)

    async def _append_alert_guarded(self, body: AlertBody) -> bool:
        try:
            return await self._append_alert_now(body)
        except (EventBodyError, EnvelopeTooLarge) as exc:
            self._unsealable("an alert", exc)
            return True

    def _settled_now(self) -> bool:
        return not self._unstored and not self._storing

    async def _settled(self) -> None:
        """Wait until every envelope sealed ahead is stored (or appended by a repair)."""
        self._store_wake.set()
        await self._wait(self._settled_now)

    async def _wait(self, done: Callable[[], bool]) -> None:
        """Wait until ``done()``, waking whenever the store task stored something; fails when
        one of the actor's tasks failed (the store task among them)."""
        while not done():
            self._raise_if_failed()
            self._stored.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._config.idle_check_s):
                    await self._stored.wait()

    @contextlib.asynccontextmanager
    async def _exclusive(self) -> AsyncIterator[None]:
        """The append lock, held while nothing is unstored: numbering is the outbox's alone
        (for an append one at a time, or moving numbering). Waits for the store task outside
        the lock: its repair needs the lock."""
        while True:
            await self._settled()
            await self._append_lock.acquire()
            if self._settled_now():
                break
            self._append_lock.release()  # sealed ahead meanwhile: wait again
        try:
            yield
        finally:
            self._next_seq = None
            self._append_lock.release()

    async def _tell_local_copy(self, body: AlertBody) -> None:
        if self._local_copy is None:
            return
        try:
            await self._local_copy.tell(body)
        except RuntimeFault as exc:  # a stopped printer: the alert is sealed all the same
            self._log.warning("uplink: the local copy of an alert was not delivered: %s",
                              printable(exc))

    def _unsealable(self, what: str, error: Exception) -> None:
        self.statistics.unsealable += 1
        log.error("uplink: %s can never be sealed and is dropped: %s", what, printable(error))

    # -- held alerts ---------------------------------------------------------------------------

    async def _hold_loop(self) -> None:
        """Append held alerts after acknowledgements and every ``held_retry_s``."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._config.held_retry_s):
                    await self._retry_held.wait()
            self._retry_held.clear()
            if self._held:
                await self._drain_held()

    async def _drain_held(self) -> None:
        """Append held alerts, oldest first, until the outbox refuses one or none is left."""
        while self._held:
            if not await self._append_alert(self._held[0]):
                return
            self._held.popleft()  # only now: a new alert queues behind it meanwhile
            self.statistics.held_alerts = len(self._held)
            self._room.set()
        if self.statistics.outbox_full:
            log.info("uplink: the outbox took every held alert")
        self.statistics.outbox_full = False

    async def _wait_for_room(self) -> None:
        """While the held list is full: seal the alarm report, wait for room at most
        ``blocked_health_s``."""
        self._room.clear()
        await self._append_alarm_report()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._config.blocked_health_s):
                await self._room.wait()
        self._raise_if_failed()

    async def _append_alarm_report(self) -> None:
        last = self._last_health
        if last is None:
            log.warning("uplink: no health report received yet: the outbox-full alarm waits "
                        "for one")
            return
        statistics = await self.context.run_blocking(self._outbox.statistics)
        now = self._clock()
        report = dataclasses.replace(
            last, unit_time=now, uptime_s=last.uptime_s + max(0.0, now - last.unit_time),
            outbox_depth=statistics.depth, outbox_oldest_age_s=statistics.oldest_age_s,
            outbox_full=True)
        if await self._append_health(report):
            self.statistics.alarm_reports += 1

    # -- sending -------------------------------------------------------------------------------

    async def _send_loop(self) -> None:
        """For ever: wait for a link, converse over it until it ends, wait for the next."""
        previous: Link | None = None
        while True:
            link = await self._next_link(previous)
            previous = link
            try:
                await self._converse(link)
            except LinkLost as exc:
                log.info("uplink: link to van %s lost: %s", printable(link.peer),
                         printable(exc.reason))
                if not link.closed:  # a frame it could not send: the link is no use either
                    self._links.drop(link, f"the uplink lost it: {printable(exc.reason)}")
            except (AskTimeout, RemoteError, TooManyAsks) as exc:
                # The van is stuck or failing: a new link starts clean (the dialer backs off).
                self._log.warning("uplink: dropping the link to van %s: %s",
                                  printable(link.peer), printable(exc))
                self._links.drop(link, f"the uplink gave up on it: {printable(exc)}")
            except VanAnswerRefused as exc:
                self.statistics.bad_answers += 1
                self._log.warning("uplink: van %s answered nonsense, dropping the link: %s",
                                  printable(link.peer), exc)
                self._links.drop(link, f"the uplink refused an answer: {exc}")
            finally:
                self.statistics.connected = False

    async def _next_link(self, previous: Link | None) -> Link:
        """The next open link that is not ``previous``. Sleeps ``idle_check_s`` between waits
        that found none, so a source that answers at once can never spin the event loop."""
        while True:
            try:
                link = await self._links.wait_link(self._config.link_wait_s)
            except TimeoutError:
                link = None
            if link is not None and link is not previous and not link.closed:
                return link
            await asyncio.sleep(self._config.idle_check_s)

    async def _converse(self, link: Link) -> None:
        """Resume, then deliver until the link closes or fails (raises either way)."""
        receiver: RemoteActorRef[Resume | DeliverBatch] = link.ref(RECEIVER_ACTOR)
        first_pending, last_assigned = await self.context.run_blocking(self._resume_figures)
        self._last_assigned = max(self._last_assigned, last_assigned)
        answer = await receiver.ask(Resume(first_pending, last_assigned),
                                    timeout=self._config.resume_timeout_s)
        if not isinstance(answer, ResumePoint):
            raise VanAnswerRefused(f"Resume was answered with a {type(answer).__name__}")
        mark = _checked_mark(answer.acknowledged_up_to)
        async with self._exclusive():  # no append may take a number the mark is about to pass
            deleted, lost, last_before = await self.context.run_blocking(self._apply_mark, mark)
            self._last_assigned = max(self._last_assigned, mark)
        acknowledged, self._acknowledged_at_resume = self._acknowledged_at_resume, []
        self._record_acknowledged(acknowledged)
        if lost:
            self.statistics.lost_below_van_mark += lost
            log.error("uplink: van %s holds numbers up to %d, above this outbox's last %d (a "
                      "new outbox whose clock is behind the old one's numbers): %d envelopes "
                      "numbered below its mark cannot be delivered and were deleted",
                      printable(link.peer), mark, last_before, lost)
        elif mark > last_before:
            log.warning("uplink: van %s holds numbers up to %d, above this outbox's last %d: "
                        "numbering continues above it", printable(link.peer), mark, last_before)
        if deleted:
            self._retry_held.set()
        self.statistics.resumes += 1
        self.statistics.acknowledged_up_to = mark
        self.statistics.connected = True
        log.info("uplink: resumed with van %s: stored up to %d", printable(link.peer), mark)
        state = _LinkState(resume_mark=mark, mark=mark, applied=mark, singles=[], ack_due=None,
                           cursor=max(mark, first_pending - 1),
                           first_pending=max(first_pending, mark + 1))
        await self._deliver(link, receiver, state)

    def _resume_figures(self) -> tuple[int, int]:
        """On a pool thread: the outbox's first pending and last assigned numbers."""
        return self._outbox.first_pending(), self._outbox.statistics().last_seq

    def _apply_mark(self, mark: int) -> tuple[int, int, int]:
        """On a pool thread: acknowledge up to the van's ``mark`` and number above it. Returns
        (deleted, lost: deleted though never delivered, the last number assigned before)."""
        last = self._outbox.statistics().last_seq
        if mark <= last:
            alerts = (self._outbox.alert_seqs(mark, limit=MAX_ALERTS_RECORDED)
                      if self._audit is not None else [])
            deleted = self._outbox.acknowledge(mark)
            self._acknowledged_at_resume = alerts
            return deleted, 0, last
        # Every waiting envelope is numbered at or below last < mark: the van would call each a
        # duplicate without having it. They cannot be delivered (module docstring of outbox).
        deleted = self._outbox.acknowledge(mark)
        self._outbox.advance_past(mark)
        return deleted, deleted, last

    async def _deliver(self, link: Link, receiver: RemoteActorRef[Resume | DeliverBatch],
                       state: _LinkState) -> None:
        """Send the outbox in sequence order in batches, at most ``window`` envelopes and
        ``batches_in_flight`` batches in flight, and handle the receipts, until the link closes
        (``LinkLost``)."""
        # first sequence number of a batch -> (its envelopes, its ask); invariants: at most
        # config.batches_in_flight batches and config.window envelopes
        in_flight: dict[int, tuple[list[PendingEnvelope], asyncio.Task[Any]]] = {}
        loop = asyncio.get_running_loop()
        config = self._config
        try:
            while not link.closed:
                self._progress.clear()
                done = sorted(first for first, (_, task) in in_flight.items() if task.done())
                if done:
                    answers: list[tuple[int, object]] = []
                    for first in done:
                        batch, task = in_flight.pop(first)
                        answers.extend(batch_answers(batch, task.result()))
                    self._on_receipts(state, answers, loop.time())
                room = config.window - sum(len(batch) for batch, _ in in_flight.values())
                while room > 0 and len(in_flight) < config.batches_in_flight:
                    batch = await self._next_batch(state, min(room, config.batch_envelopes))
                    if not batch:
                        break
                    # tasks start, and send, in this order
                    in_flight[batch[0].seq] = (batch, self._send(receiver, batch,
                                                                 state.first_pending))
                    state.cursor = batch[-1].seq
                    self.statistics.batches_sent += 1
                    self.statistics.largest_batch = max(self.statistics.largest_batch,
                                                        len(batch))
                    self._last_assigned = max(self._last_assigned, batch[-1].seq)
                    room -= len(batch)
                wait_s = config.idle_check_s
                if state.ack_due is not None:
                    if (not in_flight and not self._sealing()) or self._held \
                            or loop.time() >= state.ack_due:
                        await self._apply_acknowledgements(state)
                        continue  # receipts and appends may have come meanwhile
                    wait_s = min(wait_s, state.ack_due - loop.time())
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait_s):
                        await self._progress.wait()
            raise LinkLost(link.peer, "the link closed")
        finally:
            tasks = [task for _, task in in_flight.values()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _next_batch(self, state: _LinkState, most: int) -> list[PendingEnvelope]:
        """The next batch to send: at most ``most`` envelopes following the cursor and at most
        ``batch_bytes`` of them (at least one); the rest go back to the front of ``_fresh``."""
        envelopes = await self._next_envelopes(state, most)
        size = 0
        for taken, envelope in enumerate(envelopes):
            size += len(envelope.sealed)
            if taken and size > self._config.batch_bytes:
                rest = envelopes[taken:]
                self._fresh.extendleft(reversed(rest))
                while len(self._fresh) > self._config.window:  # invariant: the sender reads
                    self._fresh.pop()                          # the newest from the outbox
                return envelopes[:taken]
        return envelopes

    async def _next_envelopes(self, state: _LinkState, room: int) -> list[PendingEnvelope]:
        """At most ``room`` envelopes to send next: the ones just appended, straight from
        memory, when they follow the cursor; else a page of the outbox when it may hold more
        than this link sent (its cursor is below the last number assigned)."""
        fresh = self._fresh
        while fresh and fresh[0].seq <= state.cursor:
            fresh.popleft()
        following: list[PendingEnvelope] = []
        while fresh and len(following) < room and \
                fresh[0].seq == (following[-1].seq if following else state.cursor) + 1:
            following.append(fresh.popleft())
        if following or state.cursor >= self._last_assigned:
            return following
        page, first_pending = await self.context.run_blocking(
            self._next_page, state.cursor, min(room, MAX_PAGE))
        state.first_pending = max(state.first_pending, first_pending)
        return page

    def _next_page(self, after_seq: int, limit: int) -> tuple[list[PendingEnvelope], int]:
        """On a pool thread: waiting envelopes above ``after_seq``, and the first pending."""
        return self._outbox.pending(after_seq, limit), self._outbox.first_pending()

    def _send(self, receiver: RemoteActorRef[Resume | DeliverBatch],
              batch: list[PendingEnvelope], first_pending: int) -> asyncio.Task[Any]:
        task = asyncio.create_task(self._ask_deliver(receiver, batch, first_pending),
                                   name=f"uplink deliver {batch[0].seq}-{batch[-1].seq}")
        task.add_done_callback(lambda _: self._progress.set())
        return task

    async def _ask_deliver(self, receiver: RemoteActorRef[Resume | DeliverBatch],
                           batch: list[PendingEnvelope], first_pending: int) -> Any:
        """One ``DeliverBatch`` ask; its answer (checked by ``batch_answers``)."""
        unit = self._unit.node_id
        for envelope in batch:
            delivery_trace.mark(unit, envelope.seq, delivery_trace.Stage.SENT)
        answer = await receiver.ask(
            DeliverBatch(tuple(envelope.sealed for envelope in batch), first_pending),
            timeout=self._config.receipt_timeout_s)
        if delivery_trace.enabled():
            for envelope in batch:
                delivery_trace.mark(unit, envelope.seq, delivery_trace.Stage.RECEIPT)
        return answer

    def _on_receipts(self, state: _LinkState, answers: list[tuple[int, object]],
                     now: float) -> None:
        """Check the van's answers (envelope number, answer; in sequence order) and count them;
        what they acknowledge is applied later (``_apply_acknowledgements``, see
        ``UplinkConfig.ack_delay_s``). A nonsensical answer raises ``VanAnswerRefused`` before
        anything of them is taken."""
        receipts = [(seq, self._checked_receipt(state, seq, answer)) for seq, answer in answers]
        mark = state.mark
        singles = state.singles
        for seq, (receipt, receipt_mark) in receipts:
            if receipt.outcome is not Outcome.REFUSED and seq > max(receipt_mark, mark):
                singles.append(seq)
            mark = max(mark, receipt_mark)
            self._count(seq, receipt)
        state.singles = [seq for seq in singles if seq > mark]
        state.mark = mark
        self.statistics.acknowledged_up_to = max(self.statistics.acknowledged_up_to, mark)
        if state.ack_due is None and (mark > state.applied or state.singles):
            state.ack_due = now + self._config.ack_delay_s

    def _sealing(self) -> bool:
        """Whether alerts are being sealed: an append runs, envelopes sealed ahead wait to be
        stored, or messages wait in the mailbox."""
        return (self._append_lock.locked() or bool(self._unstored)
                or self.context.ref.statistics().depth > 0)

    async def _apply_acknowledgements(self, state: _LinkState) -> None:
        """Delete what the acknowledgements heard on this link cover, in one call on the
        pool."""
        mark, singles = state.mark, state.singles
        state.singles = []
        state.ack_due = None
        deleted, first_pending, alerts = await self.context.run_blocking(self._acknowledge,
                                                                         mark, singles)
        self._record_acknowledged(alerts)
        state.applied = mark
        state.first_pending = max(state.first_pending, first_pending)
        if deleted:
            self._retry_held.set()

    def _checked_receipt(self, state: _LinkState, seq: int, answer: object
                         ) -> tuple[Receipt, int]:
        """The van's answer to envelope ``seq`` and its mark, checked; ``VanAnswerRefused``
        when it makes no sense (module docstring)."""
        if not isinstance(answer, Receipt):
            raise VanAnswerRefused(f"envelope {seq} was answered with a "
                                   f"{type(answer).__name__}")
        outcome = answer.outcome
        if not isinstance(outcome, Outcome):
            raise VanAnswerRefused(f"envelope {seq}: outcome {printable(outcome, max_chars=40)}")
        if answer.seq != seq and not (answer.seq == 0 and outcome is Outcome.REFUSED):
            raise VanAnswerRefused(f"envelope {seq} was answered with a receipt for "
                                   f"{printable(answer.seq, max_chars=40)}")
        mark = _checked_mark(answer.acknowledged_up_to)
        if mark < state.resume_mark:
            raise VanAnswerRefused(f"the mark went back from {state.resume_mark} to {mark}")
        if mark > self._last_assigned:
            raise VanAnswerRefused(f"the mark {mark} is above {self._last_assigned}, the last "
                                   "number this outbox assigned")
        return answer, mark

    def _count(self, seq: int, receipt: Receipt) -> None:
        if receipt.outcome is Outcome.STORED:
            self.statistics.delivered += 1
        elif receipt.outcome is Outcome.DUPLICATE:
            self.statistics.duplicates += 1
        else:
            reason = printable(receipt.reason, max_chars=MAX_REFUSAL_CHARS)
            self.statistics.refused += 1
            self.statistics.last_refusal = reason
            self._log.warning("uplink: the van refused envelope %d: %s; it stays in the outbox "
                              "and goes again after the next reconnect", seq, reason)

    def _acknowledge(self, mark: int, singles: list[int]) -> tuple[int, int, list[int]]:
        """On a pool thread: delete up to ``mark`` and the envelopes ``singles``; how many,
        the outbox's first pending number after it, and the alerts among them (at most
        ``MAX_ALERTS_RECORDED``, for the trail)."""
        alerts = (self._outbox.alert_seqs(mark, singles, limit=MAX_ALERTS_RECORDED)
                  if self._audit is not None else [])
        deleted = self._outbox.acknowledge(mark)
        for seq in singles:
            deleted += self._outbox.acknowledge_one(seq)
        return deleted, self._outbox.first_pending(), alerts

    def _record_acknowledged(self, alerts: list[int]) -> None:
        if self._audit is None:
            return
        for seq in alerts:
            self._audit.record(AuditKind.ALERT_SENT, seq=seq, acknowledged=True)


def batch_answers(batch: list[PendingEnvelope], answer: object) -> list[tuple[int, object]]:
    """The van's answer to ``batch`` as one ``Receipt`` per envelope (number, receipt; in the
    batch's order) for ``Uplink._checked_receipt``: a ``BatchReceipt`` with one outcome per
    envelope, or one ``REFUSED`` outcome numbered 0 for a batch refused whole (each envelope
    then refused with its reason). ``VanAnswerRefused`` for anything else."""
    if not isinstance(answer, BatchReceipt):
        raise VanAnswerRefused(f"a batch of {len(batch)} from {batch[0].seq} was answered with "
                               f"a {type(answer).__name__}")
    outcomes = answer.outcomes
    mark = answer.acknowledged_up_to
    if len(outcomes) == 1 and len(batch) > 1 and outcomes[0].seq == 0 \
            and outcomes[0].outcome is Outcome.REFUSED:
        whole = outcomes[0]
        return [(envelope.seq, Receipt(0, Outcome.REFUSED, mark, whole.reason))
                for envelope in batch]
    if len(outcomes) != len(batch):
        raise VanAnswerRefused(f"a batch of {len(batch)} from {batch[0].seq} was answered with "
                               f"{len(outcomes)} outcomes")
    return [(envelope.seq, Receipt(outcome.seq, outcome.outcome, mark, outcome.reason))
            for envelope, outcome in zip(batch, outcomes, strict=True)]


def _checked_mark(value: object) -> int:
    """A van's mark if it is a number the outbox could hold; ``VanAnswerRefused`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or \
            not 0 <= value <= MAX_ADVANCE_SEQ:
        raise VanAnswerRefused(f"the mark {printable(value, max_chars=40)} is not a sequence "
                               "number")
    return value
