"""Ctrl-C and SIGTERM stop every long-running command within 2 s, with exit 130/143 and no
traceback (scan has its own, stricter tests in test_scan_endings.py; the full ``lfr demo``
first ends its deployment and stops its van and units, bounded: test_system_demo.py)."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.lfr.cli_process import stop_with_signal
from tests.lfr.conftest import CLIP

COMMANDS = {
    "demo": (["demo", "--pipeline-only"], 5.0),
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
    stopped = stop_with_signal(args, sig, lambda _: time.sleep(started_s))
    assert stopped.returncode == code, stopped.stderr[-2000:]
    assert stopped.stopped_s < 2.0, f"{command} took {stopped.stopped_s:.2f} s to stop"
    assert "Traceback" not in stopped.stderr, stopped.stderr[-3000:]


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)],
                         ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("after_s", [0.15, 0.3, 0.6])
def test_a_signal_during_start_up_stops_cleanly(shared_data: Path, tmp_path: Path,
                                                sig: signal.Signals, code: int,
                                                after_s: float) -> None:
    # While the command's modules load: the handlers are installed before anything heavy is
    # imported. Only the interpreter's own start keeps Python's default, so the delay counts
    # from the handlers' installation (a loaded machine stretched that start past 0.15 s).
    photos = shared_data / "faces" / "photos"
    stopped = stop_with_signal(["watchlist", "build", str(photos), "--quiet", "--out",
                                str(tmp_path / "w.bin")], sig, lambda _: time.sleep(after_s),
                               after_handlers=True)
    assert stopped.returncode in (code, -sig), stopped.stderr[-2000:]
    assert "Traceback" not in stopped.stderr, stopped.stderr[-3000:]
