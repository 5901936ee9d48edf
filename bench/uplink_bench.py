"""``lfr bench uplink --units N``: a van and N units as real processes, alerts end to end.

A deployment is provisioned in a temporary folder (``lfr.local_deployment``: fresh keys, TLS
certificate, enrolment, configs); ``lfr van`` starts, then N unit processes
(``bench.alert_burst_unit``: the real uplink, outbox, sealing and WebRTC link; only the alerts
are generated). Once every unit is linked they start together: ``alerts`` alerts each at
``rate`` per second with a ``crop_bytes`` JPEG crop, and a burst of ``burst`` at once, unit i of N
after ``alerts * (i + 0.5) / N`` of its steady alerts: each unit has its burst (a group of
watchlisted people passing its camera), at moments spread over the run as they would be in the
field. ``--burst-together`` fires every unit's burst at the same moment instead (the worst case:
N x ``burst`` alerts at once), a stress figure rather than the target's. When
every unit has had all its alerts acknowledged, the van is stopped and its event store is read
back and every envelope opened with the van's key (``bench.van_events``).

Figures: ``alerts`` sent, ``lost`` (sealed at a unit, never stored at the van), ``duplicates``
(an alert stored twice, by event id), and the latency from the alert's capture time on the unit
to its storage at the van (``received_at - captured_at``, one machine, one clock): ``p50`` and
``p99`` over every alert, and separately over the steady part and the burst. ``van_cpu_s`` is the
van process's CPU over the whole run. Targets (issue 8): N = 1: p99 <= 60 ms; N >= 2: p99 <=
150 ms; lost = duplicates = 0.
"""

from __future__ import annotations

import contextlib
import itertools
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.node_processes import BurstUnitProcess, start_burst_unit, start_van
from bench.van_events import ReceivedAlert, read_van_alerts
from guards.user_input import UserInputError
from lfr.local_deployment import CameraPlan, create_local_deployment

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO_CLIP = REPO_ROOT / "demo" / "short_hamilton_clip.mp4"
DEMO_PHOTOS = REPO_ROOT / "demo" / "watchlist_photos"
MAX_UNITS = 32
"""Unit processes one benchmark starts (each is a Python process of ~100 MB)."""


def target_p99_ms(units: int) -> float:
    """The issue's latency target for ``units`` units."""
    return 60.0 if units == 1 else 150.0


def build_demo_watchlist(out: Path) -> Path:
    """The demo photos' watchlist (each unit's config names one; the synthetic units do not
    match with it, ``lfr edge`` would)."""
    from actors.unit.watchlist import save_watchlist  # noqa: PLC0415 - loads the models
    from lfr.photo_faces import PhotoFaces  # noqa: PLC0415
    from lfr.watchlist_build import build_watchlist  # noqa: PLC0415

    watchlist, _ = build_watchlist(DEMO_PHOTOS, PhotoFaces(), progress=False)
    save_watchlist(watchlist, out)
    return out


def _percentile_ms(latencies_s: list[float], q: float) -> float | None:
    return round(float(np.percentile(latencies_s, q)) * 1000, 1) if latencies_s else None


def score(units: dict[str, BurstUnitProcess], received: dict[str, list[ReceivedAlert]]
          ) -> dict[str, object]:
    """Lost, duplicates and latencies from what units sealed and what the van stored."""
    lost = duplicates = out_of_order = 0
    every: list[float] = []
    steady_latencies: list[float] = []
    burst_latencies: list[float] = []
    for name, unit in units.items():
        sealed = unit.sealed()
        stored = received.get(name, [])
        ids = [alert.event_id for alert in stored]
        duplicates += len(ids) - len(set(ids))
        lost += len(set(sealed) - set(ids))
        # sequence order at the van is the order the unit sealed them in
        order = [ids.index(event_id) for event_id in sealed if event_id in ids]
        out_of_order += sum(1 for a, b in itertools.pairwise(order) if b < a)
        for alert in stored:
            latency = alert.received_at - alert.captured_at
            every.append(latency)
            burst = alert.event_id.split("/")[-2] == "burst"
            (burst_latencies if burst else steady_latencies).append(latency)
    return {"lost": lost, "duplicates": duplicates, "out_of_order": out_of_order,
            "latency_ms_p50": _percentile_ms(every, 50),
            "latency_ms_p99": _percentile_ms(every, 99),
            "latency_ms_max": _percentile_ms(every, 100),
            "steady_latency_ms_p50": _percentile_ms(steady_latencies, 50),
            "steady_latency_ms_p99": _percentile_ms(steady_latencies, 99),
            "burst_latency_ms_p50": _percentile_ms(burst_latencies, 50),
            "burst_latency_ms_p99": _percentile_ms(burst_latencies, 99)}


def burst_after(unit_index: int, units: int, alerts: int, *, together: bool) -> int:
    """Steady alerts unit ``unit_index`` (0-based) sends before its burst."""
    return alerts if together else round(alerts * (unit_index + 0.5) / units)


def run_uplink_bench(units: int, *, alerts: int = 60, rate: float = 2.0, burst: int = 10,
                     crop_bytes: int = 20_000, burst_together: bool = False,
                     timeout_s: float = 600.0) -> dict[str, object]:
    """Run the benchmark (module docstring); the figures as one JSON-able dict."""
    if not 1 <= units <= MAX_UNITS:
        raise UserInputError(f"--units must be 1-{MAX_UNITS}, got {units}")
    if alerts < 1 or burst < 0 or not 0 < rate <= 100:
        raise UserInputError("--alerts must be >= 1, --burst >= 0, --rate in (0, 100]")
    with tempfile.TemporaryDirectory(prefix="lfr-bench-uplink-") as tmp:
        root = Path(tmp)
        watchlist = build_demo_watchlist(root / "demo.lfrw")
        deployment = create_local_deployment(root / "deployment", units=units,
                                             cameras=[CameraPlan("cam0", DEMO_CLIP)],
                                             watchlist=watchlist)
        start_file = root / "start"
        with contextlib.ExitStack() as stack:
            van = stack.enter_context(start_van(deployment.van_config))
            cpu_before = van.cpu_seconds()
            processes = {name: stack.enter_context(start_burst_unit(
                name, config, "--alerts", str(alerts), "--rate", str(rate), "--burst",
                str(burst), "--burst-after",
                str(burst_after(index, units, alerts, together=burst_together)),
                "--crop-bytes", str(crop_bytes), "--start-file", str(start_file),
                "--drain-timeout-s", str(timeout_s)))
                for index, (name, config) in enumerate(zip(deployment.unit_ids,
                                                           deployment.unit_configs, strict=True))}
            for unit in processes.values():
                unit.linked(180)
            start_file.touch()
            started = time.monotonic()
            codes = {name: unit.wait(timeout_s + 60) for name, unit in processes.items()}
            elapsed = time.monotonic() - started
            van_cpu = van.cpu_seconds() - cpu_before
            van_code = van.stop()
            summaries = {name: unit.summary(5) for name, unit in processes.items()}
            received = read_van_alerts(deployment.root / "van" / "state",
                                       deployment.van_signing_key,
                                       deployment.van_encryption_key, deployment.unit_ids)
            figures = score(processes, received)
    sent = sum(int(str(summary["alerts_sealed"])) for summary in summaries.values())
    result: dict[str, object] = {
        "units": units, "alerts": sent, "alerts_per_unit": alerts + burst,
        "rate_per_unit": rate, "burst_per_unit": burst, "bursts_together": burst_together,
        "crop_bytes": crop_bytes,
        **figures, "van_cpu_s": round(van_cpu, 2), "elapsed_s": round(elapsed, 1),
        "unit_exit_codes_nonzero": sorted(name for name, code in codes.items() if code != 0),
        "van_exit_code": van_code, "target_p99_ms": target_p99_ms(units)}
    p99 = figures["latency_ms_p99"]
    result["target_met"] = bool(
        figures["lost"] == 0 and figures["duplicates"] == 0 and figures["out_of_order"] == 0
        and not result["unit_exit_codes_nonzero"] and isinstance(p99, float)
        and p99 <= target_p99_ms(units))
    return result
