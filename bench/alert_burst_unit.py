"""A camera unit whose alerts come from a generator instead of a camera (bench and fault tests).

Everything after the matcher is the real unit: its keys and config (``unit.toml``), its
outbox file, the ``Uplink`` actor sealing each alert (HPKE to the van, hybrid signature), the
``VanDialer`` keeping a WebRTC link to the van through signed signaling. Only the alerts are
synthetic: ``--alerts`` MatchAlerts with a ``--crop-bytes`` JPEG crop (random pixels, so it
does not compress), told to the uplink at ``--rate`` per second, and ``--burst`` more at once
after ``--burst-after`` of them (by default at the end). Steady alerts are named
``UNIT/bench/INDEX``, burst alerts ``UNIT/burst/INDEX``.
Each alert's ``captured_at`` is the time it was made, so the van's ``received_at`` minus it is
the delivery latency the benchmark reports.

Prints JSON lines on stdout, flushed one by one (a test may kill the process at any line):
``{"linked": UNIT}`` once the first link to the van is up (no alert is made before), then
``{"sealed": EVENT_ID, "captured_at": T, "sealed_at": T, "largest_batch": K}`` once the uplink
has stored the alert in the outbox (it will reach the van whatever happens next; ``K``: the most
envelopes it sent in one ``DeliverBatch`` so far), then ``{"summary": {...}}`` (with ``batches``
and ``largest_batch``, ``cpu_s``, the
process's CPU from the first alert on, and ``signing_cpu_s``, its child processes' over the same
time: the uplink's signing process, ``secure.signing_process``) when every alert is
acknowledged by the van or
``--drain-timeout-s`` passed. Exit 0 only when the outbox holds no alert at the end, 1 (target
missed) otherwise. With ``--trace FILE``, the uplink's delivery
marks (``actors.delivery_trace``) go into ``FILE`` (created; it must not exist) as
``{"mark": [...]}`` lines (``bench.trace_lines``): a file, not stdout, whose reader could hold
the event loop up. ``--receipt-timeout-s`` shortens the uplink's wait for a receipt before it
drops the link (a fault test's dead van is found sooner); by default it is the unit's.

    python -m bench.alert_burst_unit --config unit.toml --alerts 100 --rate 20 [--burst 50]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from actors.unit.event_body import AlertBody, EventBodyError, check_crop_jpeg
from actors.unit.match_alert import MatchAlert
from actors.unit.outbox import Outbox
from actors.unit.signaling_client import SignalingClientConfig
from actors.unit.uplink import Uplink, UplinkConfig, UplinkStatistics
from actors.unit.van_dialer import VanDialer
from bench.trace_lines import install as install_trace
from guards.exit_codes import ExitCode
from lfr.config.unit import UnitConfig, load_unit_config
from lfr.gc_freeze import freeze_after_start
from runtime.actor import Actor
from runtime.codec import Codec
from runtime.mailbox import MailboxConfig
from runtime.node import run
from runtime.system import ActorSystem, SystemConfig
from secure.key_files import read_node_keys, read_public_keys
from secure.node_keys import NodeRole

POLL_S = 0.1
"""How often the drain loop looks at the outbox."""


@dataclass(frozen=True, slots=True)
class BurstPlan:
    """What the generator sends."""

    alerts: int
    """Alerts at the steady rate."""
    rate: float
    """Alerts per second of the steady part."""
    burst: int
    """Alerts told at once, after ``burst_after`` steady ones."""
    burst_after: int
    """Steady alerts before the burst (``alerts``: at the end)."""
    first_index: int
    """Index of the first alert (a restarted unit continues with new ids)."""
    crop: bytes
    """The JPEG crop every alert carries (``bench_crop``)."""
    drain_timeout_s: float
    """Seconds to wait for the van's acknowledgements after the last alert."""
    start_file: Path | None
    """When set: once linked, wait for this file to exist before the first alert (lets a
    benchmark start every unit's alerts together, after all have connected)."""
    trace_file: Path | None = None
    """When set: write the uplink's delivery marks into this new file."""
    link_timeout_s: float = 120.0
    """Seconds to wait for the first link to the van (and for ``start_file``)."""
    receipt_timeout_s: float = UplinkConfig().receipt_timeout_s
    """A receipt that does not come within this many seconds drops the link (the uplink's
    ``UplinkConfig.receipt_timeout_s``; by default the unit's own)."""


def noise_jpeg(target_bytes: int, seed: int = 7) -> bytes:
    """A JPEG of random pixels of about ``target_bytes`` (at least 1 KB), square, <= 1 MP."""
    rng = np.random.default_rng(seed)
    side = 16
    data = b""
    while side <= 1024:
        pixels = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
        out = io.BytesIO()
        Image.fromarray(pixels).save(out, format="JPEG", quality=75)
        data = out.getvalue()
        if len(data) >= target_bytes:
            break
        side += 8
    return data


def bench_crop(crop_bytes: int) -> bytes:
    """The crop every alert carries, ``noise_jpeg(crop_bytes)``, checked as the event body
    checks it (``check_crop_jpeg``); ``ValueError`` saying why when no alert could carry it."""
    if crop_bytes < 1:
        raise ValueError(f"a crop has at least 1 byte, got {crop_bytes}")
    crop = noise_jpeg(crop_bytes)
    try:
        check_crop_jpeg(crop)
    except EventBodyError as exc:
        raise ValueError(f"it makes a crop no alert may carry ({exc})") from None
    return crop


def _write_line(record: dict[str, object]) -> None:
    """One JSON line on stdout, written at once (a kill -9 loses at most the line in flight)."""
    os.write(sys.stdout.fileno(), (json.dumps(record) + "\n").encode())


class SealedLog(Actor[AlertBody]):
    """The uplink's local copy: one ``sealed`` line per alert stored in the outbox, with the
    most envelopes the uplink sent in one batch so far (``largest_batch``)."""

    def __init__(self, statistics: UplinkStatistics) -> None:
        self._statistics = statistics

    async def receive(self, message: AlertBody) -> None:
        _write_line({"sealed": message.event_id, "captured_at": message.captured_at,
                     "sealed_at": time.time(),
                     "largest_batch": self._statistics.largest_batch})


def _alert(unit_id: str, index: int, crop: bytes, *, burst: bool = False) -> MatchAlert:
    kind = "burst" if burst else "bench"
    return MatchAlert(alert_id=f"{unit_id}/{kind}/{index}", subject=f"subject-{index % 7}",
                      score=0.71, threshold=0.6, track=index, camera="bench", t_s=index / 25,
                      captured_at=time.time(), frame_index=index,
                      box=(100.0, 80.0, 164.0, 160.0), hits=3, crop_jpeg=crop)


async def run_unit(system: ActorSystem, config: UnitConfig, plan: BurstPlan) -> int:
    """Send the planned alerts through the real uplink; the exit code (see the docstring)."""
    unit = read_node_keys(config.signing_key)
    van = read_public_keys(config.van_public_keys, NodeRole.VAN)
    if plan.trace_file is not None:
        install_trace(os.open(plan.trace_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND,
                              0o600), frames=False)
    crop = plan.crop
    outbox = Outbox.open(config.outbox)
    dialer = VanDialer(system, unit, SignalingClientConfig(
        config.van_url, van, config.van_tls_fingerprint), Codec())
    statistics = UplinkStatistics()
    log = await system.spawn("sealed-log", lambda: SealedLog(statistics),
                             MailboxConfig(capacity=1024))
    uplink_config = UplinkConfig(receipt_timeout_s=plan.receipt_timeout_s)
    uplink = await system.spawn("uplink", lambda: Uplink(
        unit, van, outbox, dialer, uplink_config, local_copy=log, statistics=statistics),
        MailboxConfig(capacity=256))
    try:
        dialer.start()
        await dialer.wait_link(plan.link_timeout_s)
        freeze_after_start()  # as lfr edge does before it serves (lfr.gc_freeze)
        _write_line({"linked": unit.node_id})
        if plan.start_file is not None:
            await _wait_for_file(plan.start_file, plan.link_timeout_s)
        index = plan.first_index
        cpu_before = time.process_time()
        children_before = children_cpu_s()
        for steady in range(plan.alerts + 1):
            if steady == plan.burst_after:
                for _ in range(plan.burst):
                    await uplink.tell(_alert(unit.node_id, index, crop, burst=True))
                    index += 1
            if steady == plan.alerts:
                break
            await uplink.tell(_alert(unit.node_id, index, crop))
            index += 1
            await asyncio.sleep(1 / plan.rate)
        drained = await _drain(system, outbox, plan.drain_timeout_s)
        left = (await system.blocking.run(outbox.statistics)).alerts
        _write_line({"summary": {"unit": unit.node_id, "told": index - plan.first_index,
                                 "alerts_sealed": statistics.alerts_sealed,
                                 "delivered": statistics.delivered,
                                 "duplicates": statistics.duplicates,
                                 "refused": statistics.refused, "alerts_left": left,
                                 "batches": statistics.batches_sent,
                                 "largest_batch": statistics.largest_batch,
                                 "drained": drained,
                                 "cpu_s": round(time.process_time() - cpu_before, 2),
                                 "signing_cpu_s": round(children_cpu_s() - children_before,
                                                        2)}})
        # TARGET_MISSED: the van did not acknowledge every alert in time
        return ExitCode.OK if drained else ExitCode.TARGET_MISSED
    finally:
        await uplink.stop()  # before the outbox closes under it
        await dialer.stop()
        outbox.close()


def children_cpu_s() -> float:
    """User + system CPU of this process's running children (Linux ``/proc``: the uplink's
    signing process), in seconds."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile, or not a process's
        if int(fields[1]) == os.getpid():
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


async def _wait_for_file(path: Path, timeout_s: float) -> None:
    # Polled: another process creates it (no event of this process to wait on)
    async with asyncio.timeout(timeout_s):
        while not await asyncio.to_thread(path.exists):  # noqa: ASYNC110
            await asyncio.sleep(POLL_S)


async def _drain(system: ActorSystem, outbox: Outbox, timeout_s: float) -> bool:
    """True once the outbox holds no alert (all acknowledged); False after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    await asyncio.sleep(POLL_S)
    while time.monotonic() < deadline:
        if (await system.blocking.run(outbox.statistics)).alerts == 0:
            return True
        await asyncio.sleep(POLL_S)
    return False


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments and run the unit."""
    parser = argparse.ArgumentParser(prog="python -m bench.alert_burst_unit",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="the unit's unit.toml")
    parser.add_argument("--alerts", type=int, default=100, help="alerts at the steady rate")
    parser.add_argument("--rate", type=float, default=10.0, help="alerts per second")
    parser.add_argument("--burst", type=int, default=0, help="alerts at once afterwards")
    parser.add_argument("--burst-after", type=int,
                        help="steady alerts before the burst (default: all of them)")
    parser.add_argument("--first-index", type=int, default=0, help="index of the first alert")
    parser.add_argument("--crop-bytes", type=int, default=20_000, help="crop JPEG size")
    parser.add_argument("--start-file", help="once linked, wait for this file to exist")
    parser.add_argument("--drain-timeout-s", type=float, default=120.0,
                        help="seconds to wait for the van's acknowledgements")
    parser.add_argument("--trace", help="write the uplink's delivery marks into this new file")
    parser.add_argument("--receipt-timeout-s", type=float,
                        default=UplinkConfig().receipt_timeout_s,
                        help="drop the link when a receipt takes longer (default: the unit's)")
    args = parser.parse_args(argv)
    if args.alerts < 0 or args.burst < 0 or not 0 < args.rate <= 10_000:
        parser.error("--alerts and --burst must be >= 0 and --rate in (0, 10000]")
    burst_after = args.alerts if args.burst_after is None else args.burst_after
    if not 0 <= burst_after <= args.alerts:
        parser.error("--burst-after must be 0 to --alerts")
    if not 0.1 <= args.receipt_timeout_s <= 3600:
        parser.error("--receipt-timeout-s must be 0.1 to 3600")
    try:
        crop = bench_crop(args.crop_bytes)
    except ValueError as exc:
        parser.error(f"--crop-bytes {args.crop_bytes}: {exc}")
    plan = BurstPlan(args.alerts, args.rate, args.burst, burst_after, args.first_index,
                     crop, args.drain_timeout_s,
                     None if args.start_file is None else Path(args.start_file),
                     None if args.trace is None else Path(args.trace),
                     receipt_timeout_s=args.receipt_timeout_s)
    config = load_unit_config(Path(args.config))
    # the dialer's link is named by the unit id: so is the actor system
    return run(lambda system: run_unit(system, config, plan), SystemConfig(name=config.unit_id))


if __name__ == "__main__":
    sys.exit(main())
