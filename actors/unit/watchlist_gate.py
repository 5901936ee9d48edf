"""``WatchlistGate``: the one watchlist a unit holds, in memory only, and whether it may scan.

The unit's ``WatchlistKeeper`` installs a verified watchlist here and clears it (purge, expiry,
deployment end); the detectors and the matcher read it on the event loop, frame by frame:

- a detector whose gate holds nothing analyses no frame at all: **without a watchlist no face
  is even looked at** (frames are decoded and dropped, counted as ``frames_idle``);
- the matcher searches the gallery the gate holds now; when the gate's ``generation`` changes it
  forgets every track, fusion and opinion made under the old list before deciding another face.

Nothing here touches a disk. ``clear`` overwrites the gallery's rows (both models' templates
and the thresholds) with zeros before dropping them, so a purged watchlist's embeddings do not
linger in this process's memory; the keeper wipes its own copies too.

Invariant: ``generation`` grows by one at every ``install`` and ``clear``; ``held`` is None or a
watchlist whose ``not_after`` lies after the moment it was installed; ``highest_version`` of a
deployment never falls while the process runs (the keeper's rollback check: a purge followed by
an older version is still a rollback, and the gate outlives the keeper's restarts).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from actors.unit.gallery import Gallery
from actors.unit.second_opinion import SecondTemplates, TwoModelGallery
from actors.unit.watchlist import Watchlist
from secure.memory_wipe import wipe_buffer


@dataclass(frozen=True, slots=True, eq=False)
class HeldWatchlist:
    """A verified watchlist as the unit uses it."""

    deployment_id: str
    """The deployment it was signed for."""
    version: int
    """Its version within the deployment."""
    threshold: float
    """The deployment's alert threshold: no subject alerts below it (nor below its own
    signed threshold, ``held_gallery``)."""
    not_after: float
    """When it expires (seconds since the epoch); the keeper drops it then."""
    payload_sha256: str
    """sha256 of its payload (hex), for the audit trail."""
    gallery: Gallery
    """What the matcher searches (both models' templates when the list has them)."""

    @property
    def subjects(self) -> int:
        """Subjects held."""
        return len(self.gallery)


def held_gallery(watchlist: Watchlist, threshold: float) -> Gallery:
    """The gallery a unit holds for ``watchlist``: each subject at the higher of its own
    threshold (signed by the authority) and the deployment's ``threshold`` (set at the van: it
    can make a unit stricter, never laxer than the authority signed), built on copies of its
    own (writable, so ``Gallery.wipe`` can overwrite them); with the second model's templates
    when the list has them."""
    thresholds = np.maximum(watchlist.thresholds, np.float32(threshold)).astype(np.float32)
    if not watchlist.has_second_model:
        return Gallery(watchlist.subjects, watchlist.embeddings, thresholds)
    second = SecondTemplates(watchlist.second_model_id, watchlist.second_model_sha256,
                             {subject: i for i, subject in enumerate(watchlist.subjects)},
                             np.array(watchlist.second_embeddings, np.float32, copy=True),
                             np.array(watchlist.second_thresholds, np.float32, copy=True))
    return TwoModelGallery(watchlist.subjects, watchlist.embeddings, thresholds, second)


def wipe_watchlist(watchlist: Watchlist) -> None:
    """Overwrite a decoded watchlist's arrays (and the buffers they view) with zeros; the
    ``Watchlist`` object must not be used afterwards."""
    for array in (watchlist.embeddings, watchlist.thresholds, watchlist.second_embeddings,
                  watchlist.second_thresholds):
        wipe_buffer(array)


class WatchlistGate:
    """The unit's held watchlist (module docstring). Event loop only.

    Expiry is enforced here too, at every read: once the held list's ``not_after`` has passed,
    ``held`` is None, ``scanning`` False and ``generation`` has moved on, even if the keeper is
    busy (a long transfer) and has not dropped and overwritten it yet (``expired``)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._held: HeldWatchlist | None = None
        self._clock = clock
        self._generation = 0
        # The highest version installed per deployment since the process started.
        self._highest: dict[str, int] = {}

    @property
    def generation(self) -> int:
        """Grows at every change of what is held, its expiry included."""
        return self._generation + (1 if self.expired() else 0)

    def expired(self) -> bool:
        """True when a list is still in memory but past its not-after (the keeper drops it)."""
        return self._held is not None and self._clock() >= self._held.not_after

    @property
    def held(self) -> HeldWatchlist | None:
        """What the unit holds now, or None (also once it has expired)."""
        return None if self._held is None or self.expired() else self._held

    @property
    def scanning(self) -> bool:
        """True while an unexpired watchlist is held: only then are frames analysed."""
        return self.held is not None

    @property
    def version(self) -> int:
        """The held version, 0 for none."""
        held = self.held
        return 0 if held is None else held.version

    def highest_version(self, deployment_id: str) -> int | None:
        """The highest version of ``deployment_id`` ever installed here (None: none), held or
        dropped since."""
        return self._highest.get(deployment_id)

    def install(self, held: HeldWatchlist) -> HeldWatchlist | None:
        """Hold ``held`` from now on; returns the watchlist it replaces (the caller wipes it
        once no frame in flight can use it: ``Gallery.wipe``)."""
        old, self._held = self._held, held
        self._generation = self.generation + 1
        self._highest[held.deployment_id] = max(self._highest.get(held.deployment_id, 0),
                                                held.version)
        return old

    def clear(self) -> HeldWatchlist | None:
        """Hold nothing from now on (scanning stops); returns what was in memory (expired or
        not), for wiping."""
        generation = self.generation
        old, self._held = self._held, None
        self._generation = generation + 1
        return old
