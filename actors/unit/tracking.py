"""``Tracker``: follows faces across frames of one camera by box overlap and embedding similarity.

A track holds only what association needs: the last box, the last embedding and the per-frame
match outcomes used for N-of-M fusion. Invariant (privacy): when a track ends its embedding is
overwritten with zeros and dropped; no face data of an ended track survives in the tracker.
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from guards.config_checks import require_at_least, require_between, require_positive

Box = tuple[float, float, float, float]
"""x0, y0, x1, y1 in frame pixels."""


@dataclass(frozen=True, slots=True)
class TrackerConfig:
    """How faces are associated across frames."""

    min_iou: float = 0.2
    """Boxes overlapping at least this much (intersection over union) may be the same face."""
    min_similarity: float = 0.55
    """Embeddings at least this similar (cosine) may be the same face even without overlap
    (a camera cut or fast movement)."""
    max_age_s: float = 1.0
    """A track not seen for this long (s of stream time) ends."""
    history: int = 5
    """How many recent per-frame outcomes a track keeps (the M of N-of-M fusion)."""

    def __post_init__(self) -> None:
        # 0 would let every face join every track (any overlap or similarity qualifies).
        for name, value in (("min_iou", self.min_iou), ("min_similarity", self.min_similarity)):
            require_positive(f"TrackerConfig.{name}", value)
            require_between(f"TrackerConfig.{name}", value, 0.0, 1.0)
        require_positive("TrackerConfig.max_age_s", self.max_age_s)
        require_at_least("TrackerConfig.history", self.history, 1)


@dataclass(frozen=True, slots=True)
class FrameOutcome:
    """One frame's decision for one face: the best subject above its threshold, if any."""

    subject: str | None
    """Matched subject id, or None when no subject reached its threshold."""
    score: float
    """Cosine similarity to ``subject`` (or to the best subject when there is no match)."""


@dataclass(slots=True)
class Track:
    """One face followed across frames."""

    track_id: int
    """Unique per tracker."""
    box: Box
    """Last box, frame pixels."""
    embedding: NDArray[np.float32]
    """Last unit-length embedding; zeroed when the track ends."""
    last_seen_s: float
    """Stream time of the last frame the face was in (s)."""
    outcomes: deque[FrameOutcome] = field(default_factory=deque)
    """Recent per-frame outcomes, newest last, at most ``TrackerConfig.history``."""
    alerted: set[str] = field(default_factory=set)
    """Subjects this track has already raised an alert for."""
    decided: bool = False
    """Its identity is settled: embedded only on re-checks (``EmbeddingSchedule``)."""
    clear_looks: int = 0
    """Embedded looks in a row clear of every threshold by the schedule's margin."""
    next_look_index: int = 0
    """Frame index from which a decided track's face is embedded again (its re-check)."""


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


class Tracker:
    """Tracks of one camera."""

    def __init__(self, config: TrackerConfig | None = None) -> None:
        self.config = config or TrackerConfig()
        self.tracks: dict[int, Track] = {}
        self.last_update_s: float | None = None
        """Stream time of the latest frame given to ``update`` (s)."""
        self._ids = itertools.count(1)

    def update(self, t_s: float, boxes: list[Box], embeddings: NDArray[np.float32],
               hints: dict[int, int] | None = None) -> list[Track]:
        """Associate this frame's faces with tracks; returns the track of each face, in order.

        ``hints`` (face position -> track id) are faces that were not embedded (their rows of
        ``embeddings`` are meaningless): each joins its track if the track still exists, keeping
        the track's embedding, or else starts a new track with a zero embedding (which no
        similarity reaches: only overlap associates it until it is embedded).
        """
        self.expire(t_s)
        self.last_update_s = t_s
        hints = hints or {}
        assigned = {i: self.tracks[tid] for i, tid in hints.items() if tid in self.tracks}
        looked = [i for i in range(len(boxes)) if i not in hints]
        hinted = {track.track_id for track in assigned.values()}
        free = [tr for tr in self.tracks.values() if tr.track_id not in hinted]
        matched = self._associate([boxes[i] for i in looked], embeddings[looked], free)
        assigned.update({looked[k]: track for k, track in matched.items()})
        result: list[Track] = []
        for i, box in enumerate(boxes):
            track = assigned.get(i)
            if track is None:
                row = embeddings[i] if i not in hints else np.zeros_like(embeddings[i])
                track = Track(next(self._ids), box, row.copy(), t_s,
                              deque(maxlen=self.config.history))
                self.tracks[track.track_id] = track
            else:
                track.box = box
                if i not in hints:
                    track.embedding[:] = embeddings[i]
                track.last_seen_s = t_s
            result.append(track)
        return result

    def expire(self, t_s: float) -> list[Track]:
        """End tracks unseen for longer than ``max_age_s``; their embeddings are zeroed."""
        ended = [tr for tr in self.tracks.values() if t_s - tr.last_seen_s > self.config.max_age_s]
        for track in ended:
            self._forget(track)
        return ended

    def clear(self) -> None:
        """End every track (end of stream or shutdown)."""
        for track in list(self.tracks.values()):
            self._forget(track)

    def _forget(self, track: Track) -> None:
        track.embedding.fill(0.0)
        track.outcomes.clear()
        del self.tracks[track.track_id]

    def _associate(self, boxes: list[Box], embeddings: NDArray[np.float32],
                   tracks: list[Track]) -> dict[int, Track]:
        if not tracks or not boxes:
            return {}
        similarity = embeddings @ np.stack([tr.embedding for tr in tracks]).T
        pairs: list[tuple[float, int, int]] = []
        for i, box in enumerate(boxes):
            for j, track in enumerate(tracks):
                overlap = iou(box, track.box)
                sim = float(similarity[i, j])
                if overlap >= self.config.min_iou or sim >= self.config.min_similarity:
                    pairs.append((overlap + sim, i, j))
        pairs.sort(reverse=True)
        taken_faces: set[int] = set()
        taken_tracks: set[int] = set()
        assigned: dict[int, Track] = {}
        for _, i, j in pairs:
            if i in taken_faces or j in taken_tracks:
                continue
            taken_faces.add(i)
            taken_tracks.add(j)
            assigned[i] = tracks[j]
        return assigned
