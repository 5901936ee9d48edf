"""``lfr van --config van.toml``: the van node, until SIGTERM or Ctrl-C.

Before the node starts, everything it needs is opened and checked, so bad input ends it with
exit 2 and one line naming the file or key: ``van.toml`` (``load_van_config``), the van's key
files (a van's keys, of the configured id), the watchlist authority's public keys, the
enrolment registry, the event store, the deployment store and the audit trail in the state
folder (a trail whose chain is broken is refused), the TLS certificate and key. Then, on one
actor system named by the van's id:

- ``output``: one actor writing stdout lines on a daemon thread (a stdout nobody reads stalls
  it, never the event loop); producers never wait for it: a line that finds its mailbox full
  is dropped and counted. A failed write ends the node with exit 74.
- ``audit``: the ``AuditWriter`` appending what the node records (links, stored alerts,
  refused offers at a bounded rate, enrolment changes) to ``audit.log`` (docs/AUDIT.md);
- ``receivers``: the supervisor of the units' receivers (``actors.van.receiver``) and their
  watchlist desks (``actors.van.watchlist_desk``), which answer from the ``WatchlistBoard``
  (deployments, pushes, purges, the units' reported states: docs/WATCHLISTS.md);
- ``control``: ``VanControl``, reached by the operators' commands (``lfr van deployment``,
  ``lfr watchlist push|purge|status``) over ``control.sock`` in the state folder (0600, keyed:
  ``lfr.van_control``);
- ``UnitLinks`` (``actors.van.unit_links``): one link per connected unit;
- signaling over HTTPS on ``signaling.host:port`` (``actors.van.signaling``), which hands each
  accepted unit to the links. An address that cannot be bound ends the node with exit 2 naming
  it;
- the console (``console/``, loopback only) with its ``WatchlistBuilder`` (one build from
  uploaded photos at a time; stopped with the console) and the authority's signing key when
  ``van.toml`` names one (``[authority] signing_key``: checked when the config is read); sign-ins
  and sign-outs go to the trail, and the console's accounts are followed into it
  (``console.account_trail``).

Stdout: ``van <id> listening on https://HOST:PORT (TLS sha256 AB:CD:...)`` once offers are
accepted, then ``unit <id> connected`` / ``unit <id> dropped: <reason>`` per link, one line per
watchlist event (deployment started or ended, a push, a unit holding, refusing or dropping a
list), and with ``--print-alerts`` one JSON line per newly stored alert, metadata only:
``{"unit", "seq", "camera", "subject", "score", "threshold", "captured_at"}`` (never the crop;
the van keeps the envelope sealed). Logs go to stderr.

Stopping (``runtime.node.run``: SIGTERM 143, SIGINT 130): signaling stops taking offers (in-flight
requests get ``SHUTDOWN_TIMEOUT_S``), the control socket closes, every unit link and peer
connection is closed within ``UnitLinksConfig.stop_timeout_s``, the actors stop, the stores are
closed and the trail's last record (``node_stopped`` with the exit code) is written.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from aiohttp import web

from actors.van.control_messages import CONTROL_ACTOR
from actors.van.deployment_store import DeploymentStore
from actors.van.enrolment import Enrolment
from actors.van.event_store import EventStore
from actors.van.receiver import AlertNotice
from actors.van.review_store import ReviewStore
from actors.van.signaling import (
    EnrolledUnits,
    SignalingConfig,
    SignalingService,
    serve_signaling,
)
from actors.van.tls_certificate import (
    certificate_fingerprint,
    format_fingerprint,
    server_ssl_context,
)
from actors.van.unit_links import UnitLinkEvent, UnitLinks, UnitLinksConfig
from actors.van.van_control import VanControl
from actors.van.watchlist_board import SHIPPED_MODELS, WatchlistBoard
from audit.kinds import AuditKind
from audit.log import AuditLog
from audit.refusals import RefusalRecorder
from audit.writer import WRITER_MAILBOX, AuditCounts, AuditSink, AuditWriter
from console.account_trail import follow_accounts
from console.alert_feed import AlertFeed
from console.app import ConsoleConfig, build_console_app
from console.sources import ConsoleSources
from console.users import UserStore
from console.van_pages import van_pages
from console.watchlist_build_job import WatchlistBuilder
from guards.exit_codes import ExitCode
from guards.log_text import printable
from guards.user_input import UserInputError
from lfr.alert_printer import LineOutput, stdout_output
from lfr.config.toml_table import config_sha256
from lfr.config.van import VanConfig, load_van_config, read_authority_signing_key
from lfr.gc_freeze import freeze_after_start
from lfr.van_control import serve_control
from runtime.actor import Actor
from runtime.daemon_thread import DaemonThread
from runtime.errors import ActorStopped, MailboxFull
from runtime.log_budget import LogBudget
from runtime.mailbox import MailboxConfig, MailboxPolicy
from runtime.node import run
from runtime.ref import ActorRef
from runtime.system import ActorSystem, SystemConfig
from secure.key_files import read_node_keys, read_public_keys
from secure.node_keys import NodeKeys, NodePublicKeys, NodeRole
from secure.sealing import EncryptionKeyPair

log = logging.getLogger("lfr.van")
OUTPUT_LINES: Final = 4096
"""Stdout lines waiting to be written; one more is dropped and counted (the reader is stuck)."""
OUTPUT_STOP_WAIT_S: Final = 0.2
"""On stop, how long to wait for a line still being written."""


@dataclass(frozen=True, slots=True)
class OutputLine:
    """One line for stdout (in-process only)."""

    text: str
    """The line, printable, without its newline."""


class LinePrinter(Actor[OutputLine]):
    """Writes lines to ``out`` on a daemon thread; the first failed write resolves ``failed``
    with the reason and nothing more is written."""

    def __init__(self, out: LineOutput, failed: asyncio.Future[str]) -> None:
        self._out = out
        self._failed = failed
        self._writer = DaemonThread("van-output")

    async def on_stop(self) -> None:
        await self._writer.close(OUTPUT_STOP_WAIT_S)

    async def receive(self, message: OutputLine) -> None:
        if self._failed.done():
            return
        try:
            await self._writer.run(functools.partial(self._out.write_line, message.text))
        except OSError as exc:  # EPIPE, a closed stdout, a full disk
            self._failed.set_result(f"cannot write to stdout: {exc.strerror or exc}")


class _Lines:
    """Hands lines to the printer without ever waiting; counts those its full mailbox drops."""

    def __init__(self, printer: ActorRef[OutputLine]) -> None:
        self._printer = printer
        self._log = LogBudget(log, "van output")
        self.dropped = 0
        """Lines dropped because the printer's mailbox was full."""

    def __call__(self, text: str) -> None:
        try:
            self._printer.tell_nowait(OutputLine(text))
        except MailboxFull:
            self.dropped += 1
            self._log.warning("stdout is not read: a line was dropped (%d so far)", self.dropped)
        except ActorStopped:  # the node is stopping: stdout is done
            self.dropped += 1


def alert_line(notice: AlertNotice) -> str:
    """A stored alert as the JSON line ``--print-alerts`` prints (metadata, never the crop)."""
    return json.dumps({"unit": notice.unit_id, "seq": notice.seq, "camera": notice.camera_id,
                       "subject": notice.subject_id, "score": round(notice.score, 4),
                       "threshold": round(notice.threshold, 4),
                       "captured_at": round(notice.captured_at, 3)})


def enrolled_units(enrolment: Enrolment) -> EnrolledUnits:
    """Signaling's lookup of an enrolled unit's public keys, following the enrolment file."""

    def lookup(unit_id: str) -> NodePublicKeys | None:
        unit = next((u for u in enrolment.units() if u.unit_id == unit_id), None)
        key = None if unit is None else enrolment.lookup(unit_id, unit.signing_key_id)
        return None if key is None else NodePublicKeys(NodeRole.UNIT, unit_id, key, None)

    return lookup


@dataclass(frozen=True, slots=True)
class VanParts:
    """What a van node runs on, opened and checked before it starts."""

    config: VanConfig
    """The loaded ``van.toml``."""
    keys: NodeKeys
    """The van's keys (a van's, of ``config.van_id``)."""
    encryption: EncryptionKeyPair
    """``keys.encryption``: what units seal to."""
    enrolment: Enrolment
    """The units whose envelopes are opened."""
    store: EventStore
    """The event store (open: close it when the node ends)."""
    deployments: DeploymentStore
    """Deployments and their sealed watchlists (open: close it when the node ends)."""
    audit: AuditLog
    """The van's audit trail (open: close it when the node ends)."""
    authority: NodePublicKeys
    """The watchlist authority's public keys: the only signer of watchlists pushed."""
    authority_signing: NodeKeys | None
    """The authority's private keys when ``van.toml`` names them (the console signs with
    them), else None."""
    users: UserStore
    """The console's accounts (open: close it when the node ends)."""
    reviews: ReviewStore
    """The officers' decisions on alerts (open: close it when the node ends)."""
    ssl_context: ssl.SSLContext
    """The signaling server's TLS context."""
    fingerprint: bytes
    """sha256 of the certificate: the pin units hold."""


def signaling_config(config: VanConfig) -> SignalingConfig:
    """The signaling limits of the van node, with the STUN/TURN servers of ``van.toml``."""
    return SignalingConfig(ice_servers=tuple(server.to_aiortc()
                                             for server in config.ice_servers))


def open_van(config: VanConfig) -> VanParts:
    """Read and open everything ``config`` names; ``UserInputError`` naming what is wrong."""
    keys = read_node_keys(config.signing_key, config.encryption_key)
    if keys.role is not NodeRole.VAN or keys.encryption is None:
        raise UserInputError(f"{printable(config.signing_key)}: holds the keys of "
                             f"{keys.role.value} {printable(keys.node_id)}, not a van's")
    if keys.node_id != config.van_id:
        raise UserInputError(f"{printable(config.signing_key)}: holds the keys of van "
                             f"{printable(keys.node_id)}, but {printable(config.file)} says "
                             f"id = {printable(config.van_id)}")
    enrolment = Enrolment.open(config.state_dir)
    try:
        ssl_context = server_ssl_context(config.tls_certificate, config.tls_key)
    except ssl.SSLError as exc:
        raise UserInputError(f"TLS certificate {printable(config.tls_certificate)} and key "
                             f"{printable(config.tls_key)}: {printable(exc.reason or exc)}"
                             ) from None
    fingerprint = certificate_fingerprint(config.tls_certificate)
    if config.authority_public_keys is None:
        raise UserInputError(f"{printable(config.file)}: [authority] public_keys is required")
    authority = read_public_keys(config.authority_public_keys, NodeRole.AUTHORITY)
    authority_signing = (None if config.authority_signing_key is None
                         else read_authority_signing_key(config.authority_signing_key, authority))
    store = EventStore.open(config.event_store)
    opened: list[EventStore | DeploymentStore | AuditLog | UserStore | ReviewStore] = [store]
    try:
        deployments = DeploymentStore.open(config.deployment_store, keys.encryption)
        opened.append(deployments)
        audit = AuditLog.open(config.audit, config.van_id)
        opened.append(audit)
        users = UserStore.open(config.state_dir)
        opened.append(users)
        reviews = ReviewStore.open(config.state_dir)
    except BaseException:
        for each in opened:
            each.close()
        raise
    return VanParts(config, keys, keys.encryption, enrolment, store, deployments, audit,
                    authority, authority_signing, users, reviews, ssl_context, fingerprint)


def close_van(parts: VanParts) -> None:
    """Close the stores and the audit trail ``open_van`` opened."""
    try:
        parts.store.close()
        parts.deployments.close()
        parts.users.close()
        parts.reviews.close()
    finally:
        parts.audit.close()




def run_van(config_path: Path, *, print_alerts: bool = False) -> int:
    """Run the van node from ``config_path`` until a signal; returns the exit code."""
    config = load_van_config(config_path)
    parts = open_van(config)
    code: int = ExitCode.INTERNAL_ERROR
    try:
        parts.audit.append(AuditKind.NODE_STARTED, role="van")
        parts.audit.append(AuditKind.CONFIG_LOADED, path=str(config.file),
                           sha256=config_sha256(config.file))
        freeze_after_start()  # what start-up built, out of every collection (lfr.gc_freeze)
        code = run(functools.partial(serve_van, parts=parts, print_alerts=print_alerts),
                   SystemConfig(name=config.van_id))
        return code
    finally:
        try:
            parts.audit.append(AuditKind.NODE_STOPPED, exit_code=int(code))
        finally:
            close_van(parts)


async def serve_van(system: ActorSystem, *, parts: VanParts, print_alerts: bool) -> int:
    """The van node's main (``runtime.node.run``): runs until cancelled by a signal, or until
    stdout fails (exit 74). Whatever started is stopped, newest first, however it ends."""
    config = parts.config
    failed: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    printer = await system.spawn("output", lambda: LinePrinter(stdout_output(), failed),
                                 MailboxConfig(OUTPUT_LINES, MailboxPolicy.BLOCK))
    lines = _Lines(printer)
    counts = AuditCounts()
    writer = await system.spawn("audit", lambda: AuditWriter(parts.audit, counts),
                                WRITER_MAILBOX)
    audit = AuditSink(writer, counts)
    # Refused offers and envelopes: one recorder, at most a record per source and
    # reason per window, flushed when everything else has stopped.
    refusals = RefusalRecorder(audit)
    async with contextlib.AsyncExitStack() as started:
        started.callback(refusals.flush)
        links, board, feed = await _start_units(system, parts, started, lines=lines,
                                                audit=audit, refusals=refusals,
                                                print_alerts=print_alerts)
        control = await serve_control(system, config.control_socket, config.control_key)
        started.push_async_callback(control.stop)
        sources = ConsoleSources(config.van_id, parts.store, parts.deployments, board, links,
                                 parts.enrolment, parts.encryption, audit, config.audit,
                                 system.blocking, feed, parts.authority_signing)
        builder = WatchlistBuilder(system.blocking, audit)
        started.push_async_callback(builder.stop)  # after the console closed (newest first)
        console = await _serve_console(parts, sources, builder, lines)
        started.push_async_callback(console.cleanup)
        accounts = asyncio.create_task(follow_accounts(parts.users, system.blocking, audit),
                                       name="console accounts")
        started.push_async_callback(_cancelled, accounts)
        service = SignalingService(parts.keys, enrolled_units(parts.enrolment), links.connected,
                                   signaling_config(config),
                                   on_refused=lambda reason, peer: refusals.refused(
                                       "offer", reason, peer))
        host, port = config.signaling.host, config.signaling.port
        try:
            runner, bound = await serve_signaling(service, host, port, parts.ssl_context)
        except OSError as exc:
            raise UserInputError(f"cannot listen on {_address(host, port)} (signaling.host, "
                                 f"signaling.port in {printable(config.file)}): "
                                 f"{exc.strerror or exc}") from None
        started.push_async_callback(runner.cleanup)
        log.info("van %s: %d units enrolled, at most %d connected at once",
                 printable(config.van_id), len(parts.enrolment.units()), config.max_units)
        lines(f"van {printable(config.van_id)} listening on https://"
              f"{_address(host, bound)} (TLS sha256 {format_fingerprint(parts.fingerprint)})")
        following = asyncio.create_task(_follow_enrolment(links, parts.enrolment, audit),
                                        name="enrolment changes")
        started.push_async_callback(_cancelled, following)
        reason = await failed
    log.error("van %s stopping: %s", printable(config.van_id), printable(reason))
    return ExitCode.OUTPUT_FAILED


async def _start_units(system: ActorSystem, parts: VanParts, started: contextlib.AsyncExitStack,
                       *, lines: Callable[[str], None], audit: AuditSink,
                       refusals: RefusalRecorder, print_alerts: bool,
                       ) -> tuple[UnitLinks, WatchlistBoard, AlertFeed]:
    """The receivers' supervisor, the watchlist board and desks, the unit links and the
    control actor; ``started`` stops the links."""
    config = parts.config
    receivers = await system.spawn_supervisor("receivers")
    feed = AlertFeed()

    def notices(notice: AlertNotice) -> None:
        audit.record(AuditKind.ALERT_SENT, unit=notice.unit_id, seq=notice.seq,
                     camera=notice.camera_id, subject=notice.subject_id,
                     score=round(notice.score, 4))
        feed.publish(notice)
        if print_alerts:
            lines(alert_line(notice))

    board = WatchlistBoard(parts.deployments, system.blocking, authority=parts.authority,
                           embedder=SHIPPED_MODELS, audit=parts.audit, lines=lines)
    await board.load()
    links = UnitLinks(system, receivers, parts.store, signers=parts.enrolment.lookup,
                      van_key=parts.encryption, config=UnitLinksConfig(max_units=config.max_units),
                      on_event=lambda event: _unit_event(lines, audit, event),
                      notices=notices, board=board,
                      refusals=lambda reason, unit: refusals.refused("envelope", reason, unit))
    started.push_async_callback(links.stop)
    enrolment = parts.enrolment
    await system.spawn(CONTROL_ACTOR, lambda: VanControl(
        board, enrolled=lambda: tuple(unit.unit_id for unit in enrolment.units()),
        linked=links.linked_units), MailboxConfig(8, MailboxPolicy.BLOCK))
    return links, board, feed


async def _cancelled(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


REVOCATION_CHECK_S = 2.0
"""How often the van looks for linked units revoked since they connected (``lfr van
revoke-unit`` beside the running van): one ``lstat`` of the enrolment file per linked unit."""


async def _follow_enrolment(links: UnitLinks, enrolment: Enrolment, audit: AuditSink) -> None:
    """For ever (owned by ``serve_van``): record enrolments and revocations made beside the
    running van (``lfr van enroll-unit``/``revoke-unit``) in the audit trail, and close the
    links of units revoked while linked."""
    known: dict[str, str] = {}
    while True:
        now = {unit.unit_id: unit.signing_key_id.hex() for unit in enrolment.units()}
        for unit, key in sorted(now.items()):
            if known.get(unit) != key:
                audit.record(AuditKind.UNIT_ENROLLED, unit=unit, signing_key=key)
        for unit, key in sorted(known.items()):
            if unit not in now:
                audit.record(AuditKind.UNIT_REVOKED, unit=unit, signing_key=key)
        known = now
        links.close_revoked(enrolled_units(enrolment))
        await asyncio.sleep(REVOCATION_CHECK_S)


def _unit_event(lines: Callable[[str], None], audit: AuditSink, event: UnitLinkEvent) -> None:
    reason = printable(event.reason, max_chars=300)
    if event.kind == "connected":
        audit.record(AuditKind.UNIT_CONNECTED, peer=event.unit_id)
    elif event.kind == "dropped":
        audit.record(AuditKind.UNIT_DROPPED, peer=event.unit_id, reason=reason)
    else:
        audit.record(AuditKind.INPUT_REFUSED, source="link", peer=event.unit_id, reason=reason,
                     count=1)
    if event.kind != "failed":  # a failed attempt is logged; stdout shows links that were up
        lines(event.line())


async def _serve_console(parts: VanParts, sources: ConsoleSources, builder: WatchlistBuilder,
                         lines: Callable[[str], None]) -> web.AppRunner:
    """Serve the operator console on ``console.host:port`` (loopback only: ``van.toml``);
    exit 2 naming the address when it cannot be bound."""
    config = parts.config
    app = build_console_app(parts.users, ConsoleConfig(van_id=config.van_id),
                            pages=van_pages(sources, parts.reviews, builder),
                            audit=sources.audit)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    host, port = config.console.host, config.console.port
    try:
        site = web.TCPSite(runner, host, port, shutdown_timeout=CONSOLE_SHUTDOWN_S)
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise UserInputError(f"cannot listen on {_address(host, port)} (console.host, "
                             f"console.port in {printable(config.file)}): "
                             f"{exc.strerror or exc}") from None
    lines(f"console on http://{_address(host, port)} (lfr van user add NAME --role "
          "operator|supervisor --config van.toml makes an account)")
    return runner


CONSOLE_SHUTDOWN_S: Final = 2.0
"""On stop, how long the console's open requests (live views) get before they are closed."""


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
