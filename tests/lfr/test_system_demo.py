"""``lfr demo`` as a newcomer runs it: within seconds an alert from a real unit pipeline reaches
the van and is printed; the console answers at the printed address, and its supervisor builds
a watchlist from the sample photos there, signs it with the demo authority's key on the van
and pushes it; Ctrl-C ends the deployment (the unit purges its watchlist), stops every process
and deletes every temporary file."""

from __future__ import annotations

import asyncio
import datetime
import re
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from bench.node_processes import NodeProcess
from tests.console.support import fields_of
from tests.console.test_watchlist_build import folder_files, photo_form

ALERT_TIMEOUT_S = 240.0
"""Start-up (the sample watchlist, the van, the unit's models) and the clip's first alert."""
BUILD_TIMEOUT_S = 240.0
"""The console's build (the van loads the face models first) on this shared machine."""
HTML = {"Accept": "text/html"}


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A temporary folder with a short path: the van's control socket lives in the demo's
    temporary folder, and a Unix socket's path may have at most 107 bytes."""
    folder = Path(tempfile.mkdtemp(prefix="lfrd", dir="/tmp"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


async def test_the_demo_shows_a_real_alert_and_ctrl_c_stops_everything_cleanly(
        tmp_path: Path, short_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    temp = short_tmp
    monkeypatch.setenv("TMPDIR", str(temp))  # NodeProcess passes os.environ on
    demo = NodeProcess("demo", [sys.executable, "-m", "lfr", "demo"], cwd=tmp_path)
    with demo:
        demo.wait_for(lambda line: line.startswith("ALERT unit unit-1 camera door: "
                                                   "lin_manuel_miranda"), ALERT_TIMEOUT_S)
        said = "\n".join(demo.stderr)
        console = re.search(r"demo: console: (http://127\.0\.0\.1:\d+) +\(sign in as "
                            r"demo-operator, password (\S+);", said)
        assert console is not None, said[-3000:]
        async with aiohttp.ClientSession() as session, session.get(
                f"{console[1]}/signin") as response:
            assert response.status == 200
        assert "reference photos) signed by the demo authority" in said
        supervisor = re.search(r"or demo-supervisor, password ([^\s:]+):", said)
        assert supervisor is not None, said[-3000:]
        assert "demo: the demo authority's signing key is on this van" in said
        pushed = await build_sign_and_push(console[1], supervisor[1])
        assert "Version 2 of deployment demo (4 subjects, 4 reference photos) pushed" in pushed
        demo.process.send_signal(signal.SIGINT)
        code = demo.wait(120)
    said = "\n".join(demo.stderr)
    assert code == 130, said[-3000:]
    for line in ("demo: deployment demo ended: every unit is told to purge its watchlist",
                 "demo: every unit has purged its watchlist",
                 "demo: unit-1 stopped (exit 143)", "demo: van stopped (exit 143)"):
        assert line in said, said[-3000:]
    assert list(temp.iterdir()) == []  # keys, stores, configs: all deleted
    assert "Traceback" not in said


async def build_sign_and_push(url: str, password: str) -> str:
    """As demo-supervisor on the console at ``url``: build a watchlist from the sample photos,
    sign it as version 2 on the van (the page offers it: the key is there), push it; the
    push's answer page."""
    async with aiohttp.ClientSession(base_url=url,
                                     cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        async with session.get("/signin", headers=HTML) as form:
            token = fields_of(await form.text()).inputs["csrf_token"]
        async with session.post("/signin", data={"name": "demo-supervisor",
                                                 "password": password, "csrf_token": token},
                                allow_redirects=False) as answer:
            assert answer.status == 303, await answer.text()
        async with session.get("/", headers=HTML) as shell:
            csrf = fields_of(await shell.text()).meta["lfr-csrf-token"]
        async with session.post("/watchlist/build", data=photo_form(folder_files()),
                                headers={"X-CSRF-Token": csrf,
                                         "Accept": "application/json"}) as answer:
            assert answer.status == 200, await answer.text()
        async with asyncio.timeout(BUILD_TIMEOUT_S):
            while True:
                async with session.get("/watchlist/build/progress") as answer:
                    state = (await answer.json())["state"]
                if state in ("built", "failed"):
                    break
                await asyncio.sleep(0.5)
        assert state == "built"
        async with session.get("/watchlist", headers=HTML) as answer:
            page = await answer.text()
        assert "The key of watchlist authority authority is on this van." in page
        assert 'id="sign-form"' in page
        assert "Download the unsigned watchlist" not in page
        not_after = (datetime.datetime.now(datetime.UTC)
                     + datetime.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        async with session.post("/watchlist/build/sign",
                                data={"csrf_token": csrf, "version": "2",
                                      "not_after": not_after},
                                headers=HTML, allow_redirects=False) as answer:
            assert answer.status == 303, await answer.text()
        async with session.post("/watchlist/build/push", data={"csrf_token": csrf},
                                headers=HTML) as answer:
            text = await answer.text()
            assert answer.status == 200, text
        return text
