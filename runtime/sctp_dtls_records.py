"""A lighter DTLS record path under aiortc's SCTP association: less Python per packet.

Every SCTP packet of a data channel is one DTLS record in one UDP datagram, and aiortc (1.16,
pinned in requirements.lock) moves each through several layers of Python: pyOpenSSL's
``Connection.send`` / ``recv`` / ``bio_read`` / ``bio_write`` wrappers (argument checks, a
buffer allocated per call, an error check after every successful call), a ``bio_read`` after
every received record that finds nothing to send and raises (and catches) ``WantReadError``,
and three coroutine layers of aioice down to ``sendto``. A 26 KB link frame is 23 DATA
packets and about 12 SACKs, each going through all of it on both sides.

``LightDtlsTransport`` keeps aiortc's ``RTCDtlsTransport`` and changes three methods, for the
connected state only; the handshake, the close, the keys and everything else are aiortc's:

- ``_send_data``: ``SSL_write`` through pyOpenSSL's own bindings (a failure goes through
  pyOpenSSL's error mapping, so the same exceptions as before), then ``_write_ssl``;
- ``_write_ssl``: ``BIO_read`` of at most 1,500 bytes into a buffer of the transport's own (as
  aiortc reads them), nothing sent when it returns nothing (no exception raised), otherwise the
  datagram handed to the nominated pair's protocol: ``sendto`` on a plain host candidate's
  socket directly (what aioice's ``StunProtocol.send_data`` does), any other protocol (a TURN
  relay) through its own ``send_data``; the transport's byte and packet counters as before;
- ``_recv_next`` once aiortc has marked the handshake done: ``BIO_write`` and ``SSL_read`` into
  that buffer, the outcomes mapped as aiortc maps pyOpenSSL's (data; nothing on an error; a
  close alert ends the transport with ``ConnectionError``), ``_write_ssl`` after it (which now
  costs one C call when there is nothing to send), the plaintext to the SCTP association. A
  datagram that is not DTLS (RTP) is dropped: ``DataOnlyPeerConnection`` negotiates no media,
  so aiortc would find no receiver for it either. Before the handshake is done, aiortc's own.

What goes on the wire is unchanged: the same records, one per datagram, the same sizes
(aiortc's SCTP packet size stays), the same order. Measured here (one process, two peer
connections over loopback, bursts of 11 messages of 26 KB each answered by a small one, 6
interleaved runs each): CPU per message, both sides together, 3.99 ms (3.88-4.23) with aiortc's
path, 3.47 ms (3.17-3.90) with this one; ``lfr bench uplink --units 1``: docs/DELIVERY.md.

``lighten_records(transport)`` swaps the class of a DTLS transport aiortc created (the
subclass adds no slots: its buffer is made on first use), only when pyOpenSSL's bindings and
aiortc's private fields it relies on are there; otherwise it leaves aiortc's path and logs
once. ``runtime.sctp_delayed_ack.delay_acks`` calls it for the association's transport, so
every ``DataOnlyPeerConnection`` gets it before any data flows.
"""

from __future__ import annotations

import logging
from typing import Any, Final

from aioice.ice import StunProtocol
from aiortc.rtcdtlstransport import RTCDtlsTransport, State
from OpenSSL import SSL

from guards.log_text import printable

log = logging.getLogger("lfr.runtime.link")

RECORD_BYTES: Final = 1500
"""What one read takes from OpenSSL, as aiortc reads: a DTLS record, a datagram."""
_FFI: Any = getattr(SSL, "_ffi", None)
_LIB: Any = getattr(SSL, "_lib", None)
_NEEDED_LIB: Final = ("SSL_write", "SSL_read", "BIO_write", "BIO_read")
# aiortc's private fields (name-mangled ``__handshake_done`` and the counters ``getStats`` reads)
_HANDSHAKE_DONE: Final = "_RTCDtlsTransport__handshake_done"
_RX_BYTES: Final = "_RTCDtlsTransport__rx_bytes"
_RX_PACKETS: Final = "_RTCDtlsTransport__rx_packets"
_TX_BYTES: Final = "_RTCDtlsTransport__tx_bytes"
_TX_PACKETS: Final = "_RTCDtlsTransport__tx_packets"
_NEEDED_FIELDS: Final = (_HANDSHAKE_DONE, _RX_BYTES, _RX_PACKETS, _TX_BYTES, _TX_PACKETS,
                         "_data_receiver", "_ssl", "_state", "transport")
_DTLS_FIRST_BYTES: Final = range(20, 64)
"""RFC 7983: a datagram whose first byte is 20-63 is DTLS."""


class LightDtlsTransport(RTCDtlsTransport):
    """aiortc's DTLS transport with a lighter record path once connected (module docstring)."""

    # Class-level default: ``lighten_records`` swaps the class of a live object, whose buffer
    # is then made on first use. Touched by the event loop only, and copied out before any
    # await: records of one transport never share it.
    _lfr_buffer: Any = None

    def _lfr_records(self) -> Any:
        buffer = self._lfr_buffer
        if buffer is None:
            buffer = self._lfr_buffer = _FFI.new("char[]", RECORD_BYTES)
        return buffer

    async def _send_data(self, data: bytes) -> None:
        if self._state != State.CONNECTED:
            raise ConnectionError("Cannot send encrypted data, not connected")
        connection: Any = self._ssl
        with _FFI.from_buffer(data) as plain:
            written = _LIB.SSL_write(connection._ssl, plain, len(data))
        if written <= 0:
            connection._raise_ssl_error(connection._ssl, written)  # pyOpenSSL's exceptions
        await self._write_ssl()

    async def _write_ssl(self) -> None:
        connection: Any = self._ssl
        buffer = self._lfr_buffer or self._lfr_records()
        size = _LIB.BIO_read(connection._from_ssl, buffer, RECORD_BYTES)
        if size <= 0:
            return  # nothing to send (a memory BIO asks to retry): no exception made
        datagram = _FFI.buffer(buffer, size)[:]
        pair = self.transport._connection._nominated.get(1)
        if pair is None:
            raise ConnectionError("Cannot send data, not connected")
        if type(pair.protocol) is StunProtocol:
            pair.protocol.transport.sendto(datagram, pair.remote_addr)
        else:  # a relay wraps what it sends
            await pair.protocol.send_data(datagram, pair.remote_addr)
        _count(self, _TX_BYTES, _TX_PACKETS, size)

    async def _recv_next(self) -> None:
        if not getattr(self, _HANDSHAKE_DONE):
            await super()._recv_next()  # aiortc's, with its handshake timeouts
            return
        data = await self.transport._recv()
        _count(self, _RX_BYTES, _RX_PACKETS, len(data))
        if data[0] not in _DTLS_FIRST_BYTES:
            return  # RTP on a connection without media: nobody to give it to
        connection: Any = self._ssl
        with _FFI.from_buffer(data) as record:
            _LIB.BIO_write(connection._into_ssl, record, len(data))
        buffer = self._lfr_buffer or self._lfr_records()
        size = _LIB.SSL_read(connection._ssl, buffer, RECORD_BYTES)
        plain: bytes | None = b""
        if size > 0:
            plain = _FFI.buffer(buffer, size)[:]
        else:
            try:  # as aiortc maps pyOpenSSL's recv: a close alert ends, anything else is dropped
                connection._raise_ssl_error(connection._ssl, size)
            except SSL.ZeroReturnError:
                plain = None
            except SSL.Error:
                plain = b""
        await self._write_ssl()
        if plain is None:
            log.debug("DTLS shut down by the remote party")
            raise ConnectionError
        if plain and self._data_receiver:
            await self._data_receiver._handle_data(plain)


def _count(transport: RTCDtlsTransport, bytes_field: str, packets_field: str, size: int) -> None:
    """One datagram of ``size`` bytes more in aiortc's counters (``getStats``)."""
    fields = transport.__dict__
    fields[bytes_field] += size
    fields[packets_field] += 1


_refused: list[str] = []


def lighten_records(transport: object) -> bool:
    """Give ``transport`` (a DTLS transport aiortc created) the lighter record path. False when
    it is anything else (a subclass of someone else's, a test's stand-in), and when a binding
    or field the path needs is missing: aiortc's path is kept (logged once)."""
    if type(transport) is LightDtlsTransport:
        return True
    if type(transport) is not RTCDtlsTransport:
        return False
    missing = [name for name in _NEEDED_LIB if not hasattr(_LIB, name)]
    missing += [name for name in _NEEDED_FIELDS if not hasattr(transport, name)]
    if _FFI is None:
        missing.append("pyOpenSSL's ffi")
    if not hasattr(SSL.Connection, "_raise_ssl_error"):
        missing.append("Connection._raise_ssl_error")
    if missing:
        if not _refused:
            _refused.append(printable(", ".join(missing)))
            log.warning("the DTLS transport keeps aiortc's record path: %s is not there",
                        _refused[0])
        return False
    transport.__class__ = LightDtlsTransport
    return True
