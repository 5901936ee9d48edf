"""The Deployment report page and its CSV (``console.report_page``) served by the console app
on loopback and read like a browser, over a van of real parts (``console_van``: enrolled units
with real keys, an event store of sealed envelopes, a deployment store) and a real review store.
Each test names the rule it guards."""

from __future__ import annotations

import csv
import html
import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from actors.unit.event_body import CameraHealth, HealthBody
from actors.van.review_store import ReviewStore
from console import report_page
from console.report import ReportConfig
from console.report_page import csv_cell
from tests.actors.van.delivery_support import alert
from tests.actors.van.test_watchlist_board import NOW
from tests.console.support import (
    OPERATOR,
    Client,
    FakeClock,
    console_client,
    inline_code,
    signed_in,
)
from tests.console.test_units_page import ODD_UNIT, ConsoleVan, console_van

HTML = {"Accept": "text/html"}


def health(faces_seen: int, *, at: float, uptime_s: float = 10_000.0) -> HealthBody:
    return HealthBody(unit_time=at, uptime_s=uptime_s, cameras=(CameraHealth("cam0", 25.0, 10),),
                      faces_seen=faces_seen, faces_rejected=0, alerts=0, outbox_depth=0,
                      outbox_oldest_age_s=None, outbox_full=False, watchlist_version=1,
                      model_ids=("m1",))


def push(van: ConsoleVan, deployment: str, version: int, subjects: int) -> None:
    van.deployments.put_watchlist(deployment, version, b"signed" * 10, subject_count=subjects,
                                  payload_sha256=f"{version:064x}", not_before=NOW,
                                  not_after=NOW + 86400, now=NOW + version)


@asynccontextmanager
async def report_console(tmp_path: Path, *units: str, config: ReportConfig | None = None
                         ) -> AsyncIterator[tuple[ConsoleVan, ReviewStore, Client]]:
    """A van with ``units`` enrolled, its review store, and a browser signed in as an operator
    to a console serving the report's routes."""
    async with console_van(tmp_path, *units) as van:
        reviews = ReviewStore.open(van.events.path.parent)
        try:
            pages = report_page.routes(van.sources, reviews, clock=van.clock, config=config)
            async with console_client(van.users, FakeClock(), pages=pages) as client:
                await signed_in(client, *OPERATOR)
                yield van, reviews, client
        finally:
            reviews.close()


def one_deployment(van: ConsoleVan, reviews: ReviewStore, deployment: str = "dep-1",
                   unit: str = "unit-1") -> None:
    """``deployment`` from NOW: 1,204 faces scanned by ``unit``, three alerts (two dismissed,
    one undecided); the van's clock at NOW + 120 s."""
    van.deployments.start_deployment(deployment, 0.6, now=NOW)
    push(van, deployment, 1, 12)
    van.store(unit, health(100, at=NOW + 10), received_at=NOW + 10)
    first = van.store(unit, alert(1, captured_at=NOW + 29), received_at=NOW + 30)
    second = van.store(unit, alert(2, captured_at=NOW + 39), received_at=NOW + 40)
    van.store(unit, alert(3, captured_at=NOW + 49), received_at=NOW + 50)
    van.store(unit, health(1304, at=NOW + 70), received_at=NOW + 70)
    for seq in (first, second):
        reviews.record(unit, seq, "dismissed", operator="olive", role="operator",
                       deployment_id=deployment)
    van.clock.now = NOW + 120


async def page_text(client: Client, path: str, status: int = 200) -> str:
    answer = await client.get(path, headers=HTML, allow_redirects=False)
    text = await answer.text()
    assert answer.status == status, (answer.status, text[:500])
    return text


def csv_rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


# -- the page ---------------------------------------------------------------------------------


async def test_the_page_shows_the_figures_the_rate_in_words_and_a_chart(
        tmp_path: Path) -> None:
    async with report_console(tmp_path, "unit-1") as (van, reviews, client):
        one_deployment(van, reviews)
        page = await page_text(client, "/report")
        stylesheet = await client.get("/static/report.css")
        css = await stylesheet.text()
    assert "<strong>2 false alerts in 1,204 faces scanned: 1.66 per 1,000 faces.</strong>" in page
    for name, value in (("Deployment", "dep-1"), ("Faces scanned", "1,204"), ("Alerts", "3"),
                        ("Confirmed", "0"), ("Dismissed (false alerts)", "2"),
                        ("Cannot tell", "0"), ("Undecided", "1"), ("Alert threshold", "0.60"),
                        ("Watchlist size", "12 subjects"), ("Units taking part", "1: unit-1"),
                        ("False-alert rate", "1.66 per 1,000 faces scanned"),
                        ("Started", "2027-01-15 08:00:00 UTC")):
        assert f'<th scope="row">{html.escape(name)}</th><td>{html.escape(value)}</td>' in page
    assert "still active; figures up to 2027-01-15 08:02:00 UTC" in page
    # The chart: inline SVG, labelled, bars per bucket, and its figures as a table.
    assert ('<svg class="report-chart" viewBox="0 0 960 440" role="img" '
            'aria-labelledby="report-chart-title report-chart-desc"') in page
    assert '<title id="report-chart-title">Faces scanned and alerts per 1 minute</title>' in page
    assert page.count('<rect class="report-bar-faces"') == 1  # all 1,204 came in minute 2
    assert page.count('<rect class="report-bar-alerts"') == 1  # all three in minute 1
    assert "2027-01-15 08:01 to 2027-01-15 08:02 UTC: 1,204 faces scanned" in page
    assert ('<th scope="row">2027-01-15 08:00 to 2027-01-15 08:01</th>'
            '<td class="num">0</td><td class="num">3</td>') in page
    assert ('<th scope="row">2027-01-15 08:01 to 2027-01-15 08:02</th>'
            '<td class="num">1,204</td><td class="num">0</td>') in page
    assert '<th scope="row">unit-1</th><td class="num">1,204</td><td class="num">3</td>' in page
    assert '<a href="/report.csv?deployment=dep-1" download>' in page
    assert '<link rel="stylesheet" href="/static/report.css">' in page
    # The CSP forbids inline script and style attributes: the page has neither.
    assert inline_code(page).found == []
    assert "style=" not in page
    assert stylesheet.status == 200
    print_rules = css[css.index("@media print"):]
    assert ".top nav" in print_rules
    assert ".report-choose" in print_rules
    assert "button" in print_rules


async def test_a_past_deployment_is_chosen_from_the_form_or_named_in_the_address(
        tmp_path: Path) -> None:
    async with report_console(tmp_path, "unit-1") as (van, reviews, client):
        one_deployment(van, reviews)
        van.deployments.end_deployment(now=NOW + 200)
        van.deployments.start_deployment("dep-2", 0.7, now=NOW + 300)
        van.clock.now = NOW + 400
        latest = await page_text(client, "/report")
        past = await page_text(client, "/report?deployment=dep-1")
        unknown = await page_text(client, "/report?deployment=dep-9", status=404)
        malformed = await page_text(client, "/report?deployment=" + "x" * 65, status=400)
        star = await page_text(client, "/report?deployment=*", status=400)
    assert "<h2>Deployment dep-2 (active)</h2>" in latest
    assert "0 false alerts; no faces scanned, so there is no false-alert rate." in latest
    assert '<th scope="row">False-alert rate</th><td>no faces scanned</td>' in latest
    assert '<option value="dep-2" selected>dep-2 (active, started 2027-01-15 08:05:00 UTC)' in (
        latest)
    assert "<h2>Deployment dep-1 (ended)</h2>" in past
    assert '<option value="dep-1" selected>dep-1 (ended, started 2027-01-15 08:00:00 UTC)' in past
    assert '<th scope="row">Ended</th><td>2027-01-15 08:03:20 UTC</td>' in past
    assert ('<form class="report-choose" method="get" action="/report">'
            '<label for="report-deployment">Deployment</label>') in past
    assert "No report: no deployment &#x27;dep-9&#x27; among the 2 newest on this van." in unknown
    assert 'role="alert"' in malformed
    assert "must be 1 to 64 printable characters" in malformed
    assert "must be 1 to 64 printable characters" in star


async def test_with_no_deployment_the_page_says_so(tmp_path: Path) -> None:
    async with report_console(tmp_path) as (_van, _reviews, client):
        page = await page_text(client, "/report")
        answer = await client.get("/report.csv")
        text = await answer.text()
    assert "No report: no deployment has been started on this van." in page
    assert answer.status == 404
    assert "no deployment has been started" in text


async def test_a_cut_short_report_says_so(tmp_path: Path) -> None:
    async with report_console(tmp_path, "unit-1",
                              config=ReportConfig(max_events=3)) as (van, reviews, client):
        one_deployment(van, reviews)
        page = await page_text(client, "/report")
        rows = dict(row for row in csv_rows(await (await client.get("/report.csv")).text())
                    if len(row) == 2)
    assert "<strong>Cut short:</strong> the report read at most 3 events" in page
    assert "from 2027-01-15 08:00:40 UTC on" in page
    assert (rows["cut_short"], rows["events_read"], rows["covered_from"]) == (
        "yes", "3", "2027-01-15T08:00:40Z")


async def test_ids_are_escaped_and_no_page_carries_inline_code(tmp_path: Path) -> None:
    deployment = 'd<i>"&x'
    async with report_console(tmp_path, ODD_UNIT) as (van, reviews, client):
        one_deployment(van, reviews, deployment=deployment, unit=ODD_UNIT)
        page = await page_text(client, "/report")
        named = await page_text(client, "/report?deployment=" + deployment.replace("&", "%26"))
        csv_answer = await client.get("/report.csv")
    for text in (page, named):
        assert ODD_UNIT not in text
        assert deployment not in text
        assert f'<th scope="row">{html.escape(ODD_UNIT)}</th>' in text
        assert f"<h2>Deployment {html.escape(deployment)} (active)</h2>" in text
        assert inline_code(text).found == []
        assert "style=" not in text
    assert '<a href="/report.csv?deployment=d%3Ci%3E%22%26x" download>' in page
    assert csv_answer.headers["Content-Disposition"] == (
        'attachment; filename="lfr-report-d_i___x.csv"')


# -- the CSV ----------------------------------------------------------------------------------


async def test_the_csv_has_the_figures_the_units_and_the_series_as_an_attachment(
        tmp_path: Path) -> None:
    async with report_console(tmp_path, "unit-1") as (van, reviews, client):
        one_deployment(van, reviews)
        answer = await client.get("/report.csv?deployment=dep-1")
        text = await answer.text()
    assert answer.status == 200
    assert answer.content_type == "text/csv"
    assert answer.charset == "utf-8"
    assert answer.headers["Content-Disposition"] == 'attachment; filename="lfr-report-dep-1.csv"'
    assert answer.headers["Cache-Control"] == "no-store"
    rows = csv_rows(text)
    blank = [index for index, row in enumerate(rows) if not row]
    assert len(blank) == 2
    figures = dict(rows[1:blank[0]])
    assert rows[0] == ["field", "value"]
    assert figures["deployment"] == "dep-1"
    assert (figures["status"], figures["started_at"], figures["ended_at"],
            figures["figures_until"]) == ("active", "2027-01-15T08:00:00Z", "",
                                          "2027-01-15T08:02:00Z")
    assert (figures["faces_scanned"], figures["alerts"], figures["confirmed"],
            figures["dismissed"], figures["cannot_tell"], figures["undecided"]) == (
        "1204", "3", "0", "2", "0", "1")
    assert float(figures["false_alert_rate"]) == 2 / 1204
    assert float(figures["false_alerts_per_1000_faces"]) == 2000 / 1204
    assert (figures["threshold"], figures["watchlist_versions"],
            figures["watchlist_subjects"], figures["units"]) == ("0.6", "1", "12", "1")
    units = rows[blank[0] + 1:blank[1]]
    assert units == [["unit", "faces_scanned", "alerts", "health_reports", "restarts"],
                     ["unit-1", "1204", "3", "2", "0"]]
    series = rows[blank[1] + 1:]
    assert series[0] == ["bucket_start", "bucket_end", "faces_scanned", "alerts"]
    assert series[1:] == [["2027-01-15T08:00:00Z", "2027-01-15T08:01:00Z", "0", "3"],
                          ["2027-01-15T08:01:00Z", "2027-01-15T08:02:00Z", "1204", "0"]]


async def test_no_csv_cell_can_start_a_spreadsheet_formula(tmp_path: Path) -> None:
    deployment, unit = "=HYPERLINK(1)", "@SUM(A1)"
    async with report_console(tmp_path, unit, "-2+3") as (van, reviews, client):
        one_deployment(van, reviews, deployment=deployment, unit=unit)
        van.store("-2+3", health(5, at=NOW + 80), received_at=NOW + 80)
        answer = await client.get("/report.csv")
        text = await answer.text()
    assert answer.headers["Content-Disposition"] == (
        'attachment; filename="lfr-report-_HYPERLINK_1_.csv"')
    rows = csv_rows(text)
    assert ["deployment", "'=HYPERLINK(1)"] in rows
    assert ["'-2+3", "0", "0", "1", "0"] in rows
    assert ["'@SUM(A1)", "1204", "3", "2", "0"] in rows
    for row in rows:
        for cell in row:
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), cell


def test_csv_cell_prefixes_what_a_spreadsheet_would_run() -> None:
    assert [csv_cell(v) for v in ("=1+1", "+1", "-1", "@A1", "\tx", "\rx", "a=b", "", None, 12,
                                  0.5)] == ["'=1+1", "'+1", "'-1", "'@A1", "'\tx", "'\rx",
                                            "a=b", "", "", "12", "0.5"]


# -- who may --------------------------------------------------------------------------------


async def test_the_report_is_for_signed_in_operators(tmp_path: Path) -> None:
    async with console_van(tmp_path, "unit-1") as van:
        reviews = ReviewStore.open(van.events.path.parent)
        try:
            pages = report_page.routes(van.sources, reviews, clock=van.clock)
            assert [(r.method, r.path, r.role.value) for r in pages] == [
                ("GET", "/report", "operator"), ("GET", "/report.csv", "operator")]
            async with console_client(van.users, FakeClock(), pages=pages) as client:
                assert (await client.get("/report.csv")).status == 401
                answer = await client.get("/report", headers=HTML, allow_redirects=False)
                assert answer.status == 303
                await signed_in(client, *OPERATOR)
                assert (await client.get("/report", headers=HTML)).status == 200
        finally:
            reviews.close()
