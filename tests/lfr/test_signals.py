"""Ctrl-C and SIGTERM stop every long-running command within 2 s, with exit 130/143 and no
traceback (scan has its own, stricter tests in test_scan_endings.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.lfr.conftest import CLIP, REPO_ROOT

ENV = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
COMMANDS = {
    "demo": (["demo"], 5.0),
    "bench-pipeline": (["bench", "pipeline", "--source", str(CLIP), "--runs", "5", "--bare"],
                       5.0),
    "bench-gallery": (["bench", "gallery", "--subjects", "1000000"], 5.0),
    "bench-runtime": (["bench", "runtime"], 1.5),
}
"""Each command, and the time it is given to get going (models loaded, work under way) before
the signal: well inside its run time here (demo 10 s, the benches 7 s and more)."""


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)],
                         ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_the_command_within_2_s(shared_data: object, command: str,
                                               sig: signal.Signals, code: int) -> None:
    args, started_s = COMMANDS[command]
    proc = subprocess.Popen([sys.executable, "-m", "lfr", *args], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(started_s)
        assert proc.poll() is None, f"{command} ended before the signal"
        sent = time.monotonic()
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=60)
        stopped_s = time.monotonic() - sent
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == code, stderr[-2000:]
    assert stopped_s < 2.0, f"{command} took {stopped_s:.2f} s to stop"
    assert "Traceback" not in stderr, stderr[-3000:]
