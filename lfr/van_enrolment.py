"""``lfr van enroll-unit``, ``revoke-unit`` and ``units``: the van's registry of enrolled units
(``actors.van.enrolment``) from the command line.

Each command reads the van's config (``--config van.toml``) for its state folder, does one thing
and prints what it did: unit ids and signing key ids, never key material. A running van follows
the registry file, so an enrolment or revocation counts from its next lookup. A refusal is a
``UserInputError`` naming the file, unit or key (exit 2).
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path

from actors.van.enrolment import EnrolledUnit, Enrolment
from guards.exit_codes import ExitCode
from guards.log_text import printable
from lfr.config import load_van_config
from secure.key_id import format_key_id
from secure.node_keys import check_node_id


def enroll_unit(config_path: Path, unit_id: str, public_keys_file: Path) -> int:
    """Enrol unit ``unit_id`` from its ``public.keys`` file (which must be that unit's)."""
    config = load_van_config(config_path)
    check_node_id(unit_id, "UNIT_ID")
    enrolment = Enrolment.open(config.state_dir)
    before = next((u for u in enrolment.units() if u.unit_id == unit_id), None)
    unit = enrolment.enrol(public_keys_file, unit_id=unit_id)
    if unit == before:
        print(f"unit {printable(unit.unit_id)} is already enrolled with signing key "
              f"{format_key_id(unit.signing_key_id)}; nothing changed")
    else:
        print(f"enrolled unit {printable(unit.unit_id)}: signing key "
              f"{format_key_id(unit.signing_key_id)} (van {printable(config.van_id)}, "
              f"{printable(enrolment.path)})")
    return ExitCode.OK


def revoke_unit(config_path: Path, unit_id: str) -> int:
    """Revoke unit ``unit_id``: its envelopes and offers are refused from the van's next
    lookup on."""
    config = load_van_config(config_path)
    check_node_id(unit_id, "UNIT_ID")
    unit = Enrolment.open(config.state_dir).revoke(unit_id)
    print(f"revoked unit {printable(unit.unit_id)} (signing key "
          f"{format_key_id(unit.signing_key_id)}): van {printable(config.van_id)} refuses "
          "its events and connections from now on")
    return ExitCode.OK


def list_units(config_path: Path, *, as_json: bool) -> int:
    """Print every enrolled unit, sorted by id: one JSON object with ``as_json``."""
    config = load_van_config(config_path)
    units = Enrolment.open(config.state_dir).units()
    if as_json:
        print(json.dumps({"van": config.van_id, "units": [_unit_json(u) for u in units]},
                         allow_nan=False))
        return ExitCode.OK
    print(f"van {printable(config.van_id)}: {len(units)} unit{'' if len(units) == 1 else 's'} "
          "enrolled")
    for unit in units:
        print(f"  {printable(unit.unit_id):24} signing key {format_key_id(unit.signing_key_id)}"
              f"  enrolled {_utc(unit.enrolled_at)}")
    return ExitCode.OK


def _unit_json(unit: EnrolledUnit) -> dict[str, object]:
    return {"unit_id": unit.unit_id, "signing_key_id": format_key_id(unit.signing_key_id),
            "enrolled_at": _utc(unit.enrolled_at)}


def _utc(epoch_s: float) -> str:
    """ISO 8601 in UTC, to the second (``2025-01-31T12:00:00Z``)."""
    moment = datetime.datetime.fromtimestamp(epoch_s, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
