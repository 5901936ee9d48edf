"""Delayed SACKs for aiortc's SCTP association: one SACK for every second packet of DATA.

aiortc (1.16, pinned in requirements.lock) answers every packet carrying DATA with a SACK of its
own, and its SCTP and DTLS are Python on the event loop: a 26 KB link frame is 23 DATA packets
and 23 SACKs, each SACK encrypted, sent, received, decrypted and processed by Python, on both
sides of the link. RFC 9260 section 6.2 (and RFC 4960 before it) has the receiver acknowledge
at least every second packet and within 200 ms (at most 500 ms), and at once when it sees a gap
or a duplicate; this module makes aiortc do exactly that:

- a SACK that aiortc would send for a packet whose every chunk was new, in-order DATA waits for
  the next such packet, or at most ``SACK_DELAY_S``, and then acknowledges both;
- a gap (out-of-order DATA), a duplicate or a FORWARD TSN is acknowledged at once, as before, so
  fast retransmission and partial reliability work as before.

Nothing else changes: message delivery does not wait for a SACK (a message goes up the moment
its last fragment arrived), congestion control still grows by at most one MTU per SACK and
``Max.Burst`` still limits what one SACK lets the sender send (each SACK now frees two packets,
the burst allows four), the retransmission timer (at least 1 s) is far longer than
``SACK_DELAY_S``, and an unchanged peer interoperates (a SACK is a SACK).

Measured here (2 shared cores, two processes over loopback, 26 KB messages with a small reply
each; CPU per message, each side): 3.0-3.5 ms before, 1.9-2.2 ms after; bulk throughput
3.5-7.7 MB/s before, 9-13 MB/s after.

``DelayedAckSctpTransport`` overrides two methods of ``RTCSctpTransport`` and calls aiortc's
own for the work (it derives from ``runtime.sctp_in_order.InOrderSctpTransport``, so its
associations also take the short path for in-order DATA); ``delay_acks(transport)`` turns an
association aiortc created into one (its class is swapped in place: the subclass adds no
slots, and its state is created on first use) and lightens the record path of the DTLS
transport under it (``runtime.sctp_dtls_records``).
``runtime.datachannel.DataOnlyPeerConnection`` does it for every association it creates.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final

from aiortc.rtcsctptransport import ForwardTsnChunk, RTCSctpTransport

from guards.log_text import printable
from runtime.sctp_dtls_records import lighten_records
from runtime.sctp_in_order import InOrderSctpTransport

log = logging.getLogger("lfr.runtime.link")

SACK_DELAY_S: Final = 0.01
"""At most this long (s) a SACK waits for a second packet (RFC 9260: at most 200 ms)."""


class DelayedAckSctpTransport(InOrderSctpTransport):
    """aiortc's SCTP association, acknowledging every second DATA packet (module docstring),
    with the short path for in-order DATA of ``runtime.sctp_in_order``."""

    # Class-level defaults: ``delay_acks`` swaps the class of a live object, whose own
    # attributes are then set on first use.
    _lfr_sack_waiting: bool = False
    """A packet's SACK is held back for the next packet; invariant: True only while
    ``_lfr_sack_timer`` is set."""
    _lfr_sack_timer: asyncio.TimerHandle | None = None
    """Sends the held SACK after ``SACK_DELAY_S``."""
    _lfr_sack_urgent: bool = False
    """A chunk of the packet being handled needs its SACK at once."""
    _lfr_sack_task: asyncio.Task[None] | None = None
    """The timer's SACK being sent (owned here until it is done)."""

    async def _receive_forward_tsn_chunk(self, chunk: ForwardTsnChunk) -> None:
        self._lfr_sack_urgent = True  # the sender abandoned data: tell it at once
        await super()._receive_forward_tsn_chunk(chunk)

    async def _send_sack(self) -> None:
        """Called by aiortc once per received packet that needs acknowledging."""
        urgent = self._lfr_sack_urgent or self._sack_duplicates or self._sack_misordered
        self._lfr_sack_urgent = False
        if not urgent and not self._lfr_sack_waiting:
            # the first packet since the last SACK: wait for the second one
            self._lfr_sack_waiting = True
            self._lfr_sack_timer = asyncio.get_running_loop().call_later(
                SACK_DELAY_S, self._lfr_sack_due)
            return
        self._lfr_cancel_sack_timer()
        await super()._send_sack()

    def _lfr_cancel_sack_timer(self) -> None:
        self._lfr_sack_waiting = False
        if self._lfr_sack_timer is not None:
            self._lfr_sack_timer.cancel()
            self._lfr_sack_timer = None

    def _lfr_sack_due(self) -> None:
        """The timer: send the SACK held back (unless one went meanwhile or the association
        ended)."""
        self._lfr_sack_timer = None
        self._lfr_sack_waiting = False
        if self._sack_needed and self._association_state is RTCSctpTransport.State.ESTABLISHED:
            # Owned here until done; a SACK takes no network wait (a datagram is handed over).
            self._lfr_sack_task = asyncio.get_running_loop().create_task(self._lfr_send_held())

    async def _lfr_send_held(self) -> None:
        try:
            await super()._send_sack()
        except ConnectionError as exc:  # the transport closed under it: nothing to acknowledge
            log.debug("a delayed SACK was not sent: %s", printable(exc))
        finally:
            self._lfr_sack_task = None


def delay_acks(transport: RTCSctpTransport) -> None:
    """Make ``transport`` (an association aiortc created) acknowledge every second packet, and
    give the DTLS transport under it the lighter record path
    (``runtime.sctp_dtls_records``)."""
    if type(transport) is RTCSctpTransport:
        transport.__class__ = DelayedAckSctpTransport
    lighten_records(transport.transport)
