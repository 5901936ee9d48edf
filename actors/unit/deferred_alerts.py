"""``DeferredAlerts``: fused matches waiting for the second model, off the frame path.

When a track's N-of-M fusion names a subject the second model has not agreed to yet, the frame
that fused is not held up (nor, behind it, every frame after it: a look costs 110-135 ms of one
core). The matcher decides the frame's other faces at once and keeps a ``DeferredAlert``:
what the alert would carry, and a copy of the pixels around the face, enough for its alert crop
and for one more look. Each later frame first resolves the deferred alerts whose looks are in,
in the order their frames came: the alert is raised when the second model agrees, or dropped
(its pixels wiped) when it does not and its opinion is closed. So the alerts are those of a
matcher that waited for the looks at that frame (the same frame, crop and hits); only the frames
in between are not delayed. One alert per opinion waits at a time: the track's later frames
that fuse meanwhile are decided at once (the track alerts once).

Bounds: at most ``limit`` deferred alerts in all (the matcher resolves the oldest first, waiting
for its looks, before deferring one more); each holds a crop of its face, never the frame.
Privacy: the crop is a candidate's face (its first-model score is within the candidate margin
of a threshold), in memory only; ``wipe`` overwrites it with zeros when the alert is resolved or
dropped, and only an alert raised from it leaves, as the ``MatchAlert``'s JPEG.
Owned by the matcher actor: touched only in its ``receive``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from actors.unit.detector import DetectedFaces
from actors.unit.gallery import GalleryMatch
from actors.unit.tracking import Track
from guards.config_checks import require_at_least
from models.second_opinion_model import face_crop

Box = tuple[float, float, float, float]

DeferredKey = tuple[str, int, str]
"""(camera, track id, subject): the opinion a deferred alert waits for."""


@dataclass(slots=True, eq=False)
class DeferredAlert:
    """A fused match of one frame, waiting for the second model's opinion on its track."""

    camera: str
    """Camera id."""
    index: int
    """Index of the frame that fused."""
    t_s: float
    """Its stream time (s)."""
    captured_ns: int
    """Its ``time.monotonic_ns()`` at decode (latency is counted when the alert is resolved)."""
    captured_at: float
    """Its wall-clock decode time."""
    box: Box
    """The face's box in the frame's pixels."""
    region: NDArray[np.uint8]
    """A copy of the frame's pixels around the face (``margin`` of the box size on every side,
    clamped to the frame); zeros once wiped."""
    region_box: Box
    """The face's box in ``region``'s pixels."""
    track: Track
    """The track that fused (kept when it ends meanwhile: its alert is still decided)."""
    match: GalleryMatch
    """The first model's best match of this face."""
    hits: int
    """The track's outcomes naming the subject when it fused (the alert's ``hits``)."""
    looked_at: bool
    """The second model was shown this face (in its frame, or once deferred): no more looks at
    it. Invariant: at most one look is started for a deferred alert."""

    @classmethod
    def cut(cls, frame: DetectedFaces, box: Box, *, track: Track, match: GalleryMatch,
            hits: int, looked_at: bool, margin: float) -> DeferredAlert:
        """Keep a copy of ``frame``'s pixels around ``box`` with ``margin`` (a share of the box
        size; at least the widest margin that the alert crop or the second model takes around a
        box, so both see the same pixels as in the whole frame)."""
        # One pixel more on every side, so the rounding of either crop's edges stays inside.
        region, region_box = face_crop(frame.pixels, box, margin=margin, pad_px=1.0)
        return cls(frame.camera, frame.index, frame.t_s, frame.captured_ns, frame.captured_at,
                   box, region, region_box, track, match, hits, looked_at)

    @property
    def key(self) -> DeferredKey:
        """The opinion it waits for."""
        return (self.camera, self.track.track_id, self.match.subject)

    def wipe(self) -> None:
        """Overwrite the kept pixels with zeros (resolved or dropped)."""
        self.region.fill(0)


class DeferredAlerts:
    """The deferred alerts of one matcher: at most one per opinion, at most ``limit`` in all."""

    def __init__(self, limit: int) -> None:
        require_at_least("DeferredAlerts.limit", limit, 1)
        self.limit = limit
        """At most this many deferred alerts in all (``full`` says when it is reached)."""
        self._alerts: dict[DeferredKey, DeferredAlert] = {}
        """By the opinion each waits for (invariant: at most ``limit`` entries)."""

    def __len__(self) -> int:
        return len(self._alerts)

    @property
    def full(self) -> bool:
        """No more may be added before one is resolved."""
        return len(self._alerts) >= self.limit

    def waiting(self, key: DeferredKey) -> bool:
        """An alert is deferred on this opinion."""
        return key in self._alerts

    def add(self, alert: DeferredAlert) -> None:
        """Keep ``alert``. ``OverflowError`` when ``full``, ``ValueError`` when an alert waits
        for the same opinion already."""
        if self.full:
            raise OverflowError(f"{len(self._alerts)} deferred alerts: resolve one first")
        if alert.key in self._alerts:
            raise ValueError(f"an alert already waits for the opinion {alert.key}")
        self._alerts[alert.key] = alert

    def in_frame_order(self) -> list[DeferredAlert]:
        """Every deferred alert, oldest frame first."""
        return sorted(self._alerts.values(), key=lambda alert: (alert.captured_ns, alert.index))

    def oldest(self) -> DeferredAlert | None:
        """The deferred alert of the oldest frame, if any."""
        alerts = self.in_frame_order()
        return alerts[0] if alerts else None

    def pop(self, alert: DeferredAlert) -> None:
        """Remove ``alert`` (resolved); the caller wipes it."""
        if self._alerts.get(alert.key) is not alert:
            raise ValueError("that alert is not deferred here")
        del self._alerts[alert.key]

    def track_ids(self, camera: str) -> set[int]:
        """Tracks of ``camera`` with a deferred alert (their looks are kept until resolved)."""
        return {track_id for (cam, track_id, _) in self._alerts if cam == camera}

    def drop(self, camera: str | None) -> list[DeferredAlert]:
        """Remove (and wipe) every deferred alert of ``camera`` (None: all); returns them."""
        dropped = [a for k, a in self._alerts.items() if camera is None or k[0] == camera]
        for alert in dropped:
            del self._alerts[alert.key]
            alert.wipe()
        return dropped
