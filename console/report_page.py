"""The console's Deployment report page and its CSV (issue 10, "Deployment report").

Routes (``routes(sources, reviews)``; role operator):

=====================================  ======================================================
 ``GET /report``                        the report, server-rendered (no script)
 ``GET /report.csv``                    the same figures and the series, as a CSV attachment
=====================================  ======================================================

Both take ``?deployment=ID`` for a past deployment (default: the active one, or the last
started; ``console.report``); an id that is not a deployment id is 400, one the van does not
hold 404. The page has a form to choose among the ``RECENT_DEPLOYMENTS`` newest deployments (a
plain GET form: it changes nothing); the figures in a table with row headers; the false-alert
rate in words (``console.report.false_alert_sentence``); a chart of faces scanned and alerts
over time drawn on the server as inline SVG (``<rect>``, ``<line>`` and ``<text>`` with classes
styled by ``/static/report.css``: no script and no ``style`` attribute, which the CSP forbids),
labelled for screen readers (``role="img"``, a title and a description) and followed by its
figures as a table, its text alternative; the units' figures and the watchlist versions. It
prints as a report: ``report.css`` leaves out the navigation, the form and the links.

The CSV (``report_csv``) has three blocks, separated by an empty row: ``field,value`` rows of the
figures, one row per unit, one row per bucket of the series. Times are ISO 8601 UTC, counts
exact integers, rates ``repr`` of the float (empty when no face was scanned). Every cell that a
spreadsheet could take for a formula (starting with ``=``, ``+``, ``-``, ``@``, a tab or a
carriage return) is prefixed with ``'`` (CSV injection: unit and deployment ids are chosen by
whoever enrolled them). It is sent with ``Content-Disposition: attachment``.

Reports are computed by ``console.report.DeploymentReports`` on the van's worker pool and kept
10 s, so a refresh does not compute again; a page waits at most ``REPORT_WAIT_S`` for its report
(503 with ``Retry-After`` otherwise: the work done so far is kept for the next request). Every
text from a unit or an operator (ids) is escaped before it is put in HTML. GET changes nothing.
"""

from __future__ import annotations

import asyncio
import csv
import html
import io
import re
import time
from collections.abc import Callable, Sequence
from typing import Final
from urllib.parse import quote

from aiohttp import web

from actors.van.deployment_store import Deployment
from actors.van.review_store import ReviewStore
from console.app import PageRoute, shell_page
from console.report import (
    DeploymentReport,
    DeploymentReports,
    ReportConfig,
    ReportNotFound,
    ReportSources,
    count_text,
    false_alert_sentence,
    significant_text,
)
from console.sources import ConsoleSources
from console.units_page import utc_text
from guards.log_text import printable
from secure.node_keys import NodeIdError, check_node_id

RECENT_DEPLOYMENTS: Final = 20
"""Deployments offered in the page's form, newest first."""
REPORT_WAIT_S: Final = 60.0
"""The longest a request waits for its report; then 503 (the work done so far is kept)."""
RETRY_AFTER_S: Final = 5
"""``Retry-After`` of that 503."""
FORMULA_STARTS: Final = ("=", "+", "-", "@", "\t", "\r")
"""A CSV cell starting with one of these is prefixed with ``'`` (a spreadsheet formula)."""
_TITLE: Final = "Deployment report"
_FILE_NAME_UNSAFE: Final = re.compile(r"[^A-Za-z0-9._-]")


def routes(sources: ConsoleSources, reviews: ReviewStore, *,
           clock: Callable[[], float] = time.time,
           config: ReportConfig | None = None) -> list[PageRoute]:
    """The report's routes (module docstring) over the van's ``sources`` and the officers'
    decisions in ``reviews``; ``clock`` gives the van's time (s since the epoch)."""
    reports = DeploymentReports(
        ReportSources(sources.events, sources.deployments, reviews, sources.enrolment.lookup,
                      sources.van_key),
        sources.blocking, config=config, clock=clock)
    page = ReportPage(sources, reports)
    return [PageRoute("GET", "/report", page.page), PageRoute("GET", "/report.csv", page.csv)]


class _BadDeployment(Exception):
    """``?deployment=`` is not a deployment id."""


def _wanted(request: web.Request) -> str | None:
    """The deployment asked for: None for the default one; ``_BadDeployment`` if malformed."""
    text = request.query.get("deployment", "")
    if text == "":
        return None
    try:
        return check_node_id(text, "deployment id")
    except NodeIdError as exc:
        raise _BadDeployment(str(exc)) from None


class ReportPage:
    """``GET /report`` and ``GET /report.csv`` (module docstring)."""

    def __init__(self, sources: ConsoleSources, reports: DeploymentReports) -> None:
        self._sources = sources
        self._reports = reports

    async def _report(self, wanted: str | None) -> DeploymentReport:
        try:
            async with asyncio.timeout(REPORT_WAIT_S):
                return await self._reports.report(wanted)
        except TimeoutError:
            read = self._reports.progress()
            raise web.HTTPServiceUnavailable(
                text=f"the report is still being computed ({read:,} events read so far); "
                     "try again in a few seconds\n",
                headers={"Retry-After": str(RETRY_AFTER_S)}) from None

    async def page(self, request: web.Request) -> web.StreamResponse:
        """GET /report."""
        try:
            wanted = _wanted(request)
        except _BadDeployment as exc:
            recent = await self._recent()
            return shell_page(request, _TITLE, _STYLE + _chooser_html(recent, None)
                              + _problem_html(str(exc)), status=400)
        recent = await self._recent()
        try:
            report = await self._report(wanted)
        except ReportNotFound as exc:
            return shell_page(request, _TITLE, _STYLE + _chooser_html(recent, None)
                              + _problem_html(f"No report: {exc}."),
                              status=200 if wanted is None else 404)
        return shell_page(request, _TITLE, _STYLE + _chooser_html(recent, report.deployment_id)
                          + report_html(report))

    async def csv(self, request: web.Request) -> web.StreamResponse:
        """GET /report.csv."""
        try:
            wanted = _wanted(request)
        except _BadDeployment as exc:
            raise web.HTTPBadRequest(text=f"{printable(exc)}\n") from None
        try:
            report = await self._report(wanted)
        except ReportNotFound as exc:
            raise web.HTTPNotFound(text=f"no report: {printable(exc)}\n") from None
        name = _FILE_NAME_UNSAFE.sub("_", report.deployment_id)
        return web.Response(
            text=report_csv(report), content_type="text/csv", charset="utf-8",
            headers={"Content-Disposition":
                     f'attachment; filename="lfr-report-{name}.csv"'})

    async def _recent(self) -> list[Deployment]:
        try:
            async with asyncio.timeout(REPORT_WAIT_S):
                return await self._sources.blocking.run(
                    self._sources.deployments.deployments, RECENT_DEPLOYMENTS)
        except TimeoutError:
            raise web.HTTPServiceUnavailable(text="the deployment store did not answer in "
                                                  "time; try again\n",
                                             headers={"Retry-After": str(RETRY_AFTER_S)}
                                             ) from None


# -- the page's HTML --------------------------------------------------------------------------

_STYLE: Final = '<link rel="stylesheet" href="/static/report.css">'


def _problem_html(text: str) -> str:
    return f'<p class="error" role="alert">{html.escape(text)}</p>'


def _deployment_label(deployment: Deployment) -> str:
    state = "active" if deployment.active else "ended"
    return f"{deployment.id} ({state}, started {utc_text(deployment.started_at)})"


def _chooser_html(recent: Sequence[Deployment], chosen: str | None) -> str:
    """The form choosing the deployment (a GET: it changes nothing)."""
    if not recent:
        return ""
    options = []
    ids = [deployment.id for deployment in recent]
    if chosen is not None and chosen not in ids:  # an older one, named in the address
        options.append(f'<option value="{html.escape(chosen)}" selected>'
                       f"{html.escape(chosen)}</option>")
    for deployment in recent:
        selected = " selected" if deployment.id == chosen else ""
        options.append(f'<option value="{html.escape(deployment.id)}"{selected}>'
                       f"{html.escape(_deployment_label(deployment))}</option>")
    return ('<form class="report-choose" method="get" action="/report">'
            '<label for="report-deployment">Deployment</label>'
            f'<select id="report-deployment" name="deployment">{"".join(options)}</select>'
            '<button type="submit">Show its report</button></form>')


def _short_time(epoch_s: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(epoch_s))


def _duration_text(seconds: float) -> str:
    minutes = round(seconds / 60)
    if minutes < 120:
        return count_text(minutes, "minute", "minutes")
    hours = minutes / 60
    return f"{hours:,.1f} hours"


def _bucket_text(bucket_s: int) -> str:
    if bucket_s < 3600:
        return count_text(bucket_s // 60, "minute", "minutes")
    if bucket_s < 86400:
        return count_text(bucket_s // 3600, "hour", "hours")
    return count_text(bucket_s // 86400, "day", "days")


def _watchlist_text(report: DeploymentReport) -> str:
    if not report.watchlists:
        return "none pushed"
    latest = report.watchlists[-1]
    versions = ", ".join(str(w.version) for w in report.watchlists)
    return (f"version {latest.version}: {count_text(latest.subject_count, 'subject', 'subjects')}"
            f" (versions pushed: {versions})")


def figure_rows(report: DeploymentReport) -> list[tuple[str, str]]:
    """The figures table's rows: (heading, value), plain text."""
    ended = (utc_text(report.ended_at) if report.ended_at is not None
             else f"still active; figures up to {utc_text(report.window_end)}")
    per_1000 = report.false_alerts_per_1000
    units = ", ".join(unit.unit for unit in report.units) or "none"
    return [
        ("Deployment", report.deployment_id),
        ("Started", utc_text(report.started_at)),
        ("Ended", ended),
        ("Length", _duration_text(report.window_end - report.started_at)),
        ("Alert threshold", f"{report.threshold:.2f}"),
        ("Watchlist", _watchlist_text(report)),
        ("Watchlist size", "none pushed" if report.subject_count is None
         else count_text(report.subject_count, "subject", "subjects")),
        ("Units taking part", f"{len(report.units):,}: {units}"),
        ("Faces scanned", f"{report.faces_scanned:,}"),
        ("Alerts", f"{report.alerts:,}"),
        ("Confirmed", f"{report.confirmed:,}"),
        ("Dismissed (false alerts)", f"{report.dismissed:,}"),
        ("Cannot tell", f"{report.cannot_tell:,}"),
        ("Undecided", f"{report.undecided:,}"),
        ("False-alert rate", "no faces scanned" if per_1000 is None
         else f"{significant_text(per_1000)} per 1,000 faces scanned"),
    ]


def _figures_html(report: DeploymentReport) -> str:
    rows = "".join(f'<tr><th scope="row">{html.escape(name)}</th><td>{html.escape(value)}</td>'
                   "</tr>" for name, value in figure_rows(report))
    return (f'<table class="report-figures"><caption>Figures of deployment '
            f"{html.escape(report.deployment_id)}</caption><tbody>{rows}</tbody></table>")


def _units_html(report: DeploymentReport) -> str:
    if not report.units:
        return "<p>No unit sent anything in this deployment's time.</p>"
    rows = "".join(
        f'<tr><th scope="row">{html.escape(unit.unit)}</th>'
        f'<td class="num">{unit.faces_scanned:,}</td><td class="num">{unit.alerts:,}</td>'
        f'<td class="num">{unit.health_reports:,}</td><td class="num">{unit.restarts:,}</td>'
        "</tr>" for unit in report.units)
    return ('<table class="report-table"><caption>Each unit</caption><thead><tr>'
            '<th scope="col">Unit</th><th scope="col">Faces scanned</th>'
            '<th scope="col">Alerts</th><th scope="col">Health reports</th>'
            '<th scope="col">Restarts seen</th></tr></thead>'
            f"<tbody>{rows}</tbody></table>")


def _watchlists_html(report: DeploymentReport) -> str:
    if not report.watchlists:
        return "<p>No watchlist was pushed in this deployment.</p>"
    rows = "".join(f'<tr><th scope="row">{w.version}</th><td class="num">{w.subject_count:,}'
                   f"</td><td>{html.escape(utc_text(w.pushed_at))}</td></tr>"
                   for w in report.watchlists)
    return ('<table class="report-table"><caption>Watchlist versions</caption><thead><tr>'
            '<th scope="col">Version</th><th scope="col">Subjects</th>'
            f'<th scope="col">Pushed</th></tr></thead><tbody>{rows}</tbody></table>')


def _series_html(report: DeploymentReport) -> str:
    rows = "".join(
        f'<tr><th scope="row">{html.escape(_short_time(b.start))} to '
        f"{html.escape(_short_time(b.end))}</th>"
        f'<td class="num">{b.faces_scanned:,}</td><td class="num">{b.alerts:,}</td></tr>'
        for b in report.series)
    return ('<table class="report-table report-series" id="report-series"><caption>Faces '
            f"scanned and alerts per {html.escape(_bucket_text(report.bucket_s))} (UTC)"
            '</caption><thead><tr><th scope="col">Interval</th>'
            '<th scope="col">Faces scanned</th><th scope="col">Alerts</th></tr></thead>'
            f"<tbody>{rows}</tbody></table>")


# The chart's geometry, in SVG user units (the viewBox scales it to the page).
_WIDTH: Final = 960
_LEFT: Final = 110
_RIGHT: Final = 20
_FACES_TOP: Final = 40
_FACES_HEIGHT: Final = 180
_ALERTS_TOP: Final = 290
_ALERTS_HEIGHT: Final = 100
_HEIGHT: Final = 440


def _panel_svg(values: Sequence[int], labels: Sequence[str], *, top: int, height: int,
               title: str, css_class: str, unit: tuple[str, str]) -> str:
    """One panel of bars: its title, the baseline, the most in one bucket and a bar per
    non-empty bucket (each with a tooltip)."""
    plot_width = _WIDTH - _LEFT - _RIGHT
    most = max(values, default=0)
    base = top + height
    parts = [
        (f'<text class="report-chart-title" x="{_LEFT}" y="{top - 12}">'
         f"{html.escape(title)}</text>"),
        (f'<text class="report-chart-label" x="{_LEFT - 8}" y="{top + 6}" '
         f'text-anchor="end">{most:,}</text>'),
        (f'<text class="report-chart-label" x="{_LEFT - 8}" y="{base}" '
         'text-anchor="end">0</text>'),
        (f'<line class="report-axis" x1="{_LEFT}" y1="{base}" x2="{_WIDTH - _RIGHT}" '
         f'y2="{base}"/>'),
    ]
    slot = plot_width / max(1, len(values))
    gap = min(2.0, slot / 4)
    for index, (value, label) in enumerate(zip(values, labels, strict=True)):
        if value <= 0:
            continue
        bar = max(1.0, value / most * height)
        x = _LEFT + index * slot + gap
        parts.append(
            f'<rect class="{css_class}" x="{x:.2f}" y="{base - bar:.2f}" '
            f'width="{max(0.5, slot - 2 * gap):.2f}" height="{bar:.2f}">'
            f"<title>{html.escape(label)}: {html.escape(count_text(value, *unit))}</title>"
            "</rect>")
    if most == 0:
        parts.append(f'<text class="report-chart-label" x="{_LEFT + 10}" y="{base - 10}">'
                     f"none</text>")
    return "".join(parts)


def chart_svg(report: DeploymentReport) -> str:
    """The chart (module docstring): faces scanned above, alerts below, per bucket."""
    labels = [f"{_short_time(b.start)} to {_short_time(b.end)} UTC" for b in report.series]
    per = _bucket_text(report.bucket_s)
    faces = [b.faces_scanned for b in report.series]
    alerts = [b.alerts for b in report.series]
    first = report.series[0].start if report.series else report.started_at
    last = report.series[-1].end if report.series else report.window_end
    description = (
        f"Bars per {per} from {_short_time(first)} to {_short_time(last)} UTC. Above: faces "
        f"scanned, at most {max(faces, default=0):,} in one interval, "
        f"{report.faces_scanned:,} in all. Below: alerts, at most {max(alerts, default=0):,} in "
        f"one interval, {report.alerts:,} in all. The table after the chart has every figure.")
    return (
        f'<svg class="report-chart" viewBox="0 0 {_WIDTH} {_HEIGHT}" role="img" '
        'aria-labelledby="report-chart-title report-chart-desc" '
        'xmlns="http://www.w3.org/2000/svg">'
        f'<title id="report-chart-title">Faces scanned and alerts per {html.escape(per)}'
        "</title>"
        f'<desc id="report-chart-desc">{html.escape(description)}</desc>'
        + _panel_svg(faces, labels, top=_FACES_TOP, height=_FACES_HEIGHT,
                     title=f"Faces scanned per {per}", css_class="report-bar-faces",
                     unit=("face scanned", "faces scanned"))
        + _panel_svg(alerts, labels, top=_ALERTS_TOP, height=_ALERTS_HEIGHT,
                     title=f"Alerts per {per}", css_class="report-bar-alerts",
                     unit=("alert", "alerts"))
        + f'<text class="report-chart-label" x="{_LEFT}" y="{_HEIGHT - 12}">'
        f"{html.escape(_short_time(first))}</text>"
        f'<text class="report-chart-label" x="{_WIDTH - _RIGHT}" y="{_HEIGHT - 12}" '
        f'text-anchor="end">{html.escape(_short_time(last))} UTC</text>'
        "</svg>")


def _notes_html(report: DeploymentReport) -> str:
    notes = []
    if report.cut_short:
        notes.append(
            f'<p class="report-warning" role="status"><strong>Cut short:</strong> the report '
            f"read at most {report.events_read:,} events, newest first, so the figures cover "
            f"only what was received from {html.escape(utc_text(report.covered_from))} on, "
            "not the whole deployment.</p>")
    if report.unreadable_health_reports:
        notes.append(
            f'<p class="report-warning"><strong>Note:</strong> '
            f"{count_text(report.unreadable_health_reports, 'health report', 'health reports')}"
            " of this deployment no longer open (a unit's enrolment was revoked, or a stored "
            "row is damaged): the faces they counted are included only where a later report "
            "of the same unit counts them.</p>")
    return "".join(notes)


def report_html(report: DeploymentReport) -> str:
    """The report's part of the page (below the form)."""
    shown = html.escape(report.deployment_id)
    state = "active" if report.active else "ended"
    csv_url = f"/report.csv?deployment={quote(report.deployment_id, safe='')}"
    return (
        f"<h2>Deployment {shown} ({state})</h2>"
        f'<p class="report-rate"><strong>{html.escape(false_alert_sentence(report))}.</strong>'
        "</p>"
        f"{_notes_html(report)}"
        '<p class="report-actions">'
        f'<a href="{html.escape(csv_url)}" download>Download this report as CSV</a>. '
        "To print it, use the browser's Print command (Ctrl+P): the navigation, the form and "
        "the links are left out of the printout.</p>"
        f"<p>Figures as of {html.escape(utc_text(report.generated_at))}. Faces scanned come "
        "from the units' health reports; the false-alert rate is the dismissed alerts divided "
        "by the faces scanned.</p>"
        f"{_figures_html(report)}"
        '<h2 id="report-chart-heading">Faces scanned and alerts over time</h2>'
        f'<figure class="report-figure">{chart_svg(report)}<figcaption>Faces scanned (above) '
        f"and alerts (below) per {html.escape(_bucket_text(report.bucket_s))}; the same "
        "figures are in the table that follows.</figcaption></figure>"
        f"{_series_html(report)}"
        "<h2>Units</h2>"
        f"{_units_html(report)}"
        "<h2>Watchlist</h2>"
        f"{_watchlists_html(report)}")


# -- the CSV ----------------------------------------------------------------------------------


def csv_cell(value: object) -> str:
    """``value`` as a CSV cell a spreadsheet will not run: text starting with a formula
    character is prefixed with ``'``."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def _iso(epoch_s: float | None) -> str:
    if epoch_s is None:
        return ""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch_s))


def report_rows(report: DeploymentReport) -> list[list[object]]:
    """The CSV's rows before quoting (module docstring)."""
    rows: list[list[object]] = [
        ["field", "value"],
        ["deployment", report.deployment_id],
        ["status", "active" if report.active else "ended"],
        ["started_at", _iso(report.started_at)],
        ["ended_at", _iso(report.ended_at)],
        ["figures_until", _iso(report.window_end)],
        ["threshold", report.threshold],
        ["watchlist_versions", " ".join(str(w.version) for w in report.watchlists)],
        ["watchlist_subjects", report.subject_count],
        ["units", len(report.units)],
        ["faces_scanned", report.faces_scanned],
        ["alerts", report.alerts],
        ["confirmed", report.confirmed],
        ["dismissed", report.dismissed],
        ["cannot_tell", report.cannot_tell],
        ["undecided", report.undecided],
        ["false_alert_rate", report.false_alert_rate],
        ["false_alerts_per_1000_faces", report.false_alerts_per_1000],
        ["cut_short", "yes" if report.cut_short else "no"],
        ["covered_from", _iso(report.covered_from)],
        ["events_read", report.events_read],
        ["unreadable_health_reports", report.unreadable_health_reports],
        ["generated_at", _iso(report.generated_at)],
        [],
        ["unit", "faces_scanned", "alerts", "health_reports", "restarts"],
    ]
    rows.extend([unit.unit, unit.faces_scanned, unit.alerts, unit.health_reports,
                 unit.restarts] for unit in report.units)
    rows.append([])
    rows.append(["bucket_start", "bucket_end", "faces_scanned", "alerts"])
    rows.extend([_iso(b.start), _iso(b.end), b.faces_scanned, b.alerts] for b in report.series)
    return rows


def report_csv(report: DeploymentReport) -> str:
    """The report as CSV text (module docstring), every cell through ``csv_cell``."""
    out = io.StringIO()
    writer = csv.writer(out)
    for row in report_rows(report):
        writer.writerow([csv_cell(value) for value in row])
    return out.getvalue()
