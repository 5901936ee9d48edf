"""A supervisor builds, signs and pushes a watchlist from a folder of photos in a real browser:
``lfr van`` (a real process) with the authority's signing key in its van.toml
(``[authority] signing_key``) and a deployment started; Chromium picks the sample photo folder
(``demo/watchlist_photos``: one sub-folder per subject) in the Watchlist page's folder input,
the upload and the build move the page's progress bar to its end, the result lists the
subjects, the supervisor signs version 1 and pushes it, and the page then shows version 1 with
the subjects' reference photos. The page has no script error, CSP refusal or unlabelled
control, and the van's trail holds each step with the supervisor's name. A screenshot of the
build's result is saved as ``test-artifacts/console-watchlist-build.png``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from playwright.sync_api import Browser, expect

from audit.kinds import AuditKind
from bench.node_processes import start_van
from lfr.config import load_van_config
from lfr.local_deployment import CameraPlan, create_local_deployment
from tests.actors.van.test_watchlist_board import read_audit
from tests.browser.support import (
    CLIP,
    DEPLOYMENT,
    PHOTOS,
    STOP_TIMEOUT_S,
    SUPERVISOR,
    RunningSystem,
    accessibility_problems,
    add_account,
    page_problems,
    run_ok,
    signed_in_page,
)

BUILD_TIMEOUT_MS = 240_000
"""The first build loads the face models in the van; on this shared machine, generously."""


@contextlib.contextmanager
def van_with_authority_key(root: Path) -> Iterator[RunningSystem]:
    """A van whose van.toml names the authority's signing key, the supervisor's account and
    deployment ``DEPLOYMENT`` started, nothing pushed; no unit runs. Stops the van."""
    made = create_local_deployment(root / "deployment", units=1,
                                   cameras=[CameraPlan("door", CLIP, paced=True, loop=True)])
    text = made.van_config.read_text(encoding="utf-8")
    line = 'public_keys = "authority.public.keys"\n'
    assert line in text
    made.van_config.write_text(text.replace(
        line, f'{line}signing_key = "{made.authority_signing_key}"\n'), encoding="utf-8")
    add_account(made, SUPERVISOR, "supervisor")
    van = start_van(made.van_config)
    try:
        run_ok("van", "deployment", "start", "--id", DEPLOYMENT, "--threshold", "0.6",
               "--config", str(made.van_config))
        yield RunningSystem(made, van)
    finally:
        with van, contextlib.suppress(Exception):  # killed by __exit__ if stuck
            van.stop(STOP_TIMEOUT_S)
    crashed = [line for line in van.stderr if "Traceback" in line]
    assert not crashed, van.tail(40)


def test_a_supervisor_builds_signs_and_pushes_a_watchlist_from_a_folder(
        browser: Browser, tmp_path: Path, artifacts: Path) -> None:
    with van_with_authority_key(tmp_path) as system:
        page = signed_in_page(browser, system, SUPERVISOR)
        problems = page_problems(page)
        page.goto(f"{system.url}/watchlist")
        assert accessibility_problems(page) == []
        expect(page.get_by_label("Build progress")).to_be_visible()
        page.locator("#build-folder").set_input_files(PHOTOS)  # the folder, as a person picks it
        page.get_by_role("button", name="Upload and build").click()
        # The script follows the build's counts, then reloads the page with the result.
        progress_text = page.locator("#build-progress-text")
        expect(progress_text).to_contain_text("Done: 7 of 7 photos", timeout=BUILD_TIMEOUT_MS)
        bar = page.locator("#build-progress")
        assert (bar.get_attribute("value"), bar.get_attribute("max")) == ("7", "7")
        expect(page.get_by_text("Built: 4 subjects")).to_be_visible()
        expect(page.get_by_role("cell", name="1", exact=True).first).to_be_visible()
        assert accessibility_problems(page) == []

        page.screenshot(path=artifacts / "console-watchlist-build.png", full_page=True)
        expect(page.get_by_label("Version")).to_have_value("1")
        page.get_by_label("Valid until").fill("2099-01-01T00:00:00Z")
        page.get_by_role("button", name="Sign the watchlist").click()
        expect(page.get_by_text("Signed as version 1")).to_be_visible()
        page.get_by_role("button", name="Push version 1 to every unit").click()
        expect(page.get_by_text(f"Version 1 of deployment {DEPLOYMENT} (4 subjects, 4 "
                                "reference photos) pushed to every unit")).to_be_visible()

        page.goto(f"{system.url}/watchlist")
        versions = page.locator("table.watchlists tbody tr")
        expect(versions).to_have_count(1)
        expect(versions.first.locator("th")).to_have_text("1")
        photo = page.get_by_alt_text("Reference photo of lin_manuel_miranda")
        photo.scroll_into_view_if_needed()  # loading="lazy"
        expect(photo).to_be_visible()
        page.wait_for_function("(image) => image.complete && image.naturalWidth > 0",
                               arg=photo.element_handle())
        expect(page.get_by_text("Built: 4 subjects")).to_have_count(0)  # pushed: gone
        assert problems == []
        page.context.close()
    trail = read_audit(load_van_config(system.made.van_config).audit)
    by_kind = {record.kind: dict(record.fields) for record in trail}
    assert by_kind[AuditKind.CONSOLE_SIGNED_IN]["account"] == SUPERVISOR
    assert by_kind[AuditKind.WATCHLIST_BUILT]["operator"] == SUPERVISOR
    assert by_kind[AuditKind.WATCHLIST_SIGNED]["operator"] == SUPERVISOR
    assert by_kind[AuditKind.WATCHLIST_PUSHED]["operator"] == f"console {SUPERVISOR}"
    assert by_kind[AuditKind.WATCHLIST_PUSHED]["version"] == 1
