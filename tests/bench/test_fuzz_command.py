"""The long fuzz runs share one command line (``bench.fuzz_command``): each, run as a command,
prints one JSON summary of the inputs and seed it was given and exits 0 when nothing
unexpected happened."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("module", "inputs"), [
    ("bench.fuzz_envelope", 200), ("bench.fuzz_signaling", 200), ("bench.fuzz_batches", 150)])
def test_the_command_prints_its_summary_and_exits_0(module: str, inputs: int) -> None:
    done = subprocess.run([sys.executable, "-m", module, "--inputs", str(inputs), "--seed", "5"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert (summary["inputs"], summary["seed"], summary["ok"]) == (inputs, 5, True)
