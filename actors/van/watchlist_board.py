"""``WatchlistBoard``: the van's word on which watchlist each unit must hold, and its view of
what each unit does hold.

The board is the one place the van decides what a unit is told (``news_for``), and the one place
a unit's reports land (``reported``). It keeps in memory what every poll needs and writes to the
``DeploymentStore`` (``actors.van.deployment_store``) only what changes, on the blocking pool:

- **deployment**: at most one active; ``start_deployment`` / ``end_deployment``. Ending one
  purges every unit (each is told to purge at its next poll) and deletes the van's own sealed
  copies of the deployment's watchlists and reference photos (the store does, securely);
- **pushes**: ``push(signed, units)`` checks the signed watchlist as far as the van can (the
  authority's key and both signature halves, its payload, the active deployment, a version
  above every one pushed in the deployment, the validity window: ``verify_signed_watchlist``
  with the van's embedder), stores it sealed, and assigns it to the units named (or to all,
  including units enrolled later). A push to some units leaves the others on what they had;
- **purges**: ``purge(units)`` tells the units named (or all) to drop what they hold, now;
- **the van's view**: every poll carries the unit's state; a change (held, refused with its
  reason, purged, expired) is stored, audited and shown as a line.

Invariants: a unit is only ever offered a version of the active deployment that was pushed to
it; the assignment of every unit only moves to higher versions within a deployment; no
deployment, no watchlist: without an active deployment every unit holding one is told to purge.
The board runs on the event loop only (the desks and the control actor call it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Final, Protocol

from actors.signed_watchlist import (
    MAX_VERSION,
    VerifiedWatchlist,
    WatchlistRefused,
    read_signed_watchlist,
    verify_signed_watchlist,
)
from actors.van.deployment_store import (
    Deployment,
    DeploymentError,
    DeploymentStore,
    StoredWatchlist,
    UnitWatchlistState,
)
from actors.watchlist_messages import (
    MAX_REASON_CHARS,
    HeldState,
    NewsKind,
    WatchlistNews,
    WatchlistPoll,
)
from audit.kinds import AuditKind
from guards.log_text import printable
from guards.user_input import UserInputError
from models.model_file import MOBILEFACENET
from models.second_opinion_model import DLIB_RESNET_V1
from runtime.blocking import BlockingPool
from secure.memory_wipe import wipe_buffer
from secure.node_keys import NodePublicKeys, check_node_id

log = logging.getLogger("lfr.van.watchlists")
MAX_SUBJECTS_REPORTED = 10_000_000
"""A unit reporting more subjects than this reports nonsense (a 64 MiB list holds ~50,000)."""
COMMAND_LINE = "command line"
"""The ``operator`` of what the operators' commands ask (they run as the van's user, who may
read its state folder: the control socket's key)."""
_HELD_STATES = frozenset(state.value for state in HeldState)
ALL_UNITS = ()
"""``units`` of a push or purge that names no unit: every unit, enrolled now or later."""


class Audit(Protocol):
    """What the board needs of the audit trail (``audit.log.AuditLog``)."""

    def append(self, kind: AuditKind, /, **fields: str | int | float | bool | None) -> object:
        """Append one record (blocking: called on a pool thread)."""
        ...


@dataclass(frozen=True, slots=True)
class Embedder:
    """The embedding model the van's units run: a push made with another is refused at once."""

    model_id: str
    """The first model's id."""
    model_sha256: str
    """Its file's sha256."""
    second_model_id: str | None = None
    """The second model's id (None: not checked)."""
    second_model_sha256: str | None = None
    """Its file's sha256."""

    def verify(self, signed: bytes, authority: NodePublicKeys, *, now: float,
               deployment_id: str | None = None,
               held_version: int | None = None) -> VerifiedWatchlist:
        """``signed`` read and verified for units running these models (blocking: decodes
        the payload); ``WatchlistRefused`` naming what is wrong."""
        return verify_signed_watchlist(
            read_signed_watchlist(signed), authority=authority, model_id=self.model_id,
            model_sha256=self.model_sha256, second_model_id=self.second_model_id,
            second_model_sha256=self.second_model_sha256, deployment_id=deployment_id,
            held_version=held_version, now=now)


SHIPPED_MODELS: Final = Embedder(MOBILEFACENET.model_id, MOBILEFACENET.sha256,
                                 DLIB_RESNET_V1.model_id, DLIB_RESNET_V1.sha256)
"""The models this lfr's units run (the vendored files): a watchlist made with others is
refused at the push, as the units would refuse it."""


@dataclass(frozen=True, slots=True)
class PushResult:
    """What a push stored and to whom it goes."""

    deployment_id: str
    """The deployment."""
    version: int
    """The version pushed."""
    subjects: int
    """Subjects in it."""
    payload_sha256: str
    """sha256 of its payload (hex)."""
    not_after: float
    """When units drop it by themselves."""
    units: tuple[str, ...]
    """The units named; empty: all."""


@dataclass(slots=True)
class UnitView:
    """What the van knows of one unit's watchlist (from its last poll)."""

    state: HeldState = HeldState.NONE
    """What it holds."""
    deployment_id: str = ""
    """Of which deployment."""
    version: int = 0
    """Which version (0: none)."""
    subjects: int = 0
    """Subjects it holds."""
    refused_version: int = 0
    """The last version it refused (0: none)."""
    refused_reason: str = ""
    """Why."""
    last_poll: float = 0.0
    """When it last polled (van clock, epoch s)."""


@dataclass(slots=True)
class _Assignments:
    """Which version each unit must hold in the active deployment."""

    default: int | None = None
    """The version pushed to all units (None: none, or purged for all)."""
    by_unit: dict[str, int] = field(default_factory=dict)
    """Versions pushed to named units (beat ``default``)."""
    purged: set[str] = field(default_factory=set)
    """Units purged by name since the last push to all (hold nothing)."""

    def wanted(self, unit_id: str) -> int | None:
        if unit_id in self.by_unit:
            return self.by_unit[unit_id]
        return None if unit_id in self.purged else self.default


class WatchlistBoard:
    """The van's watchlist assignments and view of the units (module docstring)."""

    def __init__(self, store: DeploymentStore, blocking: BlockingPool, *,
                 authority: NodePublicKeys, embedder: Embedder, audit: Audit | None = None,
                 lines: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._blocking = blocking
        self.authority = authority
        self.embedder = embedder
        self._audit_log = audit
        self._lines = lines
        self._clock = clock
        self._deployment: Deployment | None = None
        self._assignments = _Assignments()
        # The signed watchlists of the active deployment, opened, by version. Invariant: only
        # versions of the active deployment; emptied when it ends.
        self._signed: dict[int, StoredWatchlist] = {}
        self._views: dict[str, UnitView] = {}

    async def load(self) -> None:
        """Read the active deployment and replay its pushes and purges from the store (at
        start), so a van restart changes nothing any unit is told."""
        self._deployment = deployment = await self._blocking.run(self._store.active_deployment)
        for row in await self._blocking.run(self._store.unit_watchlists):
            # What each unit last said, so its next poll is no news (no second line or record).
            view = self._views[row.unit_id] = UnitView()
            if row.state is UnitWatchlistState.REFUSED:
                view.refused_version, view.refused_reason = row.version or 0, row.reason or ""
            elif row.state.value in _HELD_STATES:
                view.state = HeldState(row.state.value)
                view.deployment_id, view.version = row.deployment_id or "", row.version or 0
                view.subjects = row.subjects or 0
        if deployment is None:
            return
        for step in await self._blocking.run(self._store.assignments, deployment.id):
            if step.action == "push" and step.version is not None:
                self._assign(step.version, step.units)
            else:
                self._unassign(step.units)
        wanted = {version for version in (self._assignments.default,
                                          *self._assignments.by_unit.values())
                  if version is not None}
        for version in sorted(wanted):
            stored = await self._blocking.run(self._store.watchlist, deployment.id, version)
            if stored is not None:
                self._signed[version] = stored
        highest = await self._blocking.run(self._store.current_watchlist)
        if highest is not None:  # the rollback check of the next push needs the highest
            self._signed.setdefault(highest.facts.version, highest)

    def _assign(self, version: int, units: tuple[str, ...]) -> None:
        if units:
            for unit in units:
                self._assignments.by_unit[unit] = version
                self._assignments.purged.discard(unit)
        else:
            self._assignments = _Assignments(default=version)

    def _unassign(self, units: tuple[str, ...]) -> None:
        if units:
            for unit in units:
                self._assignments.by_unit.pop(unit, None)
                self._assignments.purged.add(unit)
        else:
            self._assignments = _Assignments()

    # -- what the control actor calls -----------------------------------------------------------

    @property
    def deployment(self) -> Deployment | None:
        """The active deployment, or None."""
        return self._deployment

    async def start_deployment(self, deployment_id: str, threshold: float, *,
                               operator: str = COMMAND_LINE) -> Deployment:
        """Start a deployment; ``DeploymentError`` while one is active or for a used id.
        ``operator``: who asked (a console account, or the command line), for the trail."""
        deployment = await self._blocking.run(
            lambda: self._store.start_deployment(deployment_id, threshold, now=self._clock()))
        self._deployment = deployment
        self._assignments = _Assignments()
        self._signed.clear()
        await self._audit(AuditKind.DEPLOYMENT_STARTED, deployment=deployment.id,
                          threshold=deployment.threshold, operator=operator)
        self._line(f"deployment {printable(deployment.id)} started (threshold "
                   f"{deployment.threshold:.3f})")
        return deployment

    async def end_deployment(self, *, operator: str = COMMAND_LINE) -> Deployment:
        """End the active deployment: every unit is told to purge; the van's sealed copies go.
        ``operator``: who asked, for the trail."""
        deployment = await self._blocking.run(
            lambda: self._store.end_deployment(now=self._clock()))
        holding = sum(1 for view in self._views.values() if view.state is HeldState.HELD)
        self._deployment = None
        self._assignments = _Assignments()
        for stored in self._signed.values():  # the opened copies in memory die too
            wipe_buffer(stored.signed)
        self._signed.clear()
        await self._blocking.run(self._store.wipe_wal)
        await self._audit(AuditKind.DEPLOYMENT_ENDED, deployment=deployment.id,
                          units_purged=holding, operator=operator)
        self._line(f"deployment {printable(deployment.id)} ended: every unit is told to purge "
                   "its watchlist")
        return deployment

    async def push(self, signed: bytes, units: Collection[str] = ALL_UNITS, *,
                   operator: str = COMMAND_LINE) -> PushResult:
        """Check, store and assign a signed watchlist (module docstring); ``UserInputError``
        naming what is wrong (a ``WatchlistRefused`` for the file itself). ``operator``: who
        asked, for the trail."""
        deployment = self._deployment
        if deployment is None:
            raise DeploymentError("no deployment is active: start one first "
                                  "(lfr van deployment start)")
        names = tuple(sorted(set(units)))
        highest = max((*self._signed, 0)) or None
        try:
            verified = await self._blocking.run(lambda: self.embedder.verify(
                signed, self.authority, now=self._clock(), deployment_id=deployment.id,
                held_version=highest))
        except WatchlistRefused as exc:
            await self._audit(AuditKind.WATCHLIST_REFUSED, deployment=deployment.id,
                              reason=exc.reason.value,
                              detail=printable(exc, max_chars=400)[:400], where="van",
                              operator=operator)
            raise WatchlistRefused(exc.reason, f"watchlist refused ({exc.reason.value}): {exc}"
                                   ) from None
        manifest = verified.manifest
        subjects = len(verified.watchlist.subjects)
        await self._blocking.run(lambda: self._store.put_watchlist(
            deployment.id, manifest.version, signed, subject_count=subjects,
            payload_sha256=verified.payload_sha256, not_before=manifest.not_before,
            not_after=manifest.not_after, now=self._clock()))
        stored = await self._blocking.run(self._store.current_watchlist)
        if stored is None or stored.facts.version != manifest.version:
            raise UserInputError("the watchlist was stored but does not read back")
        self._signed[manifest.version] = stored
        await self._blocking.run(lambda: self._store.record_assignment(
            deployment.id, action="push", version=manifest.version, units=names,
            now=self._clock()))
        self._assign(manifest.version, names)
        shown = ", ".join(printable(unit) for unit in names) if names else "all units"
        await self._audit(AuditKind.WATCHLIST_PUSHED, deployment=deployment.id,
                          version=manifest.version, subjects=subjects,
                          payload_sha256=verified.payload_sha256,
                          signer=manifest.authority_key_id.hex(), signed_at=manifest.signed_at,
                          not_after=manifest.not_after,
                          units=",".join(names) if names else "all", operator=operator)
        self._line(f"watchlist version {manifest.version} of deployment "
                   f"{printable(deployment.id)} ({subjects} subjects) pushed to {shown}")
        return PushResult(deployment.id, manifest.version, subjects, verified.payload_sha256,
                          manifest.not_after, names)

    async def add_photos(self, deployment_id: str, photos: Collection[tuple[str, bytes]], *,
                         operator: str = COMMAND_LINE) -> int:
        """Store reference photos (subject, JPEG) for the active deployment, sealed to the
        van's key (``DeploymentStore.put_reference_photo``); they die with the deployment.
        Returns how many were stored; ``UserInputError`` naming the first refused one."""
        deployment = self._deployment
        if deployment is None or deployment.id != deployment_id:
            raise DeploymentError(f"reference photos for deployment {printable(deployment_id)} "
                                  "refused: it is not the active deployment")
        for subject, jpeg in photos:
            await self._blocking.run(self._store.put_reference_photo, deployment_id, subject,
                                     jpeg)
        await self._audit(AuditKind.REFERENCE_PHOTOS_STORED, deployment=deployment_id,
                          count=len(photos), operator=operator)
        return len(photos)

    async def purge(self, units: Collection[str] = ALL_UNITS, *,
                    operator: str = COMMAND_LINE) -> None:
        """Tell the units named (or all) to drop their watchlist at their next poll.
        ``operator``: who asked, for the trail."""
        names = tuple(sorted(set(units)))
        if self._deployment is not None:
            deployment_id = self._deployment.id
            await self._blocking.run(lambda: self._store.record_assignment(
                deployment_id, action="purge", version=None, units=names, now=self._clock()))
        self._unassign(names)
        await self._audit(AuditKind.WATCHLIST_PURGED, units=",".join(names) if names else "all",
                          deployment=self._deployment.id if self._deployment else "",
                          operator=operator)
        self._line(f"watchlist purge ordered for "
                   f"{', '.join(printable(u) for u in names) if names else 'all units'}")

    def views(self) -> dict[str, UnitView]:
        """Every unit's last known state (a copy)."""
        return {unit: UnitView(v.state, v.deployment_id, v.version, v.subjects,
                               v.refused_version, v.refused_reason, v.last_poll)
                for unit, v in self._views.items()}

    def wanted(self, unit_id: str) -> int | None:
        """The version ``unit_id`` must hold now (None: nothing)."""
        return None if self._deployment is None else self._assignments.wanted(unit_id)

    # -- what the desks call --------------------------------------------------------------------

    async def news_for(self, unit_id: str, poll: WatchlistPoll) -> WatchlistNews:
        """Record ``unit_id``'s report and tell it what to hold."""
        await self._reported(unit_id, poll)
        deployment, version = self._deployment, self.wanted(unit_id)
        stored = None if version is None else self._signed.get(version)
        if deployment is None or stored is None or stored.facts.not_after <= self._clock():
            # Nothing to hold, or only a list past its not-after (the unit dropped it itself:
            # offering it again would only make the unit fetch it to refuse it).
            holding = poll.state == HeldState.HELD.value
            return WatchlistNews(NewsKind.PURGE.value if holding else NewsKind.NOTHING.value)
        return WatchlistNews(NewsKind.HOLD.value, deployment.id, stored.facts.version,
                             deployment.threshold, stored.facts.signed_bytes)

    def signed_for(self, unit_id: str, deployment_id: str, version: int) -> bytes:
        """The signed watchlist ``unit_id`` may fetch; ``UserInputError`` when that is not
        the one the board wants it to hold (a unit never gets another unit's or an old list)."""
        deployment = self._deployment
        if (deployment is None or deployment.id != deployment_id
                or self.wanted(unit_id) != version or version not in self._signed):
            raise UserInputError(f"deployment {printable(deployment_id)} version {version} is "
                                 "not what this unit is to hold now")
        return self._signed[version].signed

    async def _reported(self, unit_id: str, poll: WatchlistPoll) -> None:
        # What a unit reports goes into the store and the audit trail: refused before anything
        # changes when it could not go there (the unit's ask fails with the reason).
        if poll.deployment_id:
            check_node_id(poll.deployment_id, "the reported deployment id")
        if not 0 <= poll.version <= MAX_VERSION or not 0 <= poll.refused_version <= MAX_VERSION:
            raise UserInputError("a reported version is out of range")
        if not 0 <= poll.subjects <= MAX_SUBJECTS_REPORTED:
            raise UserInputError("the reported subject count is out of range")
        view = self._views.setdefault(unit_id, UnitView())
        view.last_poll = self._clock()
        try:
            state = HeldState(poll.state)
        except ValueError:
            state = HeldState.NONE
        changed = (state, poll.deployment_id, poll.version) != (view.state, view.deployment_id,
                                                                view.version)
        refused = (poll.refused_version, poll.refused_reason) != (view.refused_version,
                                                                  view.refused_reason)
        view.state, view.deployment_id, view.version = state, poll.deployment_id, poll.version
        view.subjects = poll.subjects
        view.refused_version, view.refused_reason = poll.refused_version, poll.refused_reason
        unit, deployment = printable(unit_id), printable(poll.deployment_id)
        if refused and poll.refused_version:
            reason = printable(poll.refused_reason, max_chars=MAX_REASON_CHARS)[
                :MAX_REASON_CHARS]
            self._line(f"unit {unit} refused watchlist version {poll.refused_version}: {reason}")
            await self._audit(AuditKind.WATCHLIST_REFUSED, unit=unit_id,
                              version=poll.refused_version, reason=reason)
            await self._record(unit_id, UnitWatchlistState.REFUSED, poll, reason)
        if not changed:
            return
        if state is HeldState.HELD:
            self._line(f"unit {unit} holds watchlist version {poll.version} of deployment "
                       f"{deployment} ({poll.subjects} subjects)")
            await self._audit(AuditKind.WATCHLIST_ACCEPTED, unit=unit_id,
                              deployment=poll.deployment_id, version=poll.version,
                              subjects=poll.subjects)
        elif state in (HeldState.PURGED, HeldState.EXPIRED):
            self._line(f"unit {unit} dropped watchlist version {poll.version} of deployment "
                       f"{deployment}: {state.value}")
            kind = (AuditKind.WATCHLIST_EXPIRED if state is HeldState.EXPIRED
                    else AuditKind.WATCHLIST_PURGED)
            await self._audit(kind, unit=unit_id, deployment=poll.deployment_id,
                              version=poll.version)
        await self._record(unit_id, UnitWatchlistState(state.value), poll, None)

    async def _record(self, unit_id: str, state: UnitWatchlistState, poll: WatchlistPoll,
                      reason: str | None) -> None:
        if state is UnitWatchlistState.REFUSED:
            # The refused version is one the van offered: of the active deployment.
            deployment = self._deployment.id if self._deployment is not None else None
            version = poll.refused_version if deployment is not None else None
        elif state is not UnitWatchlistState.NONE and poll.deployment_id:
            deployment, version = poll.deployment_id, poll.version or None
        else:
            deployment, version = None, None
        await self._blocking.run(lambda: self._store.record_unit_watchlist(
            unit_id, deployment_id=deployment, version=version, state=state, reason=reason,
            subjects=poll.subjects, now=self._clock()))

    async def _audit(self, kind: AuditKind, **fields: str | int | float | bool | None) -> None:
        if self._audit_log is not None:
            audit = self._audit_log
            await self._blocking.run(lambda: audit.append(kind, **fields))

    def _line(self, text: str) -> None:
        log.info("%s", text)
        if self._lines is not None:
            self._lines(text)


__all__ = ["ALL_UNITS", "Embedder", "PushResult", "UnitView", "WatchlistBoard",
           "WatchlistRefused"]
