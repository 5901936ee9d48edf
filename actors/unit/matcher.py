"""``Matcher``: embeds faces, searches the watchlist, tracks faces and raises alerts.

Per frame, in order: every usable face is embedded (faces and frames run concurrently on the
worker pool) unless the ``EmbeddingSchedule`` predicts it to be a track already decided (not on
the watchlist, or alerted) that is not due for a re-check; the embeddings are matched against the
gallery in one matrix product, faces are associated with tracks, and the alert policy fuses each
track's recent outcomes (N of M). Only the embedding runs off the actor's loop: the decisions,
which change trackers, policies and counters, are taken by ``receive`` itself
(``OrderedWindow``), one frame at a time, in order.

The two-model rule (``actors.unit.second_opinion``), when the gallery holds the second model's
templates (``TwoModelGallery``): while a frame is decided, each candidate face (first-model score
within ``candidate_margin`` of its best subject's threshold) on a track whose opinion on that
subject is still open is shown to the second model; an alert needs the N-of-M fusion and the
second model's agreement on the track. A look runs in the second model's worker process, driven
from a thread of the matcher's own (never the worker pool the detector and embedder need), and is
**not awaited** by its frame: its distance is recorded when a later frame is decided. No frame
waits for a look: a frame on which the track's fusion names the subject while the second model
has not agreed yet leaves a ``DeferredAlert`` (``actors.unit.deferred_alerts``), resolved when
that track's looks at that subject are in (and, if they do not agree and the opinion is still
open, one more look at the deferred face): the alert is raised with that frame's crop, time and
hits, or dropped. The track's later frames that fuse while it waits are decided unconfirmed at
once (the track alerts once; after a drop, its next fusion is deferred in turn). So the alerts
are those of awaiting the looks at the first fused frame, and no frame behind waits the 110-135
ms of a look. At most ``MAX_PENDING_LOOKS`` looks are in flight and
``MAX_DEFERRED_ALERTS`` alerts deferred; one more first waits for the oldest. A frame's latency
is counted when its last deferred alert is resolved. A gallery without those templates alerts
on the first model alone, and the matcher logs that once.

Privacy invariant: once a frame's decisions are made, the embeddings and crops of its faces are
overwritten with zeros and dropped (also the crops of faces the schedule did not embed) - except
the crop of a face that raised an alert, which leaves as JPEG inside the ``MatchAlert``, and the
pixels around a face whose alert is deferred, wiped when it is resolved or dropped. The
second model's crops and descriptors are wiped in its worker process and, as read back, on the
look thread (``look``); a look in flight holds a copy of the face and its margin (not the
frame), wiped on the look thread once it answered; its distances are dropped with their
track. The only other things that leave are counters.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from actors.unit.alert_policy import AlertPolicy, AlertPolicyConfig
from actors.unit.deferred_alerts import DeferredAlert, DeferredAlerts, DeferredKey
from actors.unit.detector import DetectedFaces, DetectorOutput, StreamEnded
from actors.unit.embedding_schedule import EmbeddingSchedule, EmbeddingScheduleConfig
from actors.unit.face_analysis import wipe
from actors.unit.gallery import Gallery, GalleryMatch
from actors.unit.match_alert import MatchAlert
from actors.unit.second_opinion import (
    Describer,
    SecondOpinion,
    SecondOpinionConfig,
    SecondTemplates,
    TwoModelGallery,
    look,
    shared_second_worker,
)
from actors.unit.tracking import FrameOutcome, Track, Tracker, TrackerConfig
from actors.unit.watchlist_gate import WatchlistGate
from guards.config_checks import ConfigError, require_at_least, require_text
from models.face_embedder import EMBEDDING_DIM
from models.second_opinion_model import CROP_MARGIN as SECOND_MODEL_MARGIN
from models.second_opinion_model import face_crop
from runtime.actor import Actor
from runtime.ordered_window import OrderedWindow, ResultsReady, tell_owner
from runtime.ref import ActorRef

log = logging.getLogger("lfr.matcher")

MatcherOutput = MatchAlert | StreamEnded
CROP_CONTEXT = 0.4
"""An alert crop adds this share of the box size on every side, for the officer's context."""
CROP_MAX_SIDE_PX = 256
LATENCY_SAMPLES = 100_000
MAX_PENDING_LOOKS = 8
"""Second-model looks in flight per matcher (each 110-135 ms of one core); one more waits for
the oldest first."""
MAX_DEFERRED_ALERTS = 16
"""Fused matches waiting for the second model at once (``DeferredAlerts``); one more first
waits for the oldest to be resolved."""
LOOK_WAIT_S = 60.0
"""Longest wait for one look (the worker gives up on a call after 10 s; the rest is the looks
queued before it): beyond it the matcher fails and its supervisor restarts it."""


@dataclass(frozen=True, slots=True)
class MatcherConfig:
    """Matcher actor settings."""

    tracking: TrackerConfig = field(default_factory=TrackerConfig)
    """How faces are followed across frames."""
    alerts: AlertPolicyConfig = field(default_factory=AlertPolicyConfig)
    """N-of-M fusion and appearance continuity."""
    embedding: EmbeddingScheduleConfig = field(default_factory=EmbeddingScheduleConfig)
    """Which faces are embedded: all until a track is decided, then only re-checks."""
    second_opinion: SecondOpinionConfig = field(default_factory=SecondOpinionConfig)
    """The two-model rule: when the second model looks and when it agrees."""
    in_flight: int = field(default_factory=lambda: os.cpu_count() or 1)
    """Frames whose faces are embedded concurrently."""
    unit_id: str = "unit"
    """This unit's name, part of every alert id."""

    def __post_init__(self) -> None:
        require_at_least("MatcherConfig.in_flight", self.in_flight, 1)
        require_text("MatcherConfig.unit_id", self.unit_id)
        if self.alerts.window > self.tracking.history:
            raise ConfigError(
                f"MatcherConfig.alerts.window ({self.alerts.window} frames) cannot exceed "
                f"the outcomes a track keeps, MatcherConfig.tracking.history "
                f"({self.tracking.history})")
        if self.embedding.decide_after < self.alerts.window:
            # A track is decided only after a whole fusion window of clear looks.
            raise ConfigError(
                f"MatcherConfig.embedding.decide_after ({self.embedding.decide_after} looks) "
                f"cannot be less than MatcherConfig.alerts.window ({self.alerts.window})")


@dataclass(frozen=True, slots=True)
class GetMatcherStatistics:
    """Ask the matcher for its counters (in-process)."""


@dataclass(frozen=True, slots=True)
class MatcherStatistics:
    """Counters of the matcher."""

    frames: int
    """Frames decided."""
    faces: int
    """Faces embedded and matched."""
    alerts: int
    """Alerts raised."""
    latency_ms: tuple[float, ...]
    """Capture-to-decision latency of recent frames (ms), oldest first."""
    faces_skipped: int = 0
    """Faces of decided tracks not embedded (``EmbeddingSchedule``)."""
    second_looks: int = 0
    """Faces shown to the second model (candidates only)."""
    held: int = 0
    """Deferred alerts dropped: the track's N-of-M fusion named a subject the second model did
    not agree to (``DeferredAlert``)."""


@dataclass(frozen=True, slots=True)
class _Embedded:
    faces: DetectedFaces
    embeddings: NDArray[np.float32]
    """A row per face; zeros for a face in ``skipped``."""
    skipped: dict[int, int]
    """Faces not embedded: position -> the decided track they were predicted to be."""
    epoch: int
    """The matcher's track epoch when the frame was planned: its skip hints name tracks of
    that epoch only."""


@dataclass(slots=True)
class _PendingLook:
    """A second-model look in flight."""

    camera: str
    track_id: int
    subject: str
    frame: int
    """Index of the frame it looks at (a deferred alert counts the looks up to its own)."""
    task: asyncio.Future[float]
    """Its distance; owned by the matcher (cancelled and awaited when it stops or forgets)."""


class Embedder(Protocol):
    """What the matcher needs of an embedding model (``models.face_embedder.FaceEmbedder``)."""

    def embed(self, face: NDArray[np.uint8]) -> NDArray[np.float32]:
        """Unit-length embedding of one aligned 112x112x3 RGB face; called on worker threads."""
        ...


class Matcher(Actor[DetectorOutput | GetMatcherStatistics | ResultsReady]):
    """``DetectedFaces`` in, ``MatchAlert`` out."""

    def __init__(self, embedder: Embedder, gallery: Gallery | WatchlistGate,
                 output: ActorRef[MatcherOutput], config: MatcherConfig | None = None, *,
                 describer: Describer | None = None) -> None:
        """``gallery``: a fixed gallery (``lfr scan``), or the unit's ``WatchlistGate``, whose
        current watchlist is searched (none: faces are wiped unmatched; a new one: every track
        and opinion made under the old one is forgotten first). ``describer``: the second
        model (default: the vendored one, loaded when a gallery holds its templates)."""
        self.embedder = embedder
        self._gate = gallery if isinstance(gallery, WatchlistGate) else None
        self.gallery: Gallery | None = gallery if isinstance(gallery, Gallery) else None
        """The gallery searched now (None: no watchlist held)."""
        self.watchlist_version = 0
        """The version of the gate's watchlist searched now (0: a fixed gallery, or none)."""
        self._generation = -1
        # Grows whenever every track is forgotten (a new watchlist): frames planned in an older
        # epoch carry skip hints for tracks that are gone (_decide drops them).
        self._epoch = 0
        self._dimension = EMBEDDING_DIM if isinstance(gallery, WatchlistGate) else (
            gallery.dimension)
        self.output = output
        self.config = config or MatcherConfig()
        self._describer = describer
        self._second: dict[str, SecondOpinion] = {}
        self._second_looks = 0
        self._held = 0
        # Looks in flight, oldest first; at most MAX_PENDING_LOOKS (_launch_look).
        self._pending: list[_PendingLook] = []
        # Tracks whose face in the frame being decided was shown to the second model (one look
        # per track and frame).
        self._looked_now: set[int] = set()
        self._deferred = DeferredAlerts(MAX_DEFERRED_ALERTS)
        # (camera, frame index) -> [open items, capture time]: a frame's decision in progress
        # is one item, each of its deferred alerts not resolved yet one more (invariant: count
        # > 0; the frame is counted as decided, with its latency, when it reaches 0).
        self._open_frames: dict[tuple[str, int], list[int]] = {}
        self._look_thread: ThreadPoolExecutor | None = None
        self._trackers: dict[str, Tracker] = {}
        self._policies: dict[str, AlertPolicy] = {}
        self._frames = 0
        self._faces = 0
        self._skipped = 0
        self._schedule = EmbeddingSchedule(self.config.embedding)
        self._alerts = 0
        self._latency_ms: deque[float] = deque(maxlen=LATENCY_SAMPLES)
        self._window: OrderedWindow[_Embedded] | None = None
        # Tells this actor a ResultsReady: a finished look resolves deferred alerts even when
        # no frame follows (a stalled camera, the last frames of a file).
        self._wake: Callable[[], None] = _no_wake

    async def on_start(self) -> None:
        if self._sync_gallery() or self._gate is None:
            await self._gallery_changed()
        self._wake = tell_owner(self.context.ref)
        self._window = OrderedWindow(self.config.in_flight, self._decide, self._wake,
                                     name=f"{self.context.name}:window")
        # One thread for second-model looks: a look waits on the worker process's pipe, and
        # must not take a worker-pool thread from the detector and embedder meanwhile.
        self._look_thread = ThreadPoolExecutor(1, thread_name_prefix=f"{self.context.name}:look")

    def _uses_second_model(self) -> bool:
        return self.config.second_opinion.enabled and isinstance(self.gallery, TwoModelGallery)

    def _sync_gallery(self) -> bool:
        """Follow the gate: True if the gallery changed since the last call (every track,
        fusion and opinion was then forgotten: they were decided under another list)."""
        gate = self._gate
        if gate is None or gate.generation == self._generation:
            return False
        self._generation = gate.generation
        held = gate.held
        self.gallery = None if held is None else held.gallery
        self.watchlist_version = 0 if held is None else held.version
        self._forget_tracks()
        return True

    async def _gallery_changed(self) -> None:
        if self._uses_second_model() and self._describer is None:
            # Started (its files verified) once per process, on a worker: restarts cost nothing.
            self._describer = await self.context.run_blocking(shared_second_worker)
        elif (self.gallery is not None and self.config.second_opinion.enabled
              and not isinstance(self.gallery, TwoModelGallery)):
            log.warning("the watchlist holds no templates of the second face model: alerts "
                        "rest on the first model alone; rebuild it with `lfr watchlist build`")

    def _forget_tracks(self) -> None:
        self._drop_looks(None)
        for alert in self._deferred.drop(None):  # decided under the old list: nothing alerts
            self._deferred_resolved(alert)
        self._epoch += 1
        for tracker in self._trackers.values():
            tracker.clear()
        for opinion in self._second.values():
            opinion.clear()
        self._trackers.clear()
        self._policies.clear()
        self._second.clear()
        self._schedule = EmbeddingSchedule(self.config.embedding)

    async def on_stop(self) -> None:
        if self._window is not None:
            await self._window.close()
        tasks = [look.task for look in self._pending]
        self._forget_tracks()
        if tasks:  # cancelled above; their thread's call ends within the worker's timeout
            await asyncio.wait(tasks, timeout=LOOK_WAIT_S)
        if self._look_thread is not None:
            self._look_thread.shutdown(wait=False, cancel_futures=True)
            self._look_thread = None

    def _drop_looks(self, camera: str | None) -> None:
        """Cancel the looks in flight (of ``camera``; None: all): their tracks are forgotten."""
        keep: list[_PendingLook] = []
        for look_ in self._pending:
            if camera is None or look_.camera == camera:
                look_.task.cancel()
            else:
                keep.append(look_)
        self._pending = keep

    async def receive(
        self, message: DetectorOutput | GetMatcherStatistics | ResultsReady,
    ) -> MatcherStatistics | None:
        assert self._window is not None
        if isinstance(message, GetMatcherStatistics):
            # An ask takes no results: a failed embedding must fail the matcher, not the asker.
            self._window.announce_ready()
            return MatcherStatistics(self._frames, self._faces, self._alerts,
                                     tuple(self._latency_ms), self._skipped,
                                     self._second_looks, self._held)
        # Every other message first decides the embedded frames; a ResultsReady also resolves
        # the deferred alerts whose looks are in.
        await self._window.take_ready()
        if isinstance(message, ResultsReady):
            await self._resolve_deferred()
        elif isinstance(message, DetectedFaces):
            # Planned here, on the loop and in frame order: the tracks are read (and a due
            # re-check scheduled) only between decisions.
            skipped = self._schedule.plan(self._trackers.get(message.camera), message.index,
                                          message.t_s, [f.detection.box for f in message.faces])
            await self._window.submit(self._embed(message, skipped, self._epoch))
        elif isinstance(message, StreamEnded):
            await self._window.drain()
            await self._resolve_deferred(camera=message.camera)
            for alert in self._deferred.drop(message.camera):  # the list changed meanwhile
                self._deferred_resolved(alert)
            tracker = self._trackers.pop(message.camera, None)
            if tracker is not None:
                tracker.clear()
            self._policies.pop(message.camera, None)
            opinion = self._second.pop(message.camera, None)
            if opinion is not None:
                opinion.clear()
            self._drop_looks(message.camera)
            await self.output.tell(StreamEnded(message.camera, message.frames,
                                               message.faces_seen, message.faces_rejected,
                                               self._alerts))
        return None

    async def _embed(self, faces: DetectedFaces, skipped: dict[int, int],
                     epoch: int) -> _Embedded:
        embeddings = np.zeros((len(faces.faces), self._dimension), np.float32)
        looked = [i for i in range(len(faces.faces)) if i not in skipped]
        # Ahead of the detector's calls on the pool: this frame is already analysed, and a
        # live camera's latency is set by finishing frames, not by starting new ones.
        rows = await asyncio.gather(*(self.context.run_blocking_ahead(self.embedder.embed,
                                                                      faces.faces[i].aligned)
                                      for i in looked))
        for i, row in zip(looked, rows, strict=True):
            embeddings[i] = row
        return _Embedded(faces, embeddings, skipped, epoch)

    async def _decide(self, embedded: _Embedded) -> None:
        frame, embeddings = embedded.faces, embedded.embeddings
        alerted: set[int] = set()
        self._open_frames[(frame.camera, frame.index)] = [1, frame.captured_ns]
        try:
            if self._sync_gallery():
                await self._gallery_changed()
            await self._resolve_deferred()
            if self.gallery is None or (embedded.skipped and embedded.epoch != self._epoch):
                # No watchlist (purged, expired): the faces are wiped unmatched. Or the frame
                # was planned before the tracks were forgotten (a new list): its skip hints
                # name tracks that no longer exist, so it is dropped rather than misread.
                pass
            elif frame.faces:
                alerted = await self._match(frame, self.gallery, embeddings, embedded.skipped)
            elif (tracker := self._trackers.get(frame.camera)) is not None:
                # A frame without faces is seen too: its tracks were missed in it (the embedding
                # schedule trusts only tracks seen in the latest frame).
                tracker.update(frame.t_s, [], embeddings)
        finally:
            # Privacy: the decision is made; nothing of a non-alerting face survives it.
            embeddings.fill(0.0)
            for i, face in enumerate(frame.faces):
                if i not in alerted:
                    wipe(face.aligned)
        self._close(frame.camera, frame.index)

    def _close(self, camera: str, index: int) -> None:
        """One open item of frame ``index`` is done (its decision, or a deferred alert): the
        frame counts as decided when none is left."""
        opened = self._open_frames.get((camera, index))
        if opened is None:
            return
        opened[0] -= 1
        if opened[0] <= 0:
            del self._open_frames[(camera, index)]
            self._frames += 1
            self._latency_ms.append((time.monotonic_ns() - opened[1]) / 1e6)

    async def _match(self, frame: DetectedFaces, gallery: Gallery,
                     embeddings: NDArray[np.float32], skipped: dict[int, int]) -> set[int]:
        looked = [i for i in range(len(frame.faces)) if i not in skipped]
        # A copy of the embedded rows (fancy indexing copies), wiped here once searched; the
        # tracker reads the frame's matrix, which the caller wipes.
        queries = embeddings[looked]
        try:
            results = dict(zip(looked, gallery.search(queries, k=1), strict=True))
        finally:
            queries.fill(0.0)
        tracker = self._trackers.setdefault(frame.camera, Tracker(self.config.tracking))
        policy = self._policies.setdefault(frame.camera, AlertPolicy(self.config.alerts))
        tracks = tracker.update(frame.t_s, [f.detection.box for f in frame.faces],
                                embeddings, skipped)
        self._faces += len(looked)
        self._skipped += len(skipped)
        opinion = await self._second_looks_at(frame, gallery, tracker=tracker, tracks=tracks,
                                               looked=looked, results=results)
        if self._gate is not None and self._gate.generation != self._generation:
            return set()  # the watchlist changed during the looks: decide nothing on the old one
        alerted: set[int] = set()
        for i in looked:  # a face not embedded adds no outcome: the fusion sees looks only
            face, track, best = frame.faces[i], tracks[i], results[i]
            top = best[0] if best else None
            outcome = FrameOutcome(top.subject if top is not None and top.is_match else None,
                                   top.score if top is not None else 0.0)
            confirmed = (opinion is None or outcome.subject is None
                         or opinion.agrees(track.track_id, outcome.subject))
            # The alert hinges on the second model: decided when its looks are in. A later
            # frame fusing while that alert waits adds nothing to wait for: the track alerts
            # once, on the deferred frame, or the opinion it waits for says no to both.
            defer = (not confirmed and top is not None and outcome.subject is not None
                     and outcome.subject not in track.alerted
                     and not self._deferred.waiting((frame.camera, track.track_id,
                                                     outcome.subject))
                     and self._would_fuse(policy, track, outcome))
            fused = policy.observe(track, outcome, frame.t_s, confirmed=confirmed)
            if defer and top is not None:
                await self._defer(frame, i, track, top)
                if self._list_changed():
                    return alerted  # the watchlist changed meanwhile: decide nothing more
            alert = fused is not None and top is not None
            self._schedule.learn(track, top, frame.index, alerted=alert)
            if alert and top is not None:
                alerted.add(i)
                await self._raise_alert(
                    camera=frame.camera, index=frame.index, t_s=frame.t_s,
                    captured_at=frame.captured_at, box=face.detection.box,
                    crop_jpeg=alert_crop(frame.pixels, face.detection.box), track=track,
                    match=top, hits=_hits(track, top.subject))
        return alerted

    def _list_changed(self) -> bool:
        """The gate's watchlist changed since this frame's decision began (decide nothing
        more on the old one)."""
        return self._gate is not None and self._gate.generation != self._generation

    async def _second_looks_at(self, frame: DetectedFaces, gallery: Gallery, *,
                               tracker: Tracker, tracks: list[Track], looked: list[int],
                               results: dict[int, list[GalleryMatch]]) -> SecondOpinion | None:
        """Record the looks finished since the last frame, and start a look at each of this
        frame's candidate faces whose track's opinion is open (not awaited: ``_settle`` waits
        when an alert hinges on one); the camera's opinions, or None when the rule is not in
        use."""
        if not (self.config.second_opinion.enabled and isinstance(gallery, TwoModelGallery)):
            return None
        if self._describer is None:  # started with the gallery; a restart starts it again
            self._describer = await self.context.run_blocking(shared_second_worker)
        opinion = self._second.get(frame.camera)
        if opinion is None:
            opinion = self._second[frame.camera] = SecondOpinion(gallery.second,
                                                                 self.config.second_opinion)
        self._record_finished()
        await self._resolve_deferred()
        # Privacy: nothing of an ended track is kept, once its deferred alerts are resolved.
        opinion.forget_ended(set(tracker.tracks) | self._deferred.track_ids(frame.camera))
        self._looked_now.clear()
        for i in looked:
            top = results[i][0] if results[i] else None
            if top is None or not opinion.is_candidate(top) or top.subject in tracks[i].alerted:
                continue
            key = (frame.camera, tracks[i].track_id, top.subject)
            if opinion.wants_look(key[1], key[2], pending=len(self._looks_at(key))):
                await self._launch_look(opinion, key, frame.index, frame.pixels,
                                        frame.faces[i].detection.box)
                self._looked_now.add(key[1])
        return opinion

    async def _launch_look(self, opinion: SecondOpinion, key: DeferredKey, frame: int,
                           pixels: NDArray[np.uint8],
                           box: tuple[float, float, float, float]) -> None:
        """Start the second model's look at the face in ``box`` of ``pixels`` (of frame
        ``frame``) on the look thread. The look holds a copy of what the model is shown (the
        box and its margin), wiped once it answered, not the frame (6 MB on 1080p)."""
        assert self._describer is not None
        assert self._look_thread is not None
        while len(self._pending) >= MAX_PENDING_LOOKS:  # the bound: wait for the oldest
            await self._await_looks([self._pending[0]])
        crop, crop_box = face_crop(pixels, box)
        loop = asyncio.get_running_loop()
        task = asyncio.ensure_future(loop.run_in_executor(
            self._look_thread, _look_and_wipe, self._describer, opinion.templates, crop,
            crop_box, key[2]))
        task.add_done_callback(lambda _: self._wake())
        self._pending.append(_PendingLook(*key, frame, task))
        self._second_looks += 1

    async def _await_looks(self, looks: list[_PendingLook]) -> None:
        """Wait for ``looks`` (at most ``LOOK_WAIT_S``; beyond it the matcher fails) and record
        every finished look."""
        if looks:
            done, _ = await asyncio.wait([p.task for p in looks], timeout=LOOK_WAIT_S)
            if len(done) < len(looks):
                raise TimeoutError(f"the second model did not answer within {LOOK_WAIT_S} s")
        self._record_finished()

    def _record_finished(self) -> None:
        """Record the distances of the finished looks (a failed look fails the matcher)."""
        finished = [p for p in self._pending if p.task.done()]
        self._pending = [p for p in self._pending if not p.task.done()]
        for pending in finished:
            distance = pending.task.result()
            opinion = self._second.get(pending.camera)
            tracker = self._trackers.get(pending.camera)
            if opinion is not None and tracker is not None and (
                    pending.track_id in tracker.tracks
                    or pending.track_id in self._deferred.track_ids(pending.camera)):
                opinion.record(pending.track_id, pending.subject, distance,
                               frame=pending.frame)

    def _would_fuse(self, policy: AlertPolicy, track: Track, outcome: FrameOutcome) -> bool:
        """``policy.observe`` would find the fusion met with ``outcome`` (``AlertPolicy``)."""
        window = policy.config.window
        recent = list(track.outcomes)[-(window - 1):] if window > 1 else []
        hits = sum(1 for o in (*recent, outcome) if o.subject == outcome.subject)
        return hits >= policy.config.min_hits

    async def _defer(self, frame: DetectedFaces, i: int, track: Track,
                     top: GalleryMatch) -> None:
        """Defer the alert of face ``i`` of ``frame`` (its track's fusion names ``top``'s
        subject, which the second model has not agreed to yet); at the bound, the oldest
        deferred alert is first resolved, waiting for its looks."""
        while self._deferred.full and not self._list_changed():
            oldest = self._deferred.oldest()
            assert oldest is not None
            await self._resolve_deferred(wait_for=oldest)
        if self._list_changed():
            return
        self._deferred.add(DeferredAlert.cut(
            frame, frame.faces[i].detection.box, track=track, match=top,
            hits=_hits(track, top.subject),
            looked_at=track.track_id in self._looked_now,
            margin=max(CROP_CONTEXT, SECOND_MODEL_MARGIN)))
        self._open_frames[(frame.camera, frame.index)][0] += 1  # open while in its decision

    async def _resolve_deferred(self, *, wait_for: DeferredAlert | None = None,
                                camera: str | None = None) -> None:
        """Resolve, oldest frame first, every deferred alert whose looks are in; wait for the
        looks of ``wait_for`` and of every alert of ``camera`` (its stream ended)."""
        if not len(self._deferred):
            return
        self._record_finished()
        resolved = True
        while resolved and not self._list_changed():
            resolved = False
            for alert in self._deferred.in_frame_order():
                wait = alert is wait_for or (camera is not None and alert.camera == camera)
                if await self._resolve(alert, wait=wait):
                    resolved = True
                    break  # resolving it may have changed the others' opinions: start again
                if self._list_changed():
                    return

    async def _resolve(self, alert: DeferredAlert, *, wait: bool) -> bool:
        """Raise or drop ``alert`` if its opinion is in (``wait``: wait until it is); whether
        it was resolved. Mirrors a frame that waits: the track's looks at the subject, then,
        if they do not agree and the opinion is open, one look at the deferred face."""
        camera, track_id, subject = alert.key
        opinion = self._second.get(camera)
        if opinion is None:  # not expected (opinions and deferred alerts go together): drop it
            self._deferred.pop(alert)
            alert.wipe()
            self._held += 1
            self._deferred_resolved(alert)
            return True
        up_to = alert.index
        while not opinion.agrees(track_id, subject, up_to=up_to):
            pending = self._looks_at(alert.key, up_to)
            if pending:
                if not wait:
                    return False
                await self._await_looks(pending)
                if self._list_changed():
                    return False
                continue
            if alert.looked_at or not opinion.wants_look(track_id, subject, up_to=up_to):
                break  # no look in flight and none to start: the opinion is what it is
            alert.looked_at = True  # at most one look per deferred alert: the loop ends
            await self._launch_look(opinion, alert.key, alert.index, alert.region,
                                    alert.region_box)
            if not wait:
                return False
        self._deferred.pop(alert)
        try:
            policy = self._policies.get(camera)
            if not opinion.agrees(track_id, subject, up_to=up_to) or policy is None:
                self._held += 1
            elif policy.confirm(alert.track, subject, alert.t_s) is not None:
                self._schedule.learn(alert.track, alert.match, alert.index, alerted=True)
                await self._raise_alert(
                    camera=camera, index=alert.index, t_s=alert.t_s,
                    captured_at=alert.captured_at, box=alert.box,
                    crop_jpeg=alert_crop(alert.region, alert.region_box), track=alert.track,
                    match=alert.match, hits=alert.hits)
        finally:
            alert.wipe()
            if (tracker := self._trackers.get(camera)) is not None:
                # Privacy: the looks at a track that ended meanwhile go with its last alert.
                opinion.forget_ended(set(tracker.tracks) | self._deferred.track_ids(camera))
            self._deferred_resolved(alert)
        return True

    def _looks_at(self, key: DeferredKey, up_to: int | None = None) -> list[_PendingLook]:
        """Looks in flight on this opinion (``up_to``: for frames up to this index only)."""
        camera, track_id, subject = key
        return [p for p in self._pending if p.camera == camera and p.track_id == track_id
                and p.subject == subject and (up_to is None or p.frame <= up_to)]

    def _deferred_resolved(self, alert: DeferredAlert) -> None:
        """``alert`` was resolved or dropped."""
        self._close(alert.camera, alert.index)

    async def _raise_alert(self, *, camera: str, index: int, t_s: float, captured_at: float,
                           box: tuple[float, float, float, float], crop_jpeg: bytes,
                           track: Track, match: GalleryMatch, hits: int) -> None:
        self._alerts += 1
        subject = match.subject
        alert = MatchAlert(
            alert_id=f"{self.config.unit_id}/{camera}/{track.track_id}/{subject}/{index}",
            subject=subject, score=match.score, threshold=match.threshold, track=track.track_id,
            camera=camera, t_s=t_s, captured_at=captured_at, frame_index=index, box=box,
            hits=hits, crop_jpeg=crop_jpeg, watchlist_version=self.watchlist_version,
        )
        await self.output.tell(alert)


def _no_wake() -> None:
    return None


def _hits(track: Track, subject: str) -> int:
    """The track's kept outcomes naming ``subject`` (an alert's ``hits``)."""
    return sum(1 for o in track.outcomes if o.subject == subject)


def _look_and_wipe(describer: Describer, templates: SecondTemplates, crop: NDArray[np.uint8],
                   box: tuple[float, float, float, float], subject: str) -> float:
    """``look`` at ``crop``, which is then overwritten with zeros (on the look thread)."""
    try:
        return look(describer, templates, crop, box, subject)
    finally:
        crop.fill(0)


def alert_crop(pixels: NDArray[np.uint8], box: tuple[float, float, float, float]) -> bytes:
    """JPEG of the face box plus context, at most ``CROP_MAX_SIDE_PX`` on its longer side."""
    x0, y0, x1, y1 = box
    pad_x, pad_y = (x1 - x0) * CROP_CONTEXT, (y1 - y0) * CROP_CONTEXT
    h, w = pixels.shape[:2]
    left, top = max(0, int(x0 - pad_x)), max(0, int(y0 - pad_y))
    right, bottom = min(w, int(np.ceil(x1 + pad_x))), min(h, int(np.ceil(y1 + pad_y)))
    image = Image.fromarray(pixels[top:bottom, left:right])
    image.thumbnail((CROP_MAX_SIDE_PX, CROP_MAX_SIDE_PX))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=90)
    return out.getvalue()
