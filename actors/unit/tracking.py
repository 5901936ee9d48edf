"""``Tracker``: follows faces across frames of one camera, gated by plausible motion.

A face may continue a track only if it passes the **motion gate**: its width is within
``max_size_ratio`` of the track's, and its centre lies within the distance the track's face can
have moved since it was last seen, ``width x (slack_widths + max_speed_widths x seconds)`` (a
face does not jump across the frame between two frames, whatever its embedding says). Inside
the gate, a face continues the track when its box overlaps the track's **predicted** box (the
last box moved by the track's velocity, at most ``PREDICTION_HORIZON_S`` ahead) by ``min_iou``,
or its embedding is ``min_similarity`` alike, or, for a track seen in the frame before, its
centre lies within ``near_widths`` of the predicted one (a small face's first step, before the
track has a velocity); the best pairs (overlap + similarity) are taken first, one face per
track. The prediction is what keeps small fast faces (0.74 of their width
a frame on the street clip: unpredicted boxes overlap by IoU 0.15) and faces missed for a few
frames on their tracks, so the N-of-M fusion sees a person's frames together; a track ends only
after ``max_age_s`` unseen.

A track holds only what association needs: the last box, its velocity, the last embedding and
the per-frame match outcomes used for N-of-M fusion. Invariant (privacy): when a track ends its
embedding is overwritten with zeros and dropped; no face data of an ended track survives in the
tracker.
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from guards.config_checks import (
    require_at_least,
    require_between,
    require_non_negative,
    require_positive,
)

Box = tuple[float, float, float, float]
"""x0, y0, x1, y1 in frame pixels."""

PREDICTION_HORIZON_S = 0.5
"""A track's box is extrapolated by its velocity at most this far (s of stream time): beyond
that a person has likely changed course, and the gate's reach alone decides."""


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
    max_speed_widths: float = 40.0
    """The motion gate: how fast a face's centre may move and stay its track, in the track's
    face widths per second of stream time. A person walking across the frame moves about 10
    face widths a second (1.5 m/s, a face 0.15 m wide); the street clip's 26 px faces move 25
    (0.74 of their width a frame at 25 fps). 40 leaves room for a run; it allows 1.6 widths
    between two frames at 25 fps."""
    slack_widths: float = 0.5
    """The motion gate's reach beyond the motion, in face widths: the detector's box jitter and
    a turning head (a face's box centre moves without the person moving)."""
    near_widths: float = 1.0
    """Inside the gate, a face whose centre lies within this many of the track's widths of its
    predicted centre continues a track seen in the frame before even with neither overlap nor
    similarity: a small face's first step (0.74 widths, IoU 0.15, embeddings rarely 0.55 alike).
    Not for a track missed in the frame before: a face entering where a person just left is
    not taken for them (docs/STREET.md, rose_leslie and kit_harington at 12.4 s)."""
    max_size_ratio: float = 1.5
    """A face more than this many times wider or narrower than the track's last box is not that
    track (a face does not double in size between frames; a camera cut does that)."""

    def __post_init__(self) -> None:
        # 0 would let every face join every track (any overlap or similarity qualifies).
        for name, value in (("min_iou", self.min_iou), ("min_similarity", self.min_similarity)):
            require_positive(f"TrackerConfig.{name}", value)
            require_between(f"TrackerConfig.{name}", value, 0.0, 1.0)
        require_positive("TrackerConfig.max_age_s", self.max_age_s)
        require_at_least("TrackerConfig.history", self.history, 1)
        require_positive("TrackerConfig.max_speed_widths", self.max_speed_widths)
        require_positive("TrackerConfig.slack_widths", self.slack_widths)
        require_non_negative("TrackerConfig.near_widths", self.near_widths)
        # Below 1 no face could continue its own track; 4 would let a camera cut through.
        require_between("TrackerConfig.max_size_ratio", self.max_size_ratio, 1.0, 4.0)


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
    velocity: tuple[float, float] = (0.0, 0.0)
    """Centre motion between its last two sightings (px per s of stream time, x and y); zero
    until it has been seen twice."""

    def predicted_box(self, t_s: float) -> Box:
        """The last box moved by the velocity to stream time ``t_s`` (at most
        ``PREDICTION_HORIZON_S`` ahead)."""
        dt = min(max(0.0, t_s - self.last_seen_s), PREDICTION_HORIZON_S)
        dx, dy = self.velocity[0] * dt, self.velocity[1] * dt
        x0, y0, x1, y1 = self.box
        return (x0 + dx, y0 + dy, x1 + dx, y1 + dy)


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
        previous_s, self.last_update_s = self.last_update_s, t_s
        hints = hints or {}
        assigned = {i: self.tracks[tid] for i, tid in hints.items() if tid in self.tracks}
        looked = [i for i in range(len(boxes)) if i not in hints]
        hinted = {track.track_id for track in assigned.values()}
        free = [tr for tr in self.tracks.values() if tr.track_id not in hinted]
        matched = self._associate(t_s, previous_s, [boxes[i] for i in looked],
                                  embeddings[looked], free)
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
                _move(track, box, t_s)
                if i not in hints:
                    track.embedding[:] = embeddings[i]
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

    def within_gate(self, box: Box, track: Track, t_s: float) -> bool:
        """The motion gate: ``box`` (at stream time ``t_s``) is of a plausible size and within
        the reach of ``track``'s face since it was last seen."""
        width, track_width = box[2] - box[0], track.box[2] - track.box[0]
        if width <= 0 or track_width <= 0:
            return False
        ratio = width / track_width
        if not 1 / self.config.max_size_ratio <= ratio <= self.config.max_size_ratio:
            return False
        seconds = max(0.0, t_s - track.last_seen_s)
        reach = track_width * (self.config.slack_widths + self.config.max_speed_widths * seconds)
        return _centre_distance(box, track.box) <= reach

    def _associate(self, t_s: float, previous_s: float | None, boxes: list[Box],
                   embeddings: NDArray[np.float32], tracks: list[Track]) -> dict[int, Track]:
        if not tracks or not boxes:
            return {}
        similarity = embeddings @ np.stack([tr.embedding for tr in tracks]).T
        predicted = [tr.predicted_box(t_s) for tr in tracks]
        pairs: list[tuple[float, int, int]] = []
        for i, box in enumerate(boxes):
            for j, track in enumerate(tracks):
                if not self.within_gate(box, track, t_s):
                    continue  # whatever the embedding says: faces do not jump
                overlap = iou(box, predicted[j])
                sim = float(similarity[i, j])
                near = (track.last_seen_s == previous_s
                        and _centre_distance(box, predicted[j])
                        <= self.config.near_widths * (track.box[2] - track.box[0]))
                if overlap >= self.config.min_iou or sim >= self.config.min_similarity or near:
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


def _move(track: Track, box: Box, t_s: float) -> None:
    """``track`` seen at ``box`` at stream time ``t_s``: its box, velocity and time."""
    dt = t_s - track.last_seen_s
    if dt > 0:
        vx = (box[0] + box[2] - track.box[0] - track.box[2]) / 2 / dt
        vy = (box[1] + box[3] - track.box[1] - track.box[3]) / 2 / dt
        track.velocity = (vx, vy)
    track.box = box
    track.last_seen_s = t_s


def _centre_distance(a: Box, b: Box) -> float:
    """Distance between the centres of two boxes (px)."""
    dx = (a[0] + a[2] - b[0] - b[2]) / 2
    dy = (a[1] + a[3] - b[1] - b[3]) / 2
    return float((dx * dx + dy * dy) ** 0.5)
