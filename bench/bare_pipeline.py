"""The unit's per-frame steps with no actor runtime: the bounds the pipeline is measured against.

``bare_pipeline_seconds``: one thread decodes (the caller's), one worker per core analyses a
frame (detect, align, gate) and embeds its usable faces, at most two frames per worker in
flight; nothing is tracked, matched or alerted. ``lfr bench pipeline --bare`` times it beside
the real pipeline, so the runtime's own cost shows as the gap between the two ratios.

``decode_and_models_seconds``: the same decoding and the same number of model invokes, with
no pre- or post-processing at all (the inputs are whatever the interpreters hold, and only the
tensor wipe every call pays follows each invoke): the ratio no pipeline on this machine can
beat while it decodes the video in software.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import av
import numpy as np
from numpy.typing import NDArray

from actors.unit.camera_source import ffmpeg_url
from actors.unit.face_analysis import analyse_faces, wipe
from actors.unit.frame_pixels import RgbConverter
from lfr.scan import warm_up_on_this_thread
from models.face_detector import FaceDetector
from models.face_embedder import FaceEmbedder
from models.face_quality import QualityConfig

IN_FLIGHT_PER_WORKER = 2


class BenchStopped(Exception):
    """A phase was stopped part-way (its ``stop`` event was set by a signal)."""


def bare_pipeline_seconds(source: Path, detector: FaceDetector, embedder: FaceEmbedder,
                          stop: threading.Event) -> tuple[float, int]:
    """Seconds to take every frame of ``source`` through the steps, and the frame count."""
    quality = QualityConfig()

    def analyse(pixels: NDArray[np.uint8], _index: int) -> int:
        analysis = analyse_faces(detector, pixels, quality)
        for face in analysis.usable:
            wipe(embedder.embed(face.aligned))
            wipe(face.aligned)
        return len(analysis.usable)

    return _decode_and_run(source, analyse, detector, embedder, stop)


def decode_and_models_seconds(source: Path, detector: FaceDetector, embedder: FaceEmbedder,
                              stop: threading.Event, *, frame_count: int,
                              detector_invokes: int, faces: int) -> tuple[float, int]:
    """Seconds to decode every frame of ``source`` (``frame_count`` of them) while the workers
    run, per frame, that frame's share of ``detector_invokes`` and ``faces`` model invokes and
    nothing else."""

    def invokes_only(index: int) -> None:
        def share(total: int) -> int:  # this frame's share of an evenly spread total
            return (index + 1) * total // frame_count - index * total // frame_count

        detector_interpreter = detector.interpreter()
        for _ in range(share(detector_invokes)):
            detector_interpreter.infer(_leave_input, _ignore_outputs)
        embedder_interpreter = embedder.interpreter()
        for _ in range(share(faces)):
            embedder_interpreter.infer(_leave_input, _ignore_outputs)

    return _decode_and_run(source, lambda pixels, index: invokes_only(index), detector,
                           embedder, stop)


def _leave_input(tensor: NDArray[np.float32]) -> None:
    return None  # the model runs on what the last call's wipe left: zeros


def _ignore_outputs(outputs: list[NDArray[np.float32]]) -> None:
    return None


def _decode_and_run(source: Path, work: Callable[[NDArray[np.uint8], int], object],
                    detector: FaceDetector, embedder: FaceEmbedder,
                    stop: threading.Event) -> tuple[float, int]:
    """Decode on the calling thread, ``work(pixels, index)`` on one warmed-up worker per core,
    at most ``IN_FLIGHT_PER_WORKER`` frames each in flight: seconds taken and frames. ``stop``
    set (a signal) ends it after the frames in flight, raising ``BenchStopped``."""
    cores = os.cpu_count() or 1

    converter = RgbConverter()
    frames = 0
    # Warmed up as the pipeline's workers are before its camera starts.
    with ThreadPoolExecutor(cores, initializer=warm_up_on_this_thread,
                            initargs=(detector, embedder)) as pool:
        list(pool.map(lambda _: time.sleep(0.05), range(cores)))  # every worker warmed up
        pending: deque[Future[object]] = deque()
        started = time.perf_counter()
        with av.open(ffmpeg_url(str(source))) as container:
            for decoded in container.decode(video=0):
                if stop.is_set():
                    raise BenchStopped
                if len(pending) >= IN_FLIGHT_PER_WORKER * cores:
                    pending.popleft().result()
                pending.append(pool.submit(work, converter.to_rgb(decoded), frames))
                frames += 1
        while pending:
            pending.popleft().result()
        elapsed = time.perf_counter() - started
    return elapsed, frames
