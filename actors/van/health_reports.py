"""A unit's newest health report among its newest stored events, opened with the van's key.

Shared by the console's Units and Audit pages and ``lfr van audit-witness``: the report shows
the unit's state, and carries the head of its audit trail (the van's witness of it). Reading is
bounded (``max_events`` of the unit's newest events, in pages of ``HEALTH_READ_PAGE``); alerts
are never opened; a stored report that no longer opens (a revoked unit, a damaged row) is
passed over and counted. Blocking: callers run it on the worker pool.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from actors.unit.event_body import EventBodyError, HealthBody, decode_body
from actors.van.event_store import MAX_PAGE, EventStore
from secure.envelope import EnvelopeRefused, SignerLookup, open_envelope
from secure.sealing import EncryptionKeyPair

HEALTH_READ_PAGE: Final = 16
"""Events read per store call while looking back for a health report (alerts are ~25 KB)."""


@dataclass(frozen=True, slots=True)
class HealthReport:
    """A unit's health report as stored and opened."""

    seq: int
    """Its envelope's sequence number."""
    received_at: float
    """When the van stored it, s since the epoch (van clock)."""
    body: HealthBody
    """What the unit reported (counts and ids only)."""


@dataclass(frozen=True, slots=True)
class HealthSearch:
    """What ``find_health_report`` found."""

    report: HealthReport | None
    """The newest report that opened (and carries an audit head, if asked); None if none."""
    unopened: int = 0
    """Stored reports passed over because they no longer open (a revoked unit, a damaged
    row)."""
    reason: str = ""
    """Why the first of those did not open."""


def find_health_report(events: EventStore, signers: SignerLookup, van_key: EncryptionKeyPair,
                       unit: str, *, max_events: int,
                       with_audit_head: bool = False) -> HealthSearch:
    """``unit``'s newest health report among its ``max_events`` newest events (with an audit
    head, if ``with_audit_head``), opened. Blocking: run it on the pool. A stored report that no
    longer opens is passed over and counted."""
    before: int | None = None
    read = unopened = 0
    reason = ""
    while read < max_events:
        page = events.by_unit(unit, before_seq=before,
                              limit=min(HEALTH_READ_PAGE, max_events - read, MAX_PAGE))
        if not page:
            break
        for event in page:
            if event.kind != "health":
                continue  # alerts are never opened here
            try:
                body = decode_body(open_envelope(event.sealed, signers=signers,
                                                 van_key=van_key).body)
            except (EnvelopeRefused, EventBodyError) as exc:
                unopened += 1
                reason = reason or f"seq {event.seq}: {exc}"
                continue
            if isinstance(body, HealthBody) and (body.audit_head or not with_audit_head):
                return HealthSearch(HealthReport(event.seq, event.received_at, body),
                                    unopened, reason)
        read += len(page)
        before = page[-1].seq
    return HealthSearch(None, unopened, reason)
