"""The officer's workflow in a real browser against a real system: ``lfr van`` and one unit
(``lfr edge``) as separate processes, the sample clip played at its frame rate and looping, the
sample watchlist signed and pushed with its reference photos. Chromium (Playwright's sync API)
signs in with the keyboard as the operator olive and the supervisor sam.

What it shows: an alert raised by the unit's real pipeline appears on /alerts while the page is
open (no reload), with its live crop and the reference photo; the operator confirms it with the
keyboard, then changes the decision with the buttons, and it stays confirmed after a reload, in
the report and in the audit trail; another alert dismissed as false makes the false-alert rate
rise from zero; an operator is refused the watchlist's pages and its POST routes on the server
(also with a valid session and CSRF token); a request without the CSRF token is refused; the
supervisor purges with the confirmation step and the Units page shows the unit holding none.
A screenshot of the live alerts view goes to ``test-artifacts/console-alerts.png``.

The tests share one system (starting one costs a minute) and run in this file's order, but each
stands alone: the unit starts when a test first needs it. The purge comes last, since the unit
alerts no more after it."""

from __future__ import annotations

import csv
import io
import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from tests.browser.support import (
    DEPLOYMENT,
    OPERATOR,
    SUBJECT,
    SUPERVISOR,
    UNIT,
    FetchBody,
    RunningSystem,
    accessibility_problems,
    fetch_from_page,
    first_tab_reaches_skip_link,
    json_from_page,
    page_problems,
    running_system,
    signed_in_page,
)

ALERT_WAIT_MS = 180_000
"""The unit's start-up (its models) and the clip's next alert (one per 9 s play)."""
HOLD_WAIT_MS = 120_000
"""A unit taking or dropping the watchlist: it polls every second and reports every 5 s."""
IMAGE_WAIT_MS = 30_000
"""A crop or a reference photo loading (each is opened by the van on request)."""
EXPECT_WAIT_MS = 30_000
"""Every other expectation (a decision recorded and drawn, a page's script run): Playwright's
5 s default is short for this shared, noisy machine."""
expect.set_options(timeout=EXPECT_WAIT_MS)
REPORT_WAIT_S = 120.0
"""The report showing a change: it is kept 10 s, and faces scanned come with health reports
(every 5 s)."""
_SEQ = re.compile(r"\(alert (\d+)\)")


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSystem]:
    with running_system(tmp_path_factory.mktemp("console")) as running:
        yield running


def _seq_of(alert: Locator) -> int:
    """The alert's sequence number, from its Unit line ``unit-1 (alert N)``."""
    found = _SEQ.search(alert.locator(".alert-facts dd").first.inner_text())
    assert found is not None
    return int(found[1])


def _alert(page: Page, seq: int, where: str = "") -> Locator:
    """The alert ``seq`` of ``UNIT`` on /alerts (in the list ``where``: waiting or decided)."""
    scope = f"#alerts-{where} " if where else ""
    return page.locator(f"{scope}article.alert", has_text=f"{UNIT} (alert {seq})")


def _loaded(page: Page, image: Locator) -> None:
    """Wait until ``image`` has loaded a picture (not a broken image)."""
    page.wait_for_function("image => image.complete && image.naturalWidth > 0",
                           arg=image.element_handle(), timeout=IMAGE_WAIT_MS)


_FIGURES_JS = """() => Object.fromEntries(
  Array.from(document.querySelectorAll("table.report-figures tr")).map(
    (row) => [row.querySelector("th").textContent, row.querySelector("td").textContent]))"""

Figures = dict[str, str]


def _report_until(page: Page, system: RunningSystem, check: Callable[[Figures], bool],
                  what: str) -> Figures:
    """The report's figures (heading: value) once ``check`` holds; the page is loaded again
    every 2 s, and the test fails naming ``what`` after ``REPORT_WAIT_S``."""
    deadline = time.monotonic() + REPORT_WAIT_S
    while True:
        response = page.goto(f"{system.url}/report")
        assert response is not None, what
        assert response.status == 200, what
        figures: Figures = page.evaluate(_FIGURES_JS)
        if check(figures):
            return figures
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {REPORT_WAIT_S:g} s; the report shows "
                                 f"{figures}")
        page.wait_for_timeout(2000)


def _report_csv(page: Page, system: RunningSystem) -> dict[str, str]:
    """The first block (field, value) of /report.csv, fetched with the page's session."""
    response = page.request.get(f"{system.url}/report.csv")
    assert response.status == 200, response.status
    assert response.headers["content-disposition"].startswith("attachment")
    figures: dict[str, str] = {}
    for row in csv.reader(io.StringIO(response.text())):
        if not row:
            break
        figures[row[0]] = row[1]
    return figures


def test_an_alert_appears_live_with_its_faces_and_the_operator_confirms_it(
        system: RunningSystem, browser: Browser, artifacts: Path) -> None:
    page = signed_in_page(browser, system, OPERATOR)
    problems = page_problems(page)
    try:
        page.goto(f"{system.url}/alerts")
        expect(page.locator("#alerts-connection")).to_contain_text("Live")
        page.evaluate("() => { window.lfrSamePage = true; }")
        system.start_unit()  # after the page opened: the alert must come to it
        newest = page.locator("#alerts-waiting article.alert", has_text=f"Subject {SUBJECT}")
        expect(newest.first).to_be_visible(timeout=ALERT_WAIT_MS)
        assert page.evaluate("() => window.lfrSamePage === true")  # not reloaded
        seq = _seq_of(newest.first)
        alert = _alert(page, seq, "waiting")
        expect(alert.locator(".alert-new")).to_be_visible()
        expect(alert.locator(".alert-score")).to_contain_text("(threshold 0.600)")
        expect(alert.locator(".alert-facts")).to_contain_text("door")
        live, reference = alert.locator("figure.alert-face img").all()
        expect(live).to_have_attribute("alt", re.compile(f"^Face captured by unit {UNIT}"))
        expect(reference).to_have_attribute("src", f"/subjects/{SUBJECT}/photo.jpg")
        _loaded(page, live)
        _loaded(page, reference)
        page.screenshot(path=str(artifacts / "console-alerts.png"))
        assert accessibility_problems(page) == []

        # The keyboard alone: n writes a note, Escape goes back to the alert, c confirms.
        alert.focus()
        page.keyboard.press("n")
        expect(alert.locator("input.alert-note")).to_be_focused()
        page.keyboard.type("Stopped at the door")
        page.keyboard.press("Escape")
        expect(alert).to_be_focused()
        page.keyboard.press("c")
        decided = _alert(page, seq, "decided")
        expect(decided.locator(".alert-state")).to_contain_text(
            f"Confirmed by {OPERATOR} (operator)")
        expect(decided.locator(".alert-state")).to_contain_text("Note: Stopped at the door")
        expect(_alert(page, seq, "waiting")).to_have_count(0)

        # The buttons: change the decision, and confirm again with another note.
        decided.locator("button.alert-change").click()
        decided.locator("input.alert-note").fill("Identity checked")
        decided.locator("button.alert-confirmed").click()
        expect(decided.locator(".alert-state")).to_contain_text("Note: Identity checked")

        page.reload()
        decided = _alert(page, seq, "decided")
        expect(decided.locator(".alert-state")).to_contain_text(
            f"Confirmed by {OPERATOR} (operator)")
        expect(decided.locator(".alert-state")).to_contain_text("Note: Identity checked")

        page.goto(f"{system.url}/audit?kind=operator_decision")
        expect(page.locator("main p[role=status]")).to_contain_text("Verified")
        records = page.locator("table.audit tbody tr", has_text=f"seq: {seq}")
        expect(records).to_have_count(2)  # the keyboard's decision and the button's
        for index in range(2):
            expect(records.nth(index)).to_contain_text("decision: confirmed")
            expect(records.nth(index)).to_contain_text(f"operator: {OPERATOR}")
        assert accessibility_problems(page) == []

        figures = _report_until(page, system, lambda f: f["Confirmed"] == "1",
                                "the report counting the confirmed alert")
        assert figures["Deployment"] == DEPLOYMENT
        assert int(figures["Alerts"].replace(",", "")) >= 1
        assert _report_csv(page, system)["confirmed"] == "1"
        assert accessibility_problems(page) == []
        page.emulate_media(media="print")  # printed: the report without the navigation
        expect(page.get_by_role("navigation", name="Console sections")).to_be_hidden()
        expect(page.locator("table.report-figures")).to_be_visible()
        assert problems == []
    finally:
        page.context.close()


def test_an_alert_dismissed_as_false_raises_the_false_alert_rate(
        system: RunningSystem, browser: Browser) -> None:
    page = signed_in_page(browser, system, OPERATOR)
    problems = page_problems(page)
    try:
        system.start_unit()
        before = _report_until(
            page, system, lambda f: f["Faces scanned"] != "0",
            "the report counting the faces the unit scanned")
        assert before["Dismissed (false alerts)"] == "0"
        assert before["False-alert rate"] == "0 per 1,000 faces scanned"
        expect(page.locator(".report-rate")).to_contain_text("0 false alerts in ")

        page.goto(f"{system.url}/alerts")
        assert first_tab_reaches_skip_link(page)
        waiting = page.locator("#alerts-waiting article.alert")
        expect(waiting.first).to_be_visible(timeout=ALERT_WAIT_MS)  # the clip alerts again
        seq = _seq_of(waiting.first)
        _alert(page, seq, "waiting").locator("button.alert-dismissed").click()
        decided = _alert(page, seq, "decided")
        expect(decided.locator(".alert-state")).to_contain_text(
            f"Dismissed as a false alert by {OPERATOR} (operator)")
        page.reload()
        expect(_alert(page, seq, "decided").locator(".alert-state")).to_contain_text(
            "Dismissed as a false alert")

        after = _report_until(page, system, lambda f: f["Dismissed (false alerts)"] == "1",
                              "the report counting the false alert")
        rate = re.fullmatch(r"([0-9.,]+) per 1,000 faces scanned", after["False-alert rate"])
        assert rate is not None, after
        assert float(rate[1].replace(",", "")) > 0, after
        expect(page.locator(".report-rate")).to_contain_text("1 false alert in ")
        assert float(_report_csv(page, system)["false_alert_rate"]) > 0
        assert problems == []
    finally:
        page.context.close()


def test_an_operator_can_neither_push_nor_purge_whatever_the_page_shows(
        system: RunningSystem, browser: Browser) -> None:
    page = signed_in_page(browser, system, OPERATOR)
    try:
        expect(page.get_by_role("navigation", name="Console sections")).not_to_contain_text(
            "Watchlist")  # hidden, but that is not the check:
        for path in ("/watchlist", "/watchlist/purge", "/watchlist/end"):
            response = page.goto(f"{system.url}{path}")
            assert response is not None, path
            assert response.status == 403, path
        page.goto(f"{system.url}/alerts")  # a page carrying the session's CSRF token
        refused: tuple[tuple[str, FetchBody, dict[str, str]], ...] = (
            ("/watchlist/purge", "form", {"unit": "", "confirm": "yes"}),
            ("/watchlist/end", "form", {"confirm": "yes", "deployment_id": DEPLOYMENT}),
            ("/watchlist/deployment", "form", {"deployment_id": "op-2", "threshold": "0.60"}),
            ("/watchlist/push", "multipart", {"target": "all"}))
        for path, body, fields in refused:
            status, text = fetch_from_page(page, "POST", path, with_token=True, body=body,
                                           fields=fields)
            assert status == 403, (path, status, text)
            assert "needs the supervisor role" in text, (path, text)  # not the CSRF check
        # The same token passes the CSRF check on a route an operator may use (a malformed
        # decision: refused by the handler, nothing recorded).
        status, text = fetch_from_page(page, "POST", f"/alerts/{UNIT}/1/decision",
                                       with_token=True, body="json",
                                       fields={"decision": "maybe"})
        assert status == 400, text
        assert json.loads(text)["field"] == "decision", text
        units = json_from_page(page, "/units.json")["units"]
        assert [row["wanted"] for row in units if row["unit"] == UNIT] == [1]  # not purged
    finally:
        page.context.close()


def test_a_state_changing_request_without_the_csrf_token_is_refused(
        system: RunningSystem, browser: Browser) -> None:
    page = signed_in_page(browser, system, OPERATOR)
    try:
        page.goto(f"{system.url}/alerts")
        for with_token, expected in ((False, 403), (True, 400)):
            status, text = fetch_from_page(page, "POST", f"/alerts/{UNIT}/1/decision",
                                           with_token=with_token, body="json",
                                           fields={"decision": "maybe"})
            assert status == expected, (with_token, status, text)
        assert "CSRF token is missing" in fetch_from_page(
            page, "POST", "/signout", with_token=False, body="form")[1]
        page.reload()  # still signed in: the sign-out without the token did nothing
        expect(page.get_by_text(f"Signed in as {OPERATOR}")).to_be_visible()
        page.get_by_role("button", name="Sign out").click()  # the form's own token works
        page.wait_for_url(f"{system.url}/signin")
        response = page.goto(f"{system.url}/alerts")
        assert response is not None
        page.wait_for_url(f"{system.url}/signin")  # the session ended
    finally:
        page.context.close()


def test_the_supervisor_purges_the_watchlist_and_the_units_page_shows_none(
        system: RunningSystem, browser: Browser) -> None:
    system.start_unit()
    page = signed_in_page(browser, system, SUPERVISOR)
    problems = page_problems(page)
    try:
        page.goto(f"{system.url}/units")
        row = page.locator("#units-rows tr", has_text=UNIT)
        # units.js redraws the table every 5 s: no reload
        expect(row).to_contain_text("reports holding version 1", timeout=HOLD_WAIT_MS)
        expect(row).to_contain_text(f"board: held version 1 of {DEPLOYMENT}")
        assert accessibility_problems(page) == []

        page.goto(f"{system.url}/watchlist")
        expect(page.locator("table.unit-watchlists")).to_contain_text(
            f"held: version 1 of {DEPLOYMENT}")
        expect(page.locator("ul.subjects")).to_contain_text(SUBJECT)
        assert accessibility_problems(page) == []
        page.select_option("#purge-unit", "")  # every unit
        page.get_by_role("button", name="Purge ...").click()
        expect(page.locator("h1")).to_have_text("Purge")  # the confirmation step
        expect(page.locator("main")).to_contain_text("Purge every unit's watchlist now?")
        page.get_by_role("button", name="Yes, purge").click()
        expect(page.locator("h1")).to_have_text("Purge ordered")

        page.goto(f"{system.url}/units")
        row = page.locator("#units-rows tr", has_text=UNIT)
        expect(row).to_contain_text("board: purged", timeout=HOLD_WAIT_MS)
        expect(row).to_contain_text("reports holding none", timeout=HOLD_WAIT_MS)
        expect(row).to_contain_text("must hold none")

        page.goto(f"{system.url}/audit?kind=watchlist_purged")  # the order, and the unit's
        ordered = page.locator("table.audit tbody tr", has_text=f"operator: console {SUPERVISOR}")
        expect(ordered).to_contain_text("units: all")
        expect(page.locator("table.audit tbody tr", has_text=f"unit: {UNIT}")).to_have_count(1)
        assert problems == []
    finally:
        page.context.close()
