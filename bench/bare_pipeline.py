"""The unit's per-frame steps with no actor runtime: the bound the runtime is measured against.

One thread decodes (the caller's), one worker per core analyses a frame (detect, align, gate)
and embeds its usable faces, at most two frames per worker in flight; nothing is tracked,
matched or alerted. ``lfr bench pipeline --bare`` times it beside the real pipeline, so the
runtime's own cost shows as the gap between the two ratios of the same run.
"""

from __future__ import annotations

import os
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import av
import numpy as np
from numpy.typing import NDArray

from actors.unit.face_analysis import analyse_faces, wipe
from actors.unit.frame_pixels import RgbConverter
from models.face_detector import FaceDetector
from models.face_embedder import FaceEmbedder
from models.face_quality import QualityConfig

IN_FLIGHT_PER_WORKER = 2


def bare_pipeline_seconds(source: Path, detector: FaceDetector,
                          embedder: FaceEmbedder) -> tuple[float, int]:
    """Seconds to take every frame of ``source`` through the steps, and the frame count."""
    quality = QualityConfig()
    cores = os.cpu_count() or 1

    def warm_up() -> None:  # as the pipeline's workers are before its camera starts
        detector.warm_up()
        embedder.warm_up()

    def analyse(pixels: NDArray[np.uint8]) -> int:
        analysis = analyse_faces(detector, pixels, quality)
        for face in analysis.usable:
            wipe(embedder.embed(face.aligned))
            wipe(face.aligned)
        return len(analysis.usable)

    converter = RgbConverter()
    frames = 0
    with ThreadPoolExecutor(cores, initializer=warm_up) as pool:
        list(pool.map(lambda _: time.sleep(0.05), range(cores)))  # every worker warmed up
        pending: deque[Future[int]] = deque()
        started = time.perf_counter()
        with av.open(str(source)) as container:
            for decoded in container.decode(video=0):
                if len(pending) >= IN_FLIGHT_PER_WORKER * cores:
                    pending.popleft().result()
                pending.append(pool.submit(analyse, converter.to_rgb(decoded)))
                frames += 1
        while pending:
            pending.popleft().result()
        elapsed = time.perf_counter() - started
    return elapsed, frames
