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

Figures: ``alerts`` sent, ``unsealed`` (told to a unit's uplink and never sealed: none unless a
crop or an alert breaks a body limit), ``lost`` (sealed at a unit, never stored at the van),
``duplicates`` (an alert stored twice, by event id), and the latency from the alert's capture
time on the unit to its storage at the van (``received_at - captured_at``, one machine, one
clock): ``p50`` and ``p99`` over every alert, and separately over the steady part and the
burst. ``van_cpu_s`` is the van process's CPU over the whole run, ``unit_cpu_s`` each unit's
from its first alert on (sorted), ``unit_signing_cpu_s`` each unit's signing process's over
the same time (sorted).
Targets (issue 8): N = 1: p99 <= 60 ms; N >= 2: p99 <= 150 ms; lost = duplicates = 0 (and
nothing unsealed or out of order). ``--crop-bytes`` is refused before anything starts when the
crop it makes could not be sealed (``check_crop_bytes``).

Where the time goes: both sides trace each envelope into a file (``actors.delivery_trace``; the
van runs as ``bench.traced_van``), and ``breakdown`` splits each alert's latency into stages,
reported as [p50, p99] in ms, steady and burst apart (``breakdown_ms``), and for the slowest
alert (``slowest_ms``):

========================  =========================================================================
 stage                     from, to
========================  =========================================================================
 ``capture_to_sealed``     the alert's capture; its envelope in the unit's outbox (the uplink's
                           mailbox, encoding, sealing and signing, the append and its fsync)
 ``sealed_to_sent``        in the outbox; its ``DeliverBatch`` handed to the link (waiting for the
                           batches in flight: the sender's ``batches_in_flight``)
 ``sent_to_arrived``       handed to the link; the whole frame received by the van's data channel
                           (SCTP and DTLS on both sides: the transmission)
 ``arrived_to_started``    received; the van's receiver starts on it (waiting behind the unit's
                           earlier envelopes)
 ``verify``                started; signatures checked, opened, body checked (with the worker pool)
 ``store``                 checked; committed to the event store (one transaction, one fsync)
 ``stored_to_receipt``     committed; the receipt back at the unit (not part of the latency)
========================  =========================================================================

A frame's arrival is matched to its envelopes by order (the k-th frame of at least
``DELIVER_FRAME_BYTES`` from a unit is the k-th ``DeliverBatch`` its receiver started on, whose
envelopes share their start mark: one ordered channel, one receiver); a unit whose counts
differ (a reconnect, a refusal) has no arrival stages.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from actors.delivery_trace import DeliveryMark, Stage
from bench.alert_burst_unit import bench_crop
from bench.node_processes import BurstUnitProcess, start_burst_unit, start_van
from bench.trace_lines import read_arrivals, read_marks
from bench.van_events import ReceivedAlert, read_van_alerts
from guards.user_input import UserInputError
from lfr.local_deployment import CameraPlan, create_local_deployment

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO_CLIP = REPO_ROOT / "demo" / "short_hamilton_clip.mp4"
DEMO_PHOTOS = REPO_ROOT / "demo" / "watchlist_photos"
MAX_UNITS = 32
"""Unit processes one benchmark starts (each is a Python process of ~100 MB)."""
DELIVER_FRAME_BYTES = 8192
"""A frame from a unit at least this large is a ``Deliver`` (an alert's is about 26 KB; a
``Resume``, a heartbeat and a health report are far smaller)."""
CAPTURED = "captured"
"""The point an alert's latency starts from: its capture time on the unit."""
ARRIVED = "arrived"
"""The point its ``Deliver`` frame was received by the van's data channel."""
STAGES: tuple[tuple[str, str, str], ...] = (
    ("capture_to_sealed", CAPTURED, Stage.SEALED),
    ("sealed_to_sent", Stage.SEALED, Stage.SENT),
    ("sent_to_arrived", Stage.SENT, ARRIVED),
    ("arrived_to_started", ARRIVED, Stage.STARTED),
    ("verify", Stage.STARTED, Stage.VERIFIED),
    ("store", Stage.VERIFIED, Stage.STORED),
    ("stored_to_receipt", Stage.STORED, Stage.RECEIPT),
)
"""The stages of ``breakdown`` (module docstring): name, from point, to point (a ``Stage``,
``CAPTURED`` or ``ARRIVED``)."""


def check_crop_bytes(crop_bytes: int) -> None:
    """Refuse (``UserInputError``, naming ``--crop-bytes``) a size whose crop no alert may
    carry (``bench.alert_burst_unit.bench_crop``): every alert would be unsealable, a run that
    measures nothing."""
    try:
        bench_crop(crop_bytes)
    except ValueError as exc:
        raise UserInputError(f"--crop-bytes {crop_bytes}: {exc}") from None


def unsealed(summaries: dict[str, dict[str, object]]) -> int:
    """Alerts the units were told and did not seal (each unit's summary: ``told`` less
    ``alerts_sealed``; a unit without a summary counts none: its exit code says it failed)."""
    return sum(max(0, int(str(summary.get("told", 0))) - int(str(summary.get("alerts_sealed", 0))))
               for summary in summaries.values())


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


def arrivals_by_seq(van_marks: list[DeliveryMark], arrival_lines: Iterable[str]
                     ) -> dict[tuple[str, int], float]:
    """(unit, seq) -> when its frame arrived at the van, matched by order (module docstring);
    units whose frames and started envelopes do not pair up are left out."""
    frames: dict[str, list[float]] = collections.defaultdict(list)
    for arrival in read_arrivals(arrival_lines):
        if arrival.size >= DELIVER_FRAME_BYTES:
            frames[arrival.peer].append(arrival.at)
    # The envelopes of one batch share their start: one frame per distinct start.
    started: dict[str, dict[float, list[int]]] = collections.defaultdict(dict)
    for mark in van_marks:
        if mark.stage is Stage.STARTED:
            started[mark.unit].setdefault(mark.at, []).append(mark.seq)
    matched: dict[tuple[str, int], float] = {}
    for unit, batches in started.items():
        starts = sorted(batches)
        times = sorted(frames.get(unit, []))
        if len(times) != len(starts) or any(at > start for at, start in zip(times, starts,
                                                                            strict=True)):
            continue
        matched.update({(unit, seq): at for at, start in zip(times, starts, strict=True)
                        for seq in batches[start]})
    return matched


def breakdown(received: dict[str, list[ReceivedAlert]], marks: Iterable[DeliveryMark],
              arrivals: dict[tuple[str, int], float]) -> dict[str, object]:
    """Per-stage p50/p99 in ms, steady and burst apart, and the slowest alert's stages (module
    docstring); a stage an alert lacks a point of is left out of its figures."""
    points: dict[tuple[str, int], dict[str, float]] = collections.defaultdict(dict)
    for mark in marks:
        points[(mark.unit, mark.seq)][mark.stage] = mark.at
    durations: dict[str, dict[str, list[float]]] = {"steady": collections.defaultdict(list),
                                                    "burst": collections.defaultdict(list)}
    slowest: tuple[float, dict[str, float]] | None = None
    for unit, alerts in received.items():
        for alert in alerts:
            alert_points = {**points.get((unit, alert.seq), {}), CAPTURED: alert.captured_at}
            if (unit, alert.seq) in arrivals:
                alert_points[ARRIVED] = arrivals[(unit, alert.seq)]
            stages = {name: alert_points[end] - alert_points[start]
                      for name, start, end in STAGES
                      if start in alert_points and end in alert_points}
            part = "burst" if alert.event_id.split("/")[-2] == "burst" else "steady"
            for name, seconds in stages.items():
                durations[part][name].append(seconds)
            latency = alert.received_at - alert.captured_at
            if slowest is None or latency > slowest[0]:
                slowest = (latency, stages)
    return {"breakdown_ms": {part: {name: [_percentile_ms(values, 50), _percentile_ms(values, 99)]
                                    for name, values in stages.items()}
                             for part, stages in durations.items()},
            "slowest_ms": None if slowest is None else {
                "latency": round(slowest[0] * 1000, 1),
                **{name: round(seconds * 1000, 1) for name, seconds in slowest[1].items()}}}


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
    check_crop_bytes(crop_bytes)
    with tempfile.TemporaryDirectory(prefix="lfr-bench-uplink-") as tmp:
        root = Path(tmp)
        watchlist = build_demo_watchlist(root / "demo.lfrw")
        deployment = create_local_deployment(root / "deployment", units=units,
                                             cameras=[CameraPlan("cam0", DEMO_CLIP)],
                                             watchlist=watchlist)
        start_file = root / "start"
        trace_file = root / "van-trace.jsonl"
        with contextlib.ExitStack() as stack:
            van = stack.enter_context(start_van(deployment.van_config, trace_file=trace_file))
            cpu_before = van.cpu_seconds()
            processes = {name: stack.enter_context(start_burst_unit(
                name, config, "--alerts", str(alerts), "--rate", str(rate), "--burst",
                str(burst), "--burst-after",
                str(burst_after(index, units, alerts, together=burst_together)),
                "--crop-bytes", str(crop_bytes), "--start-file", str(start_file),
                "--drain-timeout-s", str(timeout_s), "--trace", str(root / f"{name}-trace.jsonl")))
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
            van_lines = trace_file.read_text().splitlines()
            van_marks = read_marks(van_lines)
            marks = [*van_marks, *(mark for name in processes for mark in read_marks(
                (root / f"{name}-trace.jsonl").read_text().splitlines()))]
            stages = breakdown(received, marks, arrivals_by_seq(van_marks, van_lines))
    sent = sum(int(str(summary["alerts_sealed"])) for summary in summaries.values())
    result: dict[str, object] = {
        "units": units, "alerts": sent, "alerts_per_unit": alerts + burst,
        "rate_per_unit": rate, "burst_per_unit": burst, "bursts_together": burst_together,
        "crop_bytes": crop_bytes,
        **figures, "unsealed": unsealed(summaries), "van_cpu_s": round(van_cpu, 2),
        "unit_cpu_s": sorted(float(str(summary.get("cpu_s", 0.0)))
                             for summary in summaries.values()),
        "unit_signing_cpu_s": sorted(float(str(summary.get("signing_cpu_s", 0.0)))
                                     for summary in summaries.values()),
        "elapsed_s": round(elapsed, 1),
        "unit_exit_codes_nonzero": sorted(name for name, code in codes.items() if code != 0),
        "van_exit_code": van_code, "target_p99_ms": target_p99_ms(units), **stages}
    result["target_met"] = target_met(result)
    return result


def target_met(result: dict[str, object]) -> bool:
    """Whether a run's figures meet issue 8's targets: nothing unsealed, lost, stored twice or
    out of order, every unit exited 0, and the p99 within ``target_p99_ms``."""
    p99, units = result["latency_ms_p99"], result["units"]
    return bool(
        result["lost"] == 0 and result["duplicates"] == 0 and result["out_of_order"] == 0
        and result["unsealed"] == 0 and not result["unit_exit_codes_nonzero"]
        and isinstance(p99, float) and isinstance(units, int)
        and p99 <= target_p99_ms(units))
