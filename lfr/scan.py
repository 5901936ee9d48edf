"""``lfr scan``: assemble the unit's pipeline on one source and print alerts as JSON lines.

Supervision tree (rest_for_one, consumers started first so a stop drains producers first)::

    root
    └── pipeline (rest_for_one)
        ├── alerts    prints each MatchAlert as one JSON line; ends the scan on StreamEnded
        ├── matcher   embeds, matches, tracks, fuses, alerts
        ├── detector  finds, aligns and gates faces (drop_oldest for live sources)
        └── camera    decodes the source (restarted alone if the stream breaks)
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from actors.unit.camera import Camera, CameraConfig, CameraProgress
from actors.unit.detector import Detector, DetectorConfig, StreamEnded
from actors.unit.match_alert import MatchAlert
from actors.unit.matcher import Matcher, MatcherConfig, MatcherOutput
from actors.unit.watchlist import Watchlist, load_watchlist
from guards.user_input import UserInputError
from models.face_detector import FaceDetector
from models.face_embedder import FaceEmbedder
from models.model_file import MOBILEFACENET
from runtime.actor import Actor
from runtime.blocking import WorkersBusy
from runtime.mailbox import MailboxConfig, MailboxPolicy
from runtime.supervisor import Backoff, Strategy, SupervisorConfig
from runtime.system import ActorSystem

log = logging.getLogger("lfr.scan")


@dataclass(frozen=True, slots=True)
class ScanConfig:
    """One scan."""

    camera: CameraConfig
    """The source and its pacing."""
    watchlist: Path
    """The watchlist file."""
    threshold: float | None = None
    """Overrides every subject's threshold when set."""
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    """Detector actor settings."""
    matcher: MatcherConfig = field(default_factory=MatcherConfig)
    """Matcher actor settings."""


@dataclass(frozen=True, slots=True)
class ScanSummary:
    """What a finished scan reports on stderr."""

    frames: int
    """Frames decoded."""
    faces_seen: int
    """Faces detected."""
    faces_rejected: int
    """Faces dropped by quality gates."""
    alerts: int
    """Alerts raised."""
    seconds: float
    """Wall-clock duration of the scan."""

    @property
    def fps(self) -> float:
        """Frames per wall-clock second."""
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def alert_json(alert: MatchAlert) -> str:
    """One alert as the JSON line ``lfr scan`` prints (the crop is not printed)."""
    return json.dumps({
        "subject": alert.subject, "score": round(alert.score, 4), "t": round(alert.t_s, 3),
        "track": alert.track, "camera": alert.camera, "frame": alert.frame_index,
        "box": [round(v, 1) for v in alert.box], "threshold": round(alert.threshold, 4),
        "hits": alert.hits, "captured_at": round(alert.captured_at, 3), "id": alert.alert_id,
    })


class AlertPrinter(Actor[MatcherOutput]):
    """Prints alerts as JSON lines; resolves ``finished`` when the stream has ended."""

    def __init__(self, out: TextIO, finished: asyncio.Future[StreamEnded]) -> None:
        self.out = out
        self.finished = finished

    async def receive(self, message: MatcherOutput) -> None:
        if isinstance(message, MatchAlert):
            print(alert_json(message), file=self.out, flush=True)
        elif not self.finished.done():
            self.finished.set_result(message)


@dataclass(slots=True)
class ScanPipeline:
    """The refs and state a running scan exposes (for the CLI and the benchmark)."""

    finished: asyncio.Future[StreamEnded]
    """Resolved when a file source has been scanned to the end."""
    matcher: Matcher | None = None
    """The current matcher incarnation (for statistics)."""


async def start_scan(system: ActorSystem, config: ScanConfig, watchlist: Watchlist, *,
                     detector: FaceDetector, embedder: FaceEmbedder,
                     out: TextIO = sys.stdout) -> ScanPipeline:
    """Spawn the pipeline under a new ``pipeline`` supervisor and start the camera."""
    watchlist.check_model(embedder.model_id, embedder.model_sha256, str(config.watchlist))
    gallery = watchlist.gallery(config.threshold)
    finished: asyncio.Future[StreamEnded] = asyncio.get_running_loop().create_future()
    pipeline = ScanPipeline(finished)
    supervisor = await system.spawn_supervisor("pipeline", SupervisorConfig(
        strategy=Strategy.REST_FOR_ONE, max_restarts=5, within_s=60,
        backoff=Backoff(initial_s=0.2, max_s=5.0)))
    alerts = await supervisor.spawn("alerts", lambda: AlertPrinter(out, finished),
                                    MailboxConfig(capacity=256))

    def make_matcher() -> Matcher:
        pipeline.matcher = Matcher(embedder, gallery, alerts, config.matcher)
        return pipeline.matcher

    matcher = await supervisor.spawn("matcher", make_matcher, MailboxConfig(capacity=8))
    live = config.camera.is_live or config.camera.paced
    # Live: the newest frame wins. Offline: every frame is scanned, the camera waits.
    frames_mailbox = (MailboxConfig(capacity=1, policy=MailboxPolicy.DROP_OLDEST) if live
                      else MailboxConfig(capacity=2))
    detector_ref = await supervisor.spawn(
        "detector", lambda: Detector(detector, matcher, config.detector), frames_mailbox)
    progress = CameraProgress()
    await supervisor.spawn("camera", lambda: Camera(config.camera, detector_ref, progress),
                           MailboxConfig(capacity=2))
    return pipeline


def warm_up_on_this_thread(detector: FaceDetector, embedder: FaceEmbedder) -> None:
    """Open and run both models' interpreters once on the calling thread."""
    detector.warm_up()
    embedder.warm_up()


async def warm_up_models(system: ActorSystem, detector: FaceDetector,
                         embedder: FaceEmbedder) -> None:
    """Open and run both models' interpreters once on every worker thread, before the camera
    starts: the first frames then pay no set-up (about 30 ms per thread here)."""
    try:
        await system.blocking.run_on_each_worker(
            functools.partial(warm_up_on_this_thread, detector, embedder))
    except WorkersBusy as exc:  # only an optimisation: the first frames pay the set-up instead
        log.warning("models not warmed up on every worker: %s", exc)


def check_scan_inputs(config: ScanConfig) -> Watchlist:
    """Load the watchlist and check the inputs of a scan; ``ValueError`` names what is wrong."""
    watchlist = load_watchlist(config.watchlist)
    watchlist.check_model(MOBILEFACENET.model_id, MOBILEFACENET.sha256, str(config.watchlist))
    source = config.camera.source
    if not config.camera.is_live and "://" not in source and not Path(source).is_file():
        raise UserInputError(f"{source}: no such video file")
    return watchlist


async def run_scan(system: ActorSystem, config: ScanConfig, watchlist: Watchlist, *,
                   summary_json: bool) -> int:
    """The body of ``lfr scan`` for a checked watchlist: returns the exit code."""
    started = time.monotonic()
    detector = await system.blocking.run(FaceDetector)
    embedder = await system.blocking.run(FaceEmbedder)
    await warm_up_models(system, detector, embedder)
    pipeline = await start_scan(system, config, watchlist, detector=detector, embedder=embedder)
    ended = await pipeline.finished
    summary = ScanSummary(ended.frames, ended.faces_seen, ended.faces_rejected, ended.alerts,
                          time.monotonic() - started)
    print_summary(summary, as_json=summary_json)
    return 0


def print_summary(summary: ScanSummary, *, as_json: bool) -> None:
    """The scan summary on stderr."""
    if as_json:
        print(json.dumps({"frames": summary.frames, "faces_seen": summary.faces_seen,
                          "faces_rejected": summary.faces_rejected, "alerts": summary.alerts,
                          "fps": round(summary.fps, 2)}), file=sys.stderr)
    else:
        print(f"scanned {summary.frames} frames in {summary.seconds:.1f} s "
              f"({summary.fps:.1f} fps): {summary.faces_seen} faces seen, "
              f"{summary.faces_rejected} rejected by quality gates, {summary.alerts} alerts",
              file=sys.stderr)
