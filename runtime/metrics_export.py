"""Prometheus text exposition of every actor's metrics, read live at scrape time."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
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
        cells = list(self._cells)
        for name, help_text, kind, value in _SERIES:
            family = (CounterMetricFamily if kind == "counter" else GaugeMetricFamily)(
                name, help_text, labels=["actor"])
            for cell in cells:
                family.add_metric([cell.name], value(cell))
            yield family
        handling = HistogramMetricFamily("lfr_actor_handling_seconds",
                                         "Time spent in receive per message", labels=["actor"])
        for cell in cells:
            histogram = cell.metrics.handling
            buckets = [(_le(bound), count) for bound, count in histogram.cumulative()]
            handling.add_metric([cell.name], buckets, histogram.sum_ns / 1e9)
        yield handling


# (metric name, help, counter or gauge, how to read it from a cell), in exposition order.
_SERIES: tuple[tuple[str, str, str, Callable[[ActorCell[object]], float]], ...] = (
    ("lfr_actor_messages_processed", "Messages handled by the actor", "counter",
     lambda c: c.metrics.processed),
    ("lfr_actor_failures", "Incarnations of the actor that failed", "counter",
     lambda c: c.metrics.failures),
    ("lfr_actor_ask_errors", "Asks whose handling raised", "counter",
     lambda c: c.metrics.ask_errors),
    ("lfr_actor_remote_failures", "Messages from peers whose handling raised (not a failure)",
     "counter", lambda c: c.metrics.remote_failures),
    ("lfr_actor_restarts", "Restarts by the actor's supervisor", "counter",
     lambda c: c.metrics.restarts),
    ("lfr_mailbox_received", "Messages accepted by the mailbox", "counter",
     lambda c: c.mailbox.statistics().received),
    ("lfr_mailbox_dropped", "Messages discarded by drop_oldest", "counter",
     lambda c: c.mailbox.statistics().dropped),
    ("lfr_mailbox_rejected", "Messages refused as the mailbox was full", "counter",
     lambda c: c.mailbox.statistics().rejected),
    ("lfr_mailbox_depth", "Messages queued now", "gauge",
     lambda c: c.mailbox.statistics().depth),
    ("lfr_mailbox_peak_depth", "Highest queue depth seen", "gauge",
     lambda c: c.mailbox.statistics().peak_depth),
)


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


def prometheus_text(cells: Iterable[ActorCell[object]]) -> str:
    """Render the metrics of ``cells`` in the Prometheus text exposition format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ActorMetricsCollector(cells))
    return generate_latest(registry).decode()
