"""The privacy invariant, end to end: a scan that matches nobody leaves no trace.

Runs ``lfr -v scan`` in a separate process with a watchlist of people who are not in the clip,
a temporary HOME, TMPDIR and working directory, and a Python audit hook that records every file
opened for writing and every socket connection. Then checks that:

- no file was created or grew in the watched folders (the fresh home, temp and working
  directories, the watchlist's folder and the repository itself);
- the process opened nothing for writing (``/dev/null`` aside: it stores nothing) and connected
  nowhere;
- the only process it started is the second model's worker (``models.second_opinion_worker``:
  our interpreter, isolated, fed through pipes); the worker has no audit hook of its own, so
  what it could write is caught by the folder snapshots above;
- stdout is empty (no alert) and no log line holds embedding values or image bytes.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.lfr.conftest import CLIP, REPO_ROOT

PROBE = """
import json, os, sys
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
events = []
children = []
def hook(event, args):
    if event == "open":
        path, mode, flags = args
        writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and flags & WRITE_FLAGS)
        if writes and str(path) != os.devnull:
            events.append(["open", str(path), str(mode)])
    elif event == "subprocess.Popen":
        executable, argv = args[0], list(args[1])
        children.append([str(executable), [str(a)[:40] for a in argv]])
    elif event in ("socket.connect", "socket.sendto", "socket.sendmsg"):
        events.append([event, repr(args[1:])])
sys.addaudithook(hook)
from lfr.cli import main
code = main(sys.argv[1:])
sys.stderr.write("AUDIT " + json.dumps(events) + "\\n")
sys.stderr.write("CHILDREN " + json.dumps(children) + "\\n")
sys.exit(code)
"""

IGNORED_DIRS = {".git", ".venv", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".hypothesis",
                "__pycache__", "test-artifacts"}
"""Not the scan's: tools' caches, and the browser tests' screenshots, which another test worker
may write while the scan runs (make test runs two)."""
# Eight or more numbers in a row: what a logged embedding (or pixel row) would look like.
NUMBER_RUN = re.compile(r"(?:-?\d+\.\d+[,\s]+){8,}")
BASE64_RUN = re.compile(r"[A-Za-z0-9+/]{200,}")


def _snapshot(folders: list[Path]) -> dict[str, tuple[int, int]]:
    state: dict[str, tuple[int, int]] = {}
    for folder in folders:
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames[:] = [d for d in dirnames if d not in IGNORED_DIRS]
            for name in filenames:
                path = os.path.join(dirpath, name)
                try:
                    stat = os.stat(path)
                except FileNotFoundError:
                    continue
                state[path] = (stat.st_size, stat.st_mtime_ns)
    return state


def test_a_scan_matching_nobody_writes_nothing_sends_nothing_logs_no_face_data(
        absent_watchlist: Path, tmp_path: Path) -> None:
    home, temp, work = tmp_path / "home", tmp_path / "tmp", tmp_path / "work"
    for folder in (home, temp, work):
        folder.mkdir()
    watched = [home, temp, work, absent_watchlist.parent, REPO_ROOT]
    before = _snapshot(watched)
    env = {**os.environ, "HOME": str(home), "TMPDIR": str(temp), "PYTHONDONTWRITEBYTECODE": "1",
           "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", PROBE, "-v", "scan", str(CLIP), "--watchlist",
         str(absent_watchlist)],
        cwd=work, env=env, capture_output=True, timeout=300, check=False)
    after = _snapshot(watched)
    stderr = result.stderr.decode("utf-8", errors="replace")
    assert result.returncode == 0, stderr[-3000:]

    created = sorted(set(after) - set(before))
    changed = sorted(p for p in set(after) & set(before) if after[p] != before[p])
    assert created == [], f"files created during the scan: {created}"
    assert changed == [], f"files modified during the scan: {changed}"

    audit_lines = [line for line in stderr.splitlines() if line.startswith("AUDIT ")]
    assert len(audit_lines) == 1
    events = json.loads(audit_lines[0][len("AUDIT "):])
    assert events == [], f"the scan opened files for writing or used the network: {events}"
    children_lines = [line for line in stderr.splitlines() if line.startswith("CHILDREN ")]
    assert len(children_lines) == 1
    for executable, argv in json.loads(children_lines[0][len("CHILDREN "):]):
        assert executable == sys.executable, f"the scan started another program: {argv}"
        assert argv[1:3] == ["-I", "-c"], f"the scan started another process: {argv}"

    assert result.stdout == b"", "a watchlist of absent people must raise no alert"
    assert "scanned 275 frames" in stderr
    log = "\n".join(line for line in stderr.splitlines()
                    if not line.startswith(("AUDIT ", "CHILDREN ")))
    assert not NUMBER_RUN.search(log), "a log line holds a run of numbers (embedding values?)"
    assert not BASE64_RUN.search(log), "a log line holds a long base64 run (image bytes?)"
    assert "\ufffd" not in log, "the log holds undecodable bytes (image data?)"
