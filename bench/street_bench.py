"""``lfr bench street``: the real scan pipeline on the street clip, scored against its truth.

The watchlist is built in memory from the truth file's ``watchlist`` (one enrolment photo per
subject, under the faces folder, never shown in the video), or read from ``--watchlist``. The
scan is ``lfr scan``'s pipeline (``lfr.scan.start_scan``) reading the file as fast as it can; its
alerts are collected as the JSON lines ``lfr scan`` prints and scored by ``bench.street_score``.
With ``alerts`` given, that JSON-lines file is scored instead and nothing is scanned.
"""

from __future__ import annotations

import dataclasses
import io
import os
import resource
import time
from pathlib import Path

import numpy as np

from actors.unit.camera import CameraConfig
from actors.unit.second_opinion import (
    DEFAULT_SECOND_THRESHOLD,
    second_worker_peak_rss_mb,
    shared_second_model,
)
from actors.unit.watchlist import DEFAULT_THRESHOLD, Watchlist, load_watchlist
from bench.street_score import (
    Truth,
    load_truth,
    read_alert_file,
    read_alert_lines,
    score_alerts,
)
from guards.user_input import UserInputError
from lfr.photo_faces import PhotoFaces
from lfr.scan import ScanConfig, check_source, start_scan, warm_up_models
from lfr.watchlist_build import photo_descriptor
from runtime.node import run_interruptible
from runtime.system import ActorSystem, SystemConfig

SHARED_VIDEO = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces" / "video"
DEFAULT_SOURCE = SHARED_VIDEO / "street_1080p.mp4"
DEFAULT_TRUTH = SHARED_VIDEO / "street_1080p.truth.json"
MAX_ALERTS_BYTES = 64 * 2**20


def truth_watchlist(truth: Truth, faces_root: Path, photos: PhotoFaces) -> Watchlist:
    """One subject per entry of the truth's ``watchlist``, enrolled from its one photo by both
    face models (as ``lfr watchlist build`` does), at the default thresholds: the scan then
    runs the two-model rule, like a unit."""
    if not truth.watchlist:
        raise UserInputError("the truth file names no watchlist photos; give --watchlist")
    subjects = tuple(sorted(truth.watchlist))
    paths = [faces_root / truth.watchlist[s] for s in subjects]
    rows = np.stack([photos.embed_single(path) for path in paths])
    second = shared_second_model()
    descriptors = np.stack([photo_descriptor(path, photos, second) for path in paths])
    return Watchlist(photos.embedder.model_id, photos.embedder.model_sha256, time.time(),
                     subjects, rows.astype(np.float32),
                     np.full(len(subjects), DEFAULT_THRESHOLD, np.float32), (1,) * len(subjects),
                     second_model_id=second.model_id, second_model_sha256=second.model_sha256,
                     second_embeddings=descriptors.astype(np.float32),
                     second_thresholds=np.full(len(subjects), DEFAULT_SECOND_THRESHOLD,
                                               np.float32))


async def _scan(source: Path, watchlist: Watchlist, photos: PhotoFaces) -> dict[str, object]:
    out = io.StringIO()
    config = ScanConfig(CameraConfig(str(source)), Path("<bench street>"))
    async with ActorSystem(SystemConfig(name="bench-street")) as system:
        await warm_up_models(system, photos.detector, photos.embedder)  # as lfr scan does
        started = time.perf_counter()
        pipeline = await start_scan(system, config, watchlist, detector=photos.detector,
                                    embedder=photos.embedder, out=out)
        ended = await pipeline.finished
        elapsed = time.perf_counter() - started
    if pipeline.camera.failure is not None:  # a broken source measures nothing true
        raise UserInputError(f"bench source: {pipeline.camera.failure}")
    detector = pipeline.detector
    return {"alert_lines": out.getvalue().splitlines(), "frames": ended.frames,
            "faces_seen": ended.faces_seen, "faces_rejected": ended.faces_rejected,
            "detector_work": None if detector is None else dataclasses.asdict(detector.work()),
            "seconds": round(elapsed, 2), "fps": round(ended.frames / elapsed, 2),
            "rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "second_model_worker_rss_mb": (None if (worker := second_worker_peak_rss_mb()) is None
                                           else round(worker, 1)),
            "load_average": [round(x, 2) for x in os.getloadavg()]}


def run_street_bench(source: Path = DEFAULT_SOURCE, truth_path: Path = DEFAULT_TRUTH, *,
                     watchlist_path: Path | None = None,
                     alerts_path: Path | None = None) -> dict[str, object]:
    """Scan ``source`` (or read ``alerts_path``) and score the alerts against ``truth_path``.

    The report is ``score_alerts``'s plus, for a scan, frames, fps, faces and peak RSS; its
    ``alert_list`` holds every alert's subject, time, score and track.
    """
    truth = load_truth(truth_path)
    if alerts_path is not None:
        alerts = read_alert_file(alerts_path, MAX_ALERTS_BYTES)
        return {"source": str(alerts_path), **score_alerts(alerts, truth)}
    check_source(CameraConfig(str(source)))
    photos = PhotoFaces()
    watchlist = (load_watchlist(watchlist_path) if watchlist_path is not None
                 else truth_watchlist(truth, truth_path.resolve().parents[1], photos))
    # The pipeline's actors stop with the cancelled task; no thread here needs ``stop``.
    scan = run_interruptible(lambda _stop: _scan(source, watchlist, photos))
    lines = scan.pop("alert_lines")
    assert isinstance(lines, list)
    alerts = read_alert_lines(lines)
    listed = [{k: a.get(k) for k in ("subject", "t", "score", "track", "hits")} for a in alerts]
    return {"source": str(source), "subjects": list(watchlist.subjects), **scan,
            **score_alerts(alerts, truth), "alert_list": listed}

