"""``DataChannelFrameChannel``: a ``FrameChannel`` over one aiortc ``RTCDataChannel``.

The unit/van link runs over WebRTC: one reliable, ordered data channel carries whole link
frames, one frame per data-channel message (a data channel keeps message boundaries, so there is
no length prefix). Only binary messages are frames: a text message closes the channel.

Bounds, and why the receive side closes instead of pushing back. aiortc hands each reassembled
message to a synchronous ``message`` event and re-opens its SCTP receive window at once, so
nothing done here can slow the sender down. Frames therefore wait in a queue of at most
``DataChannelLimits.max_queued_frames`` frames and ``max_queued_bytes`` bytes; a peer that sends
more than the link reads is flooding (or the link is stuck), and the channel closes with
``ReceiveQueueFull`` (the link then goes down, its asks fail with ``LinkLost``, and the unit
redials and resumes from its outbox). Flow control that keeps a well-behaved peer under the
queue is the uplink's: it has a bounded window of unacknowledged envelopes. A frame over
``max_frame_bytes`` (1 KiB during the handshake, 256 KiB at most after) closes the channel with
``FrameTooLarge``. Sending waits while ``bufferedAmount`` is above ``write_high_water_bytes``
until aiortc's ``bufferedamountlow`` event (threshold ``write_low_water_bytes``), for at most
``write_timeout_s``; then the channel closes with ``WriteStalled``.

Only data ever crosses: ``DataOnlyPeerConnection`` refuses to add a track or transceiver, and
``check_data_only_sdp`` refuses a description with any media section but one ``application``
section (no audio, no video: frames never leave the unit). aiortc uses Google's STUN server
when ``iceServers`` is left out; ``DataOnlyPeerConnection`` always passes an explicit list.
Its ``close`` runs once, in a task the connection owns, and every caller waits for it shielded:
a caller cancelled while it waits (a bounded close, a stop) never cuts the close short or
breaks a close running beside it (aiortc's own, when the peer closed first).

Measured on this machine (2 shared cores, Python 3.11, aiortc 1.16, two peer connections in
one process over host candidates on 127.0.0.1, so both ends share one event loop; 4 runs, 2 with
uvloop): a 20 KB frame, sent one at a time and read on the other side, takes 3.7-5.7 ms (p50)
and 8-11 ms (p99) over 500 frames; bulk throughput is 3.2-4.3 MB/s (40 MB in 20 KB frames).
aiortc's SCTP in pure Python is the limit, not the network: a DATA packet carries at most
1,160 bytes (sized for the IPv6 minimum MTU, as browsers do), so a 26 KB alert is 23 packets,
each encrypted, sent, received and decrypted by Python on both sides; keep frames small. Both
ends acknowledge every second packet instead of every one (``runtime.sctp_delayed_ack``: about
a third less CPU per message on each side). A frame is at most 256 KiB
(``DATA_CHANNEL_MAX_MESSAGE_BYTES``).

Trace: once the link's handshake named the peer (``peer``), every frame received is a DEBUG
record of the ``lfr.trace.frames`` logger carrying ``record.trace`` (a ``FrameArrival``: the
peer, the frame's size, the time), so ``lfr bench uplink`` can tell transmission from queueing.
Off unless a process enables that logger: one ``isEnabledFor`` check per frame.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiortc import (
    RTCConfiguration,
    RTCDataChannel,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)

from guards.config_checks import ConfigError, require_at_least, require_positive
from guards.log_text import printable
from runtime.errors import RuntimeFault
from runtime.framing import FrameTooLarge
from runtime.link import Link
from runtime.link_handshake import handshake
from runtime.sctp_delayed_ack import delay_acks

if TYPE_CHECKING:
    from collections.abc import Iterable

    from runtime.codec import Codec
    from runtime.link_config import LinkConfig
    from runtime.system import ActorSystem

log = logging.getLogger("lfr.runtime.link")
DATA_CHANNEL_MAX_MESSAGE_BYTES = 262_144
"""The largest message aiortc accepts to send to an aiortc peer (its ``max-message-size``,
256 KiB): no frame over the data channel may be larger."""
LINK_CHANNEL_LABEL = "lfr-link"
"""The label of the one data channel a link runs over."""
FRAME_TRACE_LOG = logging.getLogger("lfr.trace.frames")
"""Frame arrivals (module docstring, "Trace"); off (above DEBUG) unless a process enables it."""


@dataclass(frozen=True, slots=True)
class FrameArrival:
    """One frame received from a linked peer (a trace record: no content)."""

    peer: str
    """The peer's node name, as its handshake proved it."""
    size: int
    """The frame's size in bytes."""
    at: float
    """When aiortc handed it over (``time.time()``: seconds since the epoch)."""


class ReceiveQueueFull(RuntimeFault, ConnectionError):
    """The peer sent more than the receive queue holds; the channel was closed."""


class WriteStalled(RuntimeFault, ConnectionError):
    """The peer did not take buffered data within the write timeout; the channel was closed."""


class TextMessageRefused(RuntimeFault, ConnectionError):
    """The peer sent a text message; frames are bytes, so the channel was closed."""


class MediaRefused(RuntimeFault, ValueError):
    """A track, a transceiver or an SDP media section other than one data channel section."""


@dataclass(frozen=True, slots=True)
class DataChannelLimits:
    """Bounds of one ``DataChannelFrameChannel``."""

    max_queued_frames: int = 256
    """Frames received and not yet read; one more closes the channel (``ReceiveQueueFull``)."""
    max_queued_bytes: int = 8 * 1024 * 1024
    """Bytes of frames received and not yet read (8 MiB); one more closes the channel."""
    write_high_water_bytes: int = 1024 * 1024
    """Above this much data buffered for sending (``bufferedAmount``), ``write_frame`` waits."""
    write_low_water_bytes: int = 256 * 1024
    """A waiting ``write_frame`` resumes once the buffer drained to this (the
    ``bufferedAmountLowThreshold``)."""
    write_timeout_s: float = 30.0
    """Seconds a ``write_frame`` may wait for the buffer to drain before the channel closes."""
    close_timeout_s: float = 5.0
    """Seconds ``close`` waits for the data channel and then the peer connection to close."""

    def __post_init__(self) -> None:
        require_at_least("DataChannelLimits.max_queued_frames", self.max_queued_frames, 1)
        require_at_least("DataChannelLimits.max_queued_bytes", self.max_queued_bytes,
                         DATA_CHANNEL_MAX_MESSAGE_BYTES)
        require_at_least("DataChannelLimits.write_low_water_bytes",
                         self.write_low_water_bytes, 0)
        if self.write_high_water_bytes <= self.write_low_water_bytes:
            raise ConfigError("DataChannelLimits.write_high_water_bytes must be above "
                              f"write_low_water_bytes, got {self.write_high_water_bytes!r}")
        require_positive("DataChannelLimits.write_timeout_s", self.write_timeout_s)
        require_positive("DataChannelLimits.close_timeout_s", self.close_timeout_s)


class DataChannelFrameChannel:
    """``FrameChannel`` over a reliable, ordered ``RTCDataChannel`` of ``peer_connection``.

    Owns both: ``close`` closes the data channel and then the peer connection. Build it as soon
    as the channel exists (in the ``datachannel`` event, or right after ``createDataChannel``)
    so no message arrives before its handler; ``wait_open`` waits for the channel to open.
    """

    def __init__(self, channel: RTCDataChannel, peer_connection: RTCPeerConnection,
                 max_frame_bytes: int, limits: DataChannelLimits | None = None) -> None:
        if not channel.ordered or channel.maxRetransmits is not None \
                or channel.maxPacketLifeTime is not None:
            raise ValueError("a link needs a reliable, ordered data channel")
        self._channel = channel
        self._peer_connection = peer_connection
        self.max_frame_bytes = min(max_frame_bytes, DATA_CHANNEL_MAX_MESSAGE_BYTES)
        self.limits = limits or DataChannelLimits()
        self.description = f"data channel {printable(channel.label)}"
        # Invariant: _queued_bytes == sum(map(len, _queue)); both under the limits.
        self._queue: collections.deque[bytes] = collections.deque()
        self._queued_bytes = 0
        # Why the channel ended (EOFError for an orderly close, a ConnectionError otherwise);
        # None while it is open. Once set, no frame is queued any more.
        self._ended: Exception | None = None
        self._readable = asyncio.Event()
        self._drained = asyncio.Event()
        self._opened = asyncio.Event()
        self._closed = asyncio.Event()
        self.peak_queued_frames = 0
        """The most frames that waited in the receive queue at once."""
        self.peer: str | None = None
        """The linked peer's name once the link's handshake proved it (``open_link``); names
        the frame trace's records."""
        channel.bufferedAmountLowThreshold = self.limits.write_low_water_bytes
        channel.on("message", self._on_message)
        channel.on("open", self._opened.set)
        channel.on("close", self._on_close)
        channel.on("bufferedamountlow", self._drained.set)
        peer_connection.on("connectionstatechange", self._on_connection_state)
        if channel.readyState == "open":
            self._opened.set()
        elif channel.readyState == "closed":
            self._on_close()

    async def wait_open(self, timeout_s: float) -> None:
        """Return once the channel is open; ``ConnectionError`` if it ends or times out first."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._opened.wait()  # also set when the channel ends
        except TimeoutError:
            raise ConnectionError(f"the data channel did not open within {timeout_s:g} s") \
                from None
        if self._ended is not None:
            raise ConnectionError(f"the data channel ended before it opened: {self._ended}")

    # --- receiving ----------------------------------------------------------------------------

    def _on_message(self, message: bytes | str) -> None:
        if self._ended is not None:
            return
        if not isinstance(message, bytes):
            self._fail(TextMessageRefused("the peer sent a text message; link frames are bytes"))
            return
        if len(message) > self.max_frame_bytes:
            self._fail(FrameTooLarge(f"peer sent a frame of {len(message)} bytes, over the "
                                     f"limit of {self.max_frame_bytes}"))
            return
        limits = self.limits
        if (len(self._queue) >= limits.max_queued_frames
                or self._queued_bytes + len(message) > limits.max_queued_bytes):
            self._fail(ReceiveQueueFull(
                f"the peer sent more than the receive queue holds ({limits.max_queued_frames} "
                f"frames, {limits.max_queued_bytes} bytes) before the link read it"))
            return
        if self.peer is not None and FRAME_TRACE_LOG.isEnabledFor(logging.DEBUG):
            arrival = FrameArrival(self.peer, len(message), time.time())
            FRAME_TRACE_LOG.debug("frame of %d bytes from %r", arrival.size, arrival.peer,
                                  extra={"trace": arrival})
        self._queue.append(message)
        self._queued_bytes += len(message)
        self.peak_queued_frames = max(self.peak_queued_frames, len(self._queue))
        self._readable.set()

    async def read_frame(self) -> bytes:
        """The next frame; frames received before an orderly close are read first."""
        while not self._queue:
            if self._ended is not None:
                raise self._ended
            self._readable.clear()
            await self._readable.wait()
        frame = self._queue.popleft()
        self._queued_bytes -= len(frame)
        return frame

    # --- sending ------------------------------------------------------------------------------

    async def write_frame(self, frame: bytes) -> None:
        """Send one frame; waits while too much is buffered (``WriteStalled`` after the
        timeout, which also closes the channel)."""
        if len(frame) > self.max_frame_bytes:
            raise FrameTooLarge(f"frame of {len(frame)} bytes is over the limit of "
                                f"{self.max_frame_bytes}")
        if self._ended is not None or self._channel.readyState != "open":
            raise ConnectionResetError(f"the data channel is not open ({self._ended or ''})")
        self._channel.send(bytes(frame))
        limits = self.limits
        if self._channel.bufferedAmount <= limits.write_high_water_bytes:
            return
        self._drained.clear()  # bufferedamountlow fires on crossing the low mark from above
        try:
            async with asyncio.timeout(limits.write_timeout_s):
                while (self._channel.bufferedAmount > limits.write_low_water_bytes
                       and self._ended is None):
                    await self._drained.wait()
                    self._drained.clear()
        except TimeoutError:
            stalled = WriteStalled(f"the peer took no data for {limits.write_timeout_s:g} s "
                                   f"({self._channel.bufferedAmount} bytes buffered)")
            self._fail(stalled)
            raise stalled from None
        if self._ended is not None:
            raise ConnectionResetError(f"the data channel closed: {self._ended}")

    # --- ending -------------------------------------------------------------------------------

    def _end(self, reason: Exception) -> None:
        if self._ended is None:
            self._ended = reason
        self._readable.set()
        self._drained.set()
        self._opened.set()

    def _fail(self, reason: Exception) -> None:
        """End with ``reason``: queued frames are dropped and the channel is closed."""
        if self._ended is None:
            log.warning("%s: closing: %s", self.description, printable(reason))
        self._queue.clear()
        self._queued_bytes = 0
        self._end(reason)
        self._channel.close()

    def _on_close(self) -> None:
        self._end(EOFError("the data channel was closed"))
        self._closed.set()

    def _on_connection_state(self) -> None:
        state = self._peer_connection.connectionState
        if state in ("failed", "closed"):
            self._end(ConnectionResetError(f"the peer connection is {state}"))
            self._closed.set()  # no close event will come from a dead transport

    async def close(self) -> None:
        """Close the data channel, then the peer connection, each within ``close_timeout_s``."""
        self._end(ConnectionResetError("the data channel was closed by this side"))
        self._channel.close()
        timeout_s = self.limits.close_timeout_s
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._closed.wait()
        try:
            async with asyncio.timeout(timeout_s):
                await self._peer_connection.close()
        except TimeoutError:
            log.warning("%s: the peer connection did not close within %g s", self.description,
                        timeout_s)


# --- the peer connection: data only ----------------------------------------------------------


def check_data_only_sdp(sdp: str) -> None:
    """Refuse (``MediaRefused``) an SDP unless its only media section is one ``application``
    section: no audio, no video, no other kind."""
    kinds = [line[2:].split(" ", 1)[0] for line in sdp.splitlines() if line.startswith("m=")]
    others = [kind for kind in kinds if kind != "application"]
    if others:
        raise MediaRefused("the session description has "
                           f"{', '.join(printable(kind, max_chars=20) for kind in others)} "
                           "media; only a data channel may be negotiated")
    if len(kinds) != 1:
        raise MediaRefused(f"the session description has {len(kinds)} application sections; "
                           "exactly one data channel section is negotiated")


class DataOnlyPeerConnection(RTCPeerConnection):
    """An ``RTCPeerConnection`` that carries data channels and never a track.

    ``ice_servers`` lists STUN/TURN servers; empty (host candidates only) by default. Its SCTP
    association acknowledges every second packet (``runtime.sctp_delayed_ack``): it is turned
    into one as soon as aiortc creates it (``createDataChannel`` on the offering side,
    ``setRemoteDescription`` on the answering side), before any data flows.
    """

    def __init__(self, ice_servers: Iterable[RTCIceServer] = ()) -> None:
        super().__init__(RTCConfiguration(iceServers=list(ice_servers)))
        # The one close of this connection, started by the first ``close`` and owned here:
        # every ``close`` awaits it shielded, so no caller's cancellation reaches it.
        self._closing: asyncio.Task[None] | None = None

    async def close(self) -> None:
        """Close once, whoever asks (this side, or aiortc itself when the peer closed): the
        first call starts the close in a task of its own, and every call waits for it
        shielded. A caller cancelled meanwhile (a bounded close, a stop) leaves the close
        running to its end, and a later call waits for that same close.

        aiortc's own ``close`` shares one bare future among concurrent callers, so cancelling
        one waiter cancelled that future under the others: the close running beside it (often
        aiortc's own task, started when the peer closed) then failed with ``InvalidStateError``
        that nobody retrieved, and a close cut short left every later close waiting for ever.
        """
        if self._closing is None:
            self._closing = asyncio.get_running_loop().create_task(
                super().close(), name="peer connection close")
            self._closing.add_done_callback(_log_close_failure)
        await asyncio.shield(self._closing)

    def addTrack(self, track: Any) -> Any:  # noqa: N802 - aiortc's (W3C) name
        raise MediaRefused("no audio or video track may be added: frames never leave the unit")

    def addTransceiver(self, trackOrKind: Any, direction: str = "sendrecv") -> Any:  # noqa: N802, N803
        raise MediaRefused("no audio or video transceiver may be added: frames never leave "
                           "the unit")

    async def setRemoteDescription(  # noqa: N802
            self, sessionDescription: RTCSessionDescription) -> None:  # noqa: N803
        check_data_only_sdp(sessionDescription.sdp)
        await super().setRemoteDescription(sessionDescription)
        self._delay_acks()

    def createDataChannel(self, label: str, *args: Any, **kwargs: Any) -> RTCDataChannel:  # noqa: N802
        channel = super().createDataChannel(label, *args, **kwargs)
        self._delay_acks()
        return channel

    def _delay_acks(self) -> None:
        if self.sctp is not None:
            delay_acks(self.sctp)

    async def setLocalDescription(  # noqa: N802
            self, sessionDescription: RTCSessionDescription | None = None) -> None:  # noqa: N803
        if sessionDescription is not None:
            check_data_only_sdp(sessionDescription.sdp)
        await super().setLocalDescription(sessionDescription)


def _log_close_failure(closing: asyncio.Task[None]) -> None:
    """Log a peer connection's close that failed: its callers may have stopped waiting."""
    if not closing.cancelled() and (error := closing.exception()) is not None:
        log.warning("closing a peer connection failed: %s", printable(error))


def create_link_channel(peer_connection: DataOnlyPeerConnection, max_frame_bytes: int,
                        limits: DataChannelLimits | None = None) -> DataChannelFrameChannel:
    """On the offering side: the link's data channel (reliable, ordered), wrapped at once."""
    channel = peer_connection.createDataChannel(LINK_CHANNEL_LABEL, ordered=True)
    return DataChannelFrameChannel(channel, peer_connection, max_frame_bytes, limits)


async def open_link(system: ActorSystem, channel: DataChannelFrameChannel, config: LinkConfig,
                    codec: Codec, *, initiator: bool) -> Link:
    """Run the link handshake over an open ``channel`` and return the ``Link`` (not yet
    running: the caller owns ``link.run()``). Raises ``HandshakeRefused`` after closing the
    channel when the peer does not prove its key."""
    config.check_registered(codec.registry)
    try:
        peer = await handshake(channel, codec, system.name, config.keys, initiator=initiator,
                               timeout_s=config.handshake_timeout_s)
    except BaseException:
        await channel.close()
        raise
    channel.max_frame_bytes = min(config.max_frame_bytes, codec.max_message_bytes,
                                  DATA_CHANNEL_MAX_MESSAGE_BYTES)
    channel.peer = peer
    return Link(system, channel, codec, peer, config)
