"""Ctrl-C and SIGTERM during ``watchlist build`` and ``verify``: exit 130/143 within 2 s, one
line on stderr, no traceback from the command, tqdm or any thread, and no file left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from guards.exit_codes import ExitCode
from tests.lfr.conftest import PHOTOS, REPO_ROOT

STOP_WITHIN_S = 2.0
READY_TIMEOUT_S = 120.0

# verify embeds two photos in well under a second; this wrapper keeps it embedding (the real
# models, the real photos) so the signal lands in the middle of its work, not before or after.
VERIFY_LOOP = """
import sys
from lfr.photo_faces import PhotoFaces
embed_once = PhotoFaces.embed_single
def embed_forever(self, path):
    sys.stderr.write("EMBEDDING\\n")
    sys.stderr.flush()
    while True:
        embed_once(self, path)
PhotoFaces.embed_single = embed_forever
from lfr.cli import main
sys.exit(main(sys.argv[1:]))
"""


class _Child:
    """A command in a subprocess whose stderr is collected as it comes."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PYTHONDONTWRITEBYTECODE": "1"}
        self.process = subprocess.Popen([sys.executable, *args], cwd=cwd, env=env,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.stderr = b""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        fd = self.process.stderr.fileno()
        for chunk in iter(lambda: os.read(fd, 4096), b""):
            self.stderr += chunk

    def wait_for(self, marker: bytes) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while marker not in self.stderr:
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.process.kill()
                pytest.fail(f"never saw {marker!r}: {self.stderr.decode(errors='replace')}")
            time.sleep(0.02)

    def stop(self, signum: int) -> tuple[int, float, str]:
        sent = time.monotonic()
        self.process.send_signal(signum)
        try:
            code = self.process.wait(timeout=30)
        finally:
            self.process.kill()
        took = time.monotonic() - sent
        self._reader.join(timeout=5)
        return code, took, self.stderr.decode(errors="replace")


def _expected(signum: int) -> ExitCode:
    return ExitCode.INTERRUPTED if signum == signal.SIGINT else ExitCode.TERMINATED


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_watchlist_build_stops_cleanly(shared_data: Path, tmp_path: Path, signum: int) -> None:
    photos = tmp_path / "photos" / "kit_harington"
    photos.mkdir(parents=True)
    for i in range(400):  # minutes of enrolment: the signal lands in the middle of it
        (photos / f"kit_{i:03}.jpeg").symlink_to(PHOTOS / "kit_harington" / "kit_1.jpeg")
    out = tmp_path / "out" / "w.watchlist"
    out.parent.mkdir()
    child = _Child(["-m", "lfr", "watchlist", "build", str(photos.parent), "--out", str(out)],
                   tmp_path)
    child.wait_for(b"/400")  # the progress bar has counted photos
    time.sleep(0.3)
    code, took, stderr = child.stop(signum)
    assert code == _expected(signum), stderr
    assert took < STOP_WITHIN_S, f"took {took:.2f} s"
    assert "Traceback" not in stderr
    assert "KeyboardInterrupt" not in stderr
    assert list(out.parent.iterdir()) == []  # no watchlist, no temporary file


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_verify_stops_cleanly(shared_data: Path, tmp_path: Path, signum: int) -> None:
    child = _Child(["-c", VERIFY_LOOP, "verify", str(PHOTOS / "joe_biden" / "biden_1.jpg"),
                    str(PHOTOS / "joe_biden" / "biden_2.jpg")], tmp_path)
    child.wait_for(b"EMBEDDING")
    time.sleep(0.5)
    code, took, stderr = child.stop(signum)
    assert code == _expected(signum), stderr
    assert took < STOP_WITHIN_S, f"took {took:.2f} s"
    assert "Traceback" not in stderr
    assert "KeyboardInterrupt" not in stderr
