"""``lfr bench watchlist --subjects N --units U``: a signed watchlist pushed to real units.

Issue 9: the data channel carries about 1.5 MB/s, and a 10,000-subject watchlist must still
arrive at every unit and be acknowledged within a minute. This measures it the way an operator
does it, with real processes on this machine:

1. a synthetic watchlist of N subjects with both models' templates (random unit-length float32
   rows for ``MOBILEFACENET`` and ``DLIB_RESNET_V1``, ids ``subject-00001`` ...), saved with
   ``save_watchlist`` and signed by the deployment's authority (``sign_watchlist``, what ``lfr
   watchlist sign`` runs) for version 1 of one deployment;
2. a deployment provisioned in a temporary folder (``lfr.local_deployment``), ``lfr van`` and U
   ``lfr edge`` processes started; each unit's one camera is a tiny paced clip (one 128x96
   frame a second), which waits for the watchlist like any file camera and then costs nearly
   nothing, so the units' CPU goes to the transfer;
3. once every unit is linked and has polled the van, ``lfr van deployment start`` and ``lfr
   watchlist push SIGNED --units all`` run as commands (the push through the van's control
   socket; ``push_s`` is the command's wall time, interpreter start included);
4. from the push command's return, the van's status (what ``lfr watchlist status --json``
   asks, over one control link kept open) is read every ``POLL_S`` until each unit reports
   holding version 1 with N subjects: its ``delivered_s``. That covers the unit's next poll
   (at most a second away), the sealing on the van, the chunks over WebRTC, opening,
   verifying and decoding on the unit, its gallery build and its report to the van.

Figures: ``signed_bytes``, ``push_s``, ``delivered_s_p50``/``max`` over the units,
``throughput_mb_s`` (``signed_bytes`` / the slowest unit's ``delivered_s``, MB = 10^6 bytes,
so a lower bound of the channel's rate), ``aggregate_mb_s`` (all units' bytes over that time),
the CPU seconds the van and the units spent from the push to the end of delivery, and
``target_met``: every unit held the list within ``TARGET_S`` and every process stopped cleanly.
A refusal or a unit that never holds it within ``timeout_s`` is reported by name with its
reason (``failures``), never waited for longer.

Every process is stopped with SIGTERM and a bounded wait (SIGKILL after it, reported); the
temporary folder, its keys and its watchlist files go with the run. The synthetic embeddings are
random: no face data is made, read or logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar

import numpy as np

from actors.unit.watchlist import Watchlist, load_watchlist, save_watchlist
from bench.node_processes import REPO_ROOT, NodeProcess, start_van
from guards.exit_codes import ExitCode
from guards.user_input import UserInputError
from lfr.local_deployment import CameraPlan, LocalDeployment, create_local_deployment
from lfr.stop_signals import stop_signal_received
from models.face_embedder import EMBEDDING_DIM
from models.model_file import MOBILEFACENET
from models.second_opinion_model import DESCRIPTOR_DIM, DLIB_RESNET_V1

DEFAULT_SUBJECTS: Final = 10_000
"""The issue's watchlist size."""
MAX_SUBJECTS: Final = 50_000
"""About 65 MB signed (1,303 bytes a subject): the largest signed watchlist a van and unit
accept (``actors.signed_watchlist.MAX_SIGNED_WATCHLIST_BYTES``). Measured 2026-11-30: ``lfr
watchlist push`` fails above 32 MiB (about 25,700 subjects), the control link's default codec
limit, and the run reports it under ``failures``."""
MAX_UNITS: Final = 16
"""Unit processes one run starts (each is a Python process of a few hundred MB with the
models loaded)."""
TARGET_S: Final = 60.0
"""The issue's bound: the list arrives at every unit and is acknowledged within a minute."""
POLL_S: Final = 0.2
"""How often the van's status is read while waiting."""
DEPLOYMENT_ID: Final = "bench-watchlist"
"""The deployment the list is signed for and pushed in."""
THRESHOLD: Final = 0.6
"""The deployment's alert threshold (no face is ever matched here)."""
VERSION: Final = 1
"""The version signed and pushed."""
VALIDITY_S: Final = 3600.0
"""How long the signed list is valid from its signing."""
CLIP_SECONDS: Final = 3600
"""Length of the units' idle clip at one frame a second: it outlasts any run."""
LINK_TIMEOUT_S: Final = 180.0
"""How long every unit may take to link to the van and poll it once."""
COMMAND_TIMEOUT_S: Final = 120.0
"""How long ``lfr van deployment start`` or ``lfr watchlist push`` may take."""
STOP_TIMEOUT_S: Final = 30.0
"""How long a stopped process may take to end after SIGTERM (then SIGKILL)."""
STATUS_ASK_TIMEOUT_S: Final = 10.0
"""One status ask of the van."""
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class BenchPlan:
    """What one run does."""

    subjects: int = DEFAULT_SUBJECTS
    """Subjects in the watchlist."""
    units: int = 1
    """Unit processes."""
    timeout_s: float = 300.0
    """How long the run waits for every unit to hold the list after the push (s)."""

    def __post_init__(self) -> None:
        if not 1 <= self.subjects <= MAX_SUBJECTS:
            raise UserInputError(f"--subjects must be 1-{MAX_SUBJECTS}, got {self.subjects}")
        if not 1 <= self.units <= MAX_UNITS:
            raise UserInputError(f"--units must be 1-{MAX_UNITS}, got {self.units}")
        if not TARGET_S <= self.timeout_s <= 3000:
            raise UserInputError(f"the delivery timeout must be {TARGET_S:g}-3000 s, got "
                                 f"{self.timeout_s:g}")


@dataclass(slots=True)
class UnitOutcome:
    """What became of one unit after the push (filled in while waiting)."""

    delivered_s: float | None = None
    """Seconds from the push command's return to the van's status showing the list held."""
    failure: str | None = None
    """Why it never held it: its refusal, or not within the timeout."""
    last_state: str = "none"
    """The state it last reported (for failures)."""


@dataclass(slots=True)
class _Processes:
    """The processes of one run, stopped in reverse order (units first, then the van)."""

    van: NodeProcess | None = None
    units: dict[str, NodeProcess] = field(default_factory=dict)
    exit_codes: dict[str, int | None] = field(default_factory=dict)
    """Each process's exit code after the stop; None when it had to be killed."""

    def stop_all(self) -> None:
        """SIGTERM to every unit at once, then wait for each (bounded), then the van. After a
        stop signal to this process everything is killed at once instead: the command line
        ends a stopping command within 1.5 s (``lfr.stop_signals``) and must leave no child."""
        van = [("van", self.van)] if self.van is not None else []
        if stop_signal_received() is not None:
            for name, process in [*self.units.items(), *van]:
                process.kill()
                self.exit_codes[name] = None
            return
        for group in (list(self.units.items()), van):
            for _, process in group:
                if process.process.poll() is None:
                    process.process.send_signal(signal.SIGTERM)
            for name, process in group:  # one SIGTERM only: a second one may kill it mid-stop
                try:
                    self.exit_codes[name] = process.wait(STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    process.kill()
                    self.exit_codes[name] = None  # killed after the bounded wait


def synthetic_watchlist(subjects: int, *, seed: int = 9) -> Watchlist:
    """A valid two-model watchlist of ``subjects`` random subjects (random unit-length rows)."""
    rng = np.random.default_rng(seed)
    first = rng.standard_normal((subjects, EMBEDDING_DIM), dtype=np.float32)
    first /= np.linalg.norm(first, axis=1, keepdims=True)
    second = rng.standard_normal((subjects, DESCRIPTOR_DIM), dtype=np.float32)
    second /= np.linalg.norm(second, axis=1, keepdims=True)
    return Watchlist(
        model_id=MOBILEFACENET.model_id, model_sha256=MOBILEFACENET.sha256,
        created_at=time.time(),
        subjects=tuple(f"subject-{number:05d}" for number in range(1, subjects + 1)),
        embeddings=first, thresholds=np.full(subjects, THRESHOLD, np.float32),
        photos=(1,) * subjects, second_model_id=DLIB_RESNET_V1.model_id,
        second_model_sha256=DLIB_RESNET_V1.sha256, second_embeddings=second,
        second_thresholds=np.full(subjects, 0.6, np.float32))


def write_idle_clip(path: Path, seconds: int = CLIP_SECONDS) -> Path:
    """A grey 128x96 MPEG-4 clip at one frame a second, ``seconds`` long (about 40 bytes a
    frame): a paced camera on it decodes one tiny frame a second."""
    import av  # noqa: PLC0415 - PyAV is loaded only by the commands that decode

    pixels = np.full((96, 128, 3), 90, np.uint8)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=1)
        stream.width, stream.height, stream.pix_fmt = 128, 96, "yuv420p"
        for index in range(seconds):
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts = index
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def sign_bench_watchlist(watchlist_file: Path, authority_signing_key: Path, out: Path) -> int:
    """Sign ``watchlist_file`` as ``lfr watchlist sign`` does (version ``VERSION`` of
    ``DEPLOYMENT_ID``, valid ``VALIDITY_S`` from now) into ``out`` (0600); its size in bytes."""
    from actors.signed_watchlist import sign_watchlist  # noqa: PLC0415 - crypto on demand
    from guards.files import write_new_file  # noqa: PLC0415
    from secure.key_files import read_node_keys  # noqa: PLC0415

    now = time.time()
    data = sign_watchlist(load_watchlist(watchlist_file),
                          authority=read_node_keys(authority_signing_key),
                          deployment_id=DEPLOYMENT_ID, version=VERSION,
                          not_after=now + VALIDITY_S, now=now)
    write_new_file(out, data, "signed watchlist", 0o600)
    return len(data)


class CommandFailed(RuntimeError):
    """An ``lfr`` command the run needs failed; the text has its exit code and stderr."""


def _lfr(*args: str) -> tuple[float, str]:
    """Run ``lfr ARGS`` to its end; its wall time and stdout. ``CommandFailed`` with its
    stderr when it fails or takes longer than ``COMMAND_TIMEOUT_S``."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    shown = f"lfr {' '.join(args[:2])}"
    started = time.monotonic()
    try:
        done = subprocess.run([sys.executable, "-m", "lfr", *args], cwd=REPO_ROOT, env=env,  # noqa: S603 - our own command, no shell
                              capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S,
                              check=False)
    except subprocess.TimeoutExpired:
        raise CommandFailed(f"{shown} took more than {COMMAND_TIMEOUT_S:g} s") from None
    elapsed = time.monotonic() - started
    if done.returncode != ExitCode.OK:
        last = done.stderr.strip().splitlines()[-1:] or ["(nothing on stderr)"]
        raise CommandFailed(f"{shown} ended with {done.returncode}: {last[0][-1000:]}")
    return elapsed, done.stdout


class _VanStatus:
    """One control link to the running van, asked ``GetWatchlistStatus`` (what ``lfr watchlist
    status`` asks) as often as the run needs. Runs on its own event loop thread, so the run's
    blocking waits never starve the link's heartbeats."""

    def __init__(self, deployment: LocalDeployment) -> None:
        from lfr.config.van import load_van_config  # noqa: PLC0415 - loads the codec

        config = load_van_config(deployment.van_config)
        self._socket = config.control_socket
        self._key = config.control_key
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="van status",
                                        daemon=True)
        self._thread.start()
        self._submit(self._open())

    def _submit(self, work: Coroutine[Any, Any, T]) -> T:
        """Run ``work`` on the link's loop and wait for it (bounded)."""
        return asyncio.run_coroutine_threadsafe(work, self._loop).result(
            timeout=LINK_TIMEOUT_S)

    async def _open(self) -> None:
        from lfr.van_control import (  # noqa: PLC0415
            CONNECT_TIMEOUT_S,
            MAX_CONTROL_FRAME_BYTES,
            control_keys,
        )
        from runtime.link_config import LinkConfig  # noqa: PLC0415
        from runtime.link_endpoints import connect_unix  # noqa: PLC0415
        from runtime.system import ActorSystem, SystemConfig  # noqa: PLC0415

        self._system = ActorSystem(SystemConfig(name="lfr-bench-watchlist"))
        await self._system.start()
        config = LinkConfig(keys=control_keys(self._key, create=False),
                            max_frame_bytes=MAX_CONTROL_FRAME_BYTES)
        self._client = connect_unix(self._system, os.fspath(self._socket), config)
        await self._client.wait_connected(CONNECT_TIMEOUT_S)

    async def _ask(self) -> list[dict[str, object]]:
        from actors.van.control_messages import (  # noqa: PLC0415
            CONTROL_ACTOR,
            GetWatchlistStatus,
            WatchlistStatus,
        )

        answer = await self._client.ref(CONTROL_ACTOR).ask(GetWatchlistStatus(),
                                                           timeout=STATUS_ASK_TIMEOUT_S)
        if not isinstance(answer, WatchlistStatus):
            raise TypeError(f"the van answered a status ask with a {type(answer).__name__}")
        return [{"unit": row.unit_id, "linked": row.linked, "state": row.state,
                 "deployment": row.deployment_id, "version": row.version,
                 "subjects": row.subjects, "refused_version": row.refused_version,
                 "refused_reason": row.refused_reason, "polled": row.last_poll_age_s >= 0}
                for row in answer.units]

    def units(self) -> dict[str, dict[str, object]]:
        """Every unit's row of the van's status, by unit id."""
        return {str(row["unit"]): row for row in self._submit(self._ask())}

    def close(self) -> None:
        async def close() -> None:
            await self._client.stop()
            await self._system.stop()

        with contextlib.suppress(Exception):  # closing on the way out of a failed run too
            self._submit(close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self._loop.close()


@contextlib.contextmanager
def _van_status(deployment: LocalDeployment) -> Iterator[_VanStatus]:
    status = _VanStatus(deployment)
    try:
        yield status
    finally:
        status.close()


def _wait_linked(status: _VanStatus, units: dict[str, NodeProcess]) -> None:
    deadline = time.monotonic() + LINK_TIMEOUT_S
    while True:
        rows = status.units()
        if all(rows.get(name, {}).get("linked") and rows[name].get("polled") for name in units):
            return
        for name, process in units.items():
            if process.process.poll() is not None:
                raise RuntimeError(f"{name} ended before it linked to the van: "
                                   f"{process.tail()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"not every unit linked to the van and polled it within "
                               f"{LINK_TIMEOUT_S:g} s: {rows}")
        time.sleep(POLL_S)


def _wait_held(status: _VanStatus, units: dict[str, NodeProcess], subjects: int,
               pushed_at: float, timeout_s: float) -> dict[str, UnitOutcome]:
    outcomes = {name: UnitOutcome() for name in units}
    deadline = pushed_at + timeout_s
    while any(o.delivered_s is None and o.failure is None for o in outcomes.values()):
        rows = status.units()
        now = time.monotonic()
        for name, outcome in outcomes.items():
            if outcome.delivered_s is not None or outcome.failure is not None:
                continue
            row = rows.get(name, {})
            outcome.last_state = str(row.get("state", "none"))
            if (row.get("state") == "held" and row.get("deployment") == DEPLOYMENT_ID
                    and row.get("version") == VERSION and row.get("subjects") == subjects):
                outcome.delivered_s = now - pushed_at
            elif row.get("refused_version") == VERSION:
                outcome.failure = f"refused: {row.get('refused_reason')}"
            elif units[name].process.poll() is not None:
                outcome.failure = (f"ended with {units[name].process.returncode}: "
                                   f"{units[name].tail(5)}")
            elif now > deadline:
                outcome.failure = (f"not held within {timeout_s:g} s (last state "
                                   f"{outcome.last_state})")
        time.sleep(POLL_S)
    return outcomes


@dataclass(slots=True)
class _Measured:
    """What one run measured, gathered as it goes."""

    signed_bytes: int = 0
    push_s: float = 0.0
    push: dict[str, object] = field(default_factory=dict)
    """The push command's JSON answer."""
    outcomes: dict[str, UnitOutcome] = field(default_factory=dict)
    cpu_s: dict[str, float] = field(default_factory=dict)
    """CPU seconds of each process from the push to the end of delivery."""
    push_failure: str | None = None
    """Why ``lfr watchlist push`` failed (then nothing was delivered)."""


def run_watchlist_bench(subjects: int = DEFAULT_SUBJECTS, units: int = 1, *,
                        timeout_s: float = 300.0) -> dict[str, object]:
    """Run the benchmark (module docstring); the figures as one JSON-able dict."""
    plan = BenchPlan(subjects, units, timeout_s)
    measured = _Measured()
    processes = _Processes()
    with tempfile.TemporaryDirectory(prefix="lfr-bench-watchlist-") as tmp:
        root = Path(tmp)
        watchlist_file = root / "bench.lfrw"
        save_watchlist(synthetic_watchlist(plan.subjects), watchlist_file)
        clip = write_idle_clip(root / "idle.mp4")
        deployment = create_local_deployment(root / "deployment", units=plan.units,
                                             cameras=[CameraPlan("idle", clip, paced=True)],
                                             watchlist=watchlist_file)
        signed = root / "bench.signed"
        measured.signed_bytes = sign_bench_watchlist(
            watchlist_file, deployment.authority_signing_key, signed)
        try:
            processes.van = start_van(deployment.van_config)
            for name, unit_config in zip(deployment.unit_ids, deployment.unit_configs,
                                         strict=True):
                processes.units[name] = NodeProcess(
                    name, [sys.executable, "-m", "lfr", "edge", "--config", str(unit_config)])
            with _van_status(deployment) as status:
                _push_and_wait(plan, deployment, signed, processes=processes, status=status,
                               measured=measured)
        finally:
            processes.stop_all()
    return _figures(plan, measured, processes.exit_codes)


def _push_and_wait(plan: BenchPlan, deployment: LocalDeployment, signed: Path, *,
                   processes: _Processes, status: _VanStatus, measured: _Measured) -> None:
    _wait_linked(status, processes.units)
    config = str(deployment.van_config)
    _lfr("van", "deployment", "start", "--id", DEPLOYMENT_ID, "--threshold", str(THRESHOLD),
         "--config", config)
    cpu_before = _cpu(processes)
    try:
        measured.push_s, pushed = _lfr("watchlist", "push", str(signed), "--units", "all",
                                       "--config", config, "--json")
    except CommandFailed as exc:  # the product failed: a figure of the run, not a crash
        measured.push_failure = str(exc)
        return
    pushed_at = time.monotonic()
    measured.push = json.loads(pushed)
    measured.outcomes = _wait_held(status, processes.units, plan.subjects, pushed_at,
                                   plan.timeout_s)
    cpu_after = _cpu(processes)
    measured.cpu_s = {name: round(cpu_after[name] - cpu_before[name], 2) for name in cpu_after}


def _cpu(processes: _Processes) -> dict[str, float]:
    every = {"van": processes.van, **processes.units}
    return {name: process.cpu_seconds() for name, process in every.items() if process}


def _figures(plan: BenchPlan, measured: _Measured,
             exit_codes: dict[str, int | None]) -> dict[str, object]:
    outcomes = measured.outcomes
    delivered = [o.delivered_s for o in outcomes.values() if o.delivered_s is not None]
    slowest = max(delivered) if delivered and len(delivered) == plan.units else None
    clean = all(code == ExitCode.TERMINATED for code in exit_codes.values())
    size_mb = measured.signed_bytes / 1e6
    result: dict[str, object] = {
        "subjects": plan.subjects, "units": plan.units, "signed_bytes": measured.signed_bytes,
        "pushed_version": measured.push.get("version"),
        "pushed_subjects": measured.push.get("subjects"),
        "push_s": None if measured.push_failure else round(measured.push_s, 2),
        "delivered_units": len(delivered),
        "delivered_s": {name: None if o.delivered_s is None else round(o.delivered_s, 2)
                        for name, o in outcomes.items()},
        "delivered_s_p50": round(float(np.percentile(delivered, 50)), 2) if delivered else None,
        "delivered_s_max": round(slowest, 2) if slowest is not None else None,
        "throughput_mb_s": round(size_mb / slowest, 2) if slowest else None,
        "aggregate_mb_s": round(plan.units * size_mb / slowest, 2) if slowest else None,
        "cpu_s_during_delivery": measured.cpu_s,
        "failures": {name: o.failure for name, o in outcomes.items() if o.failure is not None}
        | ({"push": measured.push_failure} if measured.push_failure else {}),
        "exit_codes": exit_codes, "stopped_cleanly": clean,
        "target_s": TARGET_S}
    result["target_met"] = bool(slowest is not None and slowest <= TARGET_S and clean)
    return result
