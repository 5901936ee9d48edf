"""``VanControl``: the van's ``control`` actor, which the operators' commands ask.

It turns each ``actors.van.control_messages`` ask into a ``WatchlistBoard`` call and answers with
the result, or fails the ask with the reason (bad input never stops it: an ask's exception goes
to the asker). It checks what only it can check: a deployment's threshold in the usual range
(docs/THRESHOLDS.md) and the unit ids a push or purge names (each must be enrolled: a typo must
not silently push to nobody).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from actors.unit.watchlist import check_threshold, check_usual_thresholds
from actors.van.control_messages import (
    PHOTO_BATCH_BYTES,
    AddReferencePhotos,
    DeploymentState,
    EndDeployment,
    GetWatchlistStatus,
    PhotosStored,
    PurgeWatchlists,
    PushDone,
    PushWatchlist,
    StartDeployment,
    UnitWatchlistRow,
    WatchlistStatus,
)
from actors.van.deployment_store import Deployment
from actors.van.watchlist_board import WatchlistBoard
from guards.log_text import printable
from guards.user_input import UserInputError
from runtime.actor import Actor

ControlMessage = (StartDeployment | EndDeployment | PushWatchlist | PurgeWatchlists
                  | GetWatchlistStatus | AddReferencePhotos)
ControlAnswer = DeploymentState | PushDone | WatchlistStatus | PhotosStored
MAX_UNITS_NAMED = 1024
"""A push or purge names at most this many units (the enrolment's limit)."""


class UnknownUnits(UserInputError):
    """A command named units the van has not enrolled."""


class VanControl(Actor[ControlMessage]):
    """Answers the operators' commands (module docstring)."""

    def __init__(self, board: WatchlistBoard, *, enrolled: Callable[[], tuple[str, ...]],
                 linked: Callable[[], tuple[str, ...]],
                 clock: Callable[[], float] = time.time) -> None:
        """``enrolled``: the unit ids enrolled now; ``linked``: those whose link is up."""
        self.board = board
        self._enrolled = enrolled
        self._linked = linked
        self._clock = clock

    async def receive(self, message: ControlMessage) -> ControlAnswer:
        if isinstance(message, StartDeployment):
            check_threshold(message.threshold, "--threshold")
            check_usual_thresholds([("--threshold", message.threshold)], "deployment",
                                   allow_unusual=message.allow_unusual)
            return _state(await self.board.start_deployment(message.deployment_id,
                                                            message.threshold))
        if isinstance(message, EndDeployment):
            return _state(await self.board.end_deployment())
        if isinstance(message, PushWatchlist):
            result = await self.board.push(message.signed, self._checked_units(message.units))
            return PushDone(result.deployment_id, result.version, result.subjects,
                            result.payload_sha256, result.not_after)
        if isinstance(message, AddReferencePhotos):
            if sum(len(photo.jpeg) for photo in message.photos) > PHOTO_BATCH_BYTES:
                raise UserInputError(f"a batch of reference photos holds at most "
                                     f"{PHOTO_BATCH_BYTES} bytes of JPEG")
            return PhotosStored(await self.board.add_photos(
                message.deployment_id, [(photo.subject, photo.jpeg)
                                        for photo in message.photos]))
        if isinstance(message, PurgeWatchlists):
            await self.board.purge(self._checked_units(message.units))
        return self.status()

    def status(self) -> WatchlistStatus:
        """Every enrolled unit's watchlist, as the van sees it now."""
        now = self._clock()
        views = self.board.views()
        linked = set(self._linked())
        rows = []
        for unit in sorted(set(self._enrolled()) | set(views)):
            view = views.get(unit)
            wanted = self.board.wanted(unit) or 0
            if view is None:
                rows.append(UnitWatchlistRow(unit, unit in linked, wanted, "none", "", 0, 0, 0,
                                             "", -1.0))
                continue
            rows.append(UnitWatchlistRow(
                unit, unit in linked, wanted, view.state.value, view.deployment_id,
                view.version, view.subjects, view.refused_version, view.refused_reason,
                max(0.0, now - view.last_poll) if view.last_poll else -1.0))
        deployment = self.board.deployment
        return WatchlistStatus(deployment.id if deployment else "",
                               deployment.threshold if deployment else 0.0, tuple(rows))

    def _checked_units(self, units: tuple[str, ...]) -> tuple[str, ...]:
        if len(units) > MAX_UNITS_NAMED:
            raise UserInputError(f"{len(units)} units named; at most {MAX_UNITS_NAMED}")
        enrolled = set(self._enrolled())
        unknown = sorted(set(units) - enrolled)
        if unknown:
            shown = ", ".join(printable(unit, max_chars=64) for unit in unknown[:10])
            raise UnknownUnits(f"not enrolled at this van: {shown} (lfr van units lists the "
                               "enrolled units)")
        return units


def _state(deployment: Deployment) -> DeploymentState:
    return DeploymentState(deployment.id, deployment.threshold, deployment.started_at,
                           deployment.ended_at or 0.0)
