"""The two-model rule: an alert needs the second face model to agree with the first.

The first model (MobileFaceNet) decides as before: a track alerts for a subject when N of its
last M looks match that subject (``AlertPolicy``). Before that alert is raised, the second,
independently trained model (dlib's ResNet descriptor, ``models.second_opinion_model``) must
agree on the same track: at least ``min_agreeing`` of its looks at the face, compared with that
subject's own template, lie within the subject's distance threshold (stored in the watchlist).
Two models rarely make the same mistake, so a lookalike that fools one is stopped by the other.

The second model is slow (110-135 ms per face on one core, holding the GIL: the matcher runs it
in a worker process, ``shared_second_worker``), so it looks only at
**candidates**: faces whose first-model score for their best subject reaches that subject's
threshold minus ``candidate_margin``, and only while the track's opinion on that subject is
open: at most ``max_looks`` looks per track and subject, none once it agrees. A face below the
candidate score is never shown to it; in a street that is a few faces a minute.

Privacy: a face's descriptor is compared with the template on the worker thread that made it
and overwritten with zeros there (``look``); what a track keeps is distances (numbers, like the
first model's scores in ``Track.outcomes``), dropped when the track ends (``forget_ended``) or
the stream ends (``clear``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

import numpy as np
from numpy.typing import NDArray

from actors.unit.gallery import Gallery, GalleryMatch
from guards.config_checks import ConfigError, require_at_least, require_between
from models.second_opinion_model import DESCRIPTOR_DIM, SecondFaceModel, descriptor_distance
from models.second_opinion_worker import SecondModelProcess

DEFAULT_SECOND_THRESHOLD: Final = 0.60
"""Euclidean distance of dlib descriptors at or below which the second model calls two faces
the same person: dlib's published threshold, and the middle of the gap measured with
``lfr calibrate`` on the shared photos (largest same-person distance 0.524, smallest
different-person distance 0.694; docs/RECOGNITION.md, "The two-model rule")."""


@dataclass(frozen=True, slots=True)
class SecondOpinionConfig:
    """When the second model looks, and when it agrees."""

    enabled: bool = True
    """Off: alerts rest on the first model alone (also the case for a watchlist without the
    second model's templates)."""
    candidate_margin: float = 0.10
    """A face is a candidate when its first-model score reaches its best subject's threshold
    minus this (cosine; 0.50 at the default threshold 0.60)."""
    max_looks: int = 5
    """Most looks of the second model per track and subject (about 0.5-0.75 s of one core)."""
    min_agreeing: int = 2
    """Looks within the subject's distance threshold needed for the second model to agree."""
    sure_margin: float | None = 0.10
    """One look this far inside the subject's distance threshold (0.50 at the default 0.60)
    agrees by itself; None: ``min_agreeing`` looks are always needed. Two looks at a track are
    made on frames 40 ms apart and nearly repeat each other (street clip: 13 of 14 tracks'
    first two looks within 0.05 of each other, median 0.007), so the second adds a look's
    110-135 ms of CPU to the alert more than it adds evidence; a look inside 0.50 lies 0.19
    from the nearest different-person distance measured (0.694), twice the margin of 0.60
    (docs/RECOGNITION.md, "The two-model rule")."""

    def __post_init__(self) -> None:
        require_between("SecondOpinionConfig.candidate_margin", self.candidate_margin, 0.0, 0.5)
        if self.sure_margin is not None:
            require_between("SecondOpinionConfig.sure_margin", self.sure_margin, 0.0, 1.0)
        require_at_least("SecondOpinionConfig.min_agreeing", self.min_agreeing, 1)
        require_at_least("SecondOpinionConfig.max_looks", self.max_looks, 1)
        if self.min_agreeing > self.max_looks:
            raise ConfigError(f"SecondOpinionConfig.min_agreeing ({self.min_agreeing}) cannot "
                              f"exceed SecondOpinionConfig.max_looks ({self.max_looks})")


@dataclass(frozen=True, slots=True, eq=False)
class SecondTemplates:
    """The watchlist's templates of the second model, by subject."""

    model_id: str
    """The descriptor model that made them."""
    model_sha256: str
    """sha256 of its file."""
    rows: dict[str, int]
    """Subject id -> its row."""
    embeddings: NDArray[np.float32]
    """(n, 128) descriptors."""
    thresholds: NDArray[np.float32]
    """(n,) per-subject distance thresholds."""

    def __post_init__(self) -> None:
        n = len(self.rows)
        if self.embeddings.shape != (n, DESCRIPTOR_DIM) or self.thresholds.shape != (n,):
            raise ValueError(f"{n} subjects need ({n}, {DESCRIPTOR_DIM}) templates and {n} "
                             f"thresholds, got {self.embeddings.shape} and "
                             f"{self.thresholds.shape}")


class TwoModelGallery(Gallery):
    """A gallery of the first model's embeddings that also holds the second model's templates
    (``Watchlist.gallery`` makes one when the watchlist has them)."""

    def __init__(self, subjects: Sequence[str], embeddings: NDArray[np.float32],
                 thresholds: NDArray[np.float32], second: SecondTemplates) -> None:
        super().__init__(subjects, embeddings, thresholds)
        if set(second.rows) != set(self.subjects):
            raise ValueError("the second model's templates must name the gallery's subjects")
        self.second = second

    def wipe(self) -> None:
        """Also overwrite the second model's templates (``Gallery.wipe``)."""
        super().wipe()
        self.second.embeddings.fill(0.0)
        self.second.thresholds.fill(0.0)
        self.second.rows.clear()


class Describer(Protocol):
    """What the rule needs of the second model (``SecondFaceModel``)."""

    def describe(self, pixels: NDArray[np.uint8],
                 box: tuple[float, float, float, float]) -> NDArray[np.float32]:
        """The descriptor of the face in ``box`` of ``pixels``; called on worker threads."""
        ...


@functools.cache
def shared_second_model() -> SecondFaceModel:
    """The vendored second model, loaded (and verified) once per process: matcher restarts
    and cameras share it (it is thread-safe)."""
    return SecondFaceModel()


@functools.cache
def shared_second_worker() -> SecondModelProcess:
    """The second model in its worker process (``models.second_opinion_worker``), started once
    per process and shared by its matchers: dlib holds the GIL for a whole look, which in this
    process would stall the event loop and every worker thread's Python. Blocks until the
    child has loaded and verified its files (call it on a worker thread)."""
    worker = SecondModelProcess()
    worker.start()
    return worker


def second_worker_peak_rss_mb() -> float | None:
    """The peak RSS of this process's second-model worker (MB), if one was started (benches
    report it beside their own: a unit's memory holds both processes)."""
    if shared_second_worker.cache_info().currsize == 0:
        return None
    return shared_second_worker().peak_rss_mb()


def look(describer: Describer, templates: SecondTemplates, pixels: NDArray[np.uint8],
         box: tuple[float, float, float, float], subject: str) -> float:
    """The second model's distance between the face in ``box`` and ``subject``'s template.
    Runs on a worker thread; the face's descriptor is wiped before it returns."""
    row = templates.rows.get(subject)
    if row is None:  # the templates were wiped meanwhile (a purge): nobody is confirmed
        return math.inf
    descriptor = describer.describe(pixels, box)
    try:
        return descriptor_distance(descriptor, templates.embeddings[row])
    finally:
        descriptor.fill(0.0)


class SecondOpinion:
    """The second model's looks at the tracks of one camera (distances only)."""

    def __init__(self, templates: SecondTemplates, config: SecondOpinionConfig) -> None:
        self.templates = templates
        self.config = config
        # track id -> subject -> (frame index, distance) of the looks so far (at most
        # max_looks each, plus the look a deferred alert may add).
        self._looks: dict[int, dict[str, list[tuple[int, float]]]] = {}

    def is_candidate(self, best: GalleryMatch | None) -> bool:
        """The first model's best match is close enough to its threshold to ask."""
        return best is not None and best.score >= best.threshold - self.config.candidate_margin

    def wants_look(self, track_id: int, subject: str, *, pending: int = 0,
                   up_to: int | None = None) -> bool:
        """The opinion on ``subject`` for this track is still open, counting ``pending`` looks
        in flight as made and, should they all agree, as agreeing (so no look is started that
        could not change the opinion); ``up_to``: only looks made for frames up to this index.
        With ``sure_margin``, one look at a time: the one in flight may settle it alone (on the
        street clip 9 of 14 first looks did), and a look queued behind it would hold up the
        other tracks' looks in the one worker for 110-135 ms."""
        if pending and self.config.sure_margin is not None:
            return False
        distances = self._distances(track_id, subject, up_to)
        return (len(distances) + pending < self.config.max_looks
                and self._agreeing(track_id, subject, up_to) + pending
                < self.config.min_agreeing
                and not self.agrees(track_id, subject, up_to=up_to))

    def record(self, track_id: int, subject: str, distance: float, *, frame: int = 0) -> None:
        """One look's distance; ``frame``: the index of the frame it was made for."""
        self._looks.setdefault(track_id, {}).setdefault(subject, []).append((frame, distance))

    def agrees(self, track_id: int, subject: str, *, up_to: int | None = None) -> bool:
        """At least ``min_agreeing`` looks at this track lie within ``subject``'s threshold,
        or one within it by ``sure_margin`` (``up_to``: of the looks made for frames up to this
        index; a deferred alert is decided on the looks a frame that waited would have had)."""
        if self._agreeing(track_id, subject, up_to) >= self.config.min_agreeing:
            return True
        margin = self.config.sure_margin
        row = self.templates.rows.get(subject)
        if margin is None or row is None:  # no templates (a purge): nobody is confirmed
            return False
        sure = float(self.templates.thresholds[row]) - margin
        return any(d <= sure for d in self._distances(track_id, subject, up_to))

    def _distances(self, track_id: int, subject: str, up_to: int | None) -> list[float]:
        looks = self._looks.get(track_id, {}).get(subject, [])
        return [d for frame, d in looks if up_to is None or frame <= up_to]

    def _agreeing(self, track_id: int, subject: str, up_to: int | None) -> int:
        distances = self._distances(track_id, subject, up_to)
        if not distances:
            return 0
        row = self.templates.rows.get(subject)
        if row is None:  # the templates were wiped (a purge): nobody is confirmed
            return 0
        limit = float(self.templates.thresholds[row])
        return sum(1 for d in distances if d <= limit)

    def looks(self, track_id: int, subject: str) -> tuple[float, ...]:
        """The distances recorded for this track and subject (for statistics and tests)."""
        return tuple(self._distances(track_id, subject, None))

    def forget_ended(self, live: Iterable[int]) -> None:
        """Drop what was kept for tracks not in ``live`` (they ended)."""
        keep = set(live)
        for track_id in [t for t in self._looks if t not in keep]:
            del self._looks[track_id]

    def clear(self) -> None:
        """Drop everything (end of stream, shutdown)."""
        self._looks.clear()

    @property
    def tracks_kept(self) -> int:
        """Tracks with looks kept."""
        return len(self._looks)
