"""The console's Units page: every camera unit, online or not, its last health report, the
board's view of its watchlist, and its alarms (issue 10, "Units").

Routes (role operator): ``GET /units`` (the page, server-rendered) and ``GET /units.json`` (the
same rows as JSON; ``/static/units.js`` polls it every 5 s and redraws the table with
``textContent``, so nothing a unit sent is ever parsed as HTML).

**One row per unit**: every enrolled unit (``Enrolment.units``), every unit the watchlist board
has heard from, and every linked unit. For each:

- online or offline: whether its link is up now (``UnitLinks.linked_units``);
- its last health report: the newest ``health`` event in the event store, opened on read on the
  blocking pool with the van's key (``open_envelope`` then ``decode_body``) and dropped after;
  at most ``MAX_EVENTS_BACK`` of the unit's newest events are looked through (alerts are
  skipped without being opened). Shown: when it was made (unit clock) and how long ago it was
  received (van clock), fps and frames per camera, faces seen and rejected, alerts, outbox depth
  and oldest age, the watchlist version the unit says it holds;
- the board's view (``WatchlistBoard.views``, ``wanted``): state, deployment, version, subjects,
  the last refusal and its reason, when it last polled, the version it must hold and when the
  version it holds expires (``DeploymentStore.watchlist_facts``);
- alarms, as words (never colour only): ``ALARM_TEXT`` lists them; ``unit_alarms`` decides.

Guarantees: a health report holds counts only (``HealthBody``), so no page or JSON here carries
face data; every text from a unit or a peer is escaped (``html.escape``) before it is put in
HTML; every store read and every opening runs on the blocking pool and the whole page waits at
most ``PAGE_WAIT_S`` (503 otherwise); GET changes nothing.

Also used by the other pages: ``newest_health_report`` (the audit page's witnessed heads),
``known_units`` and the time texts ``utc_text`` and ``age_text``.
"""

from __future__ import annotations

import asyncio
import enum
import html
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from aiohttp import web

from actors.van.health_reports import HealthReport, find_health_report
from actors.van.watchlist_board import UnitView
from actors.watchlist_messages import HeldState
from console.app import PageRoute, shell_page
from console.sources import ConsoleSources
from guards.log_text import printable
from runtime.log_budget import LogBudget

log = logging.getLogger("lfr.console")

SILENT_AFTER_S: Final = 20.0
"""An online unit with no health report received for longer than this is silent: three of its
5 s report intervals (``[health] interval_s``) and some slack for a busy link."""
CLOCK_SKEW_ALARM_S: Final = 30.0
"""A report whose unit clock differs from the van's receive time by more than this raises the
clock-skew alarm (alerts' capture times would be off by as much)."""
MAX_EVENTS_BACK: Final = 64
"""Newest events of a unit looked through for its last health report: a unit reports every
5 s, so only a burst of more alerts than this since its last report hides it (then shown as
"none among the newest 64 events")."""
PAGE_WAIT_S: Final = 20.0
"""The longest a page waits for the stores; then 503 (the browser tries again)."""
MAX_FACTS_READ: Final = 100
"""Watchlist versions of the active deployment read for their expiry (newest first)."""


class AlarmCode(enum.StrEnum):
    """An alarm's stable code (the JSON's ``code``); ``ALARM_TEXT`` says it in words."""

    OUTBOX_FULL = "outbox_full"
    CAMERA_DOWN = "camera_down"
    CLOCK_SKEW = "clock_skew"
    UNIT_SILENT = "unit_silent"
    WATCHLIST_EXPIRED = "watchlist_expired"
    WATCHLIST_REFUSED = "watchlist_refused"


ALARM_TEXT: Final = {
    AlarmCode.OUTBOX_FULL: "Outbox full",
    AlarmCode.CAMERA_DOWN: "Camera down",
    AlarmCode.CLOCK_SKEW: "Clock skew",
    AlarmCode.UNIT_SILENT: "Unit silent",
    AlarmCode.WATCHLIST_EXPIRED: "Watchlist expired",
    AlarmCode.WATCHLIST_REFUSED: "Watchlist refused",
}
"""Each alarm's name, the start of its text on the page."""


@dataclass(frozen=True, slots=True)
class Alarm:
    """One alarm on a unit, in words."""

    code: AlarmCode
    """Which alarm."""
    text: str
    """What is wrong, for the operator (plain text; escaped where shown)."""


@dataclass(frozen=True, slots=True)
class UnitRow:
    """Everything the page shows of one unit."""

    unit: str
    """The unit's id (untrusted text: escaped where shown)."""
    enrolled: bool
    """Enrolled at this van now."""
    online: bool
    """Its link is up now."""
    report: HealthReport | None
    """Its newest health report among ``MAX_EVENTS_BACK`` events; None when there is none."""
    view: UnitView | None
    """The board's view of its watchlist; None when the board never heard from it."""
    wanted: int | None
    """The version the board wants it to hold (None: nothing)."""
    expires_at: float | None
    """``not_after`` of the version the board sees it holding, when known."""
    alarms: tuple[Alarm, ...]
    """Its alarms (``unit_alarms``)."""


# -- reading ----------------------------------------------------------------------------------

_unopened = LogBudget(log, "console: stored health reports that do not open")


async def newest_health_report(sources: ConsoleSources, unit: str, *,
                               max_events: int = MAX_EVENTS_BACK,
                               with_audit_head: bool = False) -> HealthReport | None:
    """``find_health_report`` for ``unit`` on the van's blocking pool; reports passed over
    are logged (through a budget: the pages poll)."""
    found = await sources.blocking.run(
        lambda: find_health_report(sources.events, sources.enrolment.lookup, sources.van_key,
                                   unit, max_events=max_events,
                                   with_audit_head=with_audit_head))
    if found.unopened:
        _unopened.warning("console: %d stored health report(s) of unit %s do not open now "
                          "(%s)", found.unopened, printable(unit), printable(found.reason))
    return found.report


async def known_units(sources: ConsoleSources) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(the enrolled units, every unit to show: enrolled, heard of by the board, or linked),
    each sorted. The enrolment file is followed on the pool."""
    enrolled = tuple(unit.unit_id for unit in
                     await sources.blocking.run(sources.enrolment.units))
    shown = sorted({*enrolled, *sources.board.views(), *sources.links.linked_units()})
    return enrolled, tuple(shown)


async def _expiries(sources: ConsoleSources) -> dict[int, float]:
    """not_after of each stored version of the active deployment (newest ``MAX_FACTS_READ``)."""
    deployment = sources.board.deployment
    if deployment is None:
        return {}
    facts = await sources.blocking.run(
        lambda: sources.deployments.watchlist_facts(deployment.id, limit=MAX_FACTS_READ))
    return {fact.version: fact.not_after for fact in facts}


async def unit_rows(sources: ConsoleSources, now: float) -> list[UnitRow]:
    """Every unit's row (module docstring), sorted by unit id."""
    enrolled, units = await known_units(sources)
    enrolled_set = set(enrolled)
    linked = set(sources.links.linked_units())
    views = sources.board.views()
    expiries = await _expiries(sources)
    deployment = sources.board.deployment
    rows = []
    for unit in units:
        report = await newest_health_report(sources, unit)
        view = views.get(unit)
        online = unit in linked
        expires_at = None
        if (view is not None and view.state is HeldState.HELD and deployment is not None
                and view.deployment_id == deployment.id):
            expires_at = expiries.get(view.version)
        rows.append(UnitRow(unit, unit in enrolled_set, online, report, view,
                            sources.board.wanted(unit), expires_at,
                            unit_alarms(report, view, online=online, now=now)))
    return rows


# -- alarms -----------------------------------------------------------------------------------


def unit_alarms(report: HealthReport | None, view: UnitView | None, *, online: bool,
                now: float) -> tuple[Alarm, ...]:
    """The alarms of a unit: outbox full (the report says so), camera down (a camera at 0 fps
    while the unit is online), clock skew (unit clock and receive time more than
    ``CLOCK_SKEW_ALARM_S`` apart), unit silent (online, no report received for more than
    ``SILENT_AFTER_S``), watchlist expired (the board sees it expired) or refused (a refusal of
    a version above the one it holds)."""
    alarms: list[Alarm] = []
    if report is not None:
        body = report.body
        if body.outbox_full:
            alarms.append(Alarm(AlarmCode.OUTBOX_FULL, "Outbox full: the unit holds an alert "
                                "back until the van acknowledges what waits"))
        if online:
            alarms.extend(Alarm(AlarmCode.CAMERA_DOWN, f"Camera down: {camera.camera_id} at "
                                                       "0 fps")
                          for camera in body.cameras if camera.fps <= 0.0)
        skew = body.unit_time - report.received_at
        if abs(skew) > CLOCK_SKEW_ALARM_S:
            side = "ahead of" if skew > 0 else "behind"
            alarms.append(Alarm(AlarmCode.CLOCK_SKEW, f"Clock skew: the unit's clock is "
                                f"{_duration(abs(skew))} {side} the van's"))
    if online:
        if report is None:
            alarms.append(Alarm(AlarmCode.UNIT_SILENT, "Unit silent: online, but the van "
                                "holds no recent health report from it"))
        elif now - report.received_at > SILENT_AFTER_S:
            alarms.append(Alarm(AlarmCode.UNIT_SILENT, f"Unit silent: online, but no health "
                                f"report for {_duration(now - report.received_at)}"))
    if view is not None:
        if view.state is HeldState.EXPIRED:
            alarms.append(Alarm(AlarmCode.WATCHLIST_EXPIRED, f"Watchlist expired: version "
                                f"{view.version} reached its not-after; the unit scans nothing"))
        held = view.version if view.state is HeldState.HELD else 0
        if view.refused_version and view.refused_version > held:
            alarms.append(Alarm(AlarmCode.WATCHLIST_REFUSED, f"Watchlist refused: version "
                                f"{view.refused_version}: {view.refused_reason or 'no reason'}"))
    return tuple(alarms)


# -- texts ------------------------------------------------------------------------------------


def utc_text(epoch_s: float) -> str:
    """``epoch_s`` as ``2027-01-15 08:00:00 UTC``."""
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch_s))


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def age_text(then: float, now: float) -> str:
    """How long before ``now`` ``then`` was: ``4 s ago``, ``3 min ago``; ``in 5 s`` for a time
    ahead (a clock stepped back)."""
    if then > now + 1:
        return f"in {_duration(then - now)}"
    return f"{_duration(now - then)} ago"


COLUMNS: Final = (
    ("link", "Link"),
    ("report", "Last health report"),
    ("cameras", "Cameras"),
    ("faces", "Faces"),
    ("outbox", "Outbox"),
    ("watchlist", "Watchlist"),
    ("alarms", "Alarms"),
)
"""The table's columns after the unit's: (key in the JSON's ``cells``, heading)."""


def row_cells(row: UnitRow, now: float) -> dict[str, list[str]]:
    """Each column's lines of plain text (escaped where rendered): the page and the JSON show
    the same words."""
    report = row.report
    cells: dict[str, list[str]] = {
        "link": ["online" if row.online else "offline",
                 *([] if row.enrolled else ["not enrolled"])],
    }
    if report is None:
        none = "none among its newest events" if row.enrolled or row.view else "none"
        cells["report"] = [none]
        cells["cameras"] = cells["faces"] = cells["outbox"] = ["-"]
    else:
        body = report.body
        cells["report"] = [f"made {utc_text(body.unit_time)} (unit clock)",
                           f"received {age_text(report.received_at, now)}",
                           f"alerts since start: {body.alerts:,}"]
        cells["cameras"] = [f"{camera.camera_id}: {camera.fps:.1f} fps, "
                            f"{camera.frames:,} frames" for camera in body.cameras] or [
                                "no camera"]
        cells["faces"] = [f"seen {body.faces_seen:,}", f"rejected {body.faces_rejected:,}"]
        outbox = [f"{body.outbox_depth:,} waiting"]
        if body.outbox_oldest_age_s is not None:
            outbox.append(f"oldest {_duration(body.outbox_oldest_age_s)}")
        if body.outbox_full:
            outbox.append("FULL")
        cells["outbox"] = outbox
    cells["watchlist"] = _watchlist_lines(row, now)
    cells["alarms"] = [alarm.text for alarm in row.alarms] or ["none"]
    return cells


def _watchlist_lines(row: UnitRow, now: float) -> list[str]:
    lines = []
    if row.report is not None:
        held = row.report.body.watchlist_version
        lines.append(f"reports holding version {held}" if held else "reports holding none")
    view = row.view
    if view is None:
        lines.append("never polled for a watchlist")
    else:
        state = view.state.value
        if view.version:
            lines.append(f"board: {state} version {view.version} of {view.deployment_id} "
                         f"({view.subjects:,} subjects)")
        else:
            lines.append(f"board: {state}")
        if view.refused_version:
            lines.append(f"last refused version {view.refused_version}: "
                         f"{view.refused_reason or 'no reason'}")
        if view.last_poll:
            lines.append(f"last poll {age_text(view.last_poll, now)}")
    lines.append(f"must hold version {row.wanted}" if row.wanted else "must hold none")
    if row.expires_at is not None:
        lines.append(f"expires {utc_text(row.expires_at)}")
    return lines


def row_json(row: UnitRow, now: float) -> dict[str, object]:
    """One unit as JSON: the raw facts, its alarms and the display ``cells``."""
    report = None
    if row.report is not None:
        body = row.report.body
        report = {
            "seq": row.report.seq, "received_at": row.report.received_at,
            "unit_time": body.unit_time, "uptime_s": body.uptime_s,
            "cameras": [{"camera_id": c.camera_id, "fps": c.fps, "frames": c.frames}
                        for c in body.cameras],
            "faces_seen": body.faces_seen, "faces_rejected": body.faces_rejected,
            "alerts": body.alerts, "outbox_depth": body.outbox_depth,
            "outbox_oldest_age_s": body.outbox_oldest_age_s, "outbox_full": body.outbox_full,
            "watchlist_version": body.watchlist_version,
        }
    view = None
    if row.view is not None:
        view = {"state": row.view.state.value, "deployment": row.view.deployment_id,
                "version": row.view.version, "subjects": row.view.subjects,
                "refused_version": row.view.refused_version,
                "refused_reason": row.view.refused_reason, "last_poll": row.view.last_poll}
    return {"unit": row.unit, "enrolled": row.enrolled, "online": row.online,
            "report": report, "watchlist": view, "wanted": row.wanted,
            "expires_at": row.expires_at,
            "alarms": [{"code": alarm.code.value, "text": alarm.text} for alarm in row.alarms],
            "cells": row_cells(row, now)}


def summary_text(rows: Sequence[UnitRow]) -> str:
    """``3 units: 2 online, 1 with alarms``."""
    online = sum(1 for row in rows if row.online)
    alarmed = sum(1 for row in rows if row.alarms)
    return (f"{len(rows)} unit{'' if len(rows) == 1 else 's'}: {online} online, "
            f"{alarmed} with alarms")


# -- the page ---------------------------------------------------------------------------------


def _lines_html(lines: Sequence[str]) -> str:
    return "<br>".join(html.escape(line) for line in lines)


def _table_html(rows: Sequence[UnitRow], now: float) -> str:
    head = "".join(f'<th scope="col">{html.escape(title)}</th>' for _, title in COLUMNS)
    body = []
    for row in rows:
        cells = row_cells(row, now)
        tds = []
        for key, _ in COLUMNS:
            if key == "alarms" and row.alarms:
                items = "".join(f"<li><strong>{html.escape(alarm.text)}</strong></li>"
                                for alarm in row.alarms)
                tds.append(f'<td><ul class="alarms">{items}</ul></td>')
            else:
                tds.append(f"<td>{_lines_html(cells[key])}</td>")
        body.append(f'<tr><th scope="row">{html.escape(row.unit)}</th>{"".join(tds)}</tr>')
    empty = ("" if rows else f'<tr><td colspan="{len(COLUMNS) + 1}">No unit is enrolled and '
             "none has been heard from.</td></tr>")
    return (f'<table class="units"><caption>Camera units</caption><thead><tr>'
            f'<th scope="col">Unit</th>{head}</tr></thead>'
            f'<tbody id="units-rows">{"".join(body)}{empty}</tbody></table>')


class UnitsPage:
    """``GET /units`` and ``GET /units.json`` (module docstring)."""

    def __init__(self, sources: ConsoleSources, clock: Callable[[], float]) -> None:
        self._sources = sources
        self._clock = clock

    async def _rows(self) -> tuple[list[UnitRow], float]:
        now = self._clock()
        try:
            async with asyncio.timeout(PAGE_WAIT_S):
                return await unit_rows(self._sources, now), now
        except TimeoutError:
            raise web.HTTPServiceUnavailable(text="the van's stores did not answer in time; "
                                                  "try again\n",
                                             headers={"Retry-After": "5"}) from None

    async def page(self, request: web.Request) -> web.StreamResponse:
        """GET /units."""
        rows, now = await self._rows()
        main = (
            f'<p id="units-summary" aria-live="polite">{html.escape(summary_text(rows))}</p>'
            f'<p>Updated <span id="units-updated">{html.escape(utc_text(now))}</span>; the '
            "table refreshes every 5 seconds.</p>"
            f"{_table_html(rows, now)}"
            "<h2>Alarms</h2><ul>"
            "<li><strong>Outbox full</strong>: the unit's outbox refused an alert; it waits on "
            "the unit.</li>"
            "<li><strong>Camera down</strong>: a camera at 0 frames per second while the unit "
            "is online.</li>"
            f"<li><strong>Clock skew</strong>: the unit's clock is more than "
            f"{CLOCK_SKEW_ALARM_S:.0f} s from the van's.</li>"
            f"<li><strong>Unit silent</strong>: online, but no health report for more than "
            f"{SILENT_AFTER_S:.0f} s.</li>"
            "<li><strong>Watchlist expired</strong> or <strong>refused</strong>: the unit "
            "holds no usable watchlist; see the Watchlist page.</li></ul>")
        return shell_page(request, "Units", main, scripts=("/static/units.js",))

    async def json(self, request: web.Request) -> web.StreamResponse:
        """GET /units.json."""
        del request  # the session was checked by the middleware and PageRoute.role
        rows, now = await self._rows()
        return web.json_response({
            "generated_at": now, "updated": utc_text(now), "summary": summary_text(rows),
            "columns": [{"key": key, "title": title} for key, title in COLUMNS],
            "units": [row_json(row, now) for row in rows]})


def routes(sources: ConsoleSources, *,
           clock: Callable[[], float] = time.time) -> list[PageRoute]:
    """The Units page's routes; ``clock`` gives the van's time (s since the epoch)."""
    page = UnitsPage(sources, clock)
    return [PageRoute("GET", "/units", page.page), PageRoute("GET", "/units.json", page.json)]
