"""What the watchlist tests with real processes share: units that live until stopped, the
commands run as a supervisor runs them, waiting for the van's view, and made-up watchlists."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from actors.unit.watchlist import Watchlist, save_watchlist
from bench.node_processes import NodeProcess
from lfr.local_deployment import LocalDeployment
from models.face_embedder import EMBEDDING_DIM
from models.model_file import MOBILEFACENET
from models.second_opinion_model import DESCRIPTOR_DIM, DLIB_RESNET_V1
from tests.lfr.cli_process import lfr

DEAD_CAMERA = "rtsp://127.0.0.1:9/never"
"""A live camera on the discard port: nothing answers, for ever, so a unit lives until stopped
and its detector has nothing to do."""
WAIT_S = 60.0
"""Upper bound of each wait for the units to report a change (they poll every second)."""
Status = dict[str, dict[str, Any]]


def edge(made: LocalDeployment, index: int) -> NodeProcess:
    """``lfr edge`` for the ``index``-th unit of ``made``."""
    return NodeProcess(made.unit_ids[index], [sys.executable, "-m", "lfr", "edge", "--config",
                                              str(made.unit_configs[index])])


def run_ok(*args: str) -> str:
    """``lfr ARGS``, which must succeed; its stdout."""
    result = lfr(*args, timeout_s=120)
    assert result.returncode == 0, (args, result.stderr[-2000:])
    return result.stdout


def status(made: LocalDeployment) -> Status:
    """``lfr watchlist status --json``, by unit."""
    out = run_ok("watchlist", "status", "--config", str(made.van_config), "--json")
    return {row["unit"]: row for row in json.loads(out)["units"]}


def until(made: LocalDeployment, check: Callable[[Status], bool], what: str) -> Status:
    """The van's view once ``check`` holds; fails naming ``what`` after ``WAIT_S``."""
    deadline = time.monotonic() + WAIT_S
    while True:
        seen = status(made)
        if check(seen):
            return seen
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {WAIT_S:g} s; status {seen}")
        time.sleep(0.5)


def sign(made: LocalDeployment, watchlist: Path, out: Path, *, version: int,
         not_after: str = "2099-01-01T00:00:00Z", deployment: str = "op-1",
         extra: tuple[str, ...] = ()) -> Path:
    """``lfr watchlist sign`` with the deployment's authority key."""
    run_ok("watchlist", "sign", str(watchlist), "--key", str(made.authority_signing_key),
           "--version", str(version), "--deployment", deployment, "--not-after", not_after,
           "--out", str(out), *extra)
    return out


def made_up_watchlist(path: Path, *, subjects: int = 4,
                      model_id: str = MOBILEFACENET.model_id) -> Watchlist:
    """A watchlist of made-up subjects whose embeddings exist nowhere else (random unit rows
    for both models), saved at ``path``: finding their bytes anywhere means a leak."""
    rng = np.random.default_rng()
    first = rng.standard_normal((subjects, EMBEDDING_DIM)).astype(np.float32)
    first /= np.linalg.norm(first, axis=1, keepdims=True)
    second = rng.standard_normal((subjects, DESCRIPTOR_DIM)).astype(np.float32)
    second /= np.linalg.norm(second, axis=1, keepdims=True)
    names = tuple(f"subject-{chr(ord('a') + i)}" for i in range(subjects))
    watchlist = Watchlist(model_id, MOBILEFACENET.sha256, time.time(), names, first,
                          np.full(subjects, 0.6, np.float32), (1,) * subjects,
                          DLIB_RESNET_V1.model_id, DLIB_RESNET_V1.sha256, second,
                          np.full(subjects, 0.6, np.float32))
    path.parent.mkdir(parents=True, exist_ok=True)
    save_watchlist(watchlist, path)
    return watchlist
