"""``lfr edge --config unit.toml``: the camera unit node.

Before anything runs, ``load_edge_unit`` reads and checks everything the node needs, naming the
config file and key when something is wrong (exit 2): ``unit.toml`` itself, the unit's signing
key (a unit's, with the config's id), the van's and the watchlist authority's public keys and
the models (sha256 verified). ``--check-config`` stops there and prints one line; no network,
no camera opened, no outbox created.

The unit starts **without a watchlist** and analyses no frame until its van gives it one: the
``watchlist`` keeper polls the van, verifies what it gets (the authority's signature, this
embedder, no rollback, the validity window) and installs it in the ``WatchlistGate`` the
detectors and the matcher read. It lives in memory only, and is dropped at its not-after time
or on the van's order (docs/WATCHLISTS.md). What the node does is recorded in its audit trail
(``audit``, docs/AUDIT.md), whose head hash goes into every health report.

Supervision tree (``start_edge``); children start in this order, so a stop (newest first)
stops the producers before their consumers (when every camera is a file, the cameras start
only once the van's watchlist is held: a file scanned without one would be read for nothing)::

    root (one_for_one; gives up -> exit 70)
    ├── alerts-out        --print-alerts: each AlertBody the uplink sealed, as a JSON line
    ├── audit             appends the uplink's records (alerts raised, acknowledged)
    ├── uplink            seals alerts and health reports into the outbox, delivers them
    ├── watchlist         gets, verifies, holds and drops the watchlist (WatchlistGate)
    ├── matcher           ONE for all cameras (it tracks and fuses per camera)
    ├── health            a HealthBody to the uplink every [health] interval_s
    ├── camera:<id>       (rest_for_one, never gives up: CAMERA_SUPERVISION)
    │   ├── detector:<id>
    │   └── camera:<id>
    └── ...               one subtree per camera

A broken camera (or its detector) restarts its own subtree only, with a backoff growing to
30 s, for as long as it stays broken: it never takes another camera, the matcher or the uplink
down, and never ends the node. Live sources get ``drop_oldest`` frame mailboxes (the newest
frame wins), files scanned as fast as possible make their camera wait, as in ``lfr scan``.

The node ends:
- when every camera is a file and every file has ended: it waits until the van has
  acknowledged every alert (the outbox holds none, none is held back), saying so every 10 s,
  then prints a one-line summary: exit 0, or 2 when a file could not be scanned whole;
- when ``--print-alerts`` cannot write an alert: exit 74 (nothing is counted as printed that
  was not);
- on SIGINT/SIGTERM (130/143) with the summary so far; live cameras run until then;
- when the root supervisor gives up: exit 70.

Under systemd (``firmware/lfr-edge.service``) the node notifies its service manager through
``lfr.service_watchdog``: ``WATCHDOG=1`` while the root supervisor has not given up and the
event loop turns (from the start, the models' warm-up included), ``READY=1`` once the tree has
started (when every camera is a file: once the standing actors are up and the cameras wait for
the van's watchlist), ``STATUS=`` with the line ``service_status`` makes, ``STOPPING=1`` when it
ends. Without ``$NOTIFY_SOCKET`` nothing is sent.

Privacy: frames, faces and embeddings stay in this process; what leaves is sealed by the
uplink (alerts with their crop, health counts). ``--print-alerts`` shows each sealed alert's
fields and its crop's size and sha256, never the crop.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol, TypeVar

from actors.unit.camera import CameraConfig
from actors.unit.detector import DetectorConfig
from actors.unit.event_body import AlertBody
from actors.unit.health_reporter import (
    HEALTH_REPORTER_MAILBOX,
    CameraTally,
    HealthReporter,
    HealthReporterConfig,
    HealthReporterStatistics,
)
from actors.unit.matcher import Matcher, MatcherConfig
from actors.unit.outbox import Outbox
from actors.unit.signaling_client import SignalingClientConfig
from actors.unit.uplink import LinkSource, Uplink, UplinkStatistics
from actors.unit.van_dialer import VanDialer
from actors.unit.watchlist_gate import WatchlistGate
from actors.unit.watchlist_keeper import KeeperConfig, KeeperStatistics, WatchlistKeeper
from audit.kinds import AuditKind
from audit.log import AuditLog
from audit.writer import WRITER_MAILBOX, AuditCounts, AuditSink, AuditWriter
from guards.exit_codes import ExitCode
from guards.log_text import printable
from guards.user_input import UserInputError
from lfr.alert_printer import (
    AlertCount,
    AlertOutputFailed,
    LineOutput,
    SealedAlertPrinter,
    stdout_output,
)
from lfr.command_output import OutputFailed, say
from lfr.config.toml_table import NodeConfigError, config_sha256
from lfr.config.unit import UnitConfig, load_unit_config
from lfr.gc_freeze import freeze_after_start
from lfr.scan import spawn_camera_stages, warm_up_models
from lfr.service_watchdog import ServiceWatchdog
from lfr.unit_models import load_unit_models
from models.face_detector import FaceDetector
from models.face_embedder import FaceEmbedder
from models.second_opinion_model import DLIB_RESNET_V1
from runtime.codec import Codec
from runtime.mailbox import MailboxConfig
from runtime.node import run
from runtime.ref import ActorRef
from runtime.supervisor import Backoff, Strategy, SupervisorConfig
from runtime.system import ActorSystem, SystemConfig
from secure.key_files import read_node_keys, read_public_keys
from secure.node_keys import NodeKeys, NodePublicKeys, NodeRole

log = logging.getLogger("lfr.edge")
T = TypeVar("T")

EDGE_ROOT: Final = SupervisorConfig(strategy=Strategy.ONE_FOR_ONE, max_restarts=5,
                                    within_s=60.0, backoff=Backoff(initial_s=0.2, max_s=5.0))
"""The root: the uplink, the matcher, the printer and the reporter each restart alone; more
than 5 of their failures within a minute end the node (exit 70). Camera subtrees never
escalate to it (``CAMERA_SUPERVISION``)."""
CAMERA_SUPERVISION: Final = SupervisorConfig(
    strategy=Strategy.REST_FOR_ONE, max_restarts=10, within_s=60.0,
    backoff=Backoff(initial_s=0.5, factor=2.0, max_s=30.0))
"""One camera's subtree: a failed detector restarts itself and its camera, a failed camera
itself. It never gives up, so a broken camera never reaches the root. Proof: to give up, 10
restarts must lie within 60 s; the j-th of them was taken with at least j restarts in the
window, so it waited at least ``backoff.delay(j)``, and delays 1..9 alone add up to 121.5 s.
A camera that stays broken is restarted every 30 s, for ever (its health shows 0 fps)."""
STREAMS_POLL_S: Final = 0.2
"""How often the node looks whether every file has ended and the van acknowledged them."""
WAITING_NOTICE_S: Final = 10.0
"""How often the node says how many alerts still wait for the van's acknowledgement."""
UPLINK_MAILBOX: Final = MailboxConfig(capacity=256)
"""Alerts block here rather than being lost; health reports wait at most an interval."""
PRINTER_MAILBOX: Final = MailboxConfig(capacity=256)
KEEPER_MAILBOX: Final = MailboxConfig(capacity=1)
"""The keeper's own ticks: one waiting is enough (a tick finds everything that changed)."""
MATCHER_MAILBOX: Final = MailboxConfig(capacity=8)


@dataclass(frozen=True, slots=True)
class EdgeUnit:
    """Everything a unit node needs, read and checked (``load_edge_unit``)."""

    config: UnitConfig
    """``unit.toml``."""
    keys: NodeKeys
    """The unit's signing key (a unit's, with the config's id)."""
    van: NodePublicKeys
    """The van's public keys (the uplink seals to its encryption key)."""
    authority: NodePublicKeys
    """The watchlist authority's public keys (the only signer of watchlists accepted)."""
    detector: FaceDetector
    """The face detection model (sha256 verified)."""
    embedder: FaceEmbedder
    """The face embedding model (sha256 verified)."""

    @property
    def model_ids(self) -> tuple[str, ...]:
        """The models in use, as health reports name them."""
        return (self.detector.model_id, self.embedder.model_id)

    def camera_configs(self) -> tuple[CameraConfig, ...]:
        """Each camera of the config as the camera actor takes it."""
        return tuple(CameraConfig(camera.source, camera_id=camera.camera_id, paced=camera.paced,
                                  loop=camera.loop)
                     for camera in self.config.cameras)

    @property
    def all_files(self) -> bool:
        """Every camera is a file, so the node ends when they have."""
        return not any(camera.never_ends for camera in self.camera_configs())


def load_edge_unit(config_path: Path) -> EdgeUnit:
    """Read and check everything ``lfr edge`` needs; ``NodeConfigError`` (exit 2) naming the
    config file and the key whose file is at fault."""
    config = load_unit_config(config_path)
    keys = _for_key(config, "signing_key", lambda: read_node_keys(config.signing_key))
    if keys.role is not NodeRole.UNIT or keys.node_id != config.unit_id:
        raise _key_error(config, "signing_key", f"{printable(config.signing_key)} holds the "
                         f"keys of {keys.role.value} {printable(keys.node_id)}, not of unit "
                         f"{printable(config.unit_id)}")
    van = _for_key(config, "van.public_keys",
                   lambda: read_public_keys(config.van_public_keys, NodeRole.VAN))
    authority = _for_key(config, "authority.public_keys",
                         lambda: read_public_keys(config.authority_public_keys,
                                                  NodeRole.AUTHORITY))
    detector, embedder = load_unit_models(config)  # [accelerator]: CPU or Edge TPU
    return EdgeUnit(config, keys, van, authority, detector, embedder)


def _for_key(config: UnitConfig, key: str, read: Callable[[], T]) -> T:
    try:
        return read()
    except UserInputError as exc:  # the file's own error names it; this names the key too
        raise _key_error(config, key, printable(exc, max_chars=1000)) from None


def _key_error(config: UnitConfig, key: str, problem: str) -> NodeConfigError:
    return NodeConfigError(f"config file {printable(config.file)}: {key}: {problem}")


def describe(unit: EdgeUnit) -> str:
    """``unit ID: N cameras; van URL``."""
    return (f"unit {printable(unit.config.unit_id)}: "
            f"{_count(len(unit.config.cameras), 'camera')}; van {printable(unit.config.van_url)}")


def run_edge(config_path: Path, *, check_only: bool, print_alerts: bool) -> int:
    """``lfr edge``: check the config, then (unless ``check_only``) run the unit node."""
    unit = load_edge_unit(config_path)
    if check_only:
        print(f"config {printable(unit.config.file)}: ok (unit "
              f"{printable(unit.config.unit_id)}, {_count(len(unit.config.cameras), 'camera')}, "
              f"van {printable(unit.config.van_url)})", flush=True)
        return ExitCode.OK
    outbox = Outbox.open(unit.config.outbox)  # OutboxFileError names the file: exit 2
    try:
        audit = AuditLog.open(unit.config.audit, unit.config.unit_id)  # a broken chain: exit 2
    except BaseException:
        outbox.close()
        raise
    code: int = ExitCode.INTERNAL_ERROR
    try:
        audit.append(AuditKind.NODE_STARTED, role="unit", cameras=len(unit.config.cameras))
        audit.append(AuditKind.CONFIG_LOADED, path=str(unit.config.file),
                     sha256=config_sha256(unit.config.file))
        freeze_after_start()  # what start-up built, out of every collection (lfr.gc_freeze)
        # The outbox and the trail close only after the node has stopped every actor using them.
        code = run(functools.partial(serve_edge, unit=unit, outbox=outbox,
                                     print_alerts=print_alerts, audit=audit),
                   SystemConfig(name=unit.config.unit_id, root=EDGE_ROOT))
        return code
    finally:
        outbox.close()
        try:
            audit.append(AuditKind.NODE_STOPPED, exit_code=int(code))
        finally:
            audit.close()


def signaling_config(config: UnitConfig, van: NodePublicKeys) -> SignalingClientConfig:
    """How the unit's dialer reaches and recognises its van."""
    ice = tuple(server.to_aiortc() for server in config.ice_servers)
    return SignalingClientConfig(config.van_url, van, config.van_tls_fingerprint,
                                 ice_servers=ice)


class Dialer(LinkSource, Protocol):
    """What the node needs of its ``VanDialer``: a link source it starts and stops."""

    def start(self) -> None:
        """Start keeping a link to the van."""

    async def stop(self) -> None:
        """Close the link and stop dialing."""


async def serve_edge(system: ActorSystem, *, unit: EdgeUnit, outbox: Outbox,
                     print_alerts: bool, dialer: Dialer | None = None,
                     out: LineOutput | None = None, audit: AuditLog | None = None,
                     gate: WatchlistGate | None = None,
                     service_environ: Mapping[str, str] | None = None) -> int:
    """The body of ``lfr edge`` on a running system: returns the exit code. ``dialer`` and
    ``out`` replace the ``VanDialer`` and stdout, ``gate`` the unit's empty gate (tests: one
    holding a watchlist, as if the van had given it); ``audit``: the unit's trail;
    ``service_environ``: where ``$NOTIFY_SOCKET`` and ``$WATCHDOG_USEC`` are read (default
    ``os.environ``)."""
    started = time.monotonic()
    say(describe(unit))
    if dialer is None:
        dialer = VanDialer(system, unit.keys, signaling_config(unit.config, unit.van), Codec())
    van_dialer: Dialer = dialer
    gate = gate or WatchlistGate()
    held_by = gate
    node: EdgeNode | None = None
    service = ServiceWatchdog.from_environment(
        system, lambda: service_status(held_by, node, van_dialer,
                                       waiting=service.statistics.ready),
        service_environ)
    service.start()  # pings from the start: warming the models up takes a while on a unit
    try:
        await warm_up_models(system, unit.detector, unit.embedder)
        printed_to = (out or stdout_output()) if print_alerts else None
        van_dialer.start()  # before the tree: file cameras start once the van's list is held
        node = await start_edge(system, unit, outbox, van_dialer, print_to=printed_to,
                                audit=audit, gate=gate, standing=service.ready)
        service.ready()
        failure = await wait_for_end(system, unit, outbox, node)
    except AlertOutputFailed as exc:
        return _finish(summarise(unit, node, started, failure=str(exc)),
                       ExitCode.OUTPUT_FAILED)
    except asyncio.CancelledError:  # a signal: say what was done, then stop
        _finish(summarise(unit, node, started, failure="stopped"), ExitCode.OK)
        raise
    finally:
        await service.stop()  # STOPPING=1 first: systemd knows the node is on its way out
        await van_dialer.stop()
        if node is not None:  # the node ends: its watchlist is overwritten, not just freed
            held = node.gate.clear()
            if held is not None:
                held.gallery.wipe()
    left = await system.blocking.run(outbox.statistics)
    summary = summarise(unit, node, started, failure=failure, alerts_left=left.alerts)
    return _finish(summary, ExitCode.OK if failure is None else ExitCode.BAD_INPUT)


def service_status(gate: WatchlistGate, node: EdgeNode | None, links: LinkSource, *,
                   waiting: bool) -> str:
    """The node's state in a few words, for systemd's ``STATUS=`` (no face data, ids only).
    ``waiting``: the tree is up but ``node`` is not yet (file cameras wait for a watchlist)."""
    if node is None:
        return "ready: the cameras wait for the van's watchlist" if waiting else "starting"
    watchlist = f"watchlist version {gate.version}" if gate.scanning else "no watchlist"
    van = "van linked" if links.current() is not None else "van not linked"
    return (f"running: {_count(len(node.cameras), 'camera')}, {watchlist}, {van}, "
            f"{_count(node.uplink.alerts_sealed, 'alert')} sealed")


@dataclass(slots=True)
class EdgeNode:
    """The counters of a running unit node, each surviving the restarts of its actors."""

    cameras: tuple[CameraTally, ...]
    """Per camera: frames, faces, and a file's failure (``progress.failure``)."""
    uplink: UplinkStatistics
    """Alerts and health reports sealed, delivered, acknowledged; streams ended."""
    health: HealthReporterStatistics
    """Health reports made and dropped."""
    gate: WatchlistGate = field(default_factory=WatchlistGate)
    """The watchlist the unit holds now (in memory only), read by detectors and matcher."""
    watchlist: KeeperStatistics = field(default_factory=KeeperStatistics)
    """What the watchlist keeper did: polls, accepted, refused, purged, expired."""
    printed: AlertCount = field(default_factory=AlertCount)
    """Alerts printed by ``--print-alerts``."""
    output_failed: asyncio.Future[None] | None = None
    """``--print-alerts`` only: fails with ``AlertOutputFailed`` when an alert cannot be
    printed."""


async def start_edge(system: ActorSystem, unit: EdgeUnit, outbox: Outbox, links: LinkSource,
                     *, print_to: LineOutput | None = None,
                     camera_supervision: SupervisorConfig = CAMERA_SUPERVISION,
                     health: HealthReporterConfig | None = None,
                     audit: AuditLog | None = None,
                     keeper: KeeperConfig | None = None,
                     gate: WatchlistGate | None = None,
                     standing: Callable[[], None] | None = None) -> EdgeNode:
    """Spawn the unit's tree under ``system``'s root (see the module docstring) and start the
    cameras. ``print_to``: print each sealed alert there (``--print-alerts``); ``gate``: the
    watchlist gate to use (default: a new, empty one); ``standing``: called when every camera
    is a file, once the actors before the cameras are up and the cameras wait for the van's
    watchlist (``lfr edge`` tells systemd it is ready then)."""
    config = unit.config
    cameras = unit.camera_configs()
    node = EdgeNode(tuple(CameraTally(camera.camera_id) for camera in cameras),
                    UplinkStatistics(), HealthReporterStatistics(), gate or WatchlistGate())
    printer: ActorRef[AlertBody] | None = None
    if print_to is not None:
        failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        node.output_failed = failed
        printer = await system.spawn("alerts-out", lambda: SealedAlertPrinter(
            print_to, failed, node.printed), PRINTER_MAILBOX)
    recorder: AuditSink | None = None
    if audit is not None:  # spawned before the uplink, so it stops after it
        counts = AuditCounts()
        trail = audit
        recorder = AuditSink(await system.spawn("audit", lambda: AuditWriter(trail, counts),
                                                WRITER_MAILBOX), counts)
    uplink = await system.spawn("uplink", lambda: Uplink(
        unit.keys, unit.van, outbox, links, local_copy=printer, statistics=node.uplink,
        audit=recorder), UPLINK_MAILBOX)
    gate = node.gate
    await system.spawn("watchlist", lambda: WatchlistKeeper(
        config.unit_id, gate, links.current, authority=unit.authority,
        model_id=unit.embedder.model_id, model_sha256=unit.embedder.model_sha256,
        second_model_id=DLIB_RESNET_V1.model_id, second_model_sha256=DLIB_RESNET_V1.sha256,
        audit=audit, config=keeper, statistics=node.watchlist), KEEPER_MAILBOX)
    matcher = await system.spawn("matcher", lambda: Matcher(
        unit.embedder, gate, uplink, MatcherConfig(unit_id=config.unit_id)),
        MATCHER_MAILBOX)
    reporter = health or HealthReporterConfig(interval_s=config.health_interval_s,
                                              model_ids=unit.model_ids)
    started = time.monotonic()
    head = None if audit is None else (lambda: (audit.head_hash, audit.count))
    await system.spawn("health", lambda: HealthReporter(
        uplink, node.cameras, node.uplink, outbox, started_s=started, config=reporter,
        statistics=node.health, watchlist_version=lambda: gate.version, audit_head=head),
        HEALTH_REPORTER_MAILBOX)
    if unit.all_files:
        # A file scanned without a watchlist would be read to its end for nothing: files wait
        # for the van's watchlist; live cameras run and their detectors drop every frame.
        if standing is not None:
            standing()
        await _watchlist_arrives(gate)
    for camera, tally in zip(cameras, node.cameras, strict=True):
        name = camera.camera_id
        subtree = await system.spawn_supervisor(f"camera:{name}", camera_supervision)
        await spawn_camera_stages(subtree, camera, face_finder=unit.detector, output=matcher,
                                  detector_config=DetectorConfig(), progress=tally.progress,
                                  names=(f"detector:{name}", f"camera:{name}"),
                                  on_detector=tally.detector_started, gate=gate)
    return node


async def _watchlist_arrives(gate: WatchlistGate) -> None:
    # Polled: the gate has no event, and a fifth of a second is nothing against a file.
    said = time.monotonic()
    while not gate.scanning:
        if time.monotonic() - said >= WAITING_NOTICE_S:
            log.warning("waiting for a watchlist from the van (lfr watchlist push)")
            said = time.monotonic()
        await asyncio.sleep(STREAMS_POLL_S)


async def wait_for_end(system: ActorSystem, unit: EdgeUnit, outbox: Outbox,
                       node: EdgeNode) -> str | None:
    """Wait until the node should end: every file ended and acknowledged (returns the files'
    failures, or None); ``AlertOutputFailed`` when ``--print-alerts`` cannot write. With a
    live camera, only the output's failure ends it (or a signal, which cancels this)."""
    waits: list[asyncio.Future[Any]] = []
    if node.output_failed is not None:
        waits.append(node.output_failed)
    # With a live camera only the output's failure or a signal ends the node.
    done = asyncio.ensure_future(_files_delivered(system, unit, outbox, node) if unit.all_files
                                 else asyncio.get_running_loop().create_future())
    try:
        await asyncio.wait([*waits, done], return_when=asyncio.FIRST_COMPLETED)
        if node.output_failed is not None and node.output_failed.done():
            node.output_failed.result()  # raises AlertOutputFailed
    finally:
        done.cancel()
        await asyncio.gather(done, return_exceptions=True)
    failures = [tally.progress.failure for tally in node.cameras if tally.progress.failure]
    return "; ".join(failures) if failures else None


async def _files_delivered(system: ActorSystem, unit: EdgeUnit, outbox: Outbox,
                           node: EdgeNode) -> None:
    # Polled: the uplink counts the streams that ended and the outbox holds the alerts; there
    # is no event for either, and a fifth of a second is nothing against a file's length.
    cameras = len(unit.config.cameras)
    while node.uplink.streams_ended < cameras:  # noqa: ASYNC110
        await asyncio.sleep(STREAMS_POLL_S)
    # Every alert of every file reached the uplink before its StreamEnded (one ordered path).
    said = time.monotonic()
    while True:
        statistics = await system.blocking.run(outbox.statistics)
        waiting = statistics.alerts + node.uplink.held_alerts
        if waiting == 0:
            return
        if time.monotonic() - said >= WAITING_NOTICE_S:
            say(f"waiting for the van to acknowledge {_count(waiting, 'alert')}")
            said = time.monotonic()
        await asyncio.sleep(STREAMS_POLL_S)


@dataclass(frozen=True, slots=True)
class EdgeSummary:
    """What the node says when it ends, however it ends."""

    unit_id: str
    """The unit."""
    frames: int
    """Frames decoded, all cameras."""
    faces_seen: int
    """Faces detected, all cameras."""
    faces_rejected: int
    """Of those, refused by the quality gates."""
    alerts_sealed: int
    """Alerts sealed into the outbox for the van."""
    alerts_acknowledged: int | None
    """Of those, acknowledged by the van (None: not known, the node was stopped)."""
    alerts_printed: int | None
    """``--print-alerts``: alerts written in full to stdout (None: not printing)."""
    seconds: float
    """How long the node ran."""
    failure: str | None = None
    """Why it ended early, or what could not be scanned."""


def summarise(unit: EdgeUnit, node: EdgeNode | None, started: float, *,
              failure: str | None, alerts_left: int | None = None) -> EdgeSummary:
    """The summary so far; ``alerts_left`` is the outbox's alerts when known."""
    seconds = time.monotonic() - started
    if node is None:
        return EdgeSummary(unit.config.unit_id, 0, 0, 0, 0, None, None, seconds, failure)
    sealed = node.uplink.alerts_sealed
    acknowledged = None if alerts_left is None else max(0, sealed - alerts_left)
    printed = node.printed.written if node.output_failed is not None else None
    return EdgeSummary(unit.config.unit_id, sum(c.frames for c in node.cameras),
                       sum(c.faces_seen for c in node.cameras),
                       sum(c.faces_rejected for c in node.cameras), sealed, acknowledged,
                       printed, seconds, failure)


def summary_line(summary: EdgeSummary) -> str:
    """The summary as one line."""
    acknowledged = ("" if summary.alerts_acknowledged is None
                    else f", {summary.alerts_acknowledged} acknowledged by the van")
    printed = ("" if summary.alerts_printed is None
               else f", {summary.alerts_printed} printed")
    line = (f"unit {printable(summary.unit_id)}: {_count(summary.frames, 'frame')} in "
            f"{summary.seconds:.1f} s, {_count(summary.faces_seen, 'face')} seen "
            f"({summary.faces_rejected} rejected by quality gates), "
            f"{_count(summary.alerts_sealed, 'alert')} sent{acknowledged}{printed}")
    if summary.failure is not None:
        line += f"; {printable(summary.failure, max_chars=2000)}"
    return line


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _finish(summary: EdgeSummary, code: int) -> int:
    """Print the summary on stderr; 74 when stderr cannot take it."""
    try:
        print(summary_line(summary), file=sys.stderr, flush=True)
    except OutputFailed:
        return ExitCode.OUTPUT_FAILED
    return code
