"""What a van stored, read back and opened: the ground truth of delivery checks.

After a run (benchmark or fault test), the van's event store is opened with the van's own keys,
every alert envelope is verified and decrypted exactly as the console will (``open_envelope``
with the enrolment's signer lookup, then ``decode_body``), and reduced to what the checks need:
per unit, the sequence numbers in order, each alert's ``event_id`` (so a re-sealed duplicate
under a new number is caught, not only a repeated number), its capture time on the unit and its
receive time at the van. The crop is dropped at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from actors.unit.event_body import AlertBody, decode_body
from actors.van.enrolment import Enrolment
from actors.van.event_store import EventStore
from secure.envelope import open_envelope
from secure.key_files import read_node_keys

PAGE = 200


@dataclass(frozen=True, slots=True)
class ReceivedAlert:
    """One alert as the van stored it."""

    unit: str
    """The unit that sealed it (the verified envelope header)."""
    seq: int
    """Its sequence number at that unit."""
    event_id: str
    """The alert's id from the decrypted body."""
    captured_at: float
    """When the unit captured the frame (s since the epoch, the unit's clock)."""
    received_at: float
    """When the van stored it (s since the epoch, the van's clock)."""


def read_van_alerts(state_dir: Path, signing_key: Path, encryption_key: Path,
                    units: tuple[str, ...]) -> dict[str, list[ReceivedAlert]]:
    """Every alert of ``units`` in the van's store, in sequence order per unit, opened and
    checked; raises on any envelope that does not open (a van that stored one is broken)."""
    van = read_node_keys(signing_key, encryption_key)
    if van.encryption is None:
        raise ValueError(f"{signing_key}: not a van's keys (no encryption key)")
    enrolment = Enrolment.open(state_dir)
    received: dict[str, list[ReceivedAlert]] = {}
    with EventStore.open(state_dir / "events.sqlite") as store:
        for unit in units:
            alerts: list[ReceivedAlert] = []
            before: int | None = None
            while page := store.by_unit(unit, before_seq=before, limit=PAGE):
                for event in page:
                    if event.kind != "alert":
                        continue
                    opened = open_envelope(event.sealed, signers=enrolment.lookup,
                                           van_key=van.encryption)
                    body = decode_body(opened.body)
                    if not isinstance(body, AlertBody):
                        raise TypeError(f"{unit} seq {event.seq}: stored as an alert, body "
                                         f"is a {type(body).__name__}")
                    alerts.append(ReceivedAlert(unit, event.seq, body.event_id,
                                                body.captured_at, event.received_at))
                before = page[-1].seq
            received[unit] = sorted(alerts, key=lambda alert: alert.seq)
    return received
