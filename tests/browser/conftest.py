"""The console in a real browser: Playwright driving Debian's chromium (headless; ``--no-sandbox``
as root). Playwright's own browser download is not reachable here, so ``make test`` installs
the ``chromium`` package with apt; where it cannot, these tests skip, naming the package.
Screenshots go to ``test-artifacts/`` at the repository's root (not tracked).

Playwright's sync API keeps an event loop running in this thread while it is open, so it is
opened per module (the asyncio tests of other modules need the thread's loop free), and the
browser test modules hold only sync tests."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Playwright, sync_playwright

from tests.lfr.conftest import REPO_ROOT

ARTIFACTS = REPO_ROOT / "test-artifacts"
"""Where browser tests save screenshots for people to look at."""


def chromium_path() -> str:
    """Debian's chromium, or a skip naming the package."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("browser tests need Debian's chromium package (apt-get install chromium); "
                    "make test installs it where apt is allowed")
    return path


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as started:
        yield started


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    launched = playwright.chromium.launch(executable_path=chromium_path(), headless=True,
                                          args=args)
    try:
        yield launched
    finally:
        launched.close()


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
