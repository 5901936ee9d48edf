"""``HealthReporter``: every ``interval_s`` seconds, the unit's health report to its uplink.

The report is a ``HealthBody`` (``actors/unit/event_body.py``): the unit's clock and uptime,
each camera's frames and frame rate over the last interval, faces seen and rejected, alerts,
the outbox's depth and oldest age, the outbox-full alarm, the watchlist version and the model
ids. Counts and ids only: the schema has no field that could carry a frame, a crop or an
embedding, and this module reads nothing but counters.

Where the numbers come from, all surviving restarts of the actors that keep them:

- frames: each camera's ``CameraProgress.delivered`` (held by the camera's factory);
- faces: each camera's detector incarnations, summed by its ``CameraTally`` (a restarted
  detector starts counting at zero; the tally keeps what the earlier ones counted);
- alerts and the alarm: the uplink's statistics (``UplinkCounts``: alerts sealed into the
  outbox plus those held back by a full one, and whether it is full now);
- the outbox: ``Outbox.statistics()``, one short SQLite read on the worker pool.

Timing: a timer task the reporter owns (cancelled and awaited on stop) tells the reporter a
``_Report`` every ``interval_s``; the report is made and checked (``check_body``) in
``receive``, on the actor's own loop, then told to the uplink. The uplink's mailbox may be full
(it blocks so that no alert is lost): a report it does not take within one interval is dropped
and counted, the next one is fresher. Bounded work per report: one outbox read with a timeout
and at most ``MAX_CAMERAS`` cameras.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from actors.unit.camera import CameraProgress
from actors.unit.detector import Detector
from actors.unit.event_body import MAX_CAMERAS, MAX_FPS, CameraHealth, HealthBody, check_body
from actors.unit.outbox import Outbox
from guards.config_checks import ConfigError, require_between, require_positive
from runtime.actor import Actor
from runtime.mailbox import MailboxConfig
from runtime.ref import ActorRef
from runtime.timer import Timer

HEALTH_REPORTER_MAILBOX = MailboxConfig(capacity=1)
"""The reporter's mailbox: one ``_Report`` at a time (its timer waits while one is queued)."""


class CameraTally:
    """One camera's counters for the health report, surviving restarts of its camera and
    detector: the spawner gives ``progress`` to every camera incarnation and each new detector
    incarnation to ``detector_started``."""

    __slots__ = ("_detector", "_retired_rejected", "_retired_seen", "camera_id", "progress")

    def __init__(self, camera_id: str, progress: CameraProgress | None = None) -> None:
        self.camera_id = camera_id
        """The camera's id, as in its frames and alerts."""
        self.progress = progress or CameraProgress()
        """Frames the camera delivered (survives its restarts)."""
        self._detector: Detector | None = None
        # Invariant: the counts of every detector incarnation before the current one.
        self._retired_seen = 0
        self._retired_rejected = 0

    def detector_started(self, detector: Detector) -> None:
        """A new detector incarnation: keep what the previous one counted."""
        if self._detector is not None:
            self._retired_seen += self._detector.faces_seen
            self._retired_rejected += self._detector.faces_rejected
        self._detector = detector

    @property
    def frames(self) -> int:
        """Frames delivered since the node started."""
        return self.progress.delivered

    @property
    def faces_seen(self) -> int:
        """Faces detected since the node started."""
        current = self._detector.faces_seen if self._detector is not None else 0
        return self._retired_seen + current

    @property
    def faces_rejected(self) -> int:
        """Of those, faces a quality gate refused."""
        current = self._detector.faces_rejected if self._detector is not None else 0
        return self._retired_rejected + current


class UplinkCounts(Protocol):
    """What the report reads of the uplink's statistics (``actors.unit.uplink``'s
    ``UplinkStatistics``, shared across the uplink's restarts)."""

    @property
    def alerts_sealed(self) -> int:
        """Alerts sealed into the outbox since the node started."""
        ...

    @property
    def held_alerts(self) -> int:
        """Alerts held back by a full outbox, not sealed yet."""
        ...

    @property
    def outbox_full(self) -> bool:
        """The alarm: the outbox refused an alert that is now held back."""
        ...


@dataclass(frozen=True, slots=True)
class HealthReporterConfig:
    """How often the unit reports."""

    interval_s: float = 5.0
    """Seconds between two reports (``unit.toml`` ``[health] interval_s``, 1-300 there; shorter
    in tests). Also the longest a report waits for the outbox's statistics or for room in the
    uplink's mailbox before it is dropped."""
    watchlist_version: int = 0
    """Version of the loaded watchlist; 0 until watchlists are signed and versioned."""
    model_ids: tuple[str, ...] = ()
    """Ids of the models in use (detector, embedder)."""

    def __post_init__(self) -> None:
        require_positive("HealthReporterConfig.interval_s", self.interval_s)
        require_between("HealthReporterConfig.watchlist_version", self.watchlist_version, 0,
                        2**63 - 1)
        if len(self.model_ids) > 8:
            raise ConfigError("HealthReporterConfig.model_ids: at most 8 ids")


@dataclass(slots=True)
class HealthReporterStatistics:
    """Counters of the reporter, surviving its restarts (held by its factory)."""

    reports_sent: int = 0
    """Reports the uplink took."""
    reports_dropped: int = 0
    """Reports dropped: the uplink did not take them within an interval, or the outbox's
    statistics did not come within one."""
    last_report: HealthBody | None = None
    """The last report the uplink took."""


@dataclass(frozen=True, slots=True)
class _Report:
    """The reporter's own timer message: make and send a report now. In-process only."""


class HealthReporter(Actor[_Report]):
    """Tells ``uplink`` a ``HealthBody`` every ``config.interval_s`` seconds."""

    def __init__(self, uplink: ActorRef[HealthBody], cameras: Sequence[CameraTally],
                 uplink_counts: UplinkCounts, outbox: Outbox, *, started_s: float,
                 config: HealthReporterConfig | None = None,
                 statistics: HealthReporterStatistics | None = None,
                 watchlist_version: Callable[[], int] | None = None,
                 audit_head: Callable[[], tuple[str, int]] | None = None) -> None:
        """``watchlist_version``: the version held now (default: the config's);
        ``audit_head``: the audit trail's head hash and record count now."""
        if len(cameras) > MAX_CAMERAS:
            raise ConfigError(f"HealthReporter: {len(cameras)} cameras; a report holds at most "
                              f"{MAX_CAMERAS}")
        self.uplink = uplink
        self.cameras = tuple(cameras)
        self.uplink_counts = uplink_counts
        self.outbox = outbox
        self.started_s = started_s
        """``time.monotonic()`` when the node started: uptime counts from here."""
        self.config = config or HealthReporterConfig()
        self.statistics = statistics or HealthReporterStatistics()
        self._watchlist_version = watchlist_version
        self._audit_head = audit_head
        # Frames per camera at the previous report (or this incarnation's start), and when.
        self._previous_frames = [camera.frames for camera in self.cameras]
        self._previous_s = time.monotonic()
        self._timer: Timer[_Report] | None = None

    async def on_start(self) -> None:
        self._previous_frames = [camera.frames for camera in self.cameras]
        self._previous_s = time.monotonic()
        # The reporter's mailbox holds at most one _Report: a report still being made holds
        # the timer back rather than queueing more.
        self._timer = Timer(self.context.ref, _Report, self.config.interval_s,
                            name=f"{self.context.name}:timer")
        self._timer.start()

    async def on_stop(self) -> None:
        if self._timer is not None:
            await self._timer.stop()

    async def receive(self, message: _Report) -> None:
        report = await self.make_report()
        if report is None:
            self.statistics.reports_dropped += 1
            return
        try:
            async with asyncio.timeout(self.config.interval_s):
                await self.uplink.tell(report)
        except TimeoutError:  # the uplink is busy with alerts: the next report is fresher
            self.statistics.reports_dropped += 1
            return
        self.statistics.reports_sent += 1
        self.statistics.last_report = report

    async def make_report(self) -> HealthBody | None:
        """The report as of now, checked (``check_body``); None when the outbox's statistics
        did not come within an interval."""
        try:
            async with asyncio.timeout(self.config.interval_s):
                outbox = await self.context.run_blocking(self.outbox.statistics)
        except TimeoutError:
            return None
        now = time.monotonic()
        elapsed = now - self._previous_s
        frames = [camera.frames for camera in self.cameras]
        cameras = tuple(
            CameraHealth(camera.camera_id, _fps(count - previous, elapsed), count)
            for camera, count, previous in zip(self.cameras, frames, self._previous_frames,
                                               strict=True))
        self._previous_frames, self._previous_s = frames, now
        counts = self.uplink_counts
        version = (self._watchlist_version() if self._watchlist_version is not None
                   else self.config.watchlist_version)
        head, records = ("", 0) if self._audit_head is None else self._audit_head()
        report = HealthBody(
            unit_time=time.time(), uptime_s=max(0.0, now - self.started_s), cameras=cameras,
            faces_seen=sum(camera.faces_seen for camera in self.cameras),
            faces_rejected=sum(camera.faces_rejected for camera in self.cameras),
            alerts=counts.alerts_sealed + counts.held_alerts, outbox_depth=outbox.depth,
            outbox_oldest_age_s=outbox.oldest_age_s, outbox_full=counts.outbox_full,
            watchlist_version=version, model_ids=self.config.model_ids, audit_head=head,
            audit_records=records)
        check_body(report)  # a report out of range is a bug here: the reporter fails
        return report


def _fps(frames: int, elapsed_s: float) -> float:
    """Frames per second over ``elapsed_s``, within the report's range."""
    if elapsed_s <= 0 or frames <= 0:
        return 0.0
    return min(MAX_FPS, frames / elapsed_s)
