"""The deployment report's figures (issue 10, "Deployment report"): ``deployment_report`` for one
deployment, computed from the van's stores; ``DeploymentReports``, the same on the worker pool,
one page of events per call, kept a few seconds per deployment. No web code here: the page and
the CSV are ``console.report_page``.

**Which deployment.** The one named, or by default the active one (the last started when none
is active), looked for among the ``MAX_DEPLOYMENTS_LOOKED_UP`` newest (``ReportNotFound``
otherwise, also when no deployment was ever started).

**The window** is [``started_at``, ``ended_at``], or [``started_at``, now] while the deployment
is active, on the van's clock: an event belongs to the deployment when the van *received* it in
the window (``StoredEvent.received_at``). The event store is read newest arrival first, a page
at a time (``EventStore.recent``): events received after the window are skipped and the read
stops at the first event received before it (arrival order is the van's clock order; a van clock
stepped back across the start would end the read early).

**The figures** (exact integers; rates are floats):

- *units*: every unit with an event (alert or health report) in the window;
- *faces scanned*: per unit, the increase of ``HealthBody.faces_seen`` (faces detected since the
  unit started) over its health reports in the window, in sequence order. A report whose
  ``faces_seen`` or ``uptime_s`` is below the one before means the unit restarted: its count
  starts again from zero, so the whole new value counts. The first report in the window is the
  baseline, unless its ``uptime_s`` shows the unit started inside the window: then its whole
  value counts too (the unit's start is a restart from zero). The counter is cumulative, so a
  report that is missing or no longer opens loses nothing unless a restart falls beside it;
- *alerts*: alert events received in the window, each once (the store holds each (unit, seq)
  once, and they are counted by that key). Alerts are never opened: the kind is stored beside
  the sealed envelope;
- *confirmed*, *dismissed* (false alerts), *cannot tell*: each alert by its latest decision in
  the ``ReviewStore``, whenever it was made; *undecided*: alerts without one. So the four add
  up to *alerts* (``ReviewStore.counts`` counts instead by the deployment active at an alert's
  first decision, which leaves out an alert decided after its deployment ended);
- *the false-alert rate*: dismissed / faces scanned, and per 1,000 faces; None when no face was
  scanned (``false_alert_sentence`` says so in words);
- *the series*: buckets of ``BUCKET_SIZES_S`` (the smallest giving at most
  ``ReportConfig.max_buckets``; whole days past the largest), aligned to multiples of the size
  since the epoch (so 5-minute buckets start at :00, :05...), covering the window: faces scanned
  (each increase counted in the bucket in which the van received the report that showed it)
  and alerts (by receive time). The series adds up to the totals.

**Bounded work.** At most ``ReportConfig.max_events`` stored events are read (newest first);
when the window holds more, the report is ``cut_short`` and its figures cover only events
received from ``covered_from`` on. Health reports are the only envelopes opened (a signature
check and a decryption each, about 0.3 ms, with the enrolment's signer lookup and the van's
key; counts only, no face data): one that no longer opens is counted in
``unreadable_health_reports``, logged through a ``LogBudget`` and passed over. Decisions are
read ``MAX_KEYS`` alerts at a time. Memory: one page of events, and a few numbers per alert and
health report in the window.

**Steps, the worker pool and the cache.** ``ReportBuilder.step`` does one bounded piece (find
the deployment, read one page of events, or look up one batch of decisions) and returns the
report when done; ``deployment_report`` runs the steps in a row. ``DeploymentReports`` runs each
step on the van's ``BlockingPool``, so a long report never holds a worker for more than a page
and other work (storing the units' events) goes between its steps; it computes one report at a
time, keeps each finished report ``ttl_s`` seconds (a page refresh reuses it) and keeps an
unfinished one, so a caller that gave up (its wait timed out) leaves the work done for the next
caller to continue. A builder's steps hold its own lock, so a step still running on a worker
after its caller gave up ends before the next one starts.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from actors.unit.event_body import EventBodyError, HealthBody, decode_body
from actors.van.deployment_store import MAX_PAGE as DEPLOYMENT_MAX_PAGE
from actors.van.deployment_store import Deployment, DeploymentStore, WatchlistFacts
from actors.van.event_store import MAX_PAGE as EVENT_MAX_PAGE
from actors.van.event_store import EventStore, StoredEvent
from actors.van.review_store import MAX_KEYS, AlertKey, ReviewError, ReviewStore, check_alert_key
from guards.config_checks import require_at_least, require_between, require_positive
from guards.log_text import printable
from guards.user_input import UserInputError
from runtime.blocking import BlockingPool
from runtime.log_budget import LogBudget
from secure.envelope import EnvelopeRefused, EventKind, SignerLookup, open_envelope
from secure.sealing import EncryptionKeyPair

log = logging.getLogger("lfr.console.report")

MAX_DEPLOYMENTS_LOOKED_UP: Final = DEPLOYMENT_MAX_PAGE
"""A report is made of one of this many newest deployments (the deployment store's page)."""
MAX_WATCHLIST_VERSIONS: Final = DEPLOYMENT_MAX_PAGE
"""Watchlist versions of a deployment listed, newest first (one page of the store)."""
BUCKET_SIZES_S: Final = (60, 300, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)
"""The series' bucket sizes, smallest first: 1, 5, 15, 30 minutes, 1, 2, 3, 6, 12 hours, a
day."""
DEFAULT_MAX_EVENTS: Final = 200_000
"""Stored events one report reads at most: about a minute of opening health reports (a unit
reports every 5 s, so 200,000 are over 270 unit-hours)."""


class ReportNotFound(UserInputError):
    """No deployment to report on: none was started, or the one named is not among the
    ``MAX_DEPLOYMENTS_LOOKED_UP`` newest. The text says which."""


@dataclass(frozen=True, slots=True)
class ReportConfig:
    """How much one report may read and how long a finished one is kept."""

    max_events: int = DEFAULT_MAX_EVENTS
    """Stored events read at most (newest first); a window holding more is cut short and the
    report says so."""
    max_buckets: int = 100
    """Most buckets in the series; the bucket size is the smallest of ``BUCKET_SIZES_S``
    giving at most this many (at least 2)."""
    page_events: int = EVENT_MAX_PAGE
    """Events read per step (one worker-pool call), 1 to the event store's page."""
    ttl_s: float = 10.0
    """A finished report is served again for this long (s) before it is computed anew."""
    max_cached: int = 8
    """Finished reports kept (one per deployment asked for); the oldest goes first."""
    resume_within_s: float = 300.0
    """An unfinished report whose caller gave up is continued by the next caller within this
    many seconds of its start; after that it is started again (its "now" would be stale)."""

    def __post_init__(self) -> None:
        require_at_least("ReportConfig.max_events", self.max_events, 1)
        require_at_least("ReportConfig.max_buckets", self.max_buckets, 2)
        require_at_least("ReportConfig.page_events", self.page_events, 1)
        require_between("ReportConfig.page_events", self.page_events, 1, EVENT_MAX_PAGE)
        require_positive("ReportConfig.ttl_s", self.ttl_s)
        require_at_least("ReportConfig.max_cached", self.max_cached, 1)
        require_positive("ReportConfig.resume_within_s", self.resume_within_s)


@dataclass(frozen=True, slots=True, eq=False)
class ReportSources:
    """What a report reads: the van's stores and what opens its health reports."""

    events: EventStore
    """The event store: alerts and health reports, sealed."""
    deployments: DeploymentStore
    """Deployments and their watchlists' facts."""
    reviews: ReviewStore
    """The officers' decisions."""
    signers: SignerLookup
    """The enrolment's signer lookup (``Enrolment.lookup``): opens an envelope."""
    van_key: EncryptionKeyPair
    """The van's private encryption key: opens an envelope."""


@dataclass(frozen=True, slots=True)
class WatchlistVersion:
    """One watchlist version pushed in the deployment."""

    version: int
    """Its version."""
    subject_count: int
    """Subjects it holds."""
    pushed_at: float
    """When the van stored it, s since the epoch."""


@dataclass(frozen=True, slots=True)
class UnitFigures:
    """One unit's part in the deployment."""

    unit: str
    """The unit's id (untrusted text: escape it where shown)."""
    faces_scanned: int
    """Faces it scanned in the window (module docstring)."""
    alerts: int
    """Its alerts received in the window."""
    health_reports: int
    """Its health reports received in the window (those that open and those that do not)."""
    restarts: int
    """Restarts seen between its reports (``faces_seen`` or ``uptime_s`` went down)."""


@dataclass(frozen=True, slots=True)
class Bucket:
    """One bucket of the series: [start, end)."""

    start: float
    """Its start, s since the epoch (a multiple of the bucket size)."""
    end: float
    """Its end (start + the bucket size)."""
    faces_scanned: int
    """Faces scanned, counted in the bucket in which the report showing them was received."""
    alerts: int
    """Alerts received in it."""


@dataclass(frozen=True, slots=True)
class DeploymentReport:
    """One deployment's figures (module docstring)."""

    deployment_id: str
    """The deployment (untrusted text: escape it where shown)."""
    active: bool
    """Whether it was active when the report was made."""
    started_at: float
    """When it started, s since the epoch (van clock)."""
    ended_at: float | None
    """When it ended; None while active."""
    window_end: float
    """The window's end: ``ended_at``, or the van's clock when the report was made."""
    threshold: float
    """The deployment's alert threshold (cosine)."""
    watchlists: tuple[WatchlistVersion, ...]
    """Watchlist versions pushed, oldest first (at most ``MAX_WATCHLIST_VERSIONS``)."""
    units: tuple[UnitFigures, ...]
    """The units that took part, by id."""
    faces_scanned: int
    """Faces scanned by every unit in the window."""
    alerts: int
    """Alerts received in the window."""
    confirmed: int
    """Alerts whose latest decision is confirmed (the officer engaged)."""
    dismissed: int
    """Alerts whose latest decision is dismissed: the false alerts."""
    cannot_tell: int
    """Alerts whose latest decision is cannot tell."""
    undecided: int
    """Alerts without a decision. confirmed + dismissed + cannot_tell + undecided == alerts."""
    bucket_s: int
    """The series' bucket size, seconds."""
    series: tuple[Bucket, ...]
    """Faces scanned and alerts over the window, oldest first; they add up to the totals."""
    events_read: int
    """Stored events read (in the window or not)."""
    cut_short: bool
    """True when ``ReportConfig.max_events`` stopped the read inside the window: the figures
    cover only events received from ``covered_from`` on."""
    covered_from: float
    """The start of what the figures cover: ``started_at`` unless cut short."""
    unreadable_health_reports: int
    """Health reports in the window that no longer open (passed over)."""
    generated_at: float
    """The van's clock when the report was started."""

    @property
    def false_alerts(self) -> int:
        """Alerts dismissed as false alerts (``dismissed``)."""
        return self.dismissed

    @property
    def false_alert_rate(self) -> float | None:
        """False alerts per face scanned; None when no face was scanned."""
        return None if self.faces_scanned == 0 else self.dismissed / self.faces_scanned

    @property
    def false_alerts_per_1000(self) -> float | None:
        """False alerts per 1,000 faces scanned; None when no face was scanned."""
        return (None if self.faces_scanned == 0
                else self.dismissed * 1000 / self.faces_scanned)

    @property
    def subject_count(self) -> int | None:
        """Subjects in the latest watchlist version; None when none was pushed."""
        return self.watchlists[-1].subject_count if self.watchlists else None


def choose_bucket_s(start: float, end: float, max_buckets: int) -> int:
    """The smallest of ``BUCKET_SIZES_S`` whose buckets, aligned to multiples of it, cover
    [``start``, ``end``] in at most ``max_buckets``; whole days past the largest."""
    for size in BUCKET_SIZES_S:
        if _bucket_count(start, end, size) <= max_buckets:
            return size
    days = math.ceil((end - start) / 86400 / (max_buckets - 1))
    return 86400 * max(1, days)


def _bucket_count(start: float, end: float, size: int) -> int:
    origin = math.floor(start / size) * size
    return max(1, math.ceil((end - origin) / size))


# -- numbers in words -------------------------------------------------------------------------


def significant_text(value: float) -> str:
    """``value`` with three significant digits and thousands separators, never in exponent
    form: 1.66, 0.00318, 166, 1,234."""
    if value == 0:
        return "0"
    digits = max(0, 2 - math.floor(math.log10(abs(value))))
    return f"{value:,.{digits}f}"


def count_text(count: int, singular: str, plural: str) -> str:
    """``1 false alert``, ``1,204 faces``."""
    return f"{count:,} {singular if count == 1 else plural}"


def false_alert_sentence(report: DeploymentReport) -> str:
    """The false-alert rate in words: ``2 false alerts in 1,204 faces scanned: 1.66 per 1,000
    faces``; with no face scanned it says there is no rate."""
    false_alerts = count_text(report.dismissed, "false alert", "false alerts")
    per_1000 = report.false_alerts_per_1000
    if per_1000 is None:
        return f"{false_alerts}; no faces scanned, so there is no false-alert rate"
    faces = count_text(report.faces_scanned, "face", "faces")
    return f"{false_alerts} in {faces} scanned: {significant_text(per_1000)} per 1,000 faces"


# -- the computation --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _HealthPoint:
    """What a report needs of one opened health report."""

    seq: int
    received_at: float
    faces_seen: int
    uptime_s: float


_unopened = LogBudget(log, "console report: stored health reports that do not open")


class ReportBuilder:
    """One report's computation in bounded steps (module docstring). Call ``step`` until it
    returns the report; any thread may call it (one step at a time runs)."""

    def __init__(self, sources: ReportSources, deployment_id: str | None, *, now: float,
                 config: ReportConfig) -> None:
        self._sources = sources
        self._wanted = deployment_id
        self._now = now
        self._config = config
        self._lock = threading.Lock()  # one step at a time, whichever thread runs it
        self._deployment: Deployment | None = None
        self._facts: list[WatchlistFacts] = []
        self._start = 0.0
        self._end = 0.0
        # Reading events: the next page starts below _cursor (an event id); _read counts every
        # event read, and never passes config.max_events.
        self._cursor: int | None = None
        self._read = 0
        self._events_done = False
        self._cut_short = False
        self._oldest_read: float | None = None
        # What the window holds. Invariant: every key of _alerts and of _health is in _units.
        self._units: set[str] = set()
        self._alerts: dict[AlertKey, float] = {}  # (unit, seq) -> received_at
        self._health: dict[str, list[_HealthPoint]] = {}
        self._health_reports: dict[str, int] = {}
        self._unreadable = 0
        # Looking up decisions: _keys[_next_key:] are still to be looked up.
        self._keys: list[AlertKey] = []
        self._next_key = 0
        self._decided = {"confirmed": 0, "dismissed": 0, "cannot_tell": 0}
        self._report: DeploymentReport | None = None

    @property
    def events_read(self) -> int:
        """Stored events read so far."""
        return self._read

    @property
    def deployment_id(self) -> str | None:
        """The deployment reported on, once the first step found it."""
        return None if self._deployment is None else self._deployment.id

    def step(self) -> DeploymentReport | None:
        """Do the next bounded piece of work; the report once done (and on every later call).
        ``ReportNotFound`` from the first step when there is no such deployment."""
        with self._lock:
            if self._report is not None:
                return self._report
            if self._deployment is None:
                self._find_deployment()
            elif not self._events_done:
                self._read_page()
            elif self._next_key < len(self._keys):
                self._look_up_decisions()
            else:
                self._report = self._finish()
            return self._report

    # -- the steps --------------------------------------------------------------------------

    def _find_deployment(self) -> None:
        known = self._sources.deployments.deployments(limit=MAX_DEPLOYMENTS_LOOKED_UP)
        if not known:
            raise ReportNotFound("no deployment has been started on this van")
        if self._wanted is None:
            chosen = next((d for d in known if d.active), known[0])
        else:
            found = [d for d in known if d.id == self._wanted]
            if not found:
                raise ReportNotFound(f"no deployment {printable(self._wanted)!r} among the "
                                     f"{len(known):,} newest on this van")
            chosen = found[0]
        self._facts = self._sources.deployments.watchlist_facts(
            chosen.id, limit=MAX_WATCHLIST_VERSIONS)
        self._start = chosen.started_at
        # A clock stepped back below the start leaves an empty window, never a negative one.
        self._end = max(self._start, self._now if chosen.ended_at is None else chosen.ended_at)
        self._deployment = chosen

    def _read_page(self) -> None:
        limit = min(self._config.page_events, self._config.max_events - self._read)
        page = self._sources.events.recent(before_id=self._cursor, limit=limit)
        for event in page:
            self._cursor = event.id
            self._read += 1
            self._oldest_read = event.received_at
            if event.received_at > self._end:
                continue  # after the window (a later deployment's, or after now)
            if event.received_at < self._start:
                self._events_done = True  # arrival order: everything older is earlier still
                break
            self._take(event)
        if not self._events_done and len(page) < limit:
            self._events_done = True  # the store holds nothing older
        elif not self._events_done and self._read >= self._config.max_events:
            self._events_done = True
            # Cut short only if the window goes on below the last event read.
            older = self._sources.events.recent(before_id=self._cursor, limit=1)
            self._cut_short = bool(older) and older[0].received_at >= self._start
        if self._events_done:
            self._keys = sorted(self._alerts)

    def _take(self, event: StoredEvent) -> None:
        self._units.add(event.unit)
        if event.kind == "alert":
            self._alerts[(event.unit, event.seq)] = event.received_at
            return
        self._health_reports[event.unit] = self._health_reports.get(event.unit, 0) + 1
        body = self._open_health(event)
        if body is not None:
            self._health.setdefault(event.unit, []).append(
                _HealthPoint(event.seq, event.received_at, body.faces_seen, body.uptime_s))

    def _open_health(self, event: StoredEvent) -> HealthBody | None:
        """The health report in ``event``, opened; None (counted, logged) if it does not
        open or is not what the store says it is."""
        try:
            opened = open_envelope(event.sealed, signers=self._sources.signers,
                                   van_key=self._sources.van_key)
            body = decode_body(opened.body)
        except EnvelopeRefused as exc:
            problem = exc.reason
        except EventBodyError as exc:
            problem = f"bad body ({exc.field})"
        else:
            if (isinstance(body, HealthBody) and opened.header.kind is EventKind.HEALTH
                    and opened.header.unit_id == event.unit
                    and opened.header.sequence == event.seq):
                return body
            problem = "not this health report"
        self._unreadable += 1
        _unopened.warning("console report: health report %s/%d does not open: %s",
                          printable(event.unit), event.seq, problem)
        return None

    def _look_up_decisions(self) -> None:
        batch = self._keys[self._next_key:self._next_key + MAX_KEYS]
        self._next_key += len(batch)
        valid: list[AlertKey] = []
        for unit, seq in batch:
            try:
                valid.append(check_alert_key(unit, seq))
            except ReviewError:
                continue  # no decision can be recorded on it: undecided
        for decision in self._sources.reviews.latest_many(valid).values():
            self._decided[decision.decision] += 1

    def _finish(self) -> DeploymentReport:
        deployment = self._deployment
        assert deployment is not None  # _finish runs after _find_deployment
        covered_from = self._start
        if self._cut_short and self._oldest_read is not None:
            covered_from = min(self._end, max(self._start, self._oldest_read))
        bucket_s = choose_bucket_s(self._start, self._end, self._config.max_buckets)
        origin = math.floor(self._start / bucket_s) * bucket_s
        count = _bucket_count(self._start, self._end, bucket_s)
        faces_by_bucket = [0] * count
        alerts_by_bucket = [0] * count

        def bucket_of(received_at: float) -> int:
            return min(count - 1, max(0, math.floor((received_at - origin) / bucket_s)))

        alerts_by_unit: dict[str, int] = {}
        for (unit, _seq), received_at in self._alerts.items():
            alerts_by_unit[unit] = alerts_by_unit.get(unit, 0) + 1
            alerts_by_bucket[bucket_of(received_at)] += 1
        units = []
        for unit in sorted(self._units):
            faces = restarts = 0
            for received_at, increase, restarted in _increases(self._health.get(unit, []),
                                                               covered_from):
                faces += increase
                restarts += restarted
                faces_by_bucket[bucket_of(received_at)] += increase
            units.append(UnitFigures(unit, faces, alerts_by_unit.get(unit, 0),
                                     self._health_reports.get(unit, 0), restarts))
        decided = sum(self._decided.values())
        return DeploymentReport(
            deployment_id=deployment.id, active=deployment.active,
            started_at=deployment.started_at, ended_at=deployment.ended_at,
            window_end=self._end, threshold=deployment.threshold,
            watchlists=tuple(WatchlistVersion(f.version, f.subject_count, f.pushed_at)
                             for f in reversed(self._facts)),
            units=tuple(units), faces_scanned=sum(u.faces_scanned for u in units),
            alerts=len(self._alerts), confirmed=self._decided["confirmed"],
            dismissed=self._decided["dismissed"], cannot_tell=self._decided["cannot_tell"],
            undecided=len(self._alerts) - decided, bucket_s=bucket_s,
            series=tuple(Bucket(origin + i * bucket_s, origin + (i + 1) * bucket_s,
                                faces_by_bucket[i], alerts_by_bucket[i])
                         for i in range(count)),
            events_read=self._read, cut_short=self._cut_short, covered_from=covered_from,
            unreadable_health_reports=self._unreadable, generated_at=self._now)


def _increases(points: list[_HealthPoint],
               covered_from: float) -> list[tuple[float, int, int]]:
    """(received_at, faces counted, 1 if a restart showed) for each of a unit's reports in
    sequence order (module docstring: restarts, and the first report)."""
    found: list[tuple[float, int, int]] = []
    previous: _HealthPoint | None = None
    for point in sorted(points, key=lambda p: p.seq):
        if previous is None:
            started_inside = point.uptime_s <= point.received_at - covered_from
            found.append((point.received_at, point.faces_seen if started_inside else 0, 0))
        elif point.faces_seen < previous.faces_seen or point.uptime_s < previous.uptime_s:
            found.append((point.received_at, point.faces_seen, 1))
        else:
            found.append((point.received_at, point.faces_seen - previous.faces_seen, 0))
        previous = point
    return found


def deployment_report(sources: ReportSources, deployment_id: str | None = None, *,
                      now: float, config: ReportConfig | None = None) -> DeploymentReport:
    """The report of ``deployment_id`` (default: the active deployment, or the last started),
    its window ending at ``now`` (s since the epoch) while it is active. Blocking: every step
    in a row. ``ReportNotFound`` when there is no such deployment."""
    builder = ReportBuilder(sources, deployment_id, now=now, config=config or ReportConfig())
    while (report := builder.step()) is None:
        pass
    return report


# -- on the worker pool, cached ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Finished:
    report: DeploymentReport
    at: float
    """When it was finished (the TTL clock)."""


class DeploymentReports:
    """Reports computed on ``pool`` a step per call, one report at a time, each kept
    ``config.ttl_s`` seconds (module docstring). ``clock`` gives the van's time (s since the
    epoch: the end of an active deployment's window); ``monotonic`` times the cache."""

    def __init__(self, sources: ReportSources, pool: BlockingPool, *,
                 config: ReportConfig | None = None,
                 clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._sources = sources
        self._pool = pool
        self._config = config or ReportConfig()
        self._clock = clock
        self._monotonic = monotonic
        self._turn = asyncio.Lock()  # one report computed at a time
        # Finished reports by what was asked (None: the default deployment) and by the
        # deployment they turned out to be; at most config.max_cached, oldest first.
        self._finished: OrderedDict[str | None, _Finished] = OrderedDict()
        # The one unfinished report a caller gave up on: (what was asked, builder, started).
        self._unfinished: tuple[str | None, ReportBuilder, float] | None = None
        self.computed = 0
        """Reports computed (not served from the cache) since made."""

    def progress(self) -> int:
        """Events read so far by the unfinished report, if any (0 otherwise)."""
        return 0 if self._unfinished is None else self._unfinished[1].events_read

    async def report(self, deployment_id: str | None = None) -> DeploymentReport:
        """The report of ``deployment_id`` (None: the default one), from the cache when one
        was finished less than ``ttl_s`` ago. Waits for its turn (one report is computed at
        a time): bound the wait with a timeout; a caller that gives up leaves its work to the
        next. ``ReportNotFound`` when there is no such deployment."""
        cached = self._fresh(deployment_id)
        if cached is not None:
            return cached
        async with self._turn:
            cached = self._fresh(deployment_id)  # finished while this caller waited
            if cached is not None:
                return cached
            builder = self._builder(deployment_id)
            try:
                while (report := await self._pool.run(builder.step)) is None:
                    pass
            except ReportNotFound:
                self._unfinished = None  # nothing to continue
                raise
            self._unfinished = None
            self.computed += 1
            finished = _Finished(report, self._monotonic())
            for key in {deployment_id, report.deployment_id}:
                self._finished[key] = finished
                self._finished.move_to_end(key)
            while len(self._finished) > self._config.max_cached:
                self._finished.popitem(last=False)
            return report

    def _fresh(self, deployment_id: str | None) -> DeploymentReport | None:
        found = self._finished.get(deployment_id)
        if found is None:
            return None
        if self._monotonic() - found.at >= self._config.ttl_s:
            del self._finished[deployment_id]
            return None
        return found.report

    def _builder(self, deployment_id: str | None) -> ReportBuilder:
        """The unfinished builder of ``deployment_id`` if one is recent enough, else a new one
        (which replaces any other unfinished one: only one is kept, for its memory)."""
        now = self._monotonic()
        if self._unfinished is not None:
            wanted, builder, started = self._unfinished
            if wanted == deployment_id and now - started < self._config.resume_within_s:
                return builder
        builder = ReportBuilder(self._sources, deployment_id, now=self._clock(),
                                config=self._config)
        self._unfinished = (deployment_id, builder, now)
        return builder
