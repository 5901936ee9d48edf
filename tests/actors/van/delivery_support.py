"""What the van's delivery tests share: a van's keys, enrolled units in a real enrolment file,
an event store, and sealed envelopes of valid alert and health bodies (or of anything)."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from actors.unit.event_body import AlertBody, CameraHealth, HealthBody, encode_body
from actors.van.enrolment import Enrolment
from actors.van.event_store import EventStore
from secure.envelope import EventKind, seal_envelope
from secure.key_files import write_node_keys
from secure.node_keys import NodeKeys, NodeRole
from secure.sealing import EncryptionKeyPair, EncryptionPublicKey

UNIT_ID = "unit-1"
OTHER_UNIT_ID = "unit-2"


def jpeg(width: int = 64, height: int = 80) -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.full((height, width, 3), 128, dtype=np.uint8)).save(out, format="JPEG")
    return out.getvalue()


CROP = jpeg()


def alert(seq: int = 1, **changes: object) -> AlertBody:
    """An alert body; its event id names ``seq`` so every alert differs."""
    fields: dict[str, object] = {
        "event_id": f"{UNIT_ID}/cam0/12/lin_manuel_miranda/{seq}", "camera_id": "cam0",
        "captured_at": 1_732_590_000.0 + seq, "subject_id": "lin_manuel_miranda",
        "watchlist_version": 0, "score": 0.7312, "threshold": 0.6, "track": 12,
        "box": (210.5, 40.25, 330.0, 190.75), "hits": 3, "crop_jpeg": CROP}
    fields.update(changes)
    return AlertBody(**fields)  # type: ignore[arg-type]


def health(unit_time: float = 1_732_590_010.5) -> HealthBody:
    return HealthBody(unit_time=unit_time, uptime_s=60.0,
                      cameras=(CameraHealth("cam0", 29.97, 1798),), faces_seen=12,
                      faces_rejected=3, alerts=1, outbox_depth=0, outbox_oldest_age_s=None,
                      outbox_full=False, watchlist_version=0, model_ids=("edgeface-xs",))


@dataclass
class Van:
    """A van's keys, state folder, enrolment (units enrolled from real key files) and store."""

    keys: NodeKeys
    state_dir: Path
    enrolment: Enrolment
    store: EventStore
    units: dict[str, NodeKeys]

    @property
    def encryption(self) -> EncryptionKeyPair:
        assert self.keys.encryption is not None
        return self.keys.encryption

    def seal(self, body: AlertBody | HealthBody | bytes, seq: int, *,
             unit: str = UNIT_ID, kind: EventKind | None = None,
             van_key: EncryptionPublicKey | None = None,
             signer: NodeKeys | None = None) -> bytes:
        """An envelope of ``body`` (encoded, unless raw bytes) as ``unit`` seals it."""
        data = body if isinstance(body, bytes) else encode_body(body)
        if kind is None:
            kind = EventKind.ALERT if isinstance(body, AlertBody | bytes) else EventKind.HEALTH
        return seal_envelope(data, kind=kind, unit_id=unit, sequence=seq,
                             signing_key=(signer or self.units[unit]).signing,
                             van_key=van_key or self.encryption.public_key)


def make_van(folder: Path, *unit_ids: str, van_id: str = "van-1") -> Van:
    """A van in ``folder`` (an existing folder) with ``unit_ids`` enrolled."""
    keys = NodeKeys.generate(NodeRole.VAN, van_id)
    state = folder / "state"
    state.mkdir()
    enrolment = Enrolment.open(state)
    units: dict[str, NodeKeys] = {}
    (folder / "units").mkdir()
    for unit_id in unit_ids:
        units[unit_id] = NodeKeys.generate(NodeRole.UNIT, unit_id)
        paths = write_node_keys(units[unit_id], folder / "units" / unit_id)
        enrolment.enrol(paths.public)
    return Van(keys, state, enrolment, EventStore.open(state / "events.sqlite"), units)
