"""Prometheus text exposition of every actor's metrics, read live at scrape time."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from runtime.cell import ActorCell


class ActorMetricsCollector(Collector):
    """Yields one metric family per counter, labelled by actor name."""

    def __init__(self, cells: Iterable[ActorCell[object]]) -> None:
        self._cells = cells

    def collect(self) -> Iterator[Metric]:
        processed = CounterMetricFamily("lfr_actor_messages_processed",
                                        "Messages handled by the actor", labels=["actor"])
        failures = CounterMetricFamily("lfr_actor_failures",
                                       "Incarnations of the actor that failed", labels=["actor"])
        ask_errors = CounterMetricFamily("lfr_actor_ask_errors",
                                         "Asks whose handling raised", labels=["actor"])
        restarts = CounterMetricFamily("lfr_actor_restarts",
                                       "Restarts by the actor's supervisor", labels=["actor"])
        received = CounterMetricFamily("lfr_mailbox_received",
                                       "Messages accepted by the mailbox", labels=["actor"])
        dropped = CounterMetricFamily("lfr_mailbox_dropped",
                                      "Messages discarded by drop_oldest", labels=["actor"])
        rejected = CounterMetricFamily("lfr_mailbox_rejected",
                                       "Messages refused as the mailbox was full", labels=["actor"])
        depth = GaugeMetricFamily("lfr_mailbox_depth", "Messages queued now", labels=["actor"])
        peak = GaugeMetricFamily("lfr_mailbox_peak_depth", "Highest queue depth seen",
                                 labels=["actor"])
        handling = HistogramMetricFamily("lfr_actor_handling_seconds",
                                         "Time spent in receive per message", labels=["actor"])
        for cell in self._cells:
            name = [cell.name]
            m = cell.metrics
            stats = cell.mailbox.statistics()
            processed.add_metric(name, m.processed)
            failures.add_metric(name, m.failures)
            ask_errors.add_metric(name, m.ask_errors)
            restarts.add_metric(name, m.restarts)
            received.add_metric(name, stats.received)
            dropped.add_metric(name, stats.dropped)
            rejected.add_metric(name, stats.rejected)
            depth.add_metric(name, stats.depth)
            peak.add_metric(name, stats.peak_depth)
            buckets = [(_le(bound), count) for bound, count in m.handling.cumulative()]
            handling.add_metric(name, buckets, m.handling.sum_ns / 1e9)
        yield from (processed, failures, ask_errors, restarts, received, dropped, rejected,
                    depth, peak, handling)


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


def prometheus_text(cells: Iterable[ActorCell[object]]) -> str:
    """Render the metrics of ``cells`` in the Prometheus text exposition format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ActorMetricsCollector(cells))
    return generate_latest(registry).decode()
