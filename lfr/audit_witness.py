"""``lfr van audit-witness UNIT_ID --config van.toml``: the van's witness of a unit's audit trail.

Every health report a unit seals carries the head hash of its audit trail and its record count
(``HealthBody.audit_head``, ``audit_records``); the van stores the reports, sealed. This command
opens the unit's latest report that carries a head (the van's key opens it; nothing else is
read) and prints it, so that the unit's trail, copied off the unit, can be checked against what
the van saw: ``lfr audit verify unit-audit.log --expect-head HEAD`` finds a trail cut short or
rewritten since (docs/AUDIT.md). Reads at most ``MAX_EVENTS_READ`` of the unit's newest events.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Final

from actors.unit.event_body import HealthBody
from actors.van.enrolment import Enrolment
from actors.van.event_store import MAX_PAGE, EventStore
from actors.van.health_reports import find_health_report
from guards.exit_codes import ExitCode
from guards.log_text import printable
from guards.user_input import UserInputError
from lfr.config.van import load_van_config
from secure.key_files import read_node_keys
from secure.node_keys import check_node_id

MAX_EVENTS_READ: Final = 20 * MAX_PAGE
"""Newest events of the unit looked through for a health report carrying a head."""


def audit_witness(config_path: Path, unit_id: str, *, as_json: bool = False) -> int:
    """Print the latest audit head the van holds for ``unit_id``; exit 2 when it holds none."""
    check_node_id(unit_id, "UNIT_ID")
    config = load_van_config(config_path)
    keys = read_node_keys(config.signing_key, config.encryption_key)
    if keys.encryption is None:
        raise UserInputError(f"{printable(config.signing_key)}: not a van's keys")
    enrolment = Enrolment.open(config.state_dir)
    with EventStore.open(config.event_store) as store:
        found = find_health_report(store, enrolment.lookup, keys.encryption, unit_id,
                                   max_events=MAX_EVENTS_READ, with_audit_head=True)
    if found.report is None:
        raise UserInputError(f"the van holds no health report of unit {printable(unit_id)} "
                             "that carries an audit head")
    return _show(unit_id, found.report.body, found.report.seq, as_json=as_json)


def _show(unit_id: str, body: HealthBody, seq: int, *, as_json: bool) -> int:
    reported = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(body.unit_time))
    if as_json:
        print(json.dumps({"unit": unit_id, "audit_head": body.audit_head,
                          "audit_records": body.audit_records, "reported_at": reported,
                          "seq": seq}))
    else:
        print(f"unit {printable(unit_id)}: audit head {body.audit_head} ({body.audit_records} "
              f"records) as reported at {reported} (unit clock); check a copy of its trail "
              f"with: lfr audit verify FILE --expect-head {body.audit_head}")
    return ExitCode.OK
