"""What the van's operators' commands ask the running van (``VanControl``), over its control socket.

``lfr van deployment start|end``, ``lfr watchlist push|purge|status`` run as separate processes
beside ``lfr van`` and reach its ``control`` actor over a Unix socket in the van's state folder
(mode 0600, a link key readable only by the van's user: ``lfr.van_control``). Type codes
200-211 of the link registry. Every ask is answered with one of the answers below, or fails with
the reason (a ``UserInputError`` on the van arrives as a ``RemoteError`` naming it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from runtime.message import message

CONTROL_ACTOR: Final = "control"
"""The van's control actor, the only one its control socket reaches."""


@message(200)
@dataclass(frozen=True, slots=True)
class StartDeployment:
    """Start a deployment (``lfr van deployment start``)."""

    deployment_id: str
    """Its id (1-64 printable characters, used once)."""
    threshold: float
    """Its alert threshold (a cosine in the usual range: docs/THRESHOLDS.md)."""
    allow_unusual: bool = False
    """Accept a threshold outside the usual range (``--allow-unusual-thresholds``)."""


@message(201)
@dataclass(frozen=True, slots=True)
class EndDeployment:
    """End the active deployment: every unit purges its watchlist (``lfr van deployment end``)."""


@message(202)
@dataclass(frozen=True, slots=True)
class PushWatchlist:
    """Store a signed watchlist and assign it (``lfr watchlist push``)."""

    signed: bytes
    """The signed watchlist file's bytes."""
    units: tuple[str, ...]
    """The units to hold it; empty: all."""


@message(203)
@dataclass(frozen=True, slots=True)
class PurgeWatchlists:
    """Tell units to drop their watchlist now (``lfr watchlist purge``)."""

    units: tuple[str, ...]
    """The units; empty: all."""


@message(204)
@dataclass(frozen=True, slots=True)
class GetWatchlistStatus:
    """Which unit holds which watchlist (``lfr watchlist status``)."""


@message(205)
@dataclass(frozen=True, slots=True)
class DeploymentState:
    """Answer to a deployment command: the deployment concerned."""

    deployment_id: str
    """Its id."""
    threshold: float
    """Its threshold."""
    started_at: float
    """When it started (epoch s)."""
    ended_at: float
    """When it ended (epoch s); 0 while active."""


@message(206)
@dataclass(frozen=True, slots=True)
class PushDone:
    """Answer to a push."""

    deployment_id: str
    """The deployment."""
    version: int
    """The version stored."""
    subjects: int
    """Subjects in it."""
    payload_sha256: str
    """Its payload's sha256 (hex)."""
    not_after: float
    """When units drop it by themselves (epoch s)."""


@message(207)
@dataclass(frozen=True, slots=True)
class UnitWatchlistRow:
    """One unit in a status answer."""

    unit_id: str
    """The unit."""
    linked: bool
    """Its link is up now."""
    wanted_version: int
    """The version the van wants it to hold (0: none)."""
    state: str
    """What it reported holding (``actors.watchlist_messages.HeldState``)."""
    deployment_id: str
    """Of which deployment."""
    version: int
    """Which version (0: none)."""
    subjects: int
    """Subjects it holds."""
    refused_version: int
    """The last version it refused (0: none)."""
    refused_reason: str
    """Why."""
    last_poll_age_s: float
    """Seconds since its last poll (-1: never)."""


@message(208)
@dataclass(frozen=True, slots=True)
class WatchlistStatus:
    """Answer to ``GetWatchlistStatus`` and to a purge."""

    deployment_id: str
    """The active deployment ('' for none)."""
    threshold: float
    """Its threshold (0 for none)."""
    units: tuple[UnitWatchlistRow, ...]
    """Every unit enrolled or heard from, by id."""


@message(209)
@dataclass(frozen=True, slots=True)
class ReferencePhoto:
    """One subject's reference photo, for the officer who confirms an alert."""

    subject: str
    """The watchlist subject id."""
    jpeg: bytes
    """The photo as JPEG (re-encoded by the command: no metadata), at most 2 MiB."""


@message(210)
@dataclass(frozen=True, slots=True)
class AddReferencePhotos:
    """Store reference photos for the active deployment, sealed at rest (``lfr watchlist push
    --photos``); sent in batches of at most ``PHOTO_BATCH_BYTES``."""

    deployment_id: str
    """The deployment they belong to (must be the active one)."""
    photos: tuple[ReferencePhoto, ...]
    """The photos."""


@message(211)
@dataclass(frozen=True, slots=True)
class PhotosStored:
    """Answer to ``AddReferencePhotos``."""

    stored: int
    """Photos stored (or replaced) by this ask."""


PHOTO_BATCH_BYTES: Final = 16 * 1024 * 1024
"""A batch of reference photos stays under this many bytes of JPEG."""
CONTROL_ASKS: Final = (StartDeployment, EndDeployment, PushWatchlist, PurgeWatchlists,
                       GetWatchlistStatus, AddReferencePhotos)
"""What the control socket lets a command send (``LinkConfig.exposed``)."""
