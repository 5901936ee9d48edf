"""``Camera``: decodes a file, RTSP stream or V4L2 device with PyAV and hands frames on.

The camera drives itself with ``_NextFrame`` messages to its own mailbox, so decoding, pacing
and failures all go through the actor runtime: a corrupt or truncated stream raises in
``receive`` and the camera's supervisor restarts it (resuming after the last delivered frame for
files) while the rest of the node keeps running. Frames go to the detector, whose ``drop_oldest``
mailbox makes sure a slow detector never works on stale frames.

Privacy: frames exist only in memory; this module never writes or logs pixel data.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import av
import numpy as np
from numpy.typing import NDArray

from actors.unit.frame_pixels import RgbConverter
from guards.user_input import UserInputError
from runtime.actor import Actor
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
    """``time.monotonic_ns()`` when the frame was decoded (for latency measurement)."""
    captured_at: float
    """Wall-clock time of the decode, seconds since the epoch (what an alert reports)."""
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


@dataclass(frozen=True, slots=True)
class CameraConfig:
    """Where frames come from and how fast."""

    source: str
    """A file path, an ``rtsp://`` URL or a V4L2 device such as ``/dev/video0``."""
    camera_id: str = "cam0"
    """Name carried by every frame and alert."""
    paced: bool = False
    """Files only: deliver frames at their presentation times (live replay) instead of as fast
    as the pipeline takes them (offline scan)."""
    open_timeout_s: float = 10.0
    """Network sources: give up opening or reading after this many seconds."""
    reconnect: Backoff = field(default_factory=lambda: Backoff(initial_s=0.5, max_s=10.0))
    """Delay between attempts to open a live source that is not available."""
    decoder_threads: int = 1
    """Threads FFmpeg may use to decode. One by default: the models keep every core busy, and
    FFmpeg's frame threading costs CPU (640x360 H.264 here: 0.28 ms of CPU per frame on one
    thread, 0.44 ms on two). More only helps a large stream whose decoding alone is too slow."""

    def __post_init__(self) -> None:
        if not self.source:
            raise UserInputError("camera source is empty")
        if not self.camera_id:
            raise UserInputError("camera_id is empty")
        if not self.open_timeout_s > 0:
            raise UserInputError(f"open_timeout_s must be > 0, got {self.open_timeout_s}")
        if self.decoder_threads < 1:
            raise UserInputError(f"decoder_threads must be >= 1, got {self.decoder_threads}")

    @property
    def is_live(self) -> bool:
        """RTSP and devices are live; anything else is a file."""
        return self.source.startswith(("rtsp://", "rtsps://", "/dev/video"))


@dataclass(slots=True)
class CameraProgress:
    """Survives restarts (held by the factory): where a restarted file camera resumes."""

    delivered: int = 0
    """Frames handed on so far."""
    opened_once: bool = False
    """True after the first successful open."""
    started_ns: int = field(default_factory=time.monotonic_ns)
    """When the scan started (``time.monotonic_ns()``): live stream time counts from here, so
    it keeps increasing across restarts."""


@dataclass(frozen=True, slots=True)
class _NextFrame:
    """The camera's own pacing message."""


class Camera(Actor[_NextFrame]):
    """Decodes ``config.source`` and tells each frame to ``output``."""

    def __init__(self, config: CameraConfig, output: ActorRef[CameraOutput],
                 progress: CameraProgress | None = None) -> None:
        self.config = config
        self.output = output
        self.progress = progress or CameraProgress()
        self._container: Any = None
        self._frames: Iterator[Any] | None = None
        self._open_attempts = 0
        self._pace_origin_ns = time.monotonic_ns()
        self._first_t_s: float | None = None
        self._skip = 0
        # The camera decodes on a thread of its own, not on the shared worker pool: PyAV gives
        # up and retakes the GIL several times per frame, and a pool worker waiting for it
        # would leave a core idle that the models could use. Owned here, shut down in on_stop.
        self._decoder = ThreadPoolExecutor(1, thread_name_prefix=f"camera-{config.camera_id}")
        self._rgb = RgbConverter()  # used on the decoder thread only

    async def _in_decoder_thread(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._decoder, fn)

    async def on_start(self) -> None:
        # A restarted file camera skips what it already delivered (no duplicate frames).
        self._skip = 0 if self.config.is_live else self.progress.delivered
        await self.context.ref.tell(_NextFrame())

    async def on_stop(self) -> None:
        container, self._container, self._frames = self._container, None, None
        if container is not None:
            await self._in_decoder_thread(container.close)
        # Waits for a decode still running (a cancelled receive), off the event loop.
        await asyncio.to_thread(self._decoder.shutdown, wait=True)

    async def receive(self, message: _NextFrame) -> None:
        if self._frames is None and not await self._open():
            return
        assert self._frames is not None
        try:
            frame = await self._in_decoder_thread(self._decode_next)
        except av.error.FFmpegError as exc:
            # FFmpeg's message may hold the source URL with its credentials: redact it before
            # it reaches the supervisor's log.
            raise CameraError(f"camera {self.config.camera_id}: "
                              f"{_redact_in(str(exc), self.config.source)}") from None
        if frame is None:
            await self._end_of_stream()
            return
        await self._pace(frame.t_s)
        await self.output.tell(frame)
        self.progress.delivered += 1
        self._continue()

    # --- opening ------------------------------------------------------------------------------

    async def _open(self) -> bool:
        try:
            self._container, self._frames = await self._in_decoder_thread(self._open_blocking)
        except (av.error.FFmpegError, OSError) as exc:
            reason = _redact_in(str(exc), self.config.source)
            if not self.config.is_live:
                # A file that cannot be opened will not heal by retrying.
                raise CameraError(f"camera {self.config.camera_id}: cannot open "
                                  f"{self.config.source}: {reason}") from None
            self._open_attempts += 1
            delay = self.config.reconnect.delay(self._open_attempts)
            log.warning("camera %s: cannot open %s (%s); retrying in %.1f s",
                        self.config.camera_id, _redact(self.config.source), reason, delay)
            await asyncio.sleep(delay)
            self._continue()
            return False
        self._open_attempts = 0
        self.progress.opened_once = True
        return True

    def _open_blocking(self) -> tuple[Any, Iterator[Any]]:
        config = self.config
        options: dict[str, str] = {}
        fmt: str | None = None
        if config.source.startswith(("rtsp://", "rtsps://")):
            options = {"rtsp_transport": "tcp"}
        elif config.source.startswith("/dev/video"):
            fmt = "v4l2"
        timeout = config.open_timeout_s if config.is_live else None
        container = av.open(config.source, format=fmt, options=options, timeout=timeout)
        if not container.streams.video:
            container.close()
            raise av.error.InvalidDataError(0, "no video stream", config.source)
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = config.decoder_threads
        return container, iter(container.decode(stream))

    # --- decoding -----------------------------------------------------------------------------

    def _decode_next(self) -> Frame | None:
        """Runs on a worker thread: the next frame as RGB, or None at the end of a file."""
        assert self._frames is not None
        while True:
            try:
                decoded = next(self._frames)
            except StopIteration:
                return None
            if self._skip > 0:
                self._skip -= 1
                continue
            break
        if decoded.width * decoded.height > MAX_FRAME_PIXELS:
            raise UserInputError(f"camera {self.config.camera_id}: frame of {decoded.width}x"
                             f"{decoded.height} is over the limit of {MAX_FRAME_PIXELS} pixels")
        pixels = self._rgb.to_rgb(decoded)
        now = time.monotonic_ns()
        if self.config.is_live or decoded.time is None:
            t_s = (now - self.progress.started_ns) / 1e9
        else:
            t_s = float(decoded.time)
        return Frame(self.config.camera_id, self.progress.delivered, t_s, now, time.time(),
                     pixels)

    async def _pace(self, t_s: float) -> None:
        if not self.config.paced or self.config.is_live:
            return
        if self._first_t_s is None:
            self._first_t_s = t_s
            self._pace_origin_ns = time.monotonic_ns()
            return
        due_s = (t_s - self._first_t_s) - (time.monotonic_ns() - self._pace_origin_ns) / 1e9
        if due_s > 0:
            await asyncio.sleep(due_s)

    async def _end_of_stream(self) -> None:
        if self.config.is_live:
            raise EOFError(f"camera {self.config.camera_id}: live source ended")
        log.info("camera %s: end of %s after %d frames", self.config.camera_id,
                 self.config.source, self.progress.delivered)
        await self.output.tell(EndOfStream(self.config.camera_id, self.progress.delivered))
        self.context.stop()

    def _continue(self) -> None:
        with contextlib.suppress(ActorStopped):  # stopping: there is no next frame
            self.context.ref.tell_nowait(_NextFrame())


def _redact(source: str) -> str:
    """A URL without its credentials, for logs.

    The credentials end at the last ``@`` of the authority (FFmpeg accepts a raw ``@`` in a
    password), and the authority ends at the first ``/`` after the scheme.
    """
    if "://" not in source:
        return source
    scheme, rest = source.split("://", 1)
    authority, slash, path = rest.partition("/")
    if "@" not in authority:
        return source
    return f"{scheme}://***@{authority.rsplit('@', 1)[1]}{slash}{path}"


def _redact_in(text: str, source: str) -> str:
    """``text`` with every occurrence of ``source`` replaced by its redacted form."""
    return text.replace(source, _redact(source)) if source != _redact(source) else text


class CameraError(RuntimeError):
    """The source failed; the message names the camera and never holds credentials."""
