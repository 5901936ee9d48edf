"""The operators' commands to a running van: deployments and watchlists.

``lfr van deployment start --id ID --threshold T`` / ``end``, ``lfr watchlist push SIGNED
--units all|ID,...``, ``lfr watchlist purge --units all|ID,...`` and ``lfr watchlist status``,
each given the van's ``--config van.toml`` (to find its state folder, where the control socket
is: ``lfr.van_control``). Each prints what the van did, one line per unit where units are
concerned; ``--json`` prints the answer as one JSON object instead.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from actors.signed_watchlist import (
    MAX_SIGNED_WATCHLIST_BYTES,
    VerifiedWatchlist,
    WatchlistRefused,
)
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
    ReferencePhoto,
    StartDeployment,
    WatchlistStatus,
)
from actors.van.watchlist_board import SHIPPED_MODELS
from guards.exit_codes import ExitCode
from guards.files import UserFileError, read_user_file
from guards.log_text import printable
from guards.user_input import UserInputError
from lfr.config.van import VanConfig, load_van_config
from lfr.reference_photos import reference_photos
from lfr.van_control import ask_van
from secure.key_files import read_public_keys
from secure.node_keys import NodeRole, check_node_id

ALL = "all"
"""``--units all``: every unit, enrolled now or later."""


def parse_units(text: str) -> tuple[str, ...]:
    """``all`` (an empty tuple) or comma-separated unit ids, each checked."""
    if text.strip() == ALL:
        return ()
    units = tuple(part.strip() for part in text.split(","))
    for unit in units:
        check_node_id(unit, "--units")
    return units


def _ask(config_path: Path, message: Any, *, as_json: bool) -> int:
    config: VanConfig = load_van_config(config_path)
    return ask_van(config.control_socket, config.control_key, [message],
                   show=lambda answers: _show(answers[0], as_json=as_json))


def deployment_start(config_path: Path, deployment_id: str, threshold: float, *,
                     allow_unusual: bool = False, as_json: bool = False) -> int:
    """``lfr van deployment start``."""
    check_node_id(deployment_id, "--id")
    return _ask(config_path, StartDeployment(deployment_id, threshold, allow_unusual),
                as_json=as_json)


def deployment_end(config_path: Path, *, as_json: bool = False) -> int:
    """``lfr van deployment end``."""
    return _ask(config_path, EndDeployment(), as_json=as_json)


def watchlist_push(config_path: Path, signed_file: Path, units: str, *,
                   photos_dir: Path | None = None, as_json: bool = False) -> int:
    """``lfr watchlist push``: (``--photos``) the list's subjects' reference photos in batches,
    then the signed list, over one link."""
    try:
        signed = read_user_file(signed_file, "signed watchlist", MAX_SIGNED_WATCHLIST_BYTES)
    except UserFileError as exc:
        raise UserInputError(str(exc)) from None
    config = load_van_config(config_path)
    messages: list[Any] = []
    if photos_dir is not None:
        # The photos go first: a refused one leaves nothing pushed, and the push can be retried
        # whole (the list's version could not be pushed twice).
        verified = _verified(config, signed, signed_file)
        made = reference_photos(photos_dir, verified.watchlist.subjects)
        for line in made.skipped:
            print(f"photos: {line}", file=sys.stderr)
        messages += photo_batches(verified.manifest.deployment_id, made.photos)
    messages.append(PushWatchlist(signed, parse_units(units)))
    return ask_van(config.control_socket, config.control_key, messages,
                   show=lambda answers: _show_push(answers, as_json=as_json))


def _verified(config: VanConfig, signed: bytes, signed_file: Path) -> VerifiedWatchlist:
    """The signed list checked as the van will check it (its subjects name the photos)."""
    if config.authority_public_keys is None:
        raise UserInputError(f"{printable(config.file)}: [authority] public_keys is required")
    authority = read_public_keys(config.authority_public_keys, NodeRole.AUTHORITY)
    try:
        return SHIPPED_MODELS.verify(signed, authority, now=time.time())
    except WatchlistRefused as exc:
        raise UserInputError(f"{printable(signed_file)}: {exc}") from None


def photo_batches(deployment_id: str, photos: dict[str, bytes]) -> list[AddReferencePhotos]:
    """Reference photos (subject -> JPEG) in asks of at most ``PHOTO_BATCH_BYTES`` each."""
    batches: list[AddReferencePhotos] = []
    batch: list[ReferencePhoto] = []
    size = 0
    for subject, jpeg in sorted(photos.items()):
        if batch and size + len(jpeg) > PHOTO_BATCH_BYTES:
            batches.append(AddReferencePhotos(deployment_id, tuple(batch)))
            batch, size = [], 0
        batch.append(ReferencePhoto(subject, jpeg))
        size += len(jpeg)
    if batch:
        batches.append(AddReferencePhotos(deployment_id, tuple(batch)))
    return batches


def _show_push(answers: list[Any], *, as_json: bool) -> int:
    photos = sum(answer.stored for answer in answers if isinstance(answer, PhotosStored))
    pushed = answers[-1]
    if not isinstance(pushed, PushDone):
        raise UserInputError(f"the van answered a {type(pushed).__name__}")
    if as_json:
        print(json.dumps({**_push_record(pushed), "reference_photos": photos}), flush=True)
        return ExitCode.OK
    _show(pushed, as_json=False)
    if len(answers) > 1:
        print(f"stored {photos} reference photo{'s' if photos != 1 else ''} at the van, sealed "
              "at rest until the deployment ends", flush=True)
    return ExitCode.OK


def watchlist_purge(config_path: Path, units: str, *, as_json: bool = False) -> int:
    """``lfr watchlist purge``."""
    return _ask(config_path, PurgeWatchlists(parse_units(units)), as_json=as_json)


def watchlist_status(config_path: Path, *, as_json: bool = False) -> int:
    """``lfr watchlist status``."""
    return _ask(config_path, GetWatchlistStatus(), as_json=as_json)


def _show(answer: Any, *, as_json: bool) -> int:
    if isinstance(answer, DeploymentState):
        record = {"deployment": answer.deployment_id, "threshold": answer.threshold,
                  "started_at": _iso(answer.started_at),
                  "ended_at": _iso(answer.ended_at) if answer.ended_at else None}
        text = (f"deployment {printable(answer.deployment_id)}: "
                + (f"ended at {_iso(answer.ended_at)}; every unit is told to purge its "
                   "watchlist" if answer.ended_at else
                   f"started at {_iso(answer.started_at)}, threshold {answer.threshold:.3f}"))
    elif isinstance(answer, PushDone):
        record = _push_record(answer)
        text = (f"pushed watchlist version {answer.version} of deployment "
                f"{printable(answer.deployment_id)}: {answer.subjects} subjects, payload sha256 "
                f"{answer.payload_sha256}, valid until {_iso(answer.not_after)}; units fetch it "
                "at their next poll (lfr watchlist status shows who holds it)")
    elif isinstance(answer, WatchlistStatus):
        record = _status_record(answer)
        text = _status_text(answer)
    else:
        raise UserInputError(f"the van answered a {type(answer).__name__}")
    print(json.dumps(record) if as_json else text, flush=True)
    return ExitCode.OK


def _push_record(answer: PushDone) -> dict[str, object]:
    return {"deployment": answer.deployment_id, "version": answer.version,
            "subjects": answer.subjects, "payload_sha256": answer.payload_sha256,
            "not_after": _iso(answer.not_after)}


def _status_record(status: WatchlistStatus) -> dict[str, object]:
    return {"deployment": status.deployment_id or None, "threshold": status.threshold or None,
            "units": [{"unit": row.unit_id, "linked": row.linked,
                       "wanted_version": row.wanted_version or None, "state": row.state,
                       "deployment": row.deployment_id or None, "version": row.version or None,
                       "subjects": row.subjects, "refused_version": row.refused_version or None,
                       "refused_reason": row.refused_reason or None,
                       "last_poll_age_s": None if row.last_poll_age_s < 0
                       else round(row.last_poll_age_s, 1)}
                      for row in status.units]}


def _status_text(status: WatchlistStatus) -> str:
    lines = [f"deployment {printable(status.deployment_id)} (threshold {status.threshold:.3f})"
             if status.deployment_id else "no deployment is active"]
    for row in status.units:
        held = (f"holds version {row.version} of {printable(row.deployment_id)} "
                f"({row.subjects} subjects)" if row.state == "held"
                else f"{row.state}" + (f" (version {row.version} of "
                                       f"{printable(row.deployment_id)})" if row.version else ""))
        wanted = f", to hold version {row.wanted_version}" if row.wanted_version else ""
        refused = (f"; refused version {row.refused_version}: "
                   f"{printable(row.refused_reason, max_chars=300)}"
                   if row.refused_version else "")
        if row.linked:
            said = f"linked, {held}"
        elif row.last_poll_age_s >= 0:
            said = (f"not linked (last heard {row.last_poll_age_s:.0f} s ago, when it said: "
                    f"{held})")
        else:
            said = "not linked, never heard from"
        lines.append(f"  unit {printable(row.unit_id)}: {said}{wanted}{refused}")
    return "\n".join(lines)


def _iso(epoch_s: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch_s))
