"""What a unit's uplink and its van's receiver say to each other over their link.

Both ends import this module; nothing else travels between them (the link's allow-list,
``LinkConfig.exposed``, names exactly these classes for the van's receiver). Type codes 130-139
of the link registry. Every body is sealed and signed end to end (``secure.envelope``): these
messages carry an envelope as opaque bytes plus the delivery bookkeeping around it, so what the
link sees is sequence numbers and counts, never a face, a subject or a score.

The conversation (docs/DELIVERY.md, "Over the link"), all asks from the unit::

    unit uplink                                   van receiver (one per unit)
      Resume(first_pending, last_assigned) ───▶  skip below first_pending
                                           ◀───  ResumePoint(acknowledged_up_to)
      DeliverBatch(envelopes, first_pending) ─▶  verify, open, check each; store them all
                                           ◀───  BatchReceipt(outcomes, acknowledged_up_to)
      ...

The unit sends ``DeliverBatch`` (1 to ``MAX_BATCH_ENVELOPES`` envelopes of at most
``MAX_BATCH_BYTES`` together, in sequence order); the van still answers a single ``Deliver``
with a ``Receipt`` (units that predate batches: update the van first). Each envelope of a batch
is judged on its own, exactly as if it had been delivered alone in the same order: a refused
one does not stop the van from storing the ones before it or after it (each has its
``EnvelopeOutcome``), and the good ones are stored together in one transaction.

``acknowledged_up_to`` in every answer is the van's cumulative mark for the unit: everything at
or below it is stored (or was given up by the unit), so the unit deletes it from its outbox.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from runtime.message import message
from secure.envelope import MAX_ENVELOPE_BYTES

RECEIVER_ACTOR: Final = "receiver"
"""The name a unit's link reaches its own receiver by, whichever unit it is (the van routes it
to that unit's receiver: ``LinkConfig.routes``)."""
MAX_BATCH_ENVELOPES: Final = 16
"""Most envelopes in one ``DeliverBatch``; the van refuses a larger batch whole, before any
check of its envelopes (``batch_too_large``)."""
MAX_BATCH_BYTES: Final = MAX_ENVELOPE_BYTES
"""Most bytes of envelopes (their lengths summed) in one ``DeliverBatch``: the largest single
envelope, so a batch is never a larger frame than a ``Deliver`` of the largest envelope (the
data channel carries at most 256 KiB per message; the list adds at most 5 bytes an envelope).
The van refuses a larger batch whole (``batch_too_large``)."""


class Outcome(enum.StrEnum):
    """What the van did with one delivered envelope."""

    STORED = "stored"
    """Verified, opened, checked and stored for the first time."""
    DUPLICATE = "duplicate"
    """Already stored, or at or below the mark (a redelivery after a lost receipt, a replay):
    nothing changed. Safe for the unit to delete."""
    REFUSED = "refused"
    """Refused (``reason`` says why: a signature, a recipient key, a body that does not decode,
    a header from another unit). Nothing was stored; the unit keeps the envelope (it is never
    deleted but by an acknowledgement), logs the reason and sends it again after the next
    reconnect, so a van fixed in between still gets it."""


@message(130)
@dataclass(frozen=True, slots=True)
class Resume:
    """First ask of a unit on a new link: where its outbox stands."""

    first_pending: int
    """The lowest sequence number still in the unit's outbox, or the next it will assign when
    empty: every number below was acknowledged or dropped (health reports only), so the van
    may skip them (``EventStore.skip_below``)."""
    last_assigned: int
    """The last sequence number the unit's outbox assigned (0: none)."""


@message(131)
@dataclass(frozen=True, slots=True)
class ResumePoint:
    """The van's answer to ``Resume``."""

    acknowledged_up_to: int
    """The van's cumulative mark for this unit after the skip: the unit deletes every envelope
    at or below it. Above the unit's ``last_assigned`` it means the van stored numbers this
    outbox never assigned (a new outbox file on an old identity): the unit must number above
    it from now on (``Outbox.advance_past``)."""


@message(132)
@dataclass(frozen=True, slots=True)
class Deliver:
    """One sealed envelope from the unit's outbox, in sequence order."""

    envelope: bytes
    """The envelope exactly as sealed (``secure.envelope.seal_envelope``)."""
    first_pending: int
    """As in ``Resume``, at the time of sending (lets the van's mark pass dropped numbers)."""


@message(133)
@dataclass(frozen=True, slots=True)
class Receipt:
    """The van's answer to one ``Deliver``."""

    seq: int
    """The envelope's sequence number (0 when refused before its header could be read)."""
    outcome: Outcome
    """Stored, duplicate or refused."""
    acknowledged_up_to: int
    """The van's cumulative mark for this unit: delete everything at or below it."""
    reason: str = ""
    """Why it was refused (empty otherwise); the van's text, printable, at most 300 characters."""


@message(134)
@dataclass(frozen=True, slots=True)
class DeliverBatch:
    """Sealed envelopes from the unit's outbox, in sequence order (module docstring)."""

    envelopes: tuple[bytes, ...]
    """The envelopes exactly as sealed, lowest number first: 1 to ``MAX_BATCH_ENVELOPES`` of
    them, their lengths summing to at most ``MAX_BATCH_BYTES``."""
    first_pending: int
    """As in ``Deliver``."""


@message(135)
@dataclass(frozen=True, slots=True)
class EnvelopeOutcome:
    """What the van did with one envelope of a ``DeliverBatch``."""

    seq: int
    """The envelope's sequence number (0 when refused before its header could be trusted)."""
    outcome: Outcome
    """Stored, duplicate or refused."""
    reason: str = ""
    """Why it was refused (empty otherwise); printable, at most 300 characters."""


@message(136)
@dataclass(frozen=True, slots=True)
class BatchReceipt:
    """The van's answer to one ``DeliverBatch``."""

    outcomes: tuple[EnvelopeOutcome, ...]
    """One per envelope, in the batch's order; or, for a batch refused whole (too many
    envelopes or bytes: checked before anything else), exactly one ``REFUSED`` outcome with
    ``seq`` 0, which stands for every envelope of the batch."""
    acknowledged_up_to: int
    """The van's cumulative mark for this unit after the batch: delete everything at or below
    it."""
