"""The health reporter: reports built from the real counters (cameras, detectors across
restarts, the outbox, the uplink's statistics) pass the body checks and reach the uplink; a busy
uplink costs a report, never the reporter; a stop ends its timer."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from actors.unit.detector import Detector
from actors.unit.event_body import HealthBody, check_body, decode_body, encode_body
from actors.unit.face_analysis import FaceFinder
from actors.unit.health_reporter import (
    HEALTH_REPORTER_MAILBOX,
    CameraTally,
    HealthReporter,
    HealthReporterConfig,
    HealthReporterStatistics,
)
from actors.unit.outbox import Outbox
from guards.config_checks import ConfigError
from runtime.actor import Actor
from runtime.mailbox import MailboxConfig
from runtime.system import ActorSystem
from tests.actors.support import eventually

FAST = HealthReporterConfig(interval_s=0.05, watchlist_version=0,
                            model_ids=("blazeface_short_range", "mobilefacenet"))


@dataclass(slots=True)
class UplinkNumbers:
    """The three numbers the report reads of ``UplinkStatistics``."""

    alerts_sealed: int = 0
    held_alerts: int = 0
    outbox_full: bool = False


class NoFaces:
    """A face finder that is never called: these detectors only hold counters."""

    def detect(self, frame: Any) -> list[Any]:
        raise AssertionError("not called")

    def full_pass_regions(self, frame_width: int, frame_height: int) -> Any:
        raise AssertionError("not called")

    def detect_partial(self, frame: Any, partial: Any) -> list[Any]:
        raise AssertionError("not called")


def detector(seen: int, rejected: int) -> Detector:
    finder: FaceFinder = NoFaces()
    made = Detector(finder, None)  # type: ignore[arg-type]  # never started: counters only
    made.faces_seen, made.faces_rejected = seen, rejected
    return made


class Collector(Actor[HealthBody]):
    """The uplink's place: keeps every report it is told."""

    def __init__(self, release: asyncio.Event | None = None) -> None:
        self.reports: list[HealthBody] = []
        self.release = release
        """When given, each report waits for this event (an uplink busy with alerts)."""

    async def receive(self, message: HealthBody) -> None:
        if self.release is not None:
            await self.release.wait()
        self.reports.append(message)


@pytest.fixture
def outbox(tmp_path: Path) -> Any:
    with Outbox.open(tmp_path / "outbox.sqlite") as opened:
        yield opened


async def spawn_reporter(system: ActorSystem, uplink: Collector, cameras: list[CameraTally],
                         numbers: UplinkNumbers, outbox: Outbox,
                         statistics: HealthReporterStatistics,
                         config: HealthReporterConfig = FAST,
                         uplink_mailbox: MailboxConfig | None = None) -> None:
    uplink_ref = await system.spawn("uplink", lambda: uplink, uplink_mailbox)
    started = time.monotonic()
    await system.spawn("health", lambda: HealthReporter(
        uplink_ref, cameras, numbers, outbox, started_s=started, config=config,
        statistics=statistics), HEALTH_REPORTER_MAILBOX)


async def test_a_report_is_built_from_the_real_counters_and_passes_the_body_checks(
        system: ActorSystem, outbox: Outbox) -> None:
    gate, door = CameraTally("gate"), CameraTally("door")
    gate.progress.delivered = 120
    gate.detector_started(detector(30, 4))
    door.detector_started(detector(0, 0))
    await asyncio.to_thread(outbox.append, "alert", lambda seq: b"sealed alert")
    await asyncio.to_thread(outbox.append, "health", lambda seq: b"sealed health")
    numbers = UplinkNumbers(alerts_sealed=1, held_alerts=2, outbox_full=True)
    uplink, statistics = Collector(), HealthReporterStatistics()
    await spawn_reporter(system, uplink, [gate, door], numbers, outbox, statistics)

    await eventually(lambda: len(uplink.reports) >= 1)
    gate.progress.delivered = 170  # 50 frames in the next interval
    count = len(uplink.reports)
    await eventually(lambda: len(uplink.reports) > count)
    first, later = uplink.reports[0], uplink.reports[-1]
    for report in (first, later):
        check_body(report)
        assert decode_body(encode_body(report)) == report
    assert [(c.camera_id, c.frames) for c in first.cameras] == [("gate", 120), ("door", 0)]
    assert [(c.camera_id, c.frames) for c in later.cameras] == [("gate", 170), ("door", 0)]
    assert later.cameras[0].fps > 0  # 50 frames over the interval (its length is not asserted)
    assert later.cameras[1].fps == 0.0
    assert (first.faces_seen, first.faces_rejected) == (30, 4)
    assert first.alerts == 3  # sealed and held back
    assert first.outbox_full is True
    assert first.outbox_depth == 2
    assert first.outbox_oldest_age_s is not None
    assert first.outbox_oldest_age_s >= 0
    assert first.model_ids == ("blazeface_short_range", "mobilefacenet")
    assert first.watchlist_version == 0
    assert first.uptime_s >= 0
    assert first.unit_time > 1.6e9
    assert statistics.reports_sent >= 2
    assert statistics.last_report in uplink.reports


async def test_an_empty_outbox_has_no_oldest_age(system: ActorSystem, outbox: Outbox) -> None:
    uplink, statistics = Collector(), HealthReporterStatistics()
    await spawn_reporter(system, uplink, [CameraTally("gate")], UplinkNumbers(), outbox,
                         statistics)
    await eventually(lambda: len(uplink.reports) >= 1)
    report = uplink.reports[0]
    assert (report.outbox_depth, report.outbox_oldest_age_s) == (0, None)
    assert (report.alerts, report.outbox_full) == (0, False)


def test_a_restarted_detector_does_not_lose_the_faces_counted_before() -> None:
    tally = CameraTally("gate")
    assert (tally.faces_seen, tally.faces_rejected) == (0, 0)
    first = detector(10, 2)
    tally.detector_started(first)
    first.faces_seen, first.faces_rejected = 15, 3  # it went on counting, then failed
    tally.detector_started(detector(0, 0))
    assert (tally.faces_seen, tally.faces_rejected) == (15, 3)
    tally.detector_started(detector(4, 1))  # the one before counted nothing
    assert (tally.faces_seen, tally.faces_rejected) == (19, 4)
    tally.progress.delivered = 9
    assert tally.frames == 9


async def test_a_busy_uplink_costs_reports_not_the_reporter(system: ActorSystem,
                                                            outbox: Outbox) -> None:
    release = asyncio.Event()
    uplink, statistics = Collector(release=release), HealthReporterStatistics()
    await spawn_reporter(system, uplink, [CameraTally("gate")], UplinkNumbers(), outbox,
                         statistics, uplink_mailbox=MailboxConfig(capacity=1))
    # One report is being handled, one waits in the mailbox: the next ones find no room.
    await eventually(lambda: statistics.reports_dropped >= 2)
    release.set()
    sent = statistics.reports_sent
    await eventually(lambda: statistics.reports_sent > sent + 1)
    assert len(uplink.reports) >= 2
    health = system.lookup("health")
    assert health is not None
    assert health.is_alive
    assert all(cell.metrics.failures == 0 for cell in system.cells())


async def test_a_stop_ends_the_timer(outbox: Outbox) -> None:
    async with ActorSystem() as system:
        uplink, statistics = Collector(), HealthReporterStatistics()
        await spawn_reporter(system, uplink, [CameraTally("gate")], UplinkNumbers(), outbox,
                             statistics)
        await eventually(lambda: len(uplink.reports) >= 1)
        timers = [t for t in asyncio.all_tasks() if t.get_name() == "health:timer"]
        assert len(timers) == 1
    assert timers[0].done()


def test_the_config_and_the_cameras_are_bounded(outbox: Outbox) -> None:
    with pytest.raises(ConfigError, match="interval_s"):
        HealthReporterConfig(interval_s=0)
    with pytest.raises(ConfigError, match="interval_s"):
        HealthReporterConfig(interval_s=float("nan"))
    with pytest.raises(ConfigError, match="model_ids"):
        HealthReporterConfig(model_ids=tuple(f"m{i}" for i in range(9)))
    with pytest.raises(ConfigError, match="17 cameras"):
        HealthReporter(None, [CameraTally(f"c{i}") for i in range(17)],  # type: ignore[arg-type]
                       UplinkNumbers(), outbox, started_s=0.0)
