"""``ConsoleSources``: what the van node gives the console's pages to read and act on.

Pages never reach into the node: they get this bundle, built once by ``lfr.van_node``, and read
through it (stores on the blocking pool, the board and links on the event loop). It is the
console's one dependency on the rest of the van, so the pages can be tested with a bundle made
in the test.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from actors.van.deployment_store import DeploymentStore
from actors.van.enrolment import Enrolment
from actors.van.event_store import EventStore
from actors.van.unit_links import UnitLinks
from actors.van.watchlist_board import WatchlistBoard
from audit.kinds import AuditKind
from audit.record import FieldValue
from audit.writer import AuditSink
from console.alert_feed import AlertFeed
from runtime.blocking import BlockingPool
from secure.node_keys import NodeKeys
from secure.sealing import EncryptionKeyPair


class AuditRecorder(Protocol):
    """Where the console records what people do (``audit.writer.AuditSink``: never waits)."""

    def record(self, kind: AuditKind, /, **fields: FieldValue) -> None:
        """Queue one audit record."""
        ...


@dataclass(frozen=True, slots=True, eq=False)
class ConsoleSources:
    """The van's parts the console reads (module docstring)."""

    van_id: str
    """The van's node id."""
    events: EventStore
    """The event store: alerts and health reports, sealed; opened on read with ``van_key``."""
    deployments: DeploymentStore
    """Deployments, their watchlists' facts and reference photos (sealed at rest)."""
    board: WatchlistBoard
    """The active deployment, pushes, purges and every unit's reported watchlist."""
    links: UnitLinks
    """Which units are linked now, and their receivers' counters."""
    enrolment: Enrolment
    """The enrolled units and their signing keys (opens the envelopes)."""
    van_key: EncryptionKeyPair
    """The van's private encryption key: opens an envelope for the page showing it, never
    stored opened."""
    audit: AuditSink
    """Where pages record what operators do (decisions, pushes, purges: docs/AUDIT.md)."""
    audit_file: Path
    """The van's audit trail file, for the audit page (read and verified, never written)."""
    blocking: BlockingPool
    """The node's worker pool: every store call and every opening runs there."""
    feed: AlertFeed
    """Newly stored alerts, as they arrive, for the live views."""
    authority_signing: NodeKeys | None = None
    """The watchlist authority's private keys when ``van.toml`` names them
    (``[authority] signing_key``, checked at start: role authority, 0600, the configured
    authority's): the Watchlist page then signs the lists the van builds. None: it offers them
    for signing elsewhere."""
