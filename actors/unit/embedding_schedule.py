"""``EmbeddingSchedule``: which faces the matcher embeds, so a settled track costs little.

A track is *decided* once its identity is settled: ``decide_after`` embedded looks in a row whose
best score stayed more than ``margin`` below that subject's threshold (not on the watchlist), or
as soon as it alerted (one alert per appearance: further looks at the alerted subject change
nothing). A decided track is embedded only every ``recheck_every`` frames, a re-check in case the
person turns their face; a look within the margin of a threshold, of a subject the track has not
alerted for, makes the track undecided again, so the N-of-M fusion sees every frame from then on.

Faces are planned before they are embedded (in ``Matcher.receive``, on the actor's loop, frames in
order), against the tracks of the latest decided frame, which are 1 to ``in_flight`` frames old:
each face is predicted to be the nearest track (decided or not; one face per track, nearest pairs
first) whose centre lies within the distance that track's face can move since it was last seen
(a quarter of its width plus ``max_speed`` times the stream time since) and whose width is within
``SIZE_RATIO`` of the face's. A face predicted to be a decided track that was seen in the latest
decided frame and is not due for its re-check is not embedded. Undecided tracks take part, and a
track missed in the latest frame is not trusted, so that a face entering where a decided track's
person was is not taken for it (street clip, 12.4 s: rose_leslie's decided track, she had just
left, took kit_harington's entering face for 15 frames, its re-checks going to kit's own track).
The prediction is confirmed when the frame is decided: the face then joins that track if it still
exists (``Tracker.update``'s ``hints``); if the track ended meanwhile, the face starts an
undecided track, embedded from the next frame on.
"""

from __future__ import annotations

from dataclasses import dataclass

from actors.unit.gallery import GalleryMatch
from actors.unit.tracking import Box, Track, Tracker
from guards.config_checks import require_at_least, require_between, require_positive

SIZE_RATIO = 1.5
"""A face more than this many times wider or narrower than a track's is not predicted to be it."""


@dataclass(frozen=True, slots=True)
class EmbeddingScheduleConfig:
    """When a tracked face need not be embedded."""

    enabled: bool = True
    """Off: every usable face of every frame is embedded (the behaviour before this schedule)."""
    decide_after: int = 8
    """Embedded looks in a row, each clear of every threshold by ``margin``, that decide a track
    as not on the watchlist. At least the alert window (``AlertPolicyConfig.window``)."""
    margin: float = 0.15
    """A look is clear when its best score is below that subject's threshold minus this
    (cosine similarity)."""
    recheck_every: int = 10
    """A decided track's face is embedded on one frame in this many (frames); at 25 fps 10 is a
    re-check every 0.4 s."""
    max_speed: float = 1000.0
    """How fast a face may move to be predicted as its decided track's (frame px per second of
    stream time; 40 px a frame at 25 fps). In px, not face widths: on the 1080p street clip faces
    move 19-26 px a frame whatever their size (26 to 200 px), and a reach in widths let a 200 px
    face entering beside a decided one be taken for it."""

    def __post_init__(self) -> None:
        require_at_least("EmbeddingScheduleConfig.decide_after", self.decide_after, 1)
        require_between("EmbeddingScheduleConfig.margin", self.margin, 0.0, 1.0)
        # 1 would embed every frame while claiming to skip: turn the schedule off instead.
        require_at_least("EmbeddingScheduleConfig.recheck_every", self.recheck_every, 2)
        require_positive("EmbeddingScheduleConfig.max_speed", self.max_speed)


class EmbeddingSchedule:
    """Plans which faces of a frame are embedded; learns from each embedded look."""

    def __init__(self, config: EmbeddingScheduleConfig | None = None) -> None:
        self.config = config or EmbeddingScheduleConfig()

    def plan(self, tracker: Tracker | None, index: int, t_s: float,
             boxes: list[Box]) -> dict[int, int]:
        """Faces not to embed on frame ``index``: face position -> the decided track it is
        predicted to be. A decided track due for its re-check is not in it (its face is
        embedded) and its next re-check is scheduled."""
        if not self.config.enabled or tracker is None or not boxes:
            return {}
        if not any(tr.decided for tr in tracker.tracks.values()):
            return {}
        pairs: list[tuple[float, int, Track]] = []
        for i, box in enumerate(boxes):
            for track in tracker.tracks.values():
                distance = self._distance(box, track, t_s)
                if distance is not None:
                    pairs.append((distance, i, track))
        pairs.sort(key=lambda p: p[0])
        skipped: dict[int, int] = {}
        taken_faces: set[int] = set()
        taken_tracks: set[int] = set()
        for _, i, track in pairs:
            if i in taken_faces or track.track_id in taken_tracks:
                continue
            taken_faces.add(i)
            taken_tracks.add(track.track_id)
            # Trusted only while seen without a gap: a decided track whose face was missed in
            # the latest decided frame may have left (street clip, 12.4 s: rose_leslie's track
            # took kit_harington's face entering where she had been, for 5 frames).
            if not track.decided or track.last_seen_s != tracker.last_update_s:
                continue
            if index >= track.next_look_index:
                track.next_look_index = index + self.config.recheck_every  # re-check this one
            else:
                skipped[i] = track.track_id
        return skipped

    def learn(self, track: Track, best: GalleryMatch | None, index: int, *,
              alerted: bool) -> None:
        """Record one embedded look at ``track`` (``best``: its top gallery match). Switched off,
        tracks are still decided, but ``plan`` skips no face: the switch has one place."""
        if alerted:
            self._decide(track, index)
            return
        near = (best is not None and best.subject not in track.alerted
                and best.score >= best.threshold - self.config.margin)
        if near:
            track.clear_looks = 0
            track.decided = False
            return
        track.clear_looks += 1
        if not track.decided and track.clear_looks >= self.config.decide_after:
            self._decide(track, index)

    def _decide(self, track: Track, index: int) -> None:
        track.decided = True
        track.next_look_index = index + self.config.recheck_every

    def _distance(self, box: Box, track: Track, t_s: float) -> float | None:
        """Centre distance of ``box`` to ``track``'s, if within the motion and size gates (px)."""
        width = box[2] - box[0]
        track_width = track.box[2] - track.box[0]
        if width <= 0 or track_width <= 0 or not (
                1 / SIZE_RATIO <= width / track_width <= SIZE_RATIO):
            return None
        dx = (box[0] + box[2] - track.box[0] - track.box[2]) / 2
        dy = (box[1] + box[3] - track.box[1] - track.box[3]) / 2
        distance = float((dx * dx + dy * dy) ** 0.5)
        reach = track_width / 4 + self.config.max_speed * max(0.0, t_s - track.last_seen_s)
        return distance if distance <= reach else None
