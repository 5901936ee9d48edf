"""``RefusalRecorder``: refused inputs in the audit trail, at a rate no peer can choose.

Every refused input (an offer, a link, an envelope, a watchlist) is worth a record, but a
hostile peer can make thousands a second, and each record is a line on disk and an fsync. So a
refusal of one kind (source and reason) is recorded at once the first time, and then at most
once per ``window_s``: that record's ``count`` field says how many refusals of the kind it
stands for (those since the previous record of the kind, itself included). ``flush`` (on stop)
records the kinds still holding a count. The trail thus grows by at most one record per kind
per window, whatever the peer does; the exact counts are kept.

Kinds are bounded too: at most ``MAX_KINDS`` (source, reason) pairs are tracked; reasons are
the refusers' own fixed names, never peer text, so the set is small in practice.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Protocol

from audit.kinds import AuditKind
from audit.record import FieldValue
from guards.log_text import printable

MAX_KINDS: Final = 256
"""(source, reason) pairs tracked; refusals of further kinds are recorded as ``other``."""


class Recorder(Protocol):
    """Where records go (``audit.writer.AuditSink``)."""

    def record(self, kind: AuditKind, /, **fields: FieldValue) -> None:
        """Queue one record without waiting."""
        ...


@dataclass(slots=True)
class _Kind:
    last_recorded: float
    pending: int
    peer: str


class RefusalRecorder:
    """Records refused inputs, at most one record per kind per window (module docstring)."""

    def __init__(self, sink: Recorder, *, window_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._sink = sink
        self._window_s = window_s
        self._clock = clock
        self._kinds: dict[tuple[str, str], _Kind] = {}

    def refused(self, source: str, reason: str, peer: str = "") -> None:
        """One input from ``peer`` refused by ``source`` (``offer``, ``link``, ``envelope``,
        ``watchlist``...) for ``reason`` (a fixed name such as ``bad_signature``)."""
        key = (source, reason)
        if key not in self._kinds and len(self._kinds) >= MAX_KINDS:
            key = (source, "other")
        now = self._clock()
        kind = self._kinds.get(key)
        if kind is None:
            self._kinds[key] = _Kind(now, 0, peer)
            self._write(key, 1, peer)
            return
        kind.pending += 1
        kind.peer = peer
        if now - kind.last_recorded >= self._window_s:
            self._write(key, kind.pending, peer)
            kind.pending, kind.last_recorded = 0, now

    def flush(self) -> None:
        """Record every kind still holding refusals not yet in the trail."""
        for key, kind in self._kinds.items():
            if kind.pending:
                self._write(key, kind.pending, kind.peer)
                kind.pending = 0

    def _write(self, key: tuple[str, str], count: int, peer: str) -> None:
        source, reason = key
        self._sink.record(AuditKind.INPUT_REFUSED, source=source, reason=reason,
                          peer=printable(peer, max_chars=200), count=count)
