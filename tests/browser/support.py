"""What the console's browser workflow tests share: a whole system on this machine (``lfr van``
and one ``lfr edge`` as separate processes, the sample clip played at its frame rate, looping,
the sample watchlist signed and pushed with its reference photos, as a supervisor does it), the
console accounts, a keyboard-only sign-in, and requests sent from inside a signed-in page.

Every wait is bounded; ``running_system`` stops the unit, then the van, however the tests end.
Only files under ``demo/`` are read (the clip is the shared clip's copy there)."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from playwright.sync_api import Browser, ConsoleMessage, Page, expect

from bench.node_processes import NodeProcess, start_van
from lfr.local_deployment import CameraPlan, LocalDeployment, create_local_deployment
from tests.lfr.cli_process import ENV, lfr
from tests.lfr.conftest import REPO_ROOT

DEMO_DIR = REPO_ROOT / "demo"
CLIP = DEMO_DIR / "short_hamilton_clip.mp4"
"""The sample clip: Lin-Manuel Miranda is on the watchlist and appears once per play (9 s)."""
PHOTOS = DEMO_DIR / "watchlist_photos"
"""One folder of photos per subject: the watchlist is built from them and they are pushed as
the reference photos."""
PASSWORD = "correct horse battery staple"
OPERATOR = "olive"
SUPERVISOR = "sam"
DEPLOYMENT = "op-1"
SUBJECT = "lin_manuel_miranda"
UNIT = "unit-1"
COMMAND_TIMEOUT_S = 300.0
"""Each ``lfr`` command (building the watchlist loads the models)."""
STOP_TIMEOUT_S = 30.0
"""Each process gets this long to stop after SIGTERM; then it is killed."""
PAGE_TIMEOUT_MS = 60_000
"""Playwright's default for every action and navigation (the machine is shared and slow)."""

FetchBody = Literal["none", "json", "form", "multipart"]
"""How ``fetch_from_page`` encodes its ``fields``."""


@dataclass
class RunningSystem:
    """The van (running) and the unit (started by ``start_unit``, once)."""

    made: LocalDeployment
    """Where the deployment's keys, configs and stores are."""
    van: NodeProcess
    """``lfr van``."""
    unit: NodeProcess | None = field(default=None)
    """``lfr edge`` for ``UNIT``; None until ``start_unit``."""

    @property
    def url(self) -> str:
        """The console's address."""
        return self.made.console_url

    def start_unit(self) -> NodeProcess:
        """Start the unit (its camera plays the clip, looping) unless it runs already."""
        if self.unit is None:
            self.unit = NodeProcess(UNIT, [sys.executable, "-m", "lfr", "edge", "--config",
                                           str(self.made.unit_configs[0])])
        return self.unit


def run_ok(*args: str) -> str:
    """``lfr ARGS``, which must succeed; its stdout."""
    result = lfr(*args, timeout_s=COMMAND_TIMEOUT_S)
    assert result.returncode == 0, (args, result.stderr[-2000:])
    return result.stdout


def add_account(made: LocalDeployment, name: str, role: str) -> None:
    """``lfr van user add NAME --role ROLE --password-stdin`` with ``PASSWORD``."""
    added = subprocess.run(
        [sys.executable, "-m", "lfr", "van", "user", "add", name, "--role", role,
         "--password-stdin", "--config", str(made.van_config)],
        input=PASSWORD + "\n", env=ENV, capture_output=True, text=True,
        timeout=COMMAND_TIMEOUT_S, check=False)
    assert added.returncode == 0, added.stderr


@contextlib.contextmanager
def running_system(root: Path) -> Iterator[RunningSystem]:
    """A van with the accounts ``OPERATOR`` and ``SUPERVISOR``, deployment ``DEPLOYMENT``
    started and the sample watchlist (signed by the deployment's authority) pushed to every
    unit with its reference photos; the unit is not started. Stops whatever started."""
    watchlist = root / "sample.lfrw"
    run_ok("watchlist", "build", str(PHOTOS), "--out", str(watchlist), "--quiet")
    made = create_local_deployment(root / "deployment", units=1,
                                   cameras=[CameraPlan("door", CLIP, paced=True, loop=True)],
                                   watchlist=watchlist)
    add_account(made, OPERATOR, "operator")
    add_account(made, SUPERVISOR, "supervisor")
    config = str(made.van_config)
    van = start_van(made.van_config)
    system = RunningSystem(made, van)
    try:
        signed = root / "sample.signed"
        run_ok("van", "deployment", "start", "--id", DEPLOYMENT, "--threshold", "0.6",
               "--config", config)
        run_ok("watchlist", "sign", str(watchlist), "--key", str(made.authority_signing_key),
               "--version", "1", "--deployment", DEPLOYMENT, "--not-after",
               "2099-01-01T00:00:00Z", "--out", str(signed))
        run_ok("watchlist", "push", str(signed), "--units", "all", "--photos", str(PHOTOS),
               "--config", config)
        yield system
    finally:
        for process in (system.unit, van):  # the unit first: the van stores what it sends
            if process is None:
                continue
            with process, contextlib.suppress(Exception):  # killed by __exit__ if stuck
                process.stop(STOP_TIMEOUT_S)
    crashed = [line for line in van.stderr if "Traceback" in line]
    assert not crashed, van.tail(40)


def signed_in_page(browser: Browser, system: RunningSystem, name: str) -> Page:
    """A new browser context signed in as ``name`` with the keyboard only (the form's name
    field has the focus; Tab to the password; Enter), on the console's home page."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    page = context.new_page()
    page.goto(f"{system.url}/signin")
    expect(page.locator("#signin-name")).to_be_focused()
    page.keyboard.type(name)
    page.keyboard.press("Tab")
    expect(page.locator("#signin-password")).to_be_focused()
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(f"{system.url}/")
    expect(page.get_by_text(f"Signed in as {name}")).to_be_visible()
    return page


_FETCH_JS = """async ([method, url, withToken, bodyKind, fields]) => {
  const headers = {"Accept": "application/json"};
  const token = document.querySelector('meta[name="lfr-csrf-token"]').content;
  if (withToken) { headers["X-CSRF-Token"] = token; }
  let body;
  if (bodyKind === "json") {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(fields);
  } else if (bodyKind === "form") {
    body = new URLSearchParams(fields);
    if (withToken) { body.append("csrf_token", token); }
  } else if (bodyKind === "multipart") {
    body = new FormData();
    for (const [key, value] of Object.entries(fields)) { body.append(key, value); }
    body.append("watchlist", new Blob([new Uint8Array(64)]), "signed.lfrs");
  }
  const response = await fetch(url, {method, headers, body, credentials: "same-origin",
                                     cache: "no-store", redirect: "manual"});
  return [response.status, await response.text()];
}"""


def fetch_from_page(page: Page, method: str, url: str, *, with_token: bool,
                    body: FetchBody = "none",
                    fields: dict[str, Any] | None = None) -> tuple[int, str]:
    """(status, text) of a request the page's own script sends with ``fetch``: the browser's
    cookies, ``Origin`` and ``Sec-Fetch-Site: same-origin``; with the session's CSRF token (read
    from the page's ``<meta name="lfr-csrf-token">``) in ``X-CSRF-Token`` and, for a form, in
    ``csrf_token`` too, when ``with_token``. A multipart body carries a small file part named
    ``watchlist``."""
    status, text = page.evaluate(_FETCH_JS, [method, url, with_token, body, fields or {}])
    return int(status), str(text)


def json_from_page(page: Page, url: str) -> Any:
    """A GET of ``url`` from the page, which must answer 200 with JSON."""
    status, text = fetch_from_page(page, "GET", url, with_token=False)
    assert status == 200, (url, status, text[:500])
    return json.loads(text)


def page_problems(page: Page) -> list[str]:
    """Start collecting the page's script errors and console errors (Content Security Policy
    refusals, failed loads but the favicon's); the list fills as they happen."""
    problems: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        url = message.location.get("url", "")
        # The browser asks for /favicon.ico by itself and the console has none (a 404 that
        # no page of the console caused).
        if message.type == "error" and not url.endswith("/favicon.ico"):
            problems.append(f"console: {message.text} ({url})")

    page.on("pageerror", lambda error: problems.append(f"script error: {error}"))
    page.on("console", on_console)
    return problems


_ACCESSIBILITY_JS = """() => {
  const problems = [];
  const visible = (node) => node.getClientRects().length > 0;
  if (document.querySelectorAll("h1").length !== 1) { problems.push("not exactly one h1"); }
  if (!document.documentElement.lang) { problems.push("no lang"); }
  if (!document.querySelector("main#main")) { problems.push("no main#main"); }
  for (const control of document.querySelectorAll("input, select, textarea")) {
    if (control.type === "hidden" || !visible(control)) { continue; }
    if (!control.labels || control.labels.length === 0) {
      problems.push("unlabelled " + control.tagName + " " + (control.id || control.name));
    }
  }
  for (const image of document.querySelectorAll("img")) {
    if (!image.alt) { problems.push("image without alt: " + image.src); }
  }
  for (const button of document.querySelectorAll("button")) {
    if (visible(button) && !button.textContent.trim()) { problems.push("button without text"); }
  }
  return problems;
}"""


def accessibility_problems(page: Page) -> list[str]:
    """What the page's markup misses: one ``h1``, ``lang``, ``main#main``, a label for every
    visible input, an ``alt`` on every image, text on every visible button."""
    found: list[str] = page.evaluate(_ACCESSIBILITY_JS)
    return found


def first_tab_reaches_skip_link(page: Page) -> bool:
    """Whether the first Tab on a page just loaded (nothing focused yet) focuses the skip link
    to ``<main>``."""
    page.keyboard.press("Tab")
    focused: bool = page.evaluate(
        "() => document.activeElement !== null && "
        "document.activeElement.classList.contains('skip-link')")
    return focused
