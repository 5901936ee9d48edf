"""``Receiver``: the van's end of one unit's link, storing each envelope it delivers once.

One receiver per unit, named ``receiver_name(unit_id)`` (``receiver:<unit id>``); the unit's
link reaches it as ``RECEIVER_ACTOR`` through ``LinkConfig.routes``, so a unit can only ever talk
to its own receiver. It answers the two asks of ``actors.delivery_messages``:

- ``Resume(first_pending, last_assigned)``: ``EventStore.skip_below(unit, first_pending)``, then
  ``ResumePoint(acknowledgeable(unit))``.
- ``Deliver(envelope, first_pending)``: the checks below, in order, then
  ``Receipt(seq, outcome, acknowledgeable(unit), reason)``.
- ``DeliverBatch(envelopes, first_pending)``: first the batch's bounds, before any other work
  (1 to ``MAX_BATCH_ENVELOPES`` envelopes, at most ``MAX_BATCH_BYTES`` in all; else the whole
  batch is refused, ``empty_batch`` or ``batch_too_large``, with one ``REFUSED`` outcome of
  ``seq`` 0). Then each envelope is checked on its own, in order, exactly as a ``Deliver`` of
  it would be: a refused one neither stops nor changes the others, before or after it. Every
  envelope that passed is stored in one transaction (``store_all_and_mark``: one commit, one
  fsync; the skip goes no further than the lowest of them), and the answer is
  ``BatchReceipt(outcomes, acknowledgeable(unit))``, one ``EnvelopeOutcome`` per envelope.

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
crypto call runs on the worker pool (``context.run_blocking``); a whole ``Deliver`` or
``DeliverBatch`` is one call.

Each stored alert is logged in one line (unit, camera, subject, score, sequence number; never
the crop) and, when the van was given a notice sink, handed over as an ``AlertNotice``
(metadata only) for ``lfr van --print-alerts``.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

from actors import delivery_trace
from actors.delivery_messages import (
    MAX_BATCH_BYTES,
    MAX_BATCH_ENVELOPES,
    BatchReceipt,
    Deliver,
    DeliverBatch,
    EnvelopeOutcome,
    Outcome,
    Receipt,
    Resume,
    ResumePoint,
)
from actors.unit.event_body import (
    AlertBody,
    EventBody,
    EventBodyError,
    HealthBody,
    decode_body,
    event_kind,
)
from actors.van.event_store import EventKind as StoredKind
from actors.van.event_store import EventStore, VerifiedEnvelope
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

ReceiverMessage = Resume | Deliver | DeliverBatch


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


@dataclass(frozen=True, slots=True)
class _Checked:
    """One envelope that passed every check (on the worker pool), ready to store."""

    opened: OpenedEnvelope
    body: EventBody
    envelope: bytes
    verified_at: float
    """When its checks passed (``time.time()``), for the delivery trace."""

    @property
    def seq(self) -> int:
        return self.opened.header.sequence

    def verified(self) -> VerifiedEnvelope:
        body = self.body
        captured_at = body.captured_at if isinstance(body, AlertBody) else body.unit_time
        return VerifiedEnvelope(self.seq, _STORED_KINDS[self.opened.header.kind], captured_at,
                                self.envelope)


@dataclass(frozen=True, slots=True)
class _Refusal:
    """One envelope refused by a check (on the worker pool)."""

    seq: int
    """Its number, 0 when refused before its header could be trusted."""
    reason: str
    """The stable reason."""
    text: str
    """``<reason>: <why>``, printable, at most ``MAX_REASON_CHARS``."""


@dataclass(frozen=True, slots=True)
class _BatchDone:
    """What one ``DeliverBatch`` came to (computed on the worker pool), in the batch's order."""

    results: list[_Refusal | _Delivered]
    """Each envelope's refusal, or its receipt (stored or duplicate) with its body and times."""
    mark: int
    """The mark after the batch."""


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

    async def receive(self, message: ReceiverMessage) -> ResumePoint | Receipt | BatchReceipt:
        if isinstance(message, Resume):
            return await self._resume(message)
        if isinstance(message, DeliverBatch):
            return await self._deliver_batch(message)
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
        self.statistics.acknowledged_up_to = done.receipt.acknowledged_up_to
        self._took(done, started)
        return done.receipt

    async def _deliver_batch(self, message: DeliverBatch) -> BatchReceipt:
        started = time.time()
        envelopes = message.envelopes
        refused = batch_refusal(envelopes)
        if refused is not None:  # checked before any work: no signature is checked for it
            mark = await self.context.run_blocking(self._store.acknowledgeable, self.unit_id)
            self.statistics.acknowledged_up_to = mark
            self._refused(refused.reason, refused.text)
            return BatchReceipt((EnvelopeOutcome(0, Outcome.REFUSED, refused.text),), mark)
        done = await self.context.run_blocking(self._process_batch, envelopes,
                                               message.first_pending)
        self.statistics.acknowledged_up_to = done.mark
        outcomes: list[EnvelopeOutcome] = []
        for result in done.results:
            if isinstance(result, _Refusal):
                self._refused(result.reason, result.text)
                outcomes.append(EnvelopeOutcome(result.seq, Outcome.REFUSED, result.text))
            else:
                self._took(result, started)
                outcomes.append(EnvelopeOutcome(result.receipt.seq, result.receipt.outcome))
        return BatchReceipt(tuple(outcomes), done.mark)

    def _took(self, done: _Delivered, started: float) -> None:
        """On the loop: trace, count and report one envelope's result."""
        receipt = done.receipt
        if done.verified_at is not None and done.stored_at is not None:
            delivery_trace.mark(self.unit_id, receipt.seq, delivery_trace.Stage.STARTED, started)
            delivery_trace.mark(self.unit_id, receipt.seq, delivery_trace.Stage.VERIFIED,
                                done.verified_at)
            delivery_trace.mark(self.unit_id, receipt.seq, delivery_trace.Stage.STORED,
                                done.stored_at)
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

    def _process(self, envelope: bytes, first_pending: int) -> _Delivered:
        """On the pool: every check, the skip and the store (module docstring order)."""
        checked = self._check(envelope)
        if isinstance(checked, _Refusal):
            mark = self._store.acknowledgeable(self.unit_id)
            return _Delivered(Receipt(checked.seq, Outcome.REFUSED, mark, checked.text),
                              refusal=checked.reason)
        return self._store_opened(checked.opened, checked.body, envelope, first_pending,
                                  checked.verified_at)

    def _process_batch(self, envelopes: tuple[bytes, ...], first_pending: int) -> _BatchDone:
        """On the pool: every envelope checked on its own, in order; the ones that passed
        stored in one transaction (``store_all_and_mark``), the skip going no further than
        the lowest of them (never a number being delivered)."""
        checked = [self._check(envelope) for envelope in envelopes]
        good = [item for item in checked if isinstance(item, _Checked)]
        if not good:
            refused: list[_Refusal | _Delivered] = [
                item for item in checked if isinstance(item, _Refusal)]
            return _BatchDone(refused, self._store.acknowledgeable(self.unit_id))
        skip_to = max(1, min(first_pending, *(item.seq for item in good)))
        stored, mark = self._store.store_all_and_mark(
            self.unit_id, [item.verified() for item in good], skip_below=skip_to)
        stored_at = time.time()
        outcomes = iter(stored)
        results: list[_Refusal | _Delivered] = []
        for item in checked:
            if isinstance(item, _Refusal):
                results.append(item)
            elif next(outcomes):
                results.append(_Delivered(Receipt(item.seq, Outcome.STORED, mark),
                                          body=item.body, verified_at=item.verified_at,
                                          stored_at=stored_at))
            else:
                results.append(_Delivered(Receipt(item.seq, Outcome.DUPLICATE, mark),
                                          verified_at=item.verified_at, stored_at=stored_at))
        return _BatchDone(results, mark)

    def _check(self, envelope: bytes) -> _Checked | _Refusal:
        """On the pool: every check of one envelope (module docstring order)."""
        try:
            opened = open_envelope(envelope, signers=self._own_signer, van_key=self._van_key)
        except _OtherUnit as exc:
            return _refusal(0, "wrong_unit", f"the envelope is unit "
                            f"{printable(exc.unit_id, max_chars=80)}'s; a unit delivers "
                            "only its own")
        except EnvelopeRefused as exc:
            return _refusal(0, exc.reason, str(exc))
        header = opened.header
        seq = header.sequence
        if not 1 <= seq <= MAX_STORED_SEQ:
            return _refusal(0, "bad_sequence", f"sequence number {seq} is outside 1..2**63-1")
        try:
            body = decode_body(opened.body)
        except EventBodyError as exc:
            return _refusal(seq, "bad_body", str(exc))
        if event_kind(body) is not header.kind:
            return _refusal(seq, "kind_mismatch", f"the header says {header.kind.name}, "
                            f"the body is a {type(body).__name__}")
        return _Checked(opened, body, envelope, time.time())

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


def batch_refusal(envelopes: Sequence[bytes]) -> _Refusal | None:
    """Why a ``DeliverBatch`` of ``envelopes`` is refused whole (``empty_batch``,
    ``batch_too_large``: its count and size, nothing else), or None when its envelopes are to
    be checked one by one."""
    size = sum(len(envelope) for envelope in envelopes)
    if envelopes and len(envelopes) <= MAX_BATCH_ENVELOPES and size <= MAX_BATCH_BYTES:
        return None
    reason = "empty_batch" if not envelopes else "batch_too_large"
    return _refusal(0, reason, f"{len(envelopes)} envelopes of {size} bytes in all (at most "
                               f"{MAX_BATCH_ENVELOPES} and {MAX_BATCH_BYTES})")


def _refusal(seq: int, reason: str, detail: str) -> _Refusal:
    return _Refusal(seq, reason, printable(f"{reason}: {detail}", max_chars=MAX_REASON_CHARS))
