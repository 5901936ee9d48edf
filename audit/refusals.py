"""Records that others can repeat at will, in the audit trail at a rate nobody else chooses.

``RepeatRecorder`` holds the rule for one audit kind: every occurrence is worth a record, but a
hostile peer (or anyone at the console's sign-in form) can make thousands a second, and each
record is a line on disk and an fsync. So an occurrence of one identity (the fields that say
what happened, e.g. source and reason) is recorded at once the first time, and then at most
once per ``window_s``: that record's ``count`` field says how many occurrences it stands for
(those since the previous record of the identity, itself included). ``flush`` (on stop)
records the identities still holding a count. The trail thus grows by at most one record per
identity per window, whatever the peer does; the exact counts are kept.

Identities are bounded too: at most ``MAX_KINDS`` are tracked; a new one beyond them is
recorded with its last identifying field replaced by ``other``. The identifying values are the
recorders' own fixed names or bounded, printable values, never free peer text, so the set is
small in practice.

``RefusalRecorder`` is the van's: refused inputs (an offer, a link, an envelope, a watchlist)
as ``input_refused`` per source and reason. The console records failed sign-ins with names
that are no account the same way (``console.app``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final, Protocol

from audit.kinds import AuditKind
from audit.record import FieldValue
from guards.log_text import printable

MAX_KINDS: Final = 256
"""Identities tracked per recorder; further ones are folded into ``other`` (module docstring)."""
OTHER: Final = "other"
"""The value an identity's last field takes when ``MAX_KINDS`` are tracked already."""


class Recorder(Protocol):
    """Where records go (``audit.writer.AuditSink``)."""

    def record(self, kind: AuditKind, /, **fields: FieldValue) -> None:
        """Queue one record without waiting."""
        ...


@dataclass(slots=True)
class _Identity:
    fields: dict[str, FieldValue]  # the identity's fields, then the latest occurrence's
    last_recorded: float
    pending: int = 0  # occurrences not yet in the trail
    latest: dict[str, FieldValue] = field(default_factory=dict)


class RepeatRecorder:
    """Records one audit kind at most once per identity per window, with exact counts
    (module docstring)."""

    def __init__(self, sink: Recorder, kind: AuditKind, *, window_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """``clock``: monotonic seconds."""
        self._sink = sink
        self._kind = kind
        self._window_s = window_s
        self._clock = clock
        self._identities: dict[tuple[tuple[str, FieldValue], ...], _Identity] = {}

    def occurred(self, identity: Mapping[str, str], **latest: FieldValue) -> None:
        """One occurrence of ``identity`` (its fields, in record order); ``latest``: fields
        the record carries from the newest occurrence it stands for (e.g. the peer)."""
        fields: dict[str, FieldValue] = dict(identity)
        key = tuple(fields.items())
        if key not in self._identities and len(self._identities) >= MAX_KINDS and fields:
            fields[next(reversed(fields))] = OTHER
            key = tuple(fields.items())
        now = self._clock()
        known = self._identities.get(key)
        if known is None:
            self._identities[key] = _Identity(fields, now)
            self._write(fields, latest, 1)
            return
        known.pending += 1
        known.latest = latest
        if now - known.last_recorded >= self._window_s:
            self._write(known.fields, latest, known.pending)
            known.pending, known.last_recorded = 0, now

    def flush(self) -> None:
        """Record every identity still holding occurrences not yet in the trail."""
        for known in self._identities.values():
            if known.pending:
                self._write(known.fields, known.latest, known.pending)
                known.pending = 0

    def _write(self, fields: dict[str, FieldValue], latest: dict[str, FieldValue],
               count: int) -> None:
        self._sink.record(self._kind, **fields, **latest, count=count)


class RefusalRecorder:
    """Records refused inputs as ``input_refused``, at most one record per source and reason
    per window (module docstring)."""

    def __init__(self, sink: Recorder, *, window_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._records = RepeatRecorder(sink, AuditKind.INPUT_REFUSED, window_s=window_s,
                                       clock=clock)

    def refused(self, source: str, reason: str, peer: str = "") -> None:
        """One input from ``peer`` refused by ``source`` (``offer``, ``link``, ``envelope``,
        ``watchlist``...) for ``reason`` (a fixed name such as ``bad_signature``)."""
        self._records.occurred({"source": source, "reason": reason},
                               peer=printable(peer, max_chars=200))

    def flush(self) -> None:
        """Record every kind still holding refusals not yet in the trail."""
        self._records.flush()
