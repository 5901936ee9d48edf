"""The deployment report's computation (``console.report``) over real stores: an event store of
sealed health reports and alerts from enrolled units (opened with the van's key), a deployment
store with watchlist facts, and a review store holding the officers' decisions. Each test names
the rule it guards; the times are exact (the stores' clocks are set by hand)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from actors.unit.event_body import CameraHealth, HealthBody
from actors.van.deployment_store import DeploymentStore
from actors.van.event_store import EventStore
from actors.van.review_store import ReviewStore
from console.report import (
    BUCKET_SIZES_S,
    DeploymentReport,
    DeploymentReports,
    ReportConfig,
    ReportNotFound,
    ReportSources,
    choose_bucket_s,
    deployment_report,
    false_alert_sentence,
    significant_text,
)
from guards.config_checks import ConfigError
from runtime.blocking import BlockingPool
from secure.node_keys import NodeKeys, NodeRole
from tests.actors.van.delivery_support import Van, alert, make_van
from tests.console.support import FakeClock

START = 1_800_000_000.0
"""When dep-1 starts: a multiple of every bucket size up to an hour."""
UNITS = ("unit-1", "unit-2")


class Received:
    """The event store's clock: ``received_at`` of the next stored event."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


@dataclass
class Stores:
    """A van's real stores, and helpers that store what its units send."""

    van: Van
    events: EventStore
    deployments: DeploymentStore
    reviews: ReviewStore
    received: Received
    seqs: dict[str, int] = field(default_factory=dict)

    @property
    def sources(self) -> ReportSources:
        return ReportSources(self.events, self.deployments, self.reviews,
                             self.van.enrolment.lookup, self.van.encryption)

    def _seq(self, unit: str) -> int:
        self.seqs[unit] = self.seqs.get(unit, 0) + 1
        return self.seqs[unit]

    def health(self, unit: str, faces_seen: int, *, at: float, uptime_s: float = 10_000.0,
               sealed_to_another_van: bool = False) -> int:
        """A health report of ``unit`` received at ``at``; its seq."""
        seq = self._seq(unit)
        body = HealthBody(unit_time=at, uptime_s=uptime_s,
                          cameras=(CameraHealth("cam0", 25.0, 1000),), faces_seen=faces_seen,
                          faces_rejected=0, alerts=0, outbox_depth=0, outbox_oldest_age_s=None,
                          outbox_full=False, watchlist_version=1, model_ids=("m1",))
        other = NodeKeys.generate(NodeRole.VAN, "van-9").encryption
        assert other is not None
        sealed = self.van.seal(body, seq, unit=unit, van_key=(
            other.public_key if sealed_to_another_van else None))
        self.received.now = at
        assert self.events.store(unit, seq, "health", at, sealed)
        return seq

    def alert(self, unit: str, *, at: float, sealed_to_another_van: bool = False) -> int:
        """An alert of ``unit`` received at ``at``; its seq."""
        seq = self._seq(unit)
        other = NodeKeys.generate(NodeRole.VAN, "van-9").encryption
        assert other is not None
        sealed = self.van.seal(alert(seq, captured_at=at - 1), seq, unit=unit, van_key=(
            other.public_key if sealed_to_another_van else None))
        self.received.now = at
        assert self.events.store(unit, seq, "alert", at - 1, sealed)
        return seq

    def decide(self, unit: str, seq: int, decision: str, deployment: str = "dep-1") -> None:
        self.reviews.record(unit, seq, decision, operator="olive", role="operator",
                            deployment_id=deployment)

    def start(self, deployment: str, at: float, *subjects: int) -> None:
        """Start ``deployment`` at ``at`` and push a watchlist version per subject count."""
        self.deployments.start_deployment(deployment, 0.6, now=at)
        for version, count in enumerate(subjects, start=1):
            self.deployments.put_watchlist(
                deployment, version, b"signed" * 10, subject_count=count,
                payload_sha256=f"{version:064x}", not_before=at, not_after=at + 86400,
                now=at + version)


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[Stores]:
    van = make_van(tmp_path, *UNITS)
    van.store.close()
    received = Received()
    events = EventStore.open(van.state_dir / "events.sqlite", clock=received)
    deployments = DeploymentStore.open(van.state_dir / "deployments.sqlite", van.encryption)
    reviews = ReviewStore.open(van.state_dir, clock=lambda: START + 1000)
    try:
        yield Stores(van, events, deployments, reviews, received)
    finally:
        reviews.close()
        deployments.close()
        events.close()


def two_deployments(stores: Stores) -> dict[str, int]:
    """dep-1 from START to START + 200 s (watchlist versions of 10 and 12 subjects) with two
    units' reports and four alerts, events before and after it, and dep-2 after it. Returns
    the alerts' seqs by name."""
    s = stores
    s.health("unit-1", 90, at=START - 50)  # before dep-1: not even a baseline
    s.start("dep-1", START, 10, 12)
    seqs = {}
    s.health("unit-1", 100, at=START + 10)  # the baseline (up 10,000 s: started long before)
    s.health("unit-2", 5, at=START + 20, uptime_s=5.0)  # started inside the window: all 5 count
    seqs["a1"] = s.alert("unit-1", at=START + 30)
    seqs["a2"] = s.alert("unit-1", at=START + 40)
    seqs["a3"] = s.alert("unit-1", at=START + 50)
    s.health("unit-1", 150, at=START + 70)  # +50
    s.health("unit-2", 25, at=START + 80, uptime_s=65.0)  # +20
    seqs["a4"] = s.alert("unit-2", at=START + 90)
    s.health("unit-1", 160, at=START + 130)  # +10
    s.deployments.end_deployment(now=START + 200)
    s.health("unit-1", 1000, at=START + 250)  # after dep-1 ended
    s.alert("unit-1", at=START + 260)
    s.start("dep-2", START + 300, 7)
    s.health("unit-2", 40, at=START + 310, uptime_s=5.0)
    seqs["b1"] = s.alert("unit-2", at=START + 320)
    s.decide("unit-1", seqs["a1"], "confirmed")
    s.decide("unit-1", seqs["a2"], "dismissed")
    s.decide("unit-1", seqs["a3"], "cannot_tell")
    s.decide("unit-1", seqs["a3"], "dismissed")  # a correction: the latest counts
    s.decide("unit-2", seqs["b1"], "dismissed", deployment="dep-2")
    return seqs


# -- the figures ------------------------------------------------------------------------------


def test_a_past_deployment_counts_only_what_the_van_received_in_its_window(
        stores: Stores) -> None:
    two_deployments(stores)
    report = deployment_report(stores.sources, "dep-1", now=START + 400)
    assert (report.deployment_id, report.active, report.started_at, report.ended_at,
            report.window_end, report.threshold) == (
        "dep-1", False, START, START + 200, START + 200, 0.6)
    assert [(w.version, w.subject_count) for w in report.watchlists] == [(1, 10), (2, 12)]
    assert report.subject_count == 12
    assert [(u.unit, u.faces_scanned, u.alerts, u.health_reports, u.restarts)
            for u in report.units] == [("unit-1", 60, 3, 3, 0), ("unit-2", 25, 1, 2, 0)]
    assert report.faces_scanned == 85
    assert (report.alerts, report.confirmed, report.dismissed, report.cannot_tell,
            report.undecided) == (4, 1, 2, 0, 1)
    assert report.false_alerts == 2
    assert report.false_alert_rate == 2 / 85
    assert report.false_alerts_per_1000 == 2000 / 85
    assert false_alert_sentence(report) == (
        "2 false alerts in 85 faces scanned: 23.5 per 1,000 faces")
    assert not report.cut_short
    assert report.covered_from == START
    assert report.unreadable_health_reports == 0


def test_the_series_buckets_the_window_and_adds_up_to_the_totals(stores: Stores) -> None:
    two_deployments(stores)
    report = deployment_report(stores.sources, "dep-1", now=START + 400)
    assert report.bucket_s == 60
    assert [(b.start - START, b.end - START, b.faces_scanned, b.alerts)
            for b in report.series] == [(0, 60, 5, 3), (60, 120, 70, 1), (120, 180, 10, 0),
                                        (180, 240, 0, 0)]
    assert sum(b.faces_scanned for b in report.series) == report.faces_scanned
    assert sum(b.alerts for b in report.series) == report.alerts


def test_the_default_is_the_active_deployment_up_to_now(stores: Stores) -> None:
    two_deployments(stores)
    report = deployment_report(stores.sources, now=START + 330)
    assert (report.deployment_id, report.active, report.ended_at, report.window_end) == (
        "dep-2", True, None, START + 330)
    # unit-2 started 5 s before its report, i.e. 5 s after dep-2 started: all 40 count.
    assert [(u.unit, u.faces_scanned, u.alerts) for u in report.units] == [("unit-2", 40, 1)]
    assert (report.alerts, report.dismissed, report.undecided) == (1, 1, 0)
    assert report.subject_count == 7


def test_with_no_deployment_active_the_default_is_the_last_started(stores: Stores) -> None:
    stores.start("dep-1", START, 3)
    stores.deployments.end_deployment(now=START + 100)
    stores.start("dep-2", START + 200)
    stores.deployments.end_deployment(now=START + 300)
    report = deployment_report(stores.sources, now=START + 1000)
    assert (report.deployment_id, report.window_end, report.subject_count) == (
        "dep-2", START + 300, None)


def test_a_restart_counts_the_new_value_from_zero(stores: Stores) -> None:
    stores.start("dep-1", START, 5)
    stores.health("unit-1", 100, at=START + 10, uptime_s=5000.0)  # baseline
    stores.health("unit-1", 140, at=START + 15, uptime_s=5005.0)  # +40
    stores.health("unit-1", 10, at=START + 20, uptime_s=3.0)  # fewer faces: restarted, +10
    stores.health("unit-1", 30, at=START + 25, uptime_s=8.0)  # +20
    stores.health("unit-1", 200, at=START + 30, uptime_s=2.0)  # uptime went down: +200
    stores.health("unit-1", 201, at=START + 35, uptime_s=7.0)  # +1
    report = deployment_report(stores.sources, now=START + 40)
    assert [(u.faces_scanned, u.restarts, u.health_reports) for u in report.units] == [
        (271, 2, 6)]
    assert report.faces_scanned == 271


def test_reports_count_in_sequence_order_whatever_their_arrival_order(
        stores: Stores) -> None:
    """After a reconnect a unit's older reports can arrive after newer ones."""
    stores.start("dep-1", START, 5)
    first = stores.health("unit-1", 100, at=START + 10)
    stores.seqs["unit-1"] = first + 1  # seq first + 1 is held back on the unit...
    stores.health("unit-1", 130, at=START + 12)
    stores.seqs["unit-1"] = first  # ...and arrives last
    stores.health("unit-1", 120, at=START + 14)
    report = deployment_report(stores.sources, now=START + 20)
    assert (report.faces_scanned, report.units[0].restarts) == (30, 0)


def test_no_faces_scanned_gives_no_rate(stores: Stores) -> None:
    stores.start("dep-1", START)
    empty = deployment_report(stores.sources, now=START + 60)
    assert (empty.faces_scanned, empty.alerts, empty.units) == (0, 0, ())
    assert empty.false_alert_rate is None
    assert empty.false_alerts_per_1000 is None
    assert false_alert_sentence(empty) == (
        "0 false alerts; no faces scanned, so there is no false-alert rate")
    seq = stores.alert("unit-1", at=START + 30)
    stores.decide("unit-1", seq, "dismissed")
    stores.health("unit-1", 7, at=START + 40)  # a baseline only: no face counted
    dismissed = deployment_report(stores.sources, now=START + 60)
    assert (dismissed.faces_scanned, dismissed.dismissed) == (0, 1)
    assert dismissed.false_alert_rate is None
    assert false_alert_sentence(dismissed).startswith("1 false alert; no faces scanned")


def test_alerts_are_counted_unopened_and_bad_health_reports_are_passed_over(
        stores: Stores) -> None:
    """An alert is counted from the stored header alone (it is never opened); a health report
    that does not open is counted as unreadable, and the cumulative counter of the next one
    still counts its faces."""
    stores.start("dep-1", START, 5)
    stores.health("unit-1", 100, at=START + 10)
    stores.alert("unit-1", at=START + 12, sealed_to_another_van=True)
    stores.health("unit-1", 150, at=START + 15, sealed_to_another_van=True)
    stores.health("unit-1", 180, at=START + 20)
    report = deployment_report(stores.sources, now=START + 30)
    assert (report.alerts, report.undecided) == (1, 1)
    assert report.unreadable_health_reports == 1
    assert report.faces_scanned == 80
    assert report.units[0].health_reports == 3


def test_an_unknown_deployment_or_none_at_all_is_not_found(stores: Stores) -> None:
    with pytest.raises(ReportNotFound, match="no deployment has been started"):
        deployment_report(stores.sources, now=START)
    stores.start("dep-1", START)
    with pytest.raises(ReportNotFound, match="no deployment 'dep-9'"):
        deployment_report(stores.sources, "dep-9", now=START)


# -- bounded work -----------------------------------------------------------------------------


def test_the_read_stops_at_max_events_and_says_the_report_was_cut_short(
        stores: Stores) -> None:
    stores.start("dep-1", START, 5)
    for index in range(8):  # faces 0, 10, ... 70, received 10 s apart
        stores.health("unit-1", index * 10, at=START + 10 + index * 10)
    config = ReportConfig(max_events=5, page_events=2)
    report = deployment_report(stores.sources, now=START + 100, config=config)
    assert report.cut_short
    assert report.events_read == 5
    # The five newest (received at +40 ... +80): the first of them is the baseline.
    assert report.covered_from == START + 40
    assert report.faces_scanned == 40
    assert report.units[0].health_reports == 5
    whole = deployment_report(stores.sources, now=START + 100,
                              config=ReportConfig(max_events=8, page_events=3))
    assert not whole.cut_short  # the store holds nothing older: the read was complete
    assert (whole.faces_scanned, whole.covered_from, whole.events_read) == (70, START, 8)


def test_reading_exactly_the_window_is_not_cut_short(stores: Stores) -> None:
    stores.health("unit-1", 5, at=START - 10)  # before the deployment
    stores.start("dep-1", START, 5)
    for index in range(4):
        stores.health("unit-1", 10 + index, at=START + 10 + index)
    report = deployment_report(stores.sources, now=START + 100,
                               config=ReportConfig(max_events=4, page_events=4))
    assert not report.cut_short
    assert (report.events_read, report.faces_scanned) == (4, 3)


def test_the_bucket_size_gives_at_most_max_buckets() -> None:
    minute = 60.0
    assert choose_bucket_s(START, START + 100 * minute, 100) == 60
    assert choose_bucket_s(START, START + 101 * minute, 100) == 300
    assert choose_bucket_s(START, START + 8 * 3600, 100) == 300
    assert choose_bucket_s(START, START + 24 * 3600, 100) == 900
    assert choose_bucket_s(START, START + 3 * 86400, 100) == 3600
    assert choose_bucket_s(START, START + 30 * 86400, 100) == 43200
    assert choose_bucket_s(START, START + 200 * 86400, 100) == 3 * 86400
    assert choose_bucket_s(START + 30, START + 30, 100) == BUCKET_SIZES_S[0]
    # Aligned to multiples of the size: 100 minutes from 30 s past a minute need 101 buckets.
    assert choose_bucket_s(START + 30, START + 30 + 100 * minute, 100) == 300


def test_a_long_deployment_has_at_most_max_buckets_adding_up(stores: Stores) -> None:
    stores.start("dep-1", START + 17, 5)
    for hour in range(0, 30, 3):  # a report every 3 hours for 30 hours
        stores.health("unit-1", hour * 100, at=START + 17 + hour * 3600)
        stores.alert("unit-1", at=START + 18 + hour * 3600)
    report = deployment_report(stores.sources, now=START + 31 * 3600,
                               config=ReportConfig(max_buckets=40))
    assert report.bucket_s == 3600
    assert len(report.series) <= 40
    assert report.series[0].start <= report.started_at < report.series[0].end
    assert report.series[-1].start <= report.window_end <= report.series[-1].end
    assert sum(b.faces_scanned for b in report.series) == report.faces_scanned == 2700
    assert sum(b.alerts for b in report.series) == report.alerts == 10


def test_the_config_refuses_nonsense() -> None:
    for bad in ({"max_events": 0}, {"max_buckets": 1}, {"page_events": 201},
                {"ttl_s": 0.0}, {"max_cached": 0}, {"resume_within_s": -1.0}):
        with pytest.raises(ConfigError):
            ReportConfig(**bad)


def test_significant_text_has_three_digits_and_no_exponent() -> None:
    assert [significant_text(x) for x in (0, 1.6611, 10 / 3_147_436 * 1000, 166.1, 1234.4,
                                          23.529)] == ["0", "1.66", "0.00318", "166", "1,234",
                                                       "23.5"]


# -- on the worker pool, cached ---------------------------------------------------------------

class GivingUpPool(BlockingPool):
    """A real pool whose caller gives up (``TimeoutError``) after its ``give_up_after``-th call
    finished, as a page whose wait timed out would."""

    def __init__(self, give_up_after: int | None = None) -> None:
        super().__init__(workers=1)
        self.give_up_after = give_up_after
        self.calls = 0

    async def run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        result = await super().run(fn, *args, **kwargs)
        self.calls += 1
        if self.give_up_after is not None and self.calls == self.give_up_after:
            raise TimeoutError
        return result


async def test_a_report_is_served_from_the_cache_until_its_ttl_passes(stores: Stores) -> None:
    stores.start("dep-1", START, 5)
    stores.health("unit-1", 10, at=START + 10)
    stores.health("unit-1", 25, at=START + 20)
    ttl_clock = FakeClock()
    pool = GivingUpPool()
    try:
        reports = DeploymentReports(stores.sources, pool, clock=lambda: START + 30,
                                    monotonic=ttl_clock, config=ReportConfig(ttl_s=10.0))
        first = await reports.report()
        assert first.faces_scanned == 15
        stores.health("unit-1", 40, at=START + 25)
        ttl_clock.advance(9.9)
        assert await reports.report() is first  # a refresh does not compute again
        assert await reports.report("dep-1") is first  # nor does naming the same deployment
        assert reports.computed == 1
        ttl_clock.advance(0.1)
        again = await reports.report()
        assert again is not first
        assert again.faces_scanned == 30
        assert reports.computed == 2
    finally:
        pool.shutdown()


async def test_concurrent_callers_share_one_computation(stores: Stores) -> None:
    stores.start("dep-1", START, 5)
    for index in range(5):
        stores.health("unit-1", index, at=START + index)
    pool = GivingUpPool()
    try:
        reports = DeploymentReports(stores.sources, pool, clock=lambda: START + 30,
                                    monotonic=FakeClock(), config=ReportConfig(page_events=1))
        found = await asyncio.gather(*(reports.report() for _ in range(4)))
        assert all(report is found[0] for report in found)
        assert reports.computed == 1
    finally:
        pool.shutdown()


async def test_a_caller_that_gives_up_leaves_its_work_to_the_next(stores: Stores) -> None:
    stores.start("dep-1", START, 5)
    for index in range(6):
        stores.health("unit-1", index * 2, at=START + 1 + index)
    pool = GivingUpPool(give_up_after=3)  # found the deployment, read two pages of two
    try:
        reports = DeploymentReports(stores.sources, pool, clock=lambda: START + 30,
                                    monotonic=FakeClock(), config=ReportConfig(page_events=2))
        with pytest.raises(TimeoutError):
            await reports.report()
        assert reports.progress() == 4
        report: DeploymentReport = await reports.report()
        assert (report.events_read, report.faces_scanned, reports.computed) == (6, 10, 1)
        # 3 calls before giving up, then the last page, an empty page (the store holds
        # nothing older) and the figures: nothing was read twice.
        assert pool.calls == 6
        assert reports.progress() == 0
    finally:
        pool.shutdown()


async def test_not_found_is_not_cached_and_leaves_nothing_unfinished(stores: Stores) -> None:
    pool = GivingUpPool()
    try:
        reports = DeploymentReports(stores.sources, pool, clock=lambda: START + 30,
                                    monotonic=FakeClock())
        with pytest.raises(ReportNotFound):
            await reports.report()
        stores.start("dep-1", START, 5)
        assert (await reports.report()).deployment_id == "dep-1"
    finally:
        pool.shutdown()
