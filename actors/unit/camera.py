"""``Camera``: decodes a file, RTSP/HTTP stream or V4L2 device with PyAV and hands frames on.

The camera drives itself with ``_NextFrame`` messages to its own mailbox, so decoding, pacing
and failures all go through the actor runtime. A file always ends: what could be decoded is
delivered, undecodable packets are skipped and counted, and a file that cannot be opened or read
on ends its stream with the reason in ``CameraProgress.failure`` (retrying a broken file cannot
heal it). A live source that fails raises, so the supervisor restarts the camera while the rest
of the node keeps running. Every decoder call has a timeout (FFmpeg's own for network sources,
plus an asyncio guard for all), and the decoding thread never holds up a stop. Frames go to the
detector, whose ``drop_oldest`` mailbox makes sure a slow detector never works on stale frames.

Privacy: frames exist only in memory; this module never writes or logs pixel data.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import av
import numpy as np
from numpy.typing import NDArray

from actors.unit.camera_source import ffmpeg_url, is_live_source, redact, redact_in
from actors.unit.frame_pixels import RgbConverter
from guards.config_checks import (
    ConfigError,
    require_at_least,
    require_non_negative,
    require_positive,
    require_text,
)
from guards.log_text import printable
from runtime.actor import Actor
from runtime.daemon_thread import DaemonThread
from runtime.errors import ActorStopped
from runtime.ref import ActorRef
from runtime.supervisor import Backoff

log = logging.getLogger("lfr.camera")
T = TypeVar("T")

MAX_FRAME_PIXELS = 4096 * 4096
"""Frames larger than this are refused: a decoder's output is untrusted input too."""


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded frame. In-process only: deliberately not registered with the codec."""

    camera: str
    """Camera id."""
    index: int
    """Index of the frame in the stream, from 0, in decoding order."""
    t_s: float
    """Presentation time in seconds: pts x time_base for files; since the scan started for
    live sources."""
    captured_ns: int
    """``time.monotonic_ns()`` when the frame was captured, for latency: for a live source and
    an unpaced file when it was decoded; for a paced file (a stand-in for a live camera, which
    decodes ahead and waits for the frame's time) the moment it is released minus the time its
    decoding took, so the wait for its time is not counted but the decoding is."""
    captured_at: float
    """Wall-clock time of the same moment, seconds since the epoch (what an alert reports)."""
    pixels: NDArray[np.uint8]
    """H x W x 3 RGB."""


@dataclass(frozen=True, slots=True)
class EndOfStream:
    """The source ended (files only); in-process only."""

    camera: str
    """Camera id."""
    frames: int
    """Frames delivered in total."""


CameraOutput = Frame | EndOfStream


LOOP_GAP_S = 0.04
"""A looping file's first frame comes this long (one frame at 25 fps) after its last one."""
MAX_CONSECUTIVE_DECODE_ERRORS = 50
"""Live sources: this many undecodable packets in a row restart the camera (a stream that
lost its way); fewer are packet loss and only counted."""


@dataclass(frozen=True, slots=True)
class CameraConfig:
    """Where frames come from and how fast."""

    source: str
    """A file path, an ``rtsp://``/``rtsps://`` or ``http(s)://`` URL, or a V4L2 device such
    as ``/dev/video0``."""
    camera_id: str = "cam0"
    """Name carried by every frame and alert."""
    paced: bool = False
    """Files only: deliver frames at their presentation times (live replay) instead of as fast
    as the pipeline takes them (offline scan)."""
    loop: bool = False
    """Paced files only: start the file again at its end, for ever, as a camera that never
    stops (demos). Stream time keeps growing across loops, so tracks never see time go back."""
    open_timeout_s: float = 10.0
    """Live sources: give up opening after this many seconds (then retry with ``reconnect``)."""
    read_timeout_s: float = 10.0
    """Give up waiting for the next frame after this many seconds: a live source is then
    reopened, a file ends with that failure."""
    reconnect: Backoff = field(default_factory=lambda: Backoff(initial_s=0.5, max_s=10.0))
    """Delay between attempts to open a live source that is not available."""
    decoder_threads: int = 1
    """Threads FFmpeg may use to decode. One by default: the models keep every core busy, and
    FFmpeg's frame threading costs CPU (640x360 H.264 here: 0.28 ms of CPU per frame on one
    thread, 0.44 ms on two). More only helps a large stream whose decoding alone is too slow."""
    stop_wait_s: float = 0.5
    """On stop, how long to wait for a decoder call still inside FFmpeg (a stuck open) before
    leaving it to end by itself on its daemon thread."""

    def __post_init__(self) -> None:
        require_text("CameraConfig.source", self.source)
        require_text("CameraConfig.camera_id", self.camera_id)
        require_positive("CameraConfig.open_timeout_s", self.open_timeout_s)
        require_positive("CameraConfig.read_timeout_s", self.read_timeout_s)
        require_at_least("CameraConfig.decoder_threads", self.decoder_threads, 1)
        require_non_negative("CameraConfig.stop_wait_s", self.stop_wait_s)
        if self.loop and (self.is_live or not self.paced):
            raise ConfigError("CameraConfig.loop: only a paced file can loop (a live source "
                              "never ends; an unpaced file would loop as fast as it decodes)")

    @property
    def is_live(self) -> bool:
        """RTSP, HTTP(S) and devices are live; anything else is a file."""
        return is_live_source(self.source)

    @property
    def never_ends(self) -> bool:
        """A live source or a looping file: the stream ends only when the node stops."""
        return self.is_live or self.loop


@dataclass(slots=True)
class CameraProgress:
    """Survives restarts (held by the factory): where a restarted file camera resumes, and how
    a file source ended."""

    delivered: int = 0
    """Frames handed on so far."""
    opened_once: bool = False
    """True after the first successful open."""
    started_ns: int = field(default_factory=time.monotonic_ns)
    """When the scan started (``time.monotonic_ns()``): live stream time counts from here, so
    it keeps increasing across restarts."""
    decode_errors: int = 0
    """Packets that could not be decoded and were skipped."""
    failure: str | None = None
    """Files only: why the file could not be scanned to its end (it cannot be opened, is not a
    video, a frame is over the size limit, packets could not be decoded, no frame at all).
    Set before ``EndOfStream``; names the camera and the file, never credentials."""


@dataclass(frozen=True, slots=True)
class _NextFrame:
    """The camera's own pacing message."""


class _SourceEnded(Exception):
    """A file source cannot go on; the text says why (becomes ``CameraProgress.failure``)."""


class Camera(Actor[_NextFrame]):
    """Decodes ``config.source`` and tells each frame to ``output``.

    Failure semantics: a file that fails (cannot be opened, undecodable packets, frames over the
    size limit, a stall) ends its stream: what could be decoded was delivered, the reason is in
    ``progress.failure``, and ``EndOfStream`` follows. A live source that cannot be opened,
    breaks or ends is closed and opened again here, with backoff, for ever; only a read stuck
    inside FFmpeg raises (the new incarnation gets a new decoder thread). Any other error (a
    bug) raises, and a restarted file camera resumes after the last delivered frame.
    """

    def __init__(self, config: CameraConfig, output: ActorRef[CameraOutput],
                 progress: CameraProgress | None = None) -> None:
        self.config = config
        self.output = output
        self.progress = progress or CameraProgress()
        self._shown = redact(config.source)  # the source as logs may show it
        # Invariant: set only on the decoder thread, cleared (closed) there or after it is idle.
        self._container: Any = None
        self._frames: Iterator[Any] | None = None
        self._container_lock = threading.Lock()
        self._stopping = threading.Event()
        # Opens that failed and streams that broke since the last delivered frame: the backoff
        # grows with it, so a camera that opens and breaks at once is not hammered.
        self._failures_in_a_row = 0
        self._pace_origin_ns = time.monotonic_ns()
        self._first_t_s: float | None = None
        # A looping file: added to each frame's time, so stream time grows across loops.
        self._t_offset_s = 0.0
        self._last_t_s = 0.0
        # The last decode's start and end (monotonic ns): set on the decoder thread, read on the
        # loop only after that decode was awaited.
        self._decode_started_ns = self._decoded_ns = 0
        self._skip = 0
        self._consecutive_decode_errors = 0
        self._first_decode_error: str | None = None
        self._decoder = DaemonThread(f"camera-{printable(config.camera_id, max_chars=12)}")
        self._rgb = RgbConverter()  # used on the decoder thread only

    async def _in_decoder_thread(self, fn: Callable[[], T], timeout_s: float, doing: str) -> T:
        try:
            async with asyncio.timeout(timeout_s):
                return await self._decoder.run(functools.partial(self._guarded, fn))
        except TimeoutError:
            raise CameraError(f"camera {self._id}: no answer from {self._shown} while "
                              f"{doing} within {timeout_s:g} s") from None

    def _guarded(self, fn: Callable[[], T]) -> T:
        """Runs ``fn`` on the decoder thread; a call that outlives the camera closes the source
        it opened or read (nobody else will)."""
        try:
            return fn()
        finally:
            if self._stopping.is_set():
                self._close_source()

    @property
    def _id(self) -> str:
        return printable(self.config.camera_id)

    async def on_start(self) -> None:
        # A restarted file camera skips what it already delivered (no duplicate frames).
        self._skip = 0 if self.config.never_ends else self.progress.delivered
        await self.context.ref.tell(_NextFrame())

    async def on_stop(self) -> None:
        self._stopping.set()
        if self._decoder.idle:
            self._close_source()
        if not await self._decoder.close(self.config.stop_wait_s):
            log.warning("camera %s: decoder still inside FFmpeg on %s; it ends by itself",
                        self._id, printable(self._shown))

    async def receive(self, message: _NextFrame) -> None:
        try:
            if self._frames is None and not await self._open():
                return
            frame = await self._in_decoder_thread(self._decode_next, self._read_guard_s,
                                                  "reading a frame")
        except (_SourceEnded, CameraError) as exc:
            if not self.config.is_live:
                await self._end_of_stream(str(exc))
            elif self._decoder.idle:
                await self._reopen_later(str(exc))
            else:  # a read stuck inside FFmpeg: a new incarnation gets a new decoder thread
                raise
            return
        if frame is None:
            if self.config.is_live:
                await self._reopen_later("the stream ended")
            elif self.config.loop and self._file_failure() is None:
                await self._loop_again()
            else:
                await self._end_of_stream(self._file_failure())
            return
        if await self._pace(frame.t_s):
            frame = self._released(frame)
        await self.output.tell(frame)
        self.progress.delivered += 1
        self._failures_in_a_row = 0
        self._continue()

    async def _loop_again(self) -> None:
        """A looping file reached its end: open it again, its times after the last frame's."""
        await self._decoder.run(self._close_source)
        self._t_offset_s = self._last_t_s + LOOP_GAP_S
        self._first_t_s = None  # pacing starts again from the first frame
        self._continue()

    async def _reopen_later(self, reason: str) -> None:
        """A live source broke or ended: close it and open it again after the backoff, for
        ever (the supervisor's restart budget is for bugs, not for a flaky camera)."""
        await self._decoder.run(self._close_source)
        self._failures_in_a_row += 1
        delay = self.config.reconnect.delay(self._failures_in_a_row)
        log.warning("camera %s: %s broke (%s); reopening in %.1f s", self._id,
                    printable(self._shown), printable(redact_in(reason, self.config.source)),
                    delay)
        await asyncio.sleep(delay)
        self._continue()

    @property
    def _read_guard_s(self) -> float:
        # FFmpeg's own read timeout (live sources) fires first; this catches what it misses.
        return self.config.read_timeout_s + 2.0

    # --- opening ------------------------------------------------------------------------------

    async def _open(self) -> bool:
        config = self.config
        if config.is_live:
            log.info("camera %s: opening %s (waiting up to %g s)", self._id,
                     printable(self._shown), config.open_timeout_s)
        try:
            await self._in_decoder_thread(self._open_blocking, config.open_timeout_s + 2.0,
                                          "opening")
        except (av.error.FFmpegError, OSError, CameraError, _SourceEnded) as exc:
            reason = redact_in(str(exc), config.source)
            if not config.is_live:
                # A file that cannot be opened will not heal by retrying.
                raise _SourceEnded(f"camera {self._id}: cannot open "
                                   f"{printable(config.source)}: {printable(reason)}") from None
            self._failures_in_a_row += 1
            delay = config.reconnect.delay(self._failures_in_a_row)
            log.warning("camera %s: cannot open %s (%s); retrying in %.1f s", self._id,
                        printable(self._shown), printable(reason), delay)
            await asyncio.sleep(delay)
            self._continue()
            return False
        self.progress.opened_once = True
        return True

    def _open_blocking(self) -> None:
        config = self.config
        options: dict[str, str] = {}
        fmt: str | None = None
        if config.source.startswith(("rtsp://", "rtsps://")):
            options = {"rtsp_transport": "tcp"}
        elif config.source.startswith("/dev/video"):
            fmt = "v4l2"
        # FFmpeg's timeouts (open, then each read) apply to network I/O; devices and files are
        # guarded by the asyncio timeout around every decoder call.
        timeout = (config.open_timeout_s, config.read_timeout_s) if config.is_live else None
        container = av.open(ffmpeg_url(config.source), format=fmt, options=options, timeout=timeout)
        if not container.streams.video:
            container.close()
            raise _SourceEnded(f"camera {self._id}: {printable(self._shown)} has no video "
                               "stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = config.decoder_threads
        with self._container_lock:
            self._container = container
            self._frames = self._decoded_frames(container, stream)

    def _close_source(self) -> None:
        with self._container_lock:
            container, self._container, self._frames = self._container, None, None
        if container is not None:
            container.close()

    # --- decoding -----------------------------------------------------------------------------

    def _decoded_frames(self, container: Any, stream: Any) -> Iterator[Any]:
        """Every decodable frame, packet by packet: an undecodable packet is counted and
        skipped, not the end of the stream. A demuxer error ends it (raised)."""
        for packet in container.demux(stream):
            try:
                frames = packet.decode()
            except av.error.FFmpegError as exc:
                self._decode_failed(exc)
                continue
            self._consecutive_decode_errors = 0
            yield from frames

    def _decode_failed(self, exc: av.error.FFmpegError) -> None:
        self.progress.decode_errors += 1
        self._consecutive_decode_errors += 1
        reason = printable(redact_in(str(exc), self.config.source))
        if self._first_decode_error is None:
            self._first_decode_error = reason
        if self.config.is_live and (self._consecutive_decode_errors
                                    >= MAX_CONSECUTIVE_DECODE_ERRORS):
            raise CameraError(f"camera {self._id}: {self._consecutive_decode_errors} "
                              f"undecodable packets in a row from {printable(self._shown)}: "
                              f"{reason}")

    def _decode_next(self) -> Frame | None:
        """Runs on the decoder thread: the next frame as RGB, or None at the end of a file."""
        self._decode_started_ns = time.monotonic_ns()
        frames = self._frames
        if frames is None:  # closed under us: the camera is stopping
            return None
        while True:
            try:
                decoded = next(frames)
            except StopIteration:
                return None
            except av.error.FFmpegError as exc:
                reason = printable(redact_in(str(exc), self.config.source))
                raise _SourceEnded(f"camera {self._id}: {printable(self._shown)} cannot be "
                                   f"read after {self.progress.delivered} frames: "
                                   f"{reason}") from None
            if self._skip > 0:
                self._skip -= 1
                continue
            break
        if decoded.width * decoded.height > MAX_FRAME_PIXELS:
            raise _SourceEnded(f"camera {self._id}: {printable(self._shown)} has a frame of "
                               f"{decoded.width}x{decoded.height}, over the limit of "
                               f"{MAX_FRAME_PIXELS} pixels")
        pixels = self._rgb.to_rgb(decoded)
        now = self._decoded_ns = time.monotonic_ns()
        if self.config.is_live or decoded.time is None:
            t_s = (now - self.progress.started_ns) / 1e9
        else:
            t_s = float(decoded.time) + self._t_offset_s
        self._last_t_s = t_s
        return Frame(self.config.camera_id, self.progress.delivered, t_s, now, time.time(),
                     pixels)

    def _file_failure(self) -> str | None:
        """Why a file that reached its end was not scanned whole, or None."""
        if self.progress.decode_errors:
            return (f"camera {self._id}: {self.progress.decode_errors} packets of "
                    f"{printable(self.config.source)} could not be decoded "
                    f"(first: {self._first_decode_error})")
        if self.progress.delivered == 0:
            return (f"camera {self._id}: {printable(self.config.source)} holds no decodable "
                    "frame")
        return None

    async def _pace(self, t_s: float) -> bool:
        """A paced file: wait until the frame at ``t_s`` is due; whether it waited."""
        if not self.config.paced or self.config.is_live:
            return False
        if self._first_t_s is None:
            self._first_t_s = t_s
            self._pace_origin_ns = time.monotonic_ns()
            return False
        due_s = (t_s - self._first_t_s) - (time.monotonic_ns() - self._pace_origin_ns) / 1e9
        if due_s <= 0:
            return False
        await asyncio.sleep(due_s)
        return True

    def _released(self, frame: Frame) -> Frame:
        """``frame``, released after waiting for its time, captured as a live camera's would
        be: its decoding (timed on the decoder thread) before now."""
        decoding_ns = self._decoded_ns - self._decode_started_ns
        now_ns, now = time.monotonic_ns(), time.time()
        return replace(frame, captured_ns=now_ns - decoding_ns,
                       captured_at=now - decoding_ns / 1e9)

    async def _end_of_stream(self, failure: str | None) -> None:
        """A file ended: say why if it could not be scanned whole, tell ``EndOfStream``, stop."""
        if failure is not None:
            self.progress.failure = failure
            log.error("%s", failure)
        log.info("camera %s: end of %s after %d frames", self._id,
                 printable(self.config.source), self.progress.delivered)
        await self.output.tell(EndOfStream(self.config.camera_id, self.progress.delivered))
        self.context.stop()

    def _continue(self) -> None:
        with contextlib.suppress(ActorStopped):  # stopping: there is no next frame
            self.context.ref.tell_nowait(_NextFrame())


class CameraError(RuntimeError):
    """The source failed; the message names the camera and never holds credentials."""
