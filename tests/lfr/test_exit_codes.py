"""The command line's exit codes: one module defines them, and only the user's mistakes are
reported as bad input."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
from pathlib import Path

import pytest

import bench.pipeline_bench
import bench.runtime_bench
import lfr.cli
from guards.exit_codes import ExitCode, for_signal
from guards.user_input import UserInputError
from lfr.cli import main
from tests.lfr.cli_process import ENV, LFR


def test_the_documented_values() -> None:
    assert [int(code) for code in ExitCode] == [0, 1, 2, 3, 70, 74, 130, 143]
    assert for_signal(signal.SIGINT) is ExitCode.INTERRUPTED
    assert for_signal(signal.SIGTERM) is ExitCode.TERMINATED


@pytest.mark.parametrize("argv", [["--bogus"], ["scan", "--bogus", "x"],
                                  ["bench", "gallery", "--subjects=3", "--bogus=1"]])
def test_an_unknown_flag_is_named(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == ExitCode.BAD_INPUT
    assert "unrecognized argument: --bogus" in capsys.readouterr().err


def test_a_paced_pipeline_bench_is_not_also_bare(capsys: pytest.CaptureFixture[str]) -> None:
    """--bare times the model-bound phase a paced run does not have: the two are refused
    together, naming both, before any model loads."""
    assert main(["bench", "pipeline", "--source", "x.mp4", "--paced", "--bare"]) == (
        ExitCode.BAD_INPUT)
    assert "argument --bare: not allowed with argument --paced" in capsys.readouterr().err


def failing_command(error: BaseException) -> lfr.cli.Command:
    def command(_: argparse.Namespace) -> int:
        raise error
    return command


def run_verify_raising(error: BaseException, monkeypatch: pytest.MonkeyPatch) -> int:
    """``lfr verify a b`` with its work replaced by raising ``error``."""
    monkeypatch.setattr(lfr.cli, "_cmd_verify", failing_command(error))
    return main(["verify", "a.jpg", "b.jpg"])


def test_a_user_input_error_is_bad_input_in_one_line(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    code = run_verify_raising(UserInputError("a.jpg: not a photo\nFAKE line"), monkeypatch)
    assert code == ExitCode.BAD_INPUT
    err = capsys.readouterr().err
    assert err == "lfr verify: a.jpg: not a photo\\nFAKE line\n"  # escaped: one line


@pytest.mark.parametrize("error", [ValueError("bug"), RuntimeError("bug"), KeyError("bug")])
def test_any_other_error_is_an_internal_error_with_its_traceback(
        error: Exception, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="lfr"):
        code = run_verify_raising(error, monkeypatch)
    assert code == ExitCode.INTERNAL_ERROR
    record = next(r for r in caplog.records if "internal error" in r.getMessage())
    assert record.exc_info is not None
    assert record.exc_info[1] is error


def test_ctrl_c_is_exit_130_without_a_traceback(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_verify_raising(KeyboardInterrupt(), monkeypatch) == ExitCode.INTERRUPTED
    assert capsys.readouterr().err == "lfr verify: stopped by SIGINT\n"


@pytest.mark.parametrize(("met", "code"), [(True, ExitCode.OK), (False, ExitCode.TARGET_MISSED)])
def test_bench_pipeline_exits_1_below_its_guard(met: bool, code: ExitCode,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench.pipeline_bench, "run_pipeline_bench",
                        lambda *_, **__: {"ratio": 0.5, "target_met": met})
    assert main(["bench", "pipeline", "--source", "x.mp4", "--json"]) == code


@pytest.mark.parametrize(("met", "code"), [(True, ExitCode.OK), (False, ExitCode.TARGET_MISSED)])
def test_bench_runtime_exits_1_below_its_target(met: bool, code: ExitCode,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench.runtime_bench, "run_runtime_bench",
                        lambda: {"ratio": 0.4, "target_met": met})
    assert main(["bench", "runtime", "--json"]) == code


def test_results_that_cannot_be_written_exit_74(shared_data: Path) -> None:
    photo = shared_data / "faces" / "photos" / "joe_biden" / "biden_1.jpg"
    with open("/dev/full", "w") as full:
        result = subprocess.run([*LFR, "verify", str(photo), str(photo)], env=ENV,
                                stdout=full, stderr=subprocess.PIPE, text=True, timeout=120,
                                check=False)
    assert result.returncode == ExitCode.OUTPUT_FAILED, result.stderr[-2000:]
    assert "cannot write to stdout: No space left on device" in result.stderr
    assert "Traceback" not in result.stderr
    closed = subprocess.run([*LFR, "verify", str(photo), str(photo)], env=ENV,
                            stderr=subprocess.PIPE, text=True, timeout=120, check=False,
                            preexec_fn=lambda: os.close(1))
    assert closed.returncode == ExitCode.OUTPUT_FAILED, closed.stderr[-2000:]
    assert "stdout is closed" in closed.stderr
