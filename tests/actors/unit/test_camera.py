"""``Camera`` in a real ``ActorSystem``: decoding the shared clip, pacing, failures, restarts.

The clip tests need ``../shared/data`` (they skip without it). The RTSP tests use a closed port
on 127.0.0.1, which refuses at once, so no network is needed.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import pytest_asyncio
from numpy.typing import NDArray

import actors.unit.camera as camera_module
from actors.unit.camera import (
    Camera,
    CameraConfig,
    CameraOutput,
    CameraProgress,
    EndOfStream,
    Frame,
)
from actors.unit.camera_source import redact
from guards.config_checks import ConfigError
from runtime import Actor, ActorRef, ActorSystem, Backoff, SystemConfig
from runtime.cell import ActorCell
from runtime.codec import Codec, EncodeError
from tests.actors.support import WAIT_S, eventually

CLIP_FRAMES = 275
CLIP_SHAPE = (360, 640, 3)
FRAME_S = 1001 / 30000
"""29.97 fps."""


# --- a collector and the clip's ground truth --------------------------------------------------


@dataclass(frozen=True, slots=True)
class Seen:
    """What the collector keeps of a frame (not its pixels: 275 frames are ~190 MB)."""

    index: int
    t_s: float
    camera: str
    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    received_s: float
    """``time.monotonic()`` when the collector got it."""
    captured_ns: int = 0
    """The frame's ``captured_ns``."""


@dataclass(frozen=True, slots=True)
class Ping:
    """Ask the collector how many frames it has seen."""


class Recording:
    """What a collector saw; outlives the actors."""

    def __init__(self) -> None:
        self.frames: list[Seen] = []
        self.first_pixels: NDArray[np.uint8] | None = None
        self.ends: list[tuple[EndOfStream, int]] = []
        """Each ``EndOfStream`` with the number of frames seen before it."""


class Collector(Actor[CameraOutput | Ping]):
    """Stands in for the detector: records what the camera delivers."""

    def __init__(self, recording: Recording) -> None:
        self.recording = recording

    async def receive(self, message: CameraOutput | Ping) -> int | None:
        recording = self.recording
        if isinstance(message, Ping):
            return len(recording.frames)
        if isinstance(message, EndOfStream):
            recording.ends.append((message, len(recording.frames)))
            return None
        if recording.first_pixels is None:
            recording.first_pixels = message.pixels.copy()
        recording.frames.append(Seen(message.index, message.t_s, message.camera,
                                     message.pixels.shape, message.pixels.dtype,
                                     time.monotonic(), message.captured_ns))
        return None


@dataclass(frozen=True, slots=True)
class ClipReference:
    """The clip decoded directly with PyAV."""

    times: list[float]
    """pts x time_base of every frame."""
    first_rgb: NDArray[np.uint8]
    """The first frame as RGB."""


@pytest.fixture(scope="session")
def reference(hamilton_clip: Path) -> ClipReference:
    times: list[float] = []
    first: NDArray[np.uint8] | None = None
    with av.open(str(hamilton_clip)) as container:
        for frame in container.decode(container.streams.video[0]):
            assert frame.time is not None
            times.append(float(frame.time))
            if first is None:
                first = np.asarray(frame.to_ndarray(format="rgb24"), dtype=np.uint8)
    assert first is not None
    return ClipReference(times, first)


async def start(system: ActorSystem, config: CameraConfig,
                progress: CameraProgress | None = None
                ) -> tuple[Recording, ActorRef[CameraOutput | Ping], ActorRef[Any]]:
    """Spawn a collector, then a camera feeding it; the factory keeps ``progress``."""
    recording = Recording()
    collector = await system.spawn("collector", lambda: Collector(recording))
    progress = progress or CameraProgress()
    camera = await system.spawn("camera", lambda: Camera(config, collector, progress))
    return recording, collector, camera


def cell(system: ActorSystem, name: str) -> ActorCell[Any]:
    """The cell of the actor called ``name``."""
    return next(c for c in system.cells() if c.name == name)


# --- the whole clip ---------------------------------------------------------------------------


async def test_camera_delivers_every_frame_then_end_of_stream(
        system: ActorSystem, hamilton_clip: Path, reference: ClipReference) -> None:
    recording, _, camera = await start(system, CameraConfig(str(hamilton_clip)))
    await eventually(lambda: bool(recording.ends))
    await eventually(lambda: not camera.is_alive)  # it stopped itself

    frames = recording.frames
    assert [f.index for f in frames] == list(range(CLIP_FRAMES))
    times = [f.t_s for f in frames]
    assert times == reference.times  # pts x time_base, exactly
    assert all(b > a for a, b in itertools.pairwise(times))
    assert times[0] == pytest.approx(0.85, abs=0.01)
    assert times[-1] == pytest.approx(10.0, abs=0.01)
    assert {f.shape for f in frames} == {CLIP_SHAPE}
    assert {f.dtype for f in frames} == {np.dtype(np.uint8)}
    assert {f.camera for f in frames} == {"cam0"}
    assert recording.first_pixels is not None
    assert np.array_equal(recording.first_pixels, reference.first_rgb)  # RGB, not BGR

    assert recording.ends == [(EndOfStream("cam0", CLIP_FRAMES), CLIP_FRAMES)]
    assert cell(system, "camera").metrics.failures == 0
    assert system.failure is None


async def test_paced_replay_takes_about_real_time(system: ActorSystem,
                                                  hamilton_clip: Path) -> None:
    recording, _, _ = await start(system, CameraConfig(str(hamilton_clip), paced=True,
                                                       camera_id="replay"))
    await eventually(lambda: len(recording.frames) >= 15)
    first, fifteenth = recording.frames[0], recording.frames[14]
    assert fifteenth.t_s - first.t_s == pytest.approx(14 * FRAME_S, abs=1e-3)
    # 14 frame intervals at 29.97 fps are 0.467 s; only a loose lower bound is asserted.
    assert fifteenth.received_s - first.received_s >= 0.3
    assert {f.camera for f in recording.frames} == {"replay"}


# --- failures ---------------------------------------------------------------------------------


async def ended_with_failure(system: ActorSystem, config: CameraConfig
                             ) -> tuple[Recording, CameraProgress]:
    """Run a camera on a broken file until its stream ends; the file's failure is its own."""
    progress = CameraProgress()
    recording, _, camera = await start(system, config, progress)
    await eventually(lambda: bool(recording.ends))
    await eventually(lambda: not camera.is_alive)
    assert recording.ends == [(EndOfStream("cam0", len(recording.frames)),
                               len(recording.frames))]
    # Retrying a broken file cannot heal it: the camera ended, it did not fail and restart.
    assert cell(system, "camera").metrics.failures == 0
    assert system.failure is None
    assert progress.failure is not None
    return recording, progress


async def test_missing_file_ends_the_stream_naming_the_file(system: ActorSystem,
                                                            tmp_path: Path) -> None:
    missing = tmp_path / "no_such_clip.mp4"
    recording, progress = await ended_with_failure(system, CameraConfig(str(missing)))
    assert progress.failure is not None
    assert str(missing) in progress.failure
    assert "No such file" in progress.failure
    assert recording.frames == []


@pytest.mark.parametrize(("content", "reason"), [
    (b"no\n", "Invalid data"),
    (b"", "Invalid data"),
    (bytes(range(256)) * 64, "cannot open"),
], ids=["text", "empty", "noise"])
async def test_a_file_that_is_not_a_video_ends_the_stream(
        system: ActorSystem, tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "x.mp4"
    path.write_bytes(content)
    recording, progress = await ended_with_failure(system, CameraConfig(str(path)))
    assert progress.failure is not None
    assert str(path) in progress.failure
    assert reason in progress.failure
    assert recording.frames == []


def write_audio_only(path: Path) -> None:
    """An .m4a holding one second of silence and no video stream."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=44100)
        for i in range(44):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp",
                                               layout="mono")
            frame.sample_rate = 44100
            frame.pts = i * 1024
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


async def test_an_audio_only_file_ends_the_stream(system: ActorSystem, tmp_path: Path) -> None:
    path = tmp_path / "speech.m4a"
    write_audio_only(path)
    _, progress = await ended_with_failure(system, CameraConfig(str(path)))
    assert progress.failure is not None
    assert "no video stream" in progress.failure


async def test_a_video_with_no_frames_ends_the_stream(system: ActorSystem, hamilton_clip: Path,
                                                      tmp_path: Path) -> None:
    # The clip's header and index with every video packet's bytes gone: a video stream that
    # yields no frame at all.
    path = tmp_path / "hollow.mp4"
    faststart_copy(hamilton_clip, path, keep_packets=False)
    _, progress = await ended_with_failure(system, CameraConfig(str(path)))
    assert progress.failure is not None
    assert "no decodable frame" in progress.failure or "could not be decoded" in progress.failure


def zeroed_copy(clip: Path, out: Path) -> None:
    """``clip`` with 20 kB a third of the way in overwritten by zeros (a damaged recording)."""
    data = bytearray(clip.read_bytes())
    middle = len(data) // 3
    data[middle:middle + 20_000] = bytes(20_000)
    out.write_bytes(bytes(data))


async def test_corrupted_packets_are_skipped_and_named(system: ActorSystem, hamilton_clip: Path,
                                                       tmp_path: Path) -> None:
    path = tmp_path / "damaged.mp4"
    zeroed_copy(hamilton_clip, path)
    recording, progress = await ended_with_failure(system, CameraConfig(str(path)))
    # What could be decoded was delivered, in order, and the damage is named.
    assert 200 < len(recording.frames) < CLIP_FRAMES
    assert [f.index for f in recording.frames] == list(range(len(recording.frames)))
    assert progress.decode_errors > 0
    assert progress.failure is not None
    assert f"{progress.decode_errors} packets of {path} could not be decoded" in progress.failure


async def test_oversize_frames_end_the_stream(system: ActorSystem, hamilton_clip: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(camera_module, "MAX_FRAME_PIXELS", 640 * 360 - 1)
    recording, progress = await ended_with_failure(system, CameraConfig(str(hamilton_clip)))
    assert progress.failure is not None
    assert "640x360" in progress.failure
    assert recording.frames == []


async def test_restarted_camera_resumes_after_the_last_delivered_frame(
        system: ActorSystem, hamilton_clip: Path, reference: ClipReference,
        monkeypatch: pytest.MonkeyPatch) -> None:
    decode_next = Camera._decode_next
    crashes: list[int] = []

    def crash_once_at_frame_50(self: Camera) -> Frame | None:
        if not crashes and self.progress.delivered == 50:
            crashes.append(self.progress.delivered)
            raise RuntimeError("simulated decoder crash")
        return decode_next(self)

    monkeypatch.setattr(Camera, "_decode_next", crash_once_at_frame_50)
    recording, _, camera = await start(system, CameraConfig(str(hamilton_clip)))
    await eventually(lambda: bool(recording.ends))
    await eventually(lambda: not camera.is_alive)

    assert crashes == [50]
    metrics = cell(system, "camera").metrics
    assert (metrics.failures, metrics.restarts) == (1, 1)
    frames = recording.frames
    indices = [f.index for f in frames]
    assert len(set(indices)) == len(indices) == CLIP_FRAMES  # no duplicates, none missing
    assert indices == list(range(CLIP_FRAMES))
    # The index is the camera's own count: the presentation times prove the resumed frame is
    # really frame 50 of the file, not frame 0 or 49 again.
    assert [f.t_s for f in frames] == reference.times
    assert recording.ends == [(EndOfStream("cam0", CLIP_FRAMES), CLIP_FRAMES)]
    assert system.failure is None


def faststart_copy(clip: Path, out: Path, *, keep_packets: bool = True) -> None:
    """Remux ``clip`` with its index (moov) first, as streaming encoders write it; without
    ``keep_packets`` every video packet is written empty."""
    with av.open(str(clip)) as source, \
            av.open(str(out), "w", format="mp4", options={"movflags": "faststart"}) as target:
        video = source.streams.video[0]
        stream = target.add_stream_from_template(video)
        for packet in source.demux(video):
            if packet.dts is None:
                continue  # the demuxer's end-of-stream packet
            written: av.Packet[Any] = packet
            if not keep_packets:  # same timing, the picture's bytes gone
                written = av.Packet(b"\x00" * 8)
                written.pts, written.dts = packet.pts, packet.dts
                written.time_base = packet.time_base
            written.stream = stream
            target.mux(written)


@pytest.mark.parametrize("layout", ["index-at-end", "index-first"])
async def test_truncated_clip_ends_cleanly(
        system: ActorSystem, hamilton_clip: Path, reference: ClipReference,
        tmp_path: Path, layout: str) -> None:
    source = hamilton_clip
    if layout == "index-first":
        source = tmp_path / "faststart.mp4"
        faststart_copy(hamilton_clip, source)
    data = source.read_bytes()
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(data[:int(len(data) * 0.4)])

    progress = CameraProgress()
    recording, collector, camera = await start(system, CameraConfig(str(truncated)), progress)
    await eventually(lambda: bool(recording.ends))
    await eventually(lambda: not camera.is_alive)

    # The camera alone is affected: the node and its other actors carry on.
    assert system.failure is None
    assert cell(system, "camera").metrics.failures == 0
    assert collector.is_alive
    assert await collector.ask(Ping()) == len(recording.frames)
    frames = recording.frames
    assert len(frames) < CLIP_FRAMES
    assert recording.ends == [(EndOfStream("cam0", len(frames)), len(frames))]
    if layout == "index-first":
        assert frames, "with the index first, the frames before the cut are decodable"
    else:
        assert progress.failure is not None
        assert "cannot open" in progress.failure
    assert [f.index for f in frames] == list(range(len(frames)))
    assert [f.t_s for f in frames] == pytest.approx(reference.times[:len(frames)], abs=1e-3)


# --- live sources -----------------------------------------------------------------------------


@pytest.mark.parametrize(("source", "live"), [
    ("rtsp://10.0.0.5/stream", True),
    ("rtsps://user:pw@cam.local/live", True),
    ("/dev/video0", True),
    ("clips/cam0.mp4", False),
    ("/data/rtsp://odd-name.mp4", False),
    ("http://10.0.0.5/mjpeg", True),
    ("https://cam.local/live.m3u8", True),
])
def test_is_live(source: str, live: bool) -> None:
    assert CameraConfig(source).is_live is live


UNREACHABLE = "rtsp://admin:s3cret-pw@127.0.0.1:1/stream"
"""An RTSP camera with credentials on a closed local port (refused at once)."""


async def unreachable_camera_logs(system: ActorSystem,
                                  caplog: pytest.LogCaptureFixture) -> list[str]:
    """Start a camera on ``UNREACHABLE`` and return its first warnings about it."""
    caplog.set_level(logging.WARNING, logger="lfr.camera")
    config = CameraConfig(UNREACHABLE, open_timeout_s=2.0,
                          reconnect=Backoff(initial_s=0.01, max_s=0.01))
    await start(system, config)
    await eventually(lambda: len([r for r in caplog.records if r.name == "lfr.camera"]) >= 2)
    return [r.getMessage() for r in caplog.records if r.name == "lfr.camera"]


async def test_unreachable_live_camera_keeps_retrying(system: ActorSystem,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    messages = await unreachable_camera_logs(system, caplog)
    assert all("rtsp://***@127.0.0.1:1/stream" in m for m in messages)
    assert cell(system, "camera").metrics.failures == 0  # retried, not failed
    assert system.failure is None


async def test_unreachable_live_camera_logs_no_credentials(
        system: ActorSystem, caplog: pytest.LogCaptureFixture) -> None:
    messages = await unreachable_camera_logs(system, caplog)
    for message in messages:
        assert "s3cret-pw" not in message, message


@pytest_asyncio.fixture
async def silent_http_server() -> AsyncIterator[str]:
    """An HTTP server on loopback that accepts connections and never answers."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/live.mp4"
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_a_silent_http_source_times_out_says_what_it_waits_for_and_retries(
        system: ActorSystem, silent_http_server: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="lfr.camera")
    config = CameraConfig(silent_http_server, open_timeout_s=0.3,
                          reconnect=Backoff(initial_s=0.01, max_s=0.01))
    await start(system, config)
    await eventually(lambda: sum("retrying" in r.getMessage() for r in caplog.records) >= 2)
    messages = [r.getMessage() for r in caplog.records if r.name == "lfr.camera"]
    assert f"camera cam0: opening {silent_http_server} (waiting up to 0.3 s)" in messages
    assert cell(system, "camera").metrics.failures == 0  # retried, not failed
    assert system.failure is None


@pytest.fixture
def stuck_ffmpeg(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """``av.open`` blocks (as an RTSP open to a dead camera does) until the test ends."""
    release = threading.Event()

    def blocked_open(*_: Any, **__: Any) -> Any:
        release.wait(60)
        raise av.error.ExitError(1414092869, "Immediate exit requested")

    monkeypatch.setattr(av, "open", blocked_open)
    yield release
    release.set()


async def test_stop_does_not_wait_for_a_stuck_open(stuck_ffmpeg: threading.Event,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    config = SystemConfig(name="stuck", blocking_workers=1, shutdown_drain_s=0.5)
    system = ActorSystem(config)
    await system.start()
    camera = CameraConfig("rtsp://127.0.0.1:1/stream", open_timeout_s=30.0, stop_wait_s=0.2)
    await start(system, camera)
    await asyncio.sleep(0.2)  # the open is under way, stuck inside "FFmpeg"
    started = time.monotonic()
    await asyncio.wait_for(system.stop(), WAIT_S)
    assert time.monotonic() - started < 1.5
    assert any("decoder still inside FFmpeg" in r.getMessage() for r in caplog.records)


async def test_a_live_source_that_stops_delivering_is_reopened(
        system: ActorSystem, hamilton_clip: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(CameraConfig, "is_live", property(lambda self: True))
    decode_next = Camera._decode_next
    stalls: list[int] = []

    def stall_once_at_frame_5(self: Camera) -> Frame | None:
        if not stalls and self.progress.delivered == 5:
            stalls.append(5)
            time.sleep(1.0)  # longer than the read guard (0.1 s + 2 s grace is patched below)
        return decode_next(self)

    monkeypatch.setattr(Camera, "_decode_next", stall_once_at_frame_5)
    monkeypatch.setattr(Camera, "_read_guard_s", property(lambda self: 0.3))
    recording, _, _ = await start(system, CameraConfig(str(hamilton_clip)))
    await eventually(lambda: len(recording.frames) >= 10)
    assert stalls == [5]
    assert cell(system, "camera").metrics.failures == 1  # the stall failed it; it reopened


async def test_a_live_source_that_ends_is_reopened_without_failing_the_camera(
        system: ActorSystem, hamilton_clip: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    # The clip played as a live source: when it ends, the camera opens it again, by itself,
    # for ever (a flaky camera must not spend the supervisor's restart budget).
    caplog.set_level(logging.WARNING, logger="lfr.camera")
    monkeypatch.setattr(CameraConfig, "is_live", property(lambda self: True))
    config = CameraConfig(str(hamilton_clip), reconnect=Backoff(initial_s=0.01, max_s=0.01))
    recording, _, camera = await start(system, config)
    await eventually(lambda: len(recording.frames) > CLIP_FRAMES + 10)
    assert camera.is_alive
    assert cell(system, "camera").metrics.failures == 0
    assert recording.ends == []
    assert any("broke (the stream ended); reopening" in r.getMessage() for r in caplog.records)
    times = [f.t_s for f in recording.frames]
    assert all(b > a for a, b in itertools.pairwise(times))


async def test_live_camera_stream_time_keeps_increasing_across_a_restart(
        system: ActorSystem, hamilton_clip: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The clip played as if it were a live source (stream time from the clock, no resuming).
    monkeypatch.setattr(CameraConfig, "is_live", property(lambda self: True))
    decode_next = Camera._decode_next
    crashes: list[int] = []

    def slow_then_crash(self: Camera) -> Frame | None:
        if not crashes:
            if self.progress.delivered == 20:
                crashes.append(self.progress.delivered)
                raise RuntimeError("simulated stream error")
            time.sleep(0.03)  # a live source delivers in real time: ~0.6 s before the crash
        return decode_next(self)

    monkeypatch.setattr(Camera, "_decode_next", slow_then_crash)
    recording, _, _ = await start(system, CameraConfig(str(hamilton_clip)))
    await eventually(lambda: len(recording.frames) >= 30)
    assert crashes == [20]
    assert [f.index for f in recording.frames[:30]] == list(range(30))
    times = [f.t_s for f in recording.frames]
    assert times[19] >= 0.5
    assert all(b > a for a, b in itertools.pairwise(times)), (
        f"stream time went back at the restart: frame 19 at {times[19]:.3f} s, "
        f"frame 20 at {times[20]:.3f} s")


# --- redaction and privacy --------------------------------------------------------------------


@pytest.mark.parametrize(("source", "shown"), [
    ("rtsp://admin:secret@10.0.0.5:554/stream", "rtsp://***@10.0.0.5:554/stream"),
    ("rtsps://user:pw@cam.local/live?profile=1", "rtsps://***@cam.local/live?profile=1"),
    ("rtsp://operator@10.0.0.5/s", "rtsp://***@10.0.0.5/s"),
    ("rtsp://10.0.0.5:554/stream", "rtsp://10.0.0.5:554/stream"),
    ("/dev/video0", "/dev/video0"),
    ("clips/cam0.mp4", "clips/cam0.mp4"),
])
def test_redact_hides_rtsp_credentials(source: str, shown: str) -> None:
    assert redact(source) == shown


def test_redact_hides_a_password_containing_at_signs() -> None:
    shown = redact("rtsp://admin:p@ss@10.0.0.5:554/s")
    assert shown == "rtsp://***@10.0.0.5:554/s"


@pytest.mark.parametrize("message", [
    Frame("cam0", 0, 0.85, 1, 2.0, np.zeros(CLIP_SHAPE, np.uint8)),
    EndOfStream("cam0", 275),
], ids=["frame", "end-of-stream"])
def test_camera_messages_cannot_be_encoded(message: object) -> None:
    with pytest.raises(EncodeError, match="not a registered message"):
        Codec().encode(message)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"source": ""}, "CameraConfig.source is empty"),
    ({"source": "a.mp4", "camera_id": ""}, "CameraConfig.camera_id is empty"),
    ({"source": "a.mp4", "camera_id": "x\nCRITICAL fake"}, "camera_id holds control"),
    ({"source": "a\x1b[2J.mp4"}, "source holds control"),
    ({"source": "a.mp4", "open_timeout_s": 0.0}, "open_timeout_s must be > 0"),
    ({"source": "a.mp4", "read_timeout_s": float("nan")}, "read_timeout_s must be > 0"),
    ({"source": "a.mp4", "decoder_threads": 0}, "decoder_threads must be an integer >= 1"),
    ({"source": "a.mp4", "stop_wait_s": -1.0}, "stop_wait_s must be >= 0"),
])
def test_bad_camera_settings_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        CameraConfig(**kwargs)


def short_clip(out: Path, frames: int = 6, fps: int = 25) -> None:
    """A tiny H.264 clip of ``frames`` grey frames (a loop of it takes a quarter second)."""
    with av.open(str(out), "w", format="mp4") as target:
        stream = target.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(frames):
            image = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 40 * i, np.uint8),
                                               format="rgb24")
            for packet in stream.encode(image):
                target.mux(packet)
        for packet in stream.encode():
            target.mux(packet)


async def test_a_paced_frame_is_captured_when_it_is_due_not_when_it_was_decoded(
        system: ActorSystem, tmp_path: Path) -> None:
    # A paced file stands in for a live camera: it decodes ahead and waits for each frame's
    # time. That wait (here nearly a second a frame) is not latency: a frame is captured when
    # it is due, minus its decoding.
    clip = tmp_path / "slow.mp4"
    short_clip(clip, frames=4, fps=1)
    recording, _, _ = await start(system, CameraConfig(str(clip), paced=True))
    await eventually(lambda: len(recording.ends) == 1)
    for frame in recording.frames[1:]:  # the first frame sets the pace: it never waits
        waited_s = frame.received_s - frame.captured_ns / 1e9
        assert 0 <= waited_s < 0.5, (frame.index, waited_s)


async def test_a_looping_file_starts_again_and_its_time_keeps_growing(
        system: ActorSystem, tmp_path: Path) -> None:
    clip = tmp_path / "short.mp4"
    short_clip(clip)
    recording, _, _ = await start(system, CameraConfig(str(clip), paced=True, loop=True,
                                                       camera_id="loop"))
    await eventually(lambda: len(recording.frames) >= 15)  # two loops and a half
    times = [frame.t_s for frame in recording.frames[:15]]
    assert all(later > earlier for earlier, later in itertools.pairwise(times)), times
    assert [frame.index for frame in recording.frames[:15]] == list(range(15))
    assert recording.ends == []  # a looping file never ends


def test_only_a_paced_file_can_loop(hamilton_clip: Path) -> None:
    with pytest.raises(ConfigError, match="only a paced file can loop"):
        CameraConfig(str(hamilton_clip), loop=True)
    with pytest.raises(ConfigError, match="only a paced file can loop"):
        CameraConfig("rtsp://10.0.0.1/s", paced=True, loop=True)
    assert CameraConfig(str(hamilton_clip), paced=True, loop=True).never_ends
