"""Per-actor metrics and their Prometheus text exposition."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from runtime import Actor, ActorSystem, MailboxConfig, MailboxPolicy
from runtime.actor_metrics import HANDLING_BUCKETS_S, HandlingHistogram
from tests.runtime.helpers import eventually


class Worker(Actor[Any]):
    """``"slow"`` takes at least 30 ms, ``"bad"`` raises, ``"crash"`` (a tell) fails it."""

    async def receive(self, message: Any) -> Any:
        if message == "slow":
            await asyncio.sleep(0.03)
        elif message in ("bad", "crash"):
            raise ValueError(message)
        return message


def _families(system: ActorSystem) -> dict[str, Metric]:
    return {f.name: f for f in text_string_to_metric_families(system.metrics_text())}


def _value(families: dict[str, Metric], family: str, actor: str, suffix: str = "") -> float:
    values = [s.value for s in families[family].samples
              if s.labels.get("actor") == actor and s.name == family + suffix]
    assert len(values) == 1, (family, actor, values)
    return values[0]


async def test_counters_per_actor(system: ActorSystem) -> None:
    x = await system.spawn("x", Worker)
    y = await system.spawn("y", Worker)
    for i in range(5):
        await x.ask(i)
    await y.ask("once")
    text = system.metrics_text()
    assert 'lfr_actor_messages_processed_total{actor="x"} 5.0' in text
    families = _families(system)
    assert _value(families, "lfr_actor_messages_processed", "x", "_total") == 5
    assert _value(families, "lfr_actor_messages_processed", "y", "_total") == 1
    assert _value(families, "lfr_mailbox_received", "x", "_total") == 5
    assert _value(families, "lfr_mailbox_depth", "x") == 0
    assert _value(families, "lfr_mailbox_peak_depth", "x") == 1
    assert families["lfr_actor_messages_processed"].type == "counter"
    assert families["lfr_mailbox_depth"].type == "gauge"


async def test_failures_restarts_ask_errors_and_mailbox_counters(system: ActorSystem) -> None:
    ref = await system.spawn("w", Worker, MailboxConfig(capacity=1, policy=MailboxPolicy.REJECT))
    with pytest.raises(ValueError, match="bad"):
        await ref.ask("bad")
    await ref.tell("crash")
    cell = system.cells()[0]
    await eventually(lambda: cell.metrics.restarts == 1)
    await ref.ask("ok")
    families = _families(system)
    assert _value(families, "lfr_actor_ask_errors", "w", "_total") == 1
    assert _value(families, "lfr_actor_failures", "w", "_total") == 1
    assert _value(families, "lfr_actor_restarts", "w", "_total") == 1
    assert _value(families, "lfr_actor_remote_failures", "w", "_total") == 0
    assert _value(families, "lfr_actor_messages_processed", "w", "_total") == 3
    assert _value(families, "lfr_mailbox_rejected", "w", "_total") == 0
    assert _value(families, "lfr_mailbox_dropped", "w", "_total") == 0


async def test_remote_failures_are_exported(system: ActorSystem) -> None:
    ref = await system.spawn("w", Worker)
    await ref.tell_from_peer("crash")
    with pytest.raises(ValueError, match="bad"):
        await ref.ask("bad", from_peer=True)
    families = _families(system)
    assert _value(families, "lfr_actor_remote_failures", "w", "_total") == 2
    assert _value(families, "lfr_actor_failures", "w", "_total") == 0
    assert _value(families, "lfr_actor_ask_errors", "w", "_total") == 1


async def test_handling_histogram_buckets(system: ActorSystem) -> None:
    ref = await system.spawn("x", Worker)
    for _ in range(4):
        await ref.ask("fast")
    await ref.ask("slow")
    families = _families(system)
    histogram = families["lfr_actor_handling_seconds"]
    assert histogram.type == "histogram"
    buckets = {float(s.labels["le"]): s.value for s in histogram.samples
               if s.name == "lfr_actor_handling_seconds_bucket" and s.labels["actor"] == "x"}
    assert sorted(buckets) == [*HANDLING_BUCKETS_S, float("inf")]
    counts = [buckets[b] for b in sorted(buckets)]
    assert counts == sorted(counts)  # cumulative
    assert buckets[float("inf")] == 5
    assert buckets[0.025] <= 4  # the slow one took at least 30 ms
    assert _value(families, "lfr_actor_handling_seconds", "x", "_count") == 5
    assert _value(families, "lfr_actor_handling_seconds", "x", "_sum") >= 0.03


def test_histogram_observe_and_cumulative() -> None:
    histogram = HandlingHistogram()
    histogram.observe(50_000)  # 50 us: first bucket (le 0.0001)
    histogram.observe(100_000)  # exactly 100 us: still le 0.0001
    histogram.observe(3_000_000)  # 3 ms: le 0.005
    histogram.observe(10 * 10**9)  # 10 s: +Inf only
    assert histogram.count == 4
    assert histogram.sum_ns == 50_000 + 100_000 + 3_000_000 + 10 * 10**9
    cumulative = dict(histogram.cumulative())
    assert cumulative[0.0001] == 2
    assert cumulative[0.0025] == 2
    assert cumulative[0.005] == 3
    assert cumulative[5.0] == 3
    assert cumulative[float("inf")] == 4
