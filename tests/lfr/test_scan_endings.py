"""How ``lfr scan`` ends, as a user runs it (a real process): broken files end with exit 2 and
the reason, an unwritable alert output fails the scan, Ctrl-C and SIGTERM stop it within 2 s
with a summary, and untrusted names cannot forge log lines."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import IO

import pytest

from tests.lfr.cli_process import lfr, stop_with_signal
from tests.lfr.conftest import CLIP


def summary_of(stderr: str) -> dict[str, object]:
    """The JSON summary line ``--jsonl`` prints last on stderr."""
    lines = [line for line in stderr.splitlines() if line.startswith("{")]
    assert lines, f"no JSON summary in: {stderr[-2000:]}"
    summary: dict[str, object] = json.loads(lines[-1])
    return summary


@pytest.mark.parametrize("content", [b"no\n", b""], ids=["text", "empty"])
def test_a_file_that_is_not_a_video_ends_the_scan_with_exit_2_naming_it(
        clip_watchlist: tuple[object, Path], tmp_path: Path, content: bytes) -> None:
    video = tmp_path / "x.mp4"
    video.write_bytes(content)
    result = lfr("scan", str(video), "--watchlist", str(clip_watchlist[1]), "--jsonl")
    assert result.returncode == 2, result.stderr[-2000:]
    summary = summary_of(result.stderr)
    assert summary["frames"] == 0
    assert summary["alerts"] == 0
    assert f"cannot open {video}" in str(summary["failure"])
    assert "Traceback" not in result.stderr


def test_a_damaged_recording_is_scanned_as_far_as_it_decodes_then_exits_2(
        clip_watchlist: tuple[object, Path], tmp_path: Path) -> None:
    data = bytearray(CLIP.read_bytes())
    middle = len(data) // 3
    data[middle:middle + 20_000] = bytes(20_000)
    video = tmp_path / "damaged.mp4"
    video.write_bytes(bytes(data))
    result = lfr("scan", str(video), "--watchlist", str(clip_watchlist[1]), "--jsonl")
    assert result.returncode == 2, result.stderr[-2000:]
    summary = summary_of(result.stderr)
    assert 200 < int(str(summary["frames"])) < 275
    assert "could not be decoded" in str(summary["failure"])
    assert str(video) in str(summary["failure"])


@pytest.mark.parametrize("make", ["fifo", "directory", "unknown-scheme"])
def test_a_source_that_is_not_a_video_file_is_refused_at_once(
        clip_watchlist: tuple[object, Path], tmp_path: Path, make: str) -> None:
    source = str(tmp_path / "camera")
    expected = {"fifo": "is a FIFO", "directory": "is a directory",
                "unknown-scheme": "unknown scheme"}[make]
    if make == "fifo":
        os.mkfifo(source)
    elif make == "directory":
        os.mkdir(source)
    else:
        source = "udp://127.0.0.1:5000"
    result = lfr("scan", source, "--watchlist", str(clip_watchlist[1]), timeout_s=30)
    assert result.returncode == 2, result.stderr[-2000:]
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_alerts_that_cannot_be_written_fail_the_scan(clip_watchlist: tuple[object, Path]) -> None:
    with open("/dev/full", "w") as full:  # every write fails with ENOSPC, as on a full disk
        result = lfr("scan", str(CLIP), "--watchlist", str(clip_watchlist[1]), "--jsonl",
                     stdout=full.fileno())
    assert result.returncode == 74, result.stderr[-2000:]
    summary = summary_of(result.stderr)
    assert summary["alerts"] == 0, "an alert nobody received was counted"
    assert "cannot write alerts: No space left on device" in str(summary["failure"])
    assert "Traceback" not in result.stderr
    assert "Exception ignored" not in result.stderr


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_the_scan_within_2_s_with_a_summary(
        clip_watchlist: tuple[object, Path], sig: signal.Signals, code: int) -> None:
    def frames_flow(stderr: IO[str]) -> None:
        for line in stderr:
            if "scanning" in line:
                break
        time.sleep(1.0)

    # Paced: the scan would take 10 s; it is stopped once frames flow.
    stopped = stop_with_signal(["-v", "scan", str(CLIP), "--watchlist", str(clip_watchlist[1]),
                                "--paced", "--jsonl"], sig, frames_flow)
    assert stopped.returncode == code, stopped.stderr[-2000:]
    assert stopped.stopped_s < 2.0, f"took {stopped.stopped_s:.2f} s to stop"
    summary = summary_of(stopped.stderr)
    assert summary["failure"] == "interrupted"
    assert int(str(summary["frames"])) > 0
    assert "Traceback" not in stopped.stderr


def test_a_camera_id_cannot_forge_a_log_line(clip_watchlist: tuple[object, Path]) -> None:
    result = lfr("scan", str(CLIP), "--watchlist", str(clip_watchlist[1]),
                 "--camera-id", "x\nCRITICAL fake", timeout_s=30)
    assert result.returncode == 2
    assert "camera_id holds control characters" in result.stderr
    assert not any(line.startswith("CRITICAL fake") for line in result.stderr.splitlines())


def test_an_unusual_threshold_needs_the_flag_and_is_named_in_the_summary(
        clip_watchlist: tuple[object, Path], tmp_path: Path) -> None:
    video = tmp_path / "x.mp4"
    video.write_bytes(b"no\n")  # the scan itself ends at once: this is about its inputs
    refused = lfr("scan", str(video), "--watchlist", str(clip_watchlist[1]), "--threshold",
                  "0.3", timeout_s=30)
    assert refused.returncode == 2
    assert "outside the usual range" in refused.stderr
    assert "--allow-unusual-thresholds" in refused.stderr
    allowed = lfr("scan", str(video), "--watchlist", str(clip_watchlist[1]), "--threshold",
                  "0.3", "--allow-unusual-thresholds", "--jsonl", timeout_s=30)
    assert summary_of(allowed.stderr)["unusual_thresholds"] == ["--threshold (0.300)"]
