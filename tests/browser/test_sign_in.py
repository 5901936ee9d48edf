"""Signing in to a running van's console in a real browser: wrong passwords are refused and,
five times over, throttled; the right one shows the console; the page runs no inline script."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from bench.node_processes import NodeProcess, start_van
from lfr.local_deployment import CameraPlan, LocalDeployment, create_local_deployment
from tests.lfr.cli_process import ENV
from tests.lfr.watchlist_support import DEAD_CAMERA

PASSWORD = "correct horse battery staple"


@pytest.fixture
def van(tmp_path: Path) -> Iterator[tuple[LocalDeployment, NodeProcess]]:
    made = create_local_deployment(tmp_path / "deployment", units=1,
                                   cameras=[CameraPlan("door", DEAD_CAMERA)])
    for name, role in (("olive", "operator"), ("sam", "supervisor")):
        added = subprocess.run(
            [sys.executable, "-m", "lfr", "van", "user", "add", name, "--role", role,
             "--password-stdin", "--config", str(made.van_config)],
            input=PASSWORD + "\n", env=ENV, capture_output=True, text=True, timeout=60,
            check=False)
        assert added.returncode == 0, added.stderr
    with start_van(made.van_config) as process:
        yield made, process


def test_an_operator_signs_in_and_wrong_passwords_are_throttled(
        van: tuple[LocalDeployment, NodeProcess], browser: Browser, artifacts: Path) -> None:
    made, _process = van
    page = browser.new_page()
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text)
            if message.type == "error" else None)
    page.goto(f"{made.console_url}/")
    expect(page.locator("#signin-name")).to_be_visible()  # sent to the sign-in form
    for _ in range(5):
        page.fill("#signin-name", "olive")
        page.fill("#signin-password", "not the password at all")
        page.click("button[type=submit]")
    page.fill("#signin-name", "olive")
    page.fill("#signin-password", PASSWORD)
    response = page.expect_response(lambda r: r.request.method == "POST")
    with response as caught:
        page.click("button[type=submit]")
    assert caught.value.status == 429  # throttled: even the right password waits
    page.context.clear_cookies()
    fresh = browser.new_page()
    fresh.goto(f"{made.console_url}/signin")
    fresh.fill("#signin-name", "sam")
    fresh.fill("#signin-password", PASSWORD)
    fresh.click("button[type=submit]")
    expect(fresh.get_by_role("navigation")).to_be_visible()
    expect(fresh.get_by_text("sam")).to_be_visible()
    fresh.screenshot(path=str(artifacts / "console-signed-in.png"), full_page=True)
    assert not [e for e in errors if "Content Security Policy" in e], errors
