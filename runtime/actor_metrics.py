"""Per-actor counters and a handling-time histogram, cheap enough to update on every message."""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field

# Upper bounds of the handling-time buckets, in seconds (Prometheus ``le`` labels).
HANDLING_BUCKETS_S: tuple[float, ...] = (
    0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)
_BUCKET_BOUNDS_NS = tuple(int(b * 1e9) for b in HANDLING_BUCKETS_S)


@dataclass(slots=True)
class HandlingHistogram:
    """How long ``receive`` took, per message."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(HANDLING_BUCKETS_S) + 1))
    """Non-cumulative count per bucket; the last one is ``+Inf``."""
    sum_ns: int = 0
    """Total handling time in nanoseconds."""

    def observe(self, duration_ns: int) -> None:
        """Record one handling of ``duration_ns`` nanoseconds."""
        self.counts[bisect_left(_BUCKET_BOUNDS_NS, duration_ns)] += 1
        self.sum_ns += duration_ns

    @property
    def count(self) -> int:
        """Messages observed."""
        return sum(self.counts)

    def cumulative(self) -> list[tuple[float, int]]:
        """``(upper bound in s, count at or below it)`` pairs, ending with ``+inf``."""
        total = 0
        out: list[tuple[float, int]] = []
        for bound, count in zip((*HANDLING_BUCKETS_S, float("inf")), self.counts, strict=True):
            total += count
            out.append((bound, total))
        return out


@dataclass(slots=True)
class ActorMetrics:
    """Counters of one actor, kept across restarts."""

    processed: int = 0
    """Messages whose handling finished (successfully or not)."""
    failures: int = 0
    """Incarnations that failed (an exception from a tell or from ``on_start``)."""
    ask_errors: int = 0
    """Asks whose handling raised; the error went to the asker."""
    remote_failures: int = 0
    """Messages from a peer (over a link) whose handling raised: a tell is logged and dropped,
    an ask answered with the error; neither fails the actor."""
    restarts: int = 0
    """Times a supervisor started a new incarnation."""
    handling: HandlingHistogram = field(default_factory=HandlingHistogram)
    """Handling time of every processed message."""
