"""``WatchlistBuilder``: the van builds a watchlist from an uploaded folder of photos, one build
at a time, and tells the Watchlist page how far it got.

The enrolment is ``lfr watchlist build``'s own loop (``lfr.watchlist_build.enrol_subjects``
and ``enrol_photo``), on photos held in memory (``console.photo_upload``, given to it as
``lfr.photo_faces.PhotoBytes``) instead of files: every photo must hold exactly one usable face
(``lfr.photo_faces.PhotoFaces``' detector, embedder and quality gates), any other photo is
skipped and named with the reason; a subject's embedding is the normalised mean of its photos'
embeddings, its second template the mean of the second model's descriptors (on the box the
detector found) with ``DEFAULT_SECOND_THRESHOLD``; subjects without a usable photo are left out
and named. Each subject's first photo used is also re-encoded as its reference photo
(``reference_jpeg``: a plain JPEG of at most ``lfr.reference_photos.MAX_SIDE_PX``, no
metadata), as ``lfr watchlist push --photos`` would give the van.

Guarantees:

- **One build at a time per van.** ``reserve`` takes the builder for an upload before its
  body is read (a second one gets ``BuilderBusy`` at once, naming who builds); the build runs
  one photo per call on the node's blocking pool, awaited one after the other, so it never has
  more than one call queued there and the van's other work interleaves. Its task is owned by
  the builder; ``stop`` cancels and awaits it.
- **Progress is real**: ``progress()`` reports the photos done out of the photos uploaded,
  counted as each call returns.
- **Face data**: each uploaded photo is wiped once enrolled, and every one as soon as the
  build ends (done, failed or cancelled); each decoded image, aligned face, per-photo
  embedding and descriptor is overwritten once used (the encoded copy the decoder reads is a
  transient ``bytes`` object, freed at once). What remains, in memory only, is the result
  (``BuiltWatchlist``: the watchlist, its reference JPEGs and, once signed, the signed file)
  until it is pushed, discarded, replaced by a new build, or the van stops (or its deployment
  is no longer active: the page wipes it); ``BuiltWatchlist.wipe`` overwrites it.
- **Audited**: a finished build is recorded as ``watchlist_built`` (deployment, subjects,
  photos used and skipped, payload sha256, operator), a failed one as ``input_refused``
  (source ``photo_folder``, the reason, operator); never a photo or an embedding.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from actors.unit.second_opinion import shared_second_model
from actors.unit.watchlist import DEFAULT_THRESHOLD, HEADER_BYTES, Watchlist, encode_watchlist
from audit.kinds import AuditKind
from console.photo_upload import PhotoUpload, UploadedPhoto
from console.sources import AuditRecorder
from guards.log_text import printable
from guards.user_input import UserInputError
from lfr.photo_faces import PhotoBytes, PhotoFaces
from lfr.reference_photos import reference_jpeg
from lfr.watchlist_build import EnrolledPhoto, EnrolmentReport, enrol_photo, enrol_subjects
from models.second_opinion_model import SecondFaceModel
from runtime.blocking import BlockingPool
from secure.memory_wipe import wipe_buffer

log = logging.getLogger("lfr.console")

STOP_WAIT_S: Final = 10.0
"""On stop, how long the build's task gets to end after it is cancelled (a photo's pool call
runs to its end: a few hundred ms)."""


class BuildState(enum.StrEnum):
    """Where the builder is."""

    IDLE = "idle"
    """Nothing built or building."""
    RECEIVING = "receiving"
    """An upload is being read."""
    LOADING = "loading"
    """The face models are being loaded (the first build of the van's life)."""
    BUILDING = "building"
    """Photos are being enrolled."""
    BUILT = "built"
    """A watchlist is ready (``BuiltWatchlist``)."""
    FAILED = "failed"
    """The last build failed (``BuildProgress.message`` says why)."""


BUSY_STATES: Final = frozenset({BuildState.RECEIVING, BuildState.LOADING, BuildState.BUILDING})
"""States in which a new upload is refused."""


class BuilderBusy(UserInputError):
    """A build or an upload is already running; the text names who started it."""


@dataclass(frozen=True, slots=True)
class PhotoModels:
    """The models a build runs (loaded once, on the blocking pool, and kept)."""

    faces: PhotoFaces
    """Detector, embedder and quality gates (shared by pool threads: each runs its own
    interpreter)."""
    second: SecondFaceModel
    """The second face model (thread-safe)."""


def load_photo_models() -> PhotoModels:
    """The vendored models (blocking: reads and verifies the model files)."""
    return PhotoModels(PhotoFaces(), shared_second_model())


@dataclass(slots=True, eq=False)
class BuiltWatchlist:
    """A finished build, in memory only (module docstring)."""

    deployment_id: str
    """The deployment it was built for (active when the upload started)."""
    built_by: str
    """The supervisor who uploaded the photos."""
    watchlist: Watchlist = field(repr=False)
    """The watchlist (embeddings: overwritten by ``wipe``)."""
    used: dict[str, int]
    """Photos used per subject."""
    skipped: list[str]
    """One printable line per photo, file or subject not used, with the reason."""
    photos: dict[str, bytes] = field(repr=False)
    """Subject -> reference JPEG."""
    payload_sha256: str
    """sha256 of the watchlist's payload (hex): what a signed file of it carries."""
    signed: bytearray | None = field(default=None, repr=False)
    """The signed file once signed on this van; wiped by ``wipe``."""
    signed_version: int = 0
    """Its version (0: not signed)."""

    def unsigned_file(self) -> bytes:
        """The watchlist file (``lfr watchlist build``'s format) for ``lfr watchlist sign``."""
        return encode_watchlist(self.watchlist)

    def wipe(self) -> None:
        """Overwrite the embeddings and the signed file, forget the photos."""
        wipe_buffer(self.watchlist.embeddings)
        if self.watchlist.second_embeddings is not None:
            wipe_buffer(self.watchlist.second_embeddings)
        if self.signed is not None:
            wipe_buffer(self.signed)
        self.photos.clear()


@dataclass(frozen=True, slots=True)
class BuildProgress:
    """What the page shows of the builder."""

    state: BuildState
    """Where it is."""
    done: int
    """Photos enrolled or skipped so far."""
    total: int
    """Photos uploaded."""
    started_by: str
    """Who uploaded ("" when idle)."""
    deployment_id: str
    """The deployment it builds for ("" when idle)."""
    message: str
    """Why it failed (``FAILED``), else ""."""


class WatchlistBuilder:
    """The van's one watchlist build (module docstring)."""

    def __init__(self, blocking: BlockingPool, audit: AuditRecorder, *,
                 models: Callable[[], PhotoModels] = load_photo_models,
                 clock: Callable[[], float] = time.time) -> None:
        """``models`` loads the face models (blocking; once); ``clock`` (s since the epoch)
        dates the watchlists built (``Watchlist.created_at``, checked against real time)."""
        self._blocking = blocking
        self._audit = audit
        self._load_models = models
        self._clock = clock
        self._models: PhotoModels | None = None  # loaded by the first build, kept
        self._task: asyncio.Task[None] | None = None  # the running build, owned here
        # Invariant: state in BUSY_STATES exactly while an upload or a build holds the builder;
        # result is not None exactly in BUILT.
        self._state = BuildState.IDLE
        self._done = 0
        self._total = 0
        self._by = ""
        self._deployment = ""
        self._message = ""
        self.result: BuiltWatchlist | None = None
        """The finished build, until pushed, discarded or replaced."""

    def progress(self) -> BuildProgress:
        """A snapshot of where the builder is."""
        return BuildProgress(self._state, self._done, self._total, self._by, self._deployment,
                             self._message)

    def reserve(self, account: str, deployment_id: str) -> None:
        """Take the builder for an upload by ``account`` (before its body is read);
        ``BuilderBusy`` while another upload or build holds it. A finished build it replaces
        is wiped."""
        if self._state in BUSY_STATES:
            raise BuilderBusy(f"a watchlist build started by {printable(self._by)} is "
                              f"{self._state.value}; wait for it to finish")
        self._drop_result()
        self._state, self._by, self._deployment = BuildState.RECEIVING, account, deployment_id
        self._done = self._total = 0
        self._message = ""

    def release(self, reason: str) -> None:
        """The reserved upload was refused: the builder is free again."""
        if self._state is BuildState.RECEIVING:
            self._state, self._message = BuildState.FAILED, reason

    def start(self, upload: PhotoUpload) -> None:
        """Build from ``upload`` (after ``reserve``), in a task the builder owns; the upload
        is wiped when the build ends."""
        if self._state is not BuildState.RECEIVING:
            upload.wipe()
            raise BuilderBusy("the builder was not reserved for this upload")
        self._total = upload.photos
        self._state = BuildState.LOADING if self._models is None else BuildState.BUILDING
        self._task = asyncio.create_task(self._build(upload), name="watchlist build")

    def discard(self) -> bool:
        """Wipe the finished build; whether there was one."""
        had = self.result is not None
        self._drop_result()
        if had or self._state is BuildState.FAILED:
            self._state, self._by, self._deployment, self._message = BuildState.IDLE, "", "", ""
        return had

    async def stop(self) -> None:
        """Cancel a running build and wait for it (at most ``STOP_WAIT_S``); wipe the result."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait([task], timeout=STOP_WAIT_S)
        self._drop_result()

    def _drop_result(self) -> None:
        if self.result is not None:
            self.result.wipe()
            self.result = None
            if self._state is BuildState.BUILT:
                self._state = BuildState.IDLE

    async def _build(self, upload: PhotoUpload) -> None:
        try:
            if self._models is None:
                self._models = await self._blocking.run(self._load_models)
                self._state = BuildState.BUILDING
            result = await self._enrol(self._models, upload)
        except asyncio.CancelledError:
            self._fail("the van stopped during the build")
            raise
        except UserInputError as exc:
            self._fail(str(exc))
        except Exception as exc:  # the build's own boundary: it fails, the van
            # keeps running and the page says why
            log.exception("console: a watchlist build failed")
            self._fail(f"the build failed: {printable(exc, max_chars=300)}")
        else:
            self.result, self._state = result, BuildState.BUILT
            self._audit.record(AuditKind.WATCHLIST_BUILT, deployment=result.deployment_id,
                               subjects=len(result.used), photos_used=sum(result.used.values()),
                               photos_skipped=len(result.skipped),
                               payload_sha256=result.payload_sha256, operator=self._by)
            log.info("console: %s built a watchlist of %d subjects from %d photos",
                     printable(self._by), len(result.used), self._total)
        finally:
            upload.wipe()

    def _fail(self, reason: str) -> None:
        self._state, self._message = BuildState.FAILED, reason
        self._audit.record(AuditKind.INPUT_REFUSED, source="photo_folder",
                           reason=printable(reason, max_chars=400), operator=self._by)

    async def _enrol(self, models: PhotoModels, upload: PhotoUpload) -> BuiltWatchlist:
        report = EnrolmentReport(skipped=list(upload.skipped))

        async def enrol(photo: UploadedPhoto, *, reference: bool) -> EnrolledPhoto:
            try:
                return await self._blocking.run(functools.partial(
                    enrol_photo, models.faces, models.second, PhotoBytes(photo.name, photo.data),
                    reference=reference_jpeg if reference else None))
            finally:
                wipe_buffer(photo.data)
                self._done += 1

        enrolled = await enrol_subjects(upload.subjects, enrol, report)
        if not enrolled.ids:
            skipped = report.skipped
            raise UserInputError("no subject has a usable photo: "
                                 + "; ".join(skipped[:5]) + (" ..." if len(skipped) > 5 else ""))
        watchlist = enrolled.watchlist(
            models.faces, models.second, dict.fromkeys(enrolled.ids, DEFAULT_THRESHOLD),
            created_at=self._clock())
        encoded = encode_watchlist(watchlist)  # immutable: dropped once hashed
        payload_sha256 = hashlib.sha256(memoryview(encoded)[HEADER_BYTES:]).hexdigest()
        del encoded
        return BuiltWatchlist(self._deployment, self._by, watchlist, report.used, report.skipped,
                              enrolled.references, payload_sha256)
