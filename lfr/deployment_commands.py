"""The operators' commands to a running van: deployments and watchlists.

``lfr van deployment start --id ID --threshold T`` / ``end``, ``lfr watchlist push SIGNED
--units all|ID,...``, ``lfr watchlist purge --units all|ID,...`` and ``lfr watchlist status``,
each given the van's ``--config van.toml`` (to find its state folder, where the control socket
is: ``lfr.van_control``). Each prints what the van did, one line per unit where units are
concerned; ``--json`` prints the answer as one JSON object instead.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from actors.signed_watchlist import MAX_SIGNED_WATCHLIST_BYTES
from actors.van.control_messages import (
    DeploymentState,
    EndDeployment,
    GetWatchlistStatus,
    PurgeWatchlists,
    PushDone,
    PushWatchlist,
    StartDeployment,
    WatchlistStatus,
)
from guards.exit_codes import ExitCode
from guards.files import UserFileError, read_user_file
from guards.log_text import printable
from guards.user_input import UserInputError
from lfr.config.van import VanConfig, load_van_config
from lfr.van_control import ask_van
from secure.node_keys import check_node_id

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
    return ask_van(config.control_socket, config.control_key, message,
                   show=lambda answer: _show(answer, as_json=as_json))


def deployment_start(config_path: Path, deployment_id: str, threshold: float, *,
                     as_json: bool = False) -> int:
    """``lfr van deployment start``."""
    check_node_id(deployment_id, "--id")
    return _ask(config_path, StartDeployment(deployment_id, threshold), as_json=as_json)


def deployment_end(config_path: Path, *, as_json: bool = False) -> int:
    """``lfr van deployment end``."""
    return _ask(config_path, EndDeployment(), as_json=as_json)


def watchlist_push(config_path: Path, signed_file: Path, units: str, *,
                   as_json: bool = False) -> int:
    """``lfr watchlist push``."""
    try:
        signed = read_user_file(signed_file, "signed watchlist", MAX_SIGNED_WATCHLIST_BYTES)
    except UserFileError as exc:
        raise UserInputError(str(exc)) from None
    return _ask(config_path, PushWatchlist(signed, parse_units(units)), as_json=as_json)


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
        record = {"deployment": answer.deployment_id, "version": answer.version,
                  "subjects": answer.subjects, "payload_sha256": answer.payload_sha256,
                  "not_after": _iso(answer.not_after)}
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
        link = "linked" if row.linked else "not linked"
        lines.append(f"  unit {printable(row.unit_id)}: {link}, {held}{wanted}{refused}")
    return "\n".join(lines)


def _iso(epoch_s: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch_s))
