"""``lfr bench runtime``: actor messaging against a bare ``asyncio.Queue``, measured in one run.

Every figure is measured on the same event loop (uvloop when installed) in the same process, so
the ratio is meaningful on a noisy machine even when the absolute rates are not.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.runtime_messages import Count, CountQuery, FrameMessage, Ping
from runtime.actor import Actor
from runtime.codec import Codec
from runtime.link_config import LinkConfig
from runtime.link_endpoints import connect_unix
from runtime.link_keys import LinkKeys, write_shared_key_file
from runtime.mailbox import MailboxConfig
from runtime.node import run_interruptible
from runtime.system import ActorSystem, SystemConfig

MAILBOX_CAPACITY = 1024
TELL_MESSAGES = 200_000
ASKS = 5_000
TRANSPORT_MESSAGES = 50_000
CODEC_ROUNDS = 100
REPEATS = 3
PEER_EXIT_S = 1.0
"""How long the peer process may take to exit once told to, before it is killed."""
RATIO_TARGET = 0.5
"""Actor tells must reach at least this share of a bare asyncio.Queue's rate (exit 1 below)."""
REPO_ROOT = Path(__file__).resolve().parent.parent


class _CountTo(Actor[Ping]):
    """Sets ``done`` after ``target`` pings."""

    def __init__(self, target: int, done: asyncio.Event) -> None:
        self.target = target
        self.done = done
        self.count = 0

    async def receive(self, message: Ping) -> None:
        self.count += 1
        if self.count == self.target:
            self.done.set()


class _Echo(Actor[Ping]):
    async def receive(self, message: Ping) -> Ping:
        return message


async def _actor_tell_rate(system: ActorSystem, run_id: int) -> float:
    done = asyncio.Event()
    ref = await system.spawn(f"consumer-{run_id}", lambda: _CountTo(TELL_MESSAGES, done),
                             MailboxConfig(capacity=MAILBOX_CAPACITY))
    message = Ping(1)
    started = time.perf_counter()
    for _ in range(TELL_MESSAGES):
        await ref.tell(message)
    await done.wait()
    elapsed = time.perf_counter() - started
    await ref.stop()
    return TELL_MESSAGES / elapsed


async def _queue_rate() -> float:
    queue: asyncio.Queue[Ping] = asyncio.Queue(maxsize=MAILBOX_CAPACITY)
    done = asyncio.Event()

    async def consume() -> None:
        count = 0
        while True:
            await queue.get()
            count += 1
            if count == TELL_MESSAGES:
                done.set()
                return

    consumer = asyncio.create_task(consume())
    message = Ping(1)
    started = time.perf_counter()
    for _ in range(TELL_MESSAGES):
        await queue.put(message)
    await done.wait()
    elapsed = time.perf_counter() - started
    await consumer
    return TELL_MESSAGES / elapsed


async def _ask_rtts_us(system: ActorSystem) -> list[float]:
    ref = await system.spawn("echo", _Echo)
    rtts: list[float] = []
    for seq in range(ASKS):
        started = time.perf_counter_ns()
        await ref.ask(Ping(seq))
        rtts.append((time.perf_counter_ns() - started) / 1000)
    return rtts


async def _transport_rate(system: ActorSystem) -> float:
    with tempfile.TemporaryDirectory(prefix="lfr-bench-") as tmp:
        socket_path = os.path.join(tmp, "peer.sock")
        key_file = write_shared_key_file(os.path.join(tmp, "link.key"))
        peer = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.runtime_peer", socket_path, str(key_file),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd=REPO_ROOT,
        )
        try:
            assert peer.stdout is not None
            ready = await peer.stdout.readline()
            if ready.strip() != b"ready":
                raise RuntimeError("benchmark peer process did not start")
            client = connect_unix(system, socket_path, LinkConfig(LinkKeys.from_file(key_file)))
            await client.wait_connected()
            counter = client.ref("counter")
            message = Ping(1)
            started = time.perf_counter()
            for _ in range(TRANSPORT_MESSAGES):
                await counter.tell(message)
            # The link keeps order: this ask is answered after every tell above was handled.
            answer = await counter.ask(CountQuery(), timeout=60)
            elapsed = time.perf_counter() - started
            await client.stop()
        finally:
            if peer.stdin is not None:
                peer.stdin.close()  # the peer's cue to stop
            try:
                async with asyncio.timeout(PEER_EXIT_S):
                    await peer.wait()
            except TimeoutError:
                peer.kill()
                await peer.wait()
    if not isinstance(answer, Count) or answer.value != TRANSPORT_MESSAGES:
        raise RuntimeError(f"peer counted {answer!r}, expected {TRANSPORT_MESSAGES}")
    return TRANSPORT_MESSAGES / elapsed


def _codec_roundtrip_ms() -> float:
    codec = Codec()
    rng = np.random.default_rng(0)
    frame = FrameMessage("cam0", 1, 0.033, rng.integers(0, 255, (360, 640, 3), dtype=np.uint8))
    timings: list[float] = []
    for _ in range(CODEC_ROUNDS):
        started = time.perf_counter()
        decoded = codec.decode(codec.encode(frame))
        timings.append((time.perf_counter() - started) * 1000)
    if not np.array_equal(decoded.pixels, frame.pixels):
        raise RuntimeError("codec round trip changed the frame")
    return statistics.median(timings)


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


async def _measure(stop: threading.Event) -> dict[str, Any]:
    del stop  # every step here is a coroutine: cancelling the run stops it
    async with ActorSystem(SystemConfig(name="bench")) as system:
        tell_rates: list[float] = []
        queue_rates: list[float] = []
        # Interleave the two so that a burst of machine noise hits both alike.
        for run_id in range(REPEATS):
            queue_rates.append(await _queue_rate())
            tell_rates.append(await _actor_tell_rate(system, run_id))
        rtts = await _ask_rtts_us(system)
        transport = await _transport_rate(system)
    tell = statistics.median(tell_rates)
    queue = statistics.median(queue_rates)
    return {
        "event_loop": type(asyncio.get_running_loop()).__module__.split(".")[0],
        "tell_msgs_per_s": round(tell),
        "queue_baseline_msgs_per_s": round(queue),
        "ratio": round(tell / queue, 3),
        "ask_rtt_us_p50": round(_percentile(rtts, 50), 1),
        "ask_rtt_us_p99": round(_percentile(rtts, 99), 1),
        "transport_msgs_per_s": round(transport),
        "codec_frame_roundtrip_ms": round(_codec_roundtrip_ms(), 3),
        "messages": {"tell": TELL_MESSAGES, "asks": ASKS, "transport": TRANSPORT_MESSAGES},
        "target_ratio": RATIO_TARGET,
        "target_met": tell / queue >= RATIO_TARGET,
    }


def run_runtime_bench() -> dict[str, Any]:
    """Run the benchmark on a fresh event loop and return its figures (``target_met``: the
    messaging ratio reaches ``RATIO_TARGET``; ``StoppedBySignal`` on Ctrl-C/SIGTERM)."""
    return run_interruptible(_measure)
