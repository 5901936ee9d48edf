"""``lfr demo`` as a newcomer runs it: within seconds an alert from a real unit pipeline reaches
the van and is printed; the console answers at the printed address; Ctrl-C ends the deployment
(the unit purges its watchlist), stops every process and deletes every temporary file."""

from __future__ import annotations

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

ALERT_TIMEOUT_S = 240.0
"""Start-up (the sample watchlist, the van, the unit's models) and the clip's first alert."""


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
