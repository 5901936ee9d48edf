"""``Receiver``: the van's end of one unit's link, storing each envelope it delivers once.

One receiver per unit, named ``receiver_name(unit_id)`` (``receiver:<unit id>``); the unit's
link reaches it as ``RECEIVER_ACTOR`` through ``LinkConfig.routes``, so a unit can only ever talk
to its own receiver. It answers the two asks of ``actors.delivery_messages``:

- ``Resume(first_pending, last_assigned)``: ``EventStore.skip_below(unit, first_pending)``, then
  ``ResumePoint(acknowledgeable(unit))``.
- ``Deliver(envelope, first_pending)``: the checks below, in order, then
  ``Receipt(seq, outcome, acknowledgeable(unit), reason)``.

=====================================================  ==========================================
 check                                                  refusal reason
=====================================================  ==========================================
 size, frame, version, header (``open_envelope``)       oversize, malformed, unsupported_version
 the header's unit is this link's unit                  wrong_unit
 enrolled signer, both signature halves, van key,       unknown_signer, bad_signature,
 decryption (``open_envelope``)                         wrong_van_key, undecryptable
 sequence number 1..2**63-1 (the store's range)         bad_sequence
 the body decodes and passes every check                bad_body
 the body's kind is the header's                        kind_mismatch
=====================================================  ==========================================

The unit check runs inside ``open_envelope``'s signer lookup, so another unit's envelope (a
replay of something captured) costs no signature check and no decryption. Then the mark passes
the numbers the unit gave up (``skip_below(min(first_pending, seq))``: never the number being
delivered, so a unit contradicting itself cannot make the van drop what it sends) and the
envelope is stored, still sealed (docs/DELIVERY.md says why): ``STORED`` the first time,
``DUPLICATE`` for a number already stored or at or below the mark (a redelivery, a replay).

Nothing a unit sends fails the actor: every refusal is a ``REFUSED`` receipt with
``<reason>: <why>``, counted by reason in the unit's ``UnitStatistics`` and logged through a
``LogBudget`` (the unit decides how many lines there are). A ``Resume`` with a first pending
number out of range is answered with an error (it has no refusal form). The van's own faults
(a disk that fails) reach the unit as an error answer; it delivers again later. Every SQLite and
crypto call runs on the worker pool (``context.run_blocking``); a whole ``Deliver`` is one call.

Each stored alert is logged in one line (unit, camera, subject, score, sequence number; never
the crop) and, when the van was given a notice sink, handed over as an ``AlertNotice``
(metadata only) for ``lfr van --print-alerts``.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from actors import delivery_trace
from actors.delivery_messages import Deliver, Outcome, Receipt, Resume, ResumePoint
from actors.unit.event_body import (
    AlertBody,
    EventBody,
    EventBodyError,
    HealthBody,
    decode_body,
    event_kind,
)
from actors.van.event_store import EventKind as StoredKind
from actors.van.event_store import EventStore
from guards.log_text import printable
from runtime.actor import Actor
from runtime.log_budget import LogBudget
from secure.envelope import (
    EnvelopeRefused,
    EventKind,
    OpenedEnvelope,
    SignerLookup,
    open_envelope,
)
from secure.hybrid_signature import VerifyKey
from secure.sealing import EncryptionKeyPair

log = logging.getLogger("lfr.van.receiver")
RECEIVER_PREFIX: Final = "receiver:"
MAX_STORED_SEQ: Final = 2**63 - 1
"""The event store's range of sequence numbers (SQLite's INTEGER)."""
MAX_REASON_CHARS: Final = 300
"""A receipt's reason is cut here (``Receipt.reason``)."""
ALERT_LOG_LINES: Final = 100
"""Alert lines logged per 10 s and unit before the rest are only counted (every alert is in
the store): an enrolled unit cannot flood the van's log either."""
_STORED_KINDS: Final[dict[EventKind, StoredKind]] = {EventKind.ALERT: "alert",
                                                     EventKind.HEALTH: "health"}

ReceiverMessage = Resume | Deliver


def receiver_name(unit_id: str) -> str:
    """The local name of ``unit_id``'s receiver (``LinkConfig.routes`` maps the unit's
    ``RECEIVER_ACTOR`` to it)."""
    return RECEIVER_PREFIX + unit_id


@dataclass(frozen=True, slots=True)
class AlertNotice:
    """A stored alert without its crop: what the van prints (``--print-alerts``) and shows in
    lists. In-process only (never encoded)."""

    unit_id: str
    """The unit that sealed it (the verified header)."""
    seq: int
    """Its sequence number at that unit."""
    camera_id: str
    """The camera, as the unit named it (printable: checked by ``decode_body``)."""
    subject_id: str
    """The watchlist subject."""
    score: float
    """Cosine similarity to the subject."""
    threshold: float
    """The subject's threshold."""
    captured_at: float
    """When the unit captured it, s since the epoch (the unit's clock)."""


NoticeSink = Callable[[AlertNotice], None]
RefusalSink = Callable[[str, str], None]
"""Told ``(reason, unit id)`` for each refused envelope."""
"""Takes each newly stored alert's notice; must not block (the van's printer queues it)."""


@dataclass(slots=True)
class UnitStatistics:
    """What one unit's receiver did since the van started; kept by the van (outlives receiver
    restarts and links) for the console."""

    stored_alerts: int = 0
    """Alerts stored for the first time."""
    stored_health: int = 0
    """Health reports stored for the first time."""
    duplicates: int = 0
    """Envelopes already stored or at or below the mark (acknowledged again, nothing new)."""
    refused: collections.Counter[str] = field(default_factory=collections.Counter)
    """Envelopes (and resumes) refused, by reason."""
    resumes: int = 0
    """``Resume`` asks answered (one per link, normally)."""
    acknowledged_up_to: int = 0
    """The mark last reported to the unit."""
    last_health: HealthBody | None = None
    """The newest health report stored (counts and ids only, no face data)."""


@dataclass(frozen=True, slots=True)
class _Delivered:
    """What one ``Deliver`` came to (computed on the worker pool)."""

    receipt: Receipt
    refusal: str | None = None
    """The stable reason when refused (``receipt.reason`` holds it and the detail)."""
    body: EventBody | None = None
    """The decoded body when stored for the first time."""
    verified_at: float | None = None
    """When the checks passed (``time.time()``), for the delivery trace; None when refused."""
    stored_at: float | None = None
    """When the store committed (``time.time()``), for the delivery trace; None when
    refused."""


class _OtherUnit(Exception):
    """Raised by the signer lookup: the envelope's header names another unit than the link's."""

    def __init__(self, unit_id: str) -> None:
        self.unit_id = unit_id
        super().__init__(unit_id)


class Receiver(Actor[ReceiverMessage]):
    """Stores what one unit delivers over its link (module docstring)."""

    def __init__(self, unit_id: str, store: EventStore, *, signers: SignerLookup,
                 van_key: EncryptionKeyPair, statistics: UnitStatistics,
                 notices: NoticeSink | None = None,
                 refusals: RefusalSink | None = None) -> None:
        """``notices``: told each newly stored alert; ``refusals``: told each refused
        envelope's reason (the audit trail, at a bounded rate: ``audit.refusals``)."""
        self.unit_id = unit_id
        self._refusals = refusals
        self._store = store
        self._signers = signers
        self._van_key = van_key
        self.statistics = statistics
        self._notices = notices
        shown = printable(unit_id)
        # The unit decides how many of these lines there are: both are bounded.
        self._refusal_log = LogBudget(log, f"receiver of unit {shown}")
        self._alert_log = LogBudget(log, f"alerts of unit {shown}", lines=ALERT_LOG_LINES)

    async def on_stop(self) -> None:
        self._refusal_log.flush()
        self._alert_log.flush()

    async def receive(self, message: ReceiverMessage) -> ResumePoint | Receipt:
        if isinstance(message, Resume):
            return await self._resume(message)
        return await self._deliver(message)

    # -- Resume --------------------------------------------------------------------------------

    async def _resume(self, message: Resume) -> ResumePoint:
        first_pending = message.first_pending
        if first_pending > MAX_STORED_SEQ:
            reason = f"first_pending {first_pending} is over 2**63-1"
            self._refused("bad_first_pending", reason)
            raise ValueError(f"bad_first_pending: {reason}")
        mark = await self.context.run_blocking(self._resume_point, first_pending)
        self.statistics.resumes += 1
        self.statistics.acknowledged_up_to = mark
        # Debug only: one resume per link is the rule, but the unit decides how many it sends
        # (each link's "connected" line is logged by the unit links).
        log.debug("unit %s resumes: first pending %d, last assigned %d; stored up to %d",
                  printable(self.unit_id), first_pending, message.last_assigned, mark)
        return ResumePoint(mark)

    def _resume_point(self, first_pending: int) -> int:
        """On the pool: skip below ``first_pending`` (when it skips anything), then the mark."""
        if first_pending > 1:
            return self._store.skip_below(self.unit_id, first_pending)
        return self._store.acknowledgeable(self.unit_id)

    # -- Deliver -------------------------------------------------------------------------------

    async def _deliver(self, message: Deliver) -> Receipt:
        started = time.time()
        done = await self.context.run_blocking(self._process, message.envelope,
                                               message.first_pending)
        receipt = done.receipt
        if done.verified_at is not None and done.stored_at is not None:
            delivery_trace.mark(self.unit_id, receipt.seq, delivery_trace.Stage.STARTED, started)
            delivery_trace.mark(self.unit_id, receipt.seq, delivery_trace.Stage.VERIFIED,
                                done.verified_at)
            delivery_trace.mark(self.unit_id, receipt.seq, delivery_trace.Stage.STORED,
                                done.stored_at)
        self.statistics.acknowledged_up_to = receipt.acknowledged_up_to
        if done.refusal is not None:
            self._refused(done.refusal, receipt.reason)
        elif receipt.outcome is Outcome.DUPLICATE:
            self.statistics.duplicates += 1
        elif isinstance(done.body, AlertBody):
            self.statistics.stored_alerts += 1
            self._stored_alert(receipt.seq, done.body)
        elif isinstance(done.body, HealthBody):
            self.statistics.stored_health += 1
            self.statistics.last_health = done.body
        return receipt

    def _process(self, envelope: bytes, first_pending: int) -> _Delivered:
        """On the pool: every check, the skip and the store (module docstring order)."""
        try:
            opened = open_envelope(envelope, signers=self._own_signer, van_key=self._van_key)
        except _OtherUnit as exc:
            return self._refusal(0, "wrong_unit", f"the envelope is unit "
                                 f"{printable(exc.unit_id, max_chars=80)}'s; a unit delivers "
                                 "only its own")
        except EnvelopeRefused as exc:
            return self._refusal(0, exc.reason, str(exc))
        header = opened.header
        seq = header.sequence
        if not 1 <= seq <= MAX_STORED_SEQ:
            return self._refusal(0, "bad_sequence", f"sequence number {seq} is outside "
                                 "1..2**63-1")
        try:
            body = decode_body(opened.body)
        except EventBodyError as exc:
            return self._refusal(seq, "bad_body", str(exc))
        if event_kind(body) is not header.kind:
            return self._refusal(seq, "kind_mismatch", f"the header says {header.kind.name}, "
                                 f"the body is a {type(body).__name__}")
        return self._store_opened(opened, body, envelope, first_pending, time.time())

    def _store_opened(self, opened: OpenedEnvelope, body: EventBody, envelope: bytes,
                      first_pending: int, verified_at: float) -> _Delivered:
        header = opened.header
        seq = header.sequence
        captured_at = body.captured_at if isinstance(body, AlertBody) else body.unit_time
        skip_to = max(1, min(first_pending, seq))  # never skip the number being delivered
        # skip, store and mark: one transaction, one fsync
        stored, mark = self._store.store_and_mark(self.unit_id, seq, _STORED_KINDS[header.kind],
                                                  captured_at, envelope, skip_below=skip_to)
        stored_at = time.time()
        if not stored:
            return _Delivered(Receipt(seq, Outcome.DUPLICATE, mark), verified_at=verified_at,
                              stored_at=stored_at)
        return _Delivered(Receipt(seq, Outcome.STORED, mark), body=body,
                          verified_at=verified_at, stored_at=stored_at)

    def _own_signer(self, unit_id: str, key_id: bytes) -> VerifyKey | None:
        """The enrolment's lookup, for this link's unit only."""
        if unit_id != self.unit_id:
            raise _OtherUnit(unit_id)
        return self._signers(unit_id, key_id)

    def _refusal(self, seq: int, reason: str, detail: str) -> _Delivered:
        """On the pool: a refused receipt (the mark read again: the unit deletes up to it)."""
        text = printable(f"{reason}: {detail}", max_chars=MAX_REASON_CHARS)
        mark = self._store.acknowledgeable(self.unit_id)
        return _Delivered(Receipt(seq, Outcome.REFUSED, mark, text), refusal=reason)

    # -- on the actor's loop -------------------------------------------------------------------

    def _refused(self, reason: str, text: str) -> None:
        self.statistics.refused[reason] += 1
        if self._refusals is not None:
            self._refusals(reason, self.unit_id)
        self._refusal_log.warning("unit %s: refused: %s", printable(self.unit_id),
                                  printable(text, max_chars=MAX_REASON_CHARS))

    def _stored_alert(self, seq: int, body: AlertBody) -> None:
        self._alert_log.warning(
            "unit %s: alert seq %d: camera %s, subject %s, score %.3f (threshold %.3f)",
            printable(self.unit_id), seq, printable(body.camera_id),
            printable(body.subject_id), body.score, body.threshold)
        if self._notices is not None:
            self._notices(AlertNotice(self.unit_id, seq, body.camera_id, body.subject_id,
                                      body.score, body.threshold, body.captured_at))
