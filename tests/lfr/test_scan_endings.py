"""How ``lfr scan`` ends, as a user runs it (a real process): broken files end with exit 2 and
the reason, an unwritable alert output fails the scan, Ctrl-C and SIGTERM stop it within 2 s
with a summary, and untrusted names cannot forge log lines."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import IO

import pytest

from tests.lfr.cli_process import ENV, LFR, lfr, stop_with_signal
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


def test_a_scan_with_stdout_closed_fails_and_counts_no_alert(
        clip_watchlist: tuple[object, Path]) -> None:
    # Started with fd 1 closed (`lfr scan ... >&-`): sys.stdout is None and print() would
    # silently drop every alert.
    result = subprocess.run([*LFR, "scan", str(CLIP), "--watchlist", str(clip_watchlist[1]),
                             "--jsonl"], env=ENV, stdin=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, timeout=120, check=False,
                            preexec_fn=lambda: os.close(1))
    assert result.returncode == 74, result.stderr[-2000:]
    summary = summary_of(result.stderr)
    assert summary["alerts"] == 0
    assert "stdout is closed" in str(summary["failure"])


def test_with_stderr_closed_the_summary_never_lands_in_the_alert_stream(
        clip_watchlist: tuple[object, Path], tmp_path: Path) -> None:
    video = tmp_path / "x.mp4"
    video.write_bytes(b"no\n")
    result = subprocess.run([*LFR, "scan", str(video), "--watchlist", str(clip_watchlist[1])],
                            env=ENV, stdout=subprocess.PIPE, text=True, timeout=60,
                            check=False, preexec_fn=lambda: os.close(2))
    assert result.stdout == ""  # alerts only: no summary, no log line
    assert result.returncode in (2, 74)


def test_a_blocked_stdout_does_not_stop_a_signal_from_stopping_the_scan(
        clip_watchlist: tuple[object, Path]) -> None:
    # stdout is a pipe nobody reads: once it is full, writing an alert blocks. The event loop
    # must stay free, so SIGTERM still stops the scan within 2 s.
    read_end, write_end = os.pipe()
    os.write(write_end, b"x" * 60_000)  # the pipe (64 KiB) is almost full from the start
    proc = subprocess.Popen([*LFR, "scan", str(CLIP), "--watchlist", str(clip_watchlist[1]),
                             "--paced", "--jsonl"], env=ENV, stdout=write_end,
                            stderr=subprocess.PIPE, text=True)
    os.close(write_end)
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            if "scanning" in line:
                break
        time.sleep(6.0)  # Lin-Manuel Miranda's alert (t = 3.9 s) is waiting on the pipe
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
        stopped_s = time.monotonic() - sent
    finally:
        proc.kill()
        proc.wait()
        os.close(read_end)
    assert proc.returncode == 143, stderr[-2000:]
    assert stopped_s < 2.0, f"took {stopped_s:.2f} s to stop"
    assert summary_of(stderr)["failure"] == "interrupted"


def test_credentials_in_a_live_source_never_reach_the_log(
        clip_watchlist: tuple[object, Path]) -> None:
    seen: list[str] = []

    def retrying(stderr: IO[str]) -> None:
        for line in stderr:
            seen.append(line)
            if "retrying" in line:
                break

    stopped = stop_with_signal(["scan", "rtsp://admin:s3cr3t@127.0.0.1:9/x", "--watchlist",
                                str(clip_watchlist[1])], signal.SIGINT, retrying)
    log = "".join(seen) + stopped.stderr
    assert stopped.returncode == 130
    assert "s3cr3t" not in log
    assert "scanning rtsp://***@127.0.0.1:9/x" in log


def test_a_file_named_like_an_ffmpeg_protocol_is_that_file(
        clip_watchlist: tuple[object, Path], tmp_path: Path) -> None:
    # "pipe:0" is FFmpeg's stdin protocol: the empty file that was checked must be what is
    # read, not the scan's stdin (which holds a real video here).
    (tmp_path / "pipe:0").write_bytes(b"")
    with CLIP.open("rb") as stdin:
        result = subprocess.run([*LFR, "scan", "pipe:0", "--watchlist", str(clip_watchlist[1]),
                                 "--jsonl"], env=ENV, cwd=tmp_path, stdin=stdin,
                                capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2, result.stderr[-2000:]
    summary = summary_of(result.stderr)
    assert summary["frames"] == 0
    assert "cannot open pipe:0" in str(summary["failure"])
