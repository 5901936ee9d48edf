"""The benchmark unit's CPU figures: ``children_cpu_s`` counts this process's running children
(the uplink's signing process) and nothing else. Every wait is bounded."""

from __future__ import annotations

import subprocess
import sys
import time

from bench.alert_burst_unit import children_cpu_s

BURN = ("import sys, time\n"
        "end = time.process_time() + 0.3\n"
        "while time.process_time() < end: pass\n"
        "sys.stdout.write('done\\n'); sys.stdout.flush(); sys.stdin.read()\n")
"""A child that spends 0.3 s of CPU, says so, then waits (alive) until its stdin closes."""


def test_a_running_childs_cpu_is_counted_and_a_finished_one_is_not() -> None:
    before = children_cpu_s()
    child = subprocess.Popen([sys.executable, "-c", BURN], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "done\n"
        counted = children_cpu_s() - before
        assert counted >= 0.25  # its 0.3 s (clock ticks of 10 ms), start-up included
    finally:
        child.communicate(timeout=30)
    deadline = time.monotonic() + 30
    while children_cpu_s() - before > 0.1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert children_cpu_s() - before < 0.1  # reaped: no longer a running child
