"""``lfr scan``: assemble the unit's pipeline on one source and print alerts as JSON lines.

Supervision tree (rest_for_one, consumers started first so a stop drains producers first)::

    root
    └── pipeline (rest_for_one)
        ├── alerts    prints each MatchAlert as one JSON line; ends the scan on StreamEnded
        ├── matcher   embeds, matches, tracks, fuses, alerts
        ├── detector  finds, aligns and gates faces (drop_oldest for live sources)
        └── camera    decodes the source (restarted alone if a live stream breaks)

How a scan ends, and its exit code (``guards.exit_codes``):
- the file was scanned to its end: 0;
- the file could not be scanned whole (not a video, damaged, frames too large): what could be
  decoded was scanned, the summary names the file and the reason, exit 2;
- the alert output cannot be written (stdout closed, disk full): the scan stops at once and
  exits 74, never claiming alerts nobody received;
- Ctrl-C / SIGTERM: the summary of what was scanned so far, exit 130 / 143.

``lfr edge`` (``lfr/edge_node.py``) assembles its cameras with the same ``spawn_camera_stages``
and reads its watchlist with the same ``load_checked_watchlist``.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO

from actors.unit.camera import Camera, CameraConfig, CameraProgress
from actors.unit.camera_source import LIVE_PREFIXES, redact
from actors.unit.detector import Detector, DetectorConfig, DetectorOutput, StreamEnded
from actors.unit.face_analysis import FaceFinder
from actors.unit.matcher import Matcher, MatcherConfig
from actors.unit.second_opinion import TwoModelGallery, shared_second_worker
from actors.unit.watchlist import (
    USUAL_THRESHOLDS,
    Watchlist,
    check_usual_thresholds,
    load_watchlist,
)
from actors.unit.watchlist_gate import WatchlistGate
from guards.exit_codes import ExitCode
from guards.files import open_regular_file
from guards.log_text import printable
from guards.user_input import UserInputError
from lfr.alert_printer import (
    AlertCount,
    AlertOutputFailed,
    AlertPrinter,
    StreamOutput,
    stdout_output,
)
from lfr.command_output import OutputFailed
from models.face_detector import FaceDetector
from models.face_embedder import FaceEmbedder
from models.model_file import MOBILEFACENET
from runtime.blocking import WorkersBusy
from runtime.mailbox import MailboxConfig, MailboxPolicy
from runtime.ref import ActorRef
from runtime.supervisor import Backoff, Strategy, Supervisor, SupervisorConfig
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
    allow_unusual_thresholds: bool = False
    """Accept thresholds outside ``USUAL_THRESHOLDS`` (in the watchlist or ``threshold``); the
    summary then names them."""
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    """Detector actor settings."""
    matcher: MatcherConfig = field(default_factory=MatcherConfig)
    """Matcher actor settings."""


@dataclass(frozen=True, slots=True)
class ScanSummary:
    """What a scan reports on stderr when it ends, however it ends."""

    frames: int
    """Frames decoded."""
    faces_seen: int
    """Faces detected."""
    faces_rejected: int
    """Faces dropped by quality gates."""
    alerts: int
    """Alerts written to the alert output (what somebody received)."""
    seconds: float
    """Wall-clock duration of the scan."""
    failure: str | None = None
    """Why the scan did not complete (source failure, output failure, interruption)."""
    unusual_thresholds: tuple[str, ...] = ()
    """Thresholds outside the usual range that were in use ("subject (0.300)"), allowed by
    ``--allow-unusual-thresholds``."""

    @property
    def fps(self) -> float:
        """Frames per wall-clock second."""
        return self.frames / self.seconds if self.seconds > 0 else 0.0


@dataclass(slots=True)
class ScanPipeline:
    """The refs and state a running scan exposes (for the CLI and the benchmark)."""

    finished: asyncio.Future[StreamEnded]
    """Resolved when a file source has been scanned to the end; fails with
    ``AlertOutputFailed`` when alerts cannot be written."""
    camera: CameraProgress = field(default_factory=CameraProgress)
    """Frames delivered and, for a file, why it could not be scanned whole."""
    alerts: AlertCount = field(default_factory=AlertCount)
    """Alerts written so far."""
    matcher: Matcher | None = None
    """The current matcher incarnation (for statistics)."""
    detector: Detector | None = None
    """The current detector incarnation (for statistics)."""


async def start_scan(system: ActorSystem, config: ScanConfig, watchlist: Watchlist, *,
                     detector: FaceDetector, embedder: FaceEmbedder,
                     out: IO[str] | None = None) -> ScanPipeline:
    """Spawn the pipeline under a new ``pipeline`` supervisor and start the camera."""
    watchlist.check_model(embedder.model_id, embedder.model_sha256, str(config.watchlist))
    gallery = watchlist.gallery(config.threshold)
    if config.matcher.second_opinion.enabled and isinstance(gallery, TwoModelGallery):
        # Started (its files loaded and verified: 0.5 s here) before the camera, as the models
        # are warmed up: the first frames no longer wait for it in the matcher's mailbox.
        await system.blocking.run(shared_second_worker)
    finished: asyncio.Future[StreamEnded] = asyncio.get_running_loop().create_future()
    pipeline = ScanPipeline(finished)
    supervisor = await system.spawn_supervisor("pipeline", SupervisorConfig(
        strategy=Strategy.REST_FOR_ONE, max_restarts=5, within_s=60,
        backoff=Backoff(initial_s=0.2, max_s=5.0)))
    lines = stdout_output() if out is None else StreamOutput(out)
    alerts = await supervisor.spawn("alerts", lambda: AlertPrinter(lines, finished,
                                                                   pipeline.alerts),
                                    MailboxConfig(capacity=256))

    def make_matcher() -> Matcher:
        pipeline.matcher = Matcher(embedder, gallery, alerts, config.matcher)
        return pipeline.matcher

    matcher = await supervisor.spawn("matcher", make_matcher, MailboxConfig(capacity=8))

    def detector_started(incarnation: Detector) -> None:
        pipeline.detector = incarnation

    await spawn_camera_stages(supervisor, config.camera, face_finder=detector, output=matcher,
                              detector_config=config.detector, progress=pipeline.camera,
                              on_detector=detector_started)
    return pipeline


def frames_mailbox(camera: CameraConfig) -> MailboxConfig:
    """The detector's mailbox for ``camera``: live (and paced) sources drop the oldest frame,
    so the newest frame wins; a file scanned as fast as possible makes the camera wait, so
    every frame is scanned."""
    if camera.is_live or camera.paced:
        return MailboxConfig(capacity=1, policy=MailboxPolicy.DROP_OLDEST)
    return MailboxConfig(capacity=2)


async def spawn_camera_stages(supervisor: Supervisor, camera: CameraConfig, *,
                              face_finder: FaceFinder, output: ActorRef[DetectorOutput],
                              detector_config: DetectorConfig, progress: CameraProgress,
                              names: tuple[str, str] = ("detector", "camera"),
                              on_detector: Callable[[Detector], None] | None = None,
                              gate: WatchlistGate | None = None) -> None:
    """Spawn one camera's detector and camera (named ``names``) as the last children of
    ``supervisor``, consumer first; the detector tells ``output``. ``progress`` survives the
    camera's restarts (a restarted file camera resumes after its last frame); ``on_detector``
    is given each new detector incarnation (for its counters); ``gate``: the detector analyses
    frames only while it holds a watchlist (a camera unit). A live or paced camera's detector
    analyses ``detector_config.live_in_flight`` frames at a time, a file's ``in_flight``."""
    if camera.is_live or camera.paced:  # latency first: one frame analysed at a time
        detector_config = replace(detector_config, in_flight=detector_config.live_in_flight,
                                  newest_wins=True)

    def make_detector() -> Detector:
        incarnation = Detector(face_finder, output, detector_config, gate=gate)
        if on_detector is not None:
            on_detector(incarnation)
        return incarnation

    detector_name, camera_name = names
    detector_ref = await supervisor.spawn(detector_name, make_detector, frames_mailbox(camera))
    await supervisor.spawn(camera_name, lambda: Camera(camera, detector_ref, progress),
                           MailboxConfig(capacity=2))


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


def check_source(camera: CameraConfig) -> None:
    """Refuse a source the camera cannot scan: a scheme it does not know (it would have no
    timeout), or a file that is missing or not a regular file (a FIFO would block)."""
    source = camera.source
    if camera.is_live:
        return
    if "://" in source:
        schemes = ", ".join(p for p in LIVE_PREFIXES if "://" in p)
        raise UserInputError(f"video source {printable(redact(source))}: unknown scheme; use a "
                             f"file, a {schemes} URL or /dev/videoN")
    os.close(open_regular_file(source, "video file"))


def load_checked_watchlist(path: Path, *, allow_unusual_thresholds: bool = False) -> Watchlist:
    """The watchlist in ``path``, made for the embedder this lfr runs (``MOBILEFACENET``);
    ``UserInputError`` (``WatchlistError``, ``ThresholdError``) names the file and the fault."""
    watchlist = load_watchlist(path, allow_unusual_thresholds=allow_unusual_thresholds)
    watchlist.check_model(MOBILEFACENET.model_id, MOBILEFACENET.sha256, str(path))
    return watchlist


def check_scan_inputs(config: ScanConfig) -> Watchlist:
    """Load the watchlist and check the inputs of a scan; ``UserInputError`` names what is
    wrong."""
    watchlist = load_checked_watchlist(config.watchlist,
                                       allow_unusual_thresholds=config.allow_unusual_thresholds)
    unusual_thresholds(config, watchlist)
    check_source(config.camera)
    return watchlist


def unusual_thresholds(config: ScanConfig, watchlist: Watchlist) -> tuple[str, ...]:
    """The thresholds outside the usual range this scan would use, as "subject (0.300)";
    ``ThresholdError`` unless ``config.allow_unusual_thresholds``."""
    if config.threshold is not None:
        named = [("--threshold", config.threshold)]
        source = "command line"
    else:
        named = list(zip(watchlist.subjects, (float(t) for t in watchlist.thresholds),
                         strict=True))
        source = printable(config.watchlist)
    unusual = check_usual_thresholds(named, source,
                                     allow_unusual=config.allow_unusual_thresholds)
    return tuple(f"{printable(name, max_chars=64)} ({value:.3f})" for name, value in unusual)


async def run_scan(system: ActorSystem, config: ScanConfig, watchlist: Watchlist, *,
                   summary_json: bool) -> int:
    """The body of ``lfr scan`` for a checked watchlist: returns the exit code."""
    started = time.monotonic()
    unusual = unusual_thresholds(config, watchlist)
    if unusual:
        low, high = USUAL_THRESHOLDS
        log.warning("scanning with thresholds outside the usual range [%s, %s]: %s", low, high,
                    ", ".join(unusual))
    pipeline: ScanPipeline | None = None
    try:
        detector = await system.blocking.run(FaceDetector)
        embedder = await system.blocking.run(FaceEmbedder)
        await warm_up_models(system, detector, embedder)
        pipeline = await start_scan(system, config, watchlist, detector=detector,
                                    embedder=embedder)
        log.info("scanning %s for %d watchlisted subjects",
                 printable(redact(config.camera.source)), len(watchlist.subjects))
        await pipeline.finished
    except AlertOutputFailed as exc:
        report(summarise(pipeline, started, str(exc), unusual), as_json=summary_json)
        return ExitCode.OUTPUT_FAILED
    except asyncio.CancelledError:  # Ctrl-C or SIGTERM: report what was done, then stop
        report(summarise(pipeline, started, "interrupted", unusual), as_json=summary_json)
        raise
    summary = summarise(pipeline, started, pipeline.camera.failure, unusual)
    if not report(summary, as_json=summary_json):
        return ExitCode.OUTPUT_FAILED
    return ExitCode.OK if summary.failure is None else ExitCode.BAD_INPUT


def report(summary: ScanSummary, *, as_json: bool) -> bool:
    """Print the summary; False when stderr cannot take it (the scan then fails with 74)."""
    try:
        print_summary(summary, as_json=as_json)
    except OutputFailed:
        return False
    return True


def summarise(pipeline: ScanPipeline | None, started: float, failure: str | None,
              unusual: tuple[str, ...] = ()) -> ScanSummary:
    """The summary of a scan so far (``pipeline`` None: it never started)."""
    seconds = time.monotonic() - started
    if pipeline is None:
        return ScanSummary(0, 0, 0, 0, seconds, failure, unusual)
    detector = pipeline.detector
    return ScanSummary(pipeline.camera.delivered,
                       detector.faces_seen if detector is not None else 0,
                       detector.faces_rejected if detector is not None else 0,
                       pipeline.alerts.written, seconds, failure, unusual)


def print_summary(summary: ScanSummary, *, as_json: bool) -> None:
    """The scan summary on stderr."""
    if as_json:
        print(json.dumps({"frames": summary.frames, "faces_seen": summary.faces_seen,
                          "faces_rejected": summary.faces_rejected, "alerts": summary.alerts,
                          "fps": round(summary.fps, 2), "failure": summary.failure,
                          "unusual_thresholds": list(summary.unusual_thresholds)}),
              file=sys.stderr, flush=True)
        return
    print(f"scanned {summary.frames} frames in {summary.seconds:.1f} s "
          f"({summary.fps:.1f} fps): {summary.faces_seen} faces seen, "
          f"{summary.faces_rejected} rejected by quality gates, {summary.alerts} alerts",
          file=sys.stderr, flush=True)
    if summary.unusual_thresholds:
        low, high = USUAL_THRESHOLDS
        print(f"thresholds outside the usual range [{low}, {high}] were used (allowed by "
              f"--allow-unusual-thresholds): {', '.join(summary.unusual_thresholds)}",
              file=sys.stderr, flush=True)
    if summary.failure is not None:
        print(f"scan incomplete: {summary.failure}", file=sys.stderr, flush=True)
