"""``lfr edge --self-test --config unit.toml``: can this unit work? One line per item, then exit.

Each item prints one line on stdout, ``self-test ITEM: pass - DETAIL``, ``self-test ITEM: FAIL -
WHY`` or ``self-test ITEM: skipped - because ...``, in this order:

- ``config``: ``unit.toml`` loads and validates as ``lfr edge`` reads it (the files it names
  too);
- ``keys``: the signing key file is readable, a regular file of ours with mode 0600, holding a
  unit's keys with the config's unit id;
- ``models``: ``lfr.unit_models.load_unit_models`` loads both models (sha256 verified) and one
  interpreter of each runs;
- ``recognition``: on the bundled photo (``models/data/self_test_face.jpg``) the detector finds
  exactly one face, usable, and the embedder gives it a finite, unit-length embedding;
- ``camera:<id>``, one per camera: the node's own ``Camera`` actor opens it and decodes one frame
  within ``camera_timeout_s`` (a file counts);
- ``clock``: the system clock is after ``CLOCK_FLOOR`` and within ``max_clock_skew_s`` of the
  ``Date`` of the van's HTTPS answer;
- ``van``: the van's signaling URL answers over HTTPS with the pinned certificate.

Guarantees: every item runs even when an earlier one failed, unless it depends on it (no
config: nothing else can be checked; no models: no recognition; no answer from the van: the
clock's skew); such an item says ``skipped - because ...`` and counts as not passed. The exit
code is 0 only when every item passed, else ``ExitCode.SELF_TEST_FAILED`` (1); bad flags are 2
and a stop signal 130/143, as for every command. Every wait has a timeout (the camera's open
and first frame, the van's answer). The camera's frame is looked at only for its size and
dropped; no frame, face or embedding is written or logged, and nothing is sent to the van but
one HTTPS ``GET`` that carries nothing (the answer's status and ``Date`` are all it reads). The
self-test opens no outbox or audit trail: it changes nothing on the unit.
"""

from __future__ import annotations

import asyncio
import datetime
import email.utils
import enum
import functools
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TypeVar

import aiohttp
import numpy as np

from actors.unit.camera import Camera, CameraConfig, CameraOutput, CameraProgress, Frame
from actors.unit.camera_source import redact
from actors.unit.face_analysis import analyse_faces, wipe
from guards.config_checks import require_positive
from guards.exit_codes import ExitCode
from guards.log_text import printable
from guards.user_input import UserInputError
from lfr.config.unit import CameraEntry, UnitConfig, load_unit_config
from lfr.edge_node import CAMERA_SUPERVISION
from lfr.unit_models import load_unit_models
from models.face_detector import FaceDetector
from models.face_embedder import FaceEmbedder
from models.face_quality import QualityConfig
from models.image_io import load_rgb
from models.interpreter import EdgeTpuUnavailable, InterpreterBackendUnavailable
from models.model_file import DATA_DIR, ModelIntegrityError
from runtime.actor import Actor
from runtime.mailbox import MailboxConfig, MailboxPolicy
from runtime.node import run
from runtime.system import ActorSystem, SystemConfig
from secure.key_files import read_node_keys
from secure.key_id import format_key_id
from secure.node_keys import NodeRole

log = logging.getLogger("lfr.self_test")
T = TypeVar("T")

CLOCK_FLOOR: Final = datetime.datetime(2026, 11, 30, tzinfo=datetime.UTC)
"""No clock that is right can be earlier than the day this check was written (a unit without a
real-time clock that has not synchronised yet boots in 1970 or at its image's build date)."""
SELF_TEST_IMAGE: Final = "self_test_face.jpg"
"""The bundled photo in ``models/data`` (one face; source and licence: models/SOURCES.md)."""
UNIT_NORM_TOLERANCE: Final = 1e-3
"""An embedding's L2 norm must be 1 within this."""


class Outcome(enum.Enum):
    """How one item ended; only ``PASS`` counts as passed."""

    PASS = "pass"  # noqa: S105 - an outcome, not a password
    FAIL = "FAIL"
    SKIPPED = "skipped"


@dataclass(frozen=True, slots=True)
class ItemResult:
    """One item's line."""

    item: str
    """``config``, ``keys``, ``models``, ``recognition``, ``camera:<id>``, ``clock``, ``van``."""
    outcome: Outcome
    """Passed, failed, or not checked because what it needs failed."""
    detail: str
    """What was found (pass), why not (FAIL), ``because ...`` (skipped); printable."""

    def line(self) -> str:
        """``self-test ITEM: pass|FAIL|skipped - DETAIL``."""
        return f"self-test {printable(self.item)}: {self.outcome.value} - {self.detail}"


@dataclass(frozen=True, slots=True)
class SelfTestConfig:
    """The self-test's bounds."""

    camera_timeout_s: float = 20.0
    """Seconds each camera has to open and decode its first frame (all cameras at once)."""
    van_timeout_s: float = 10.0
    """Seconds for the van's answer, connection and TLS included."""
    max_clock_skew_s: float = 10.0
    """The clock may differ from the van's by this much. The van takes offers within 30 s
    (``SignalingConfig.freshness_window_s``); a third of it leaves room for drift."""
    clock_floor: datetime.datetime = CLOCK_FLOOR
    """The clock must be later than this (aware, UTC)."""
    image: Path = DATA_DIR / SELF_TEST_IMAGE
    """The photo the recognition item runs on."""

    def __post_init__(self) -> None:
        for name in ("camera_timeout_s", "van_timeout_s", "max_clock_skew_s"):
            require_positive(f"SelfTestConfig.{name}", getattr(self, name))


class ItemFailed(Exception):
    """An item's check failed; the text says why (printable already)."""


_FOUND: Final = (ItemFailed, UserInputError, ModelIntegrityError, EdgeTpuUnavailable,
                 InterpreterBackendUnavailable)
"""What a check finds wrong with the unit, each with a text that says what and where."""


@dataclass(frozen=True, slots=True)
class VanAnswer:
    """What the van's HTTPS answer told: that it answered, and its clock."""

    status: int
    """The HTTP status (signaling answers ``GET`` with 405: it takes only offers)."""
    date: datetime.datetime | None
    """The answer's ``Date`` header (to the second), None if it had none."""
    local_time: float
    """This clock (epoch seconds) half-way between sending and the answer."""


def run_self_test(config_path: Path, settings: SelfTestConfig | None = None, *,
                  clock: Callable[[], float] = time.time) -> int:
    """``lfr edge --self-test``: print each item's line; ``ExitCode.OK`` only if all passed."""
    settings = settings or SelfTestConfig()
    return run(functools.partial(self_test, config_path=config_path, settings=settings,
                                 report=_print_line, clock=clock),
               SystemConfig(name="self-test"))


def _print_line(result: ItemResult) -> None:
    print(result.line(), flush=True)


async def self_test(system: ActorSystem, *, config_path: Path, settings: SelfTestConfig,
                    report: Callable[[ItemResult], None],
                    clock: Callable[[], float] = time.time) -> int:
    """Run every item on ``system`` (for its cameras), telling ``report`` each result as it
    comes; the exit code."""
    results: list[ItemResult] = []

    def emit(result: ItemResult) -> None:
        results.append(result)
        report(result)

    config = _attempt(emit, "config", lambda: _check_config(config_path))
    if config is None:
        for item in ("keys", "models", "recognition", "camera", "clock", "van"):
            emit(ItemResult(item, Outcome.SKIPPED, "because the config did not load"))
        return ExitCode.SELF_TEST_FAILED
    _attempt(emit, "keys", lambda: _check_keys(config))
    models = _attempt(emit, "models", lambda: _check_models(config))
    if models is None:
        emit(ItemResult("recognition", Outcome.SKIPPED, "because the models did not load"))
    else:
        _attempt(emit, "recognition", lambda: _check_recognition(models, settings.image))
    warnings = _CameraWarnings(config.cameras)
    camera_log = logging.getLogger("lfr.camera")
    camera_log.addHandler(warnings)
    try:
        probes = await asyncio.gather(*(
            _outcome(_check_camera(system, camera, settings.camera_timeout_s, warnings))
            for camera in config.cameras))
    finally:
        camera_log.removeHandler(warnings)
    for camera, (outcome, detail) in zip(config.cameras, probes, strict=True):
        emit(ItemResult(f"camera:{camera.camera_id}", outcome, detail))
    answer, why_not = await _outcome_value(_ask_van(config, settings.van_timeout_s, clock))
    emit(_clock_result(answer, why_not, settings, clock))
    emit(ItemResult("van", Outcome.PASS, _van_detail(config, answer)) if answer is not None
         else ItemResult("van", Outcome.FAIL, why_not))
    passed = all(result.outcome is Outcome.PASS for result in results)
    return ExitCode.OK if passed else ExitCode.SELF_TEST_FAILED


def _attempt(emit: Callable[[ItemResult], None], item: str,
             check: Callable[[], tuple[str, T]]) -> T | None:
    """Run one item's check (on the event loop's thread, before the cameras start: nothing else
    runs then), emit its line; its value when it passed, else None."""
    try:
        detail, value = check()
    except _FOUND as exc:
        emit(ItemResult(item, Outcome.FAIL, printable(exc, max_chars=1000)))
        return None
    except Exception as exc:  # each item is a boundary: an item that breaks in a way nobody
        # foresaw (a model the interpreter refuses, a library error) is that item's FAIL, and
        # the items after it still run. The traceback goes to the log: it may be our bug.
        log.warning("self-test %s: %s", item, type(exc).__name__, exc_info=exc)
        emit(ItemResult(item, Outcome.FAIL, f"{type(exc).__name__}: "
                                            f"{printable(exc, max_chars=1000)}"))
        return None
    emit(ItemResult(item, Outcome.PASS, detail))
    return value


async def _outcome(check: Awaitable[str]) -> tuple[Outcome, str]:
    """A camera's outcome and line (the cameras run at once, their lines follow in order)."""
    detail, why_not = await _outcome_value(check)
    return (Outcome.PASS, detail) if detail is not None else (Outcome.FAIL, why_not)


async def _outcome_value(check: Awaitable[T]) -> tuple[T | None, str]:
    """``(value, "")`` or ``(None, why)``; like ``_attempt`` without emitting."""
    try:
        return await check, ""
    except _FOUND as exc:
        return None, printable(exc, max_chars=1000)
    except Exception as exc:  # the same boundary as in _attempt
        log.warning("self-test: %s", type(exc).__name__, exc_info=exc)
        return None, f"{type(exc).__name__}: {printable(exc, max_chars=1000)}"


# -- config, keys, models, recognition -----------------------------------------------------


def _check_config(path: Path) -> tuple[str, UnitConfig]:
    config = load_unit_config(path)
    accelerator = "cpu" if config.accelerator is None else "edgetpu"
    cameras = len(config.cameras)
    return (f"{printable(config.file)}: unit {printable(config.unit_id)}, {cameras} "
            f"camera{'' if cameras == 1 else 's'}, van {printable(config.van_url)}, "
            f"accelerator {accelerator}"), config


def _check_keys(config: UnitConfig) -> tuple[str, bool]:
    keys = read_node_keys(config.signing_key)  # regular, not a link, ours, 0600 or stricter
    if keys.role is not NodeRole.UNIT or keys.node_id != config.unit_id:
        raise ItemFailed(f"{printable(config.signing_key)} holds the keys of {keys.role.value} "
                         f"{printable(keys.node_id)}, not of unit {printable(config.unit_id)}")
    return (f"{printable(config.signing_key)}: unit {printable(keys.node_id)}, signing key "
            f"{format_key_id(keys.signing.key_id)}, mode 0600"), True


def _check_models(config: UnitConfig) -> tuple[str, tuple[FaceDetector, FaceEmbedder]]:
    detector, embedder = load_unit_models(config)  # each file's sha256 checked
    detector.warm_up()  # one interpreter of each opened and run once
    embedder.warm_up()
    where = "cpu" if config.accelerator is None else "edgetpu"
    return (f"{detector.model_id} (sha256 {detector.model_sha256[:16]}...) and "
            f"{embedder.model_id} (sha256 {embedder.model_sha256[:16]}...) verified, run on "
            f"{where}"), (detector, embedder)


def _check_recognition(models: tuple[FaceDetector, FaceEmbedder], image_path: Path
                       ) -> tuple[str, bool]:
    detector, embedder = models
    image = load_rgb(image_path)
    analysis = analyse_faces(detector, image, QualityConfig())
    try:
        if analysis.seen != 1 or len(analysis.usable) != 1:
            raise ItemFailed(f"{printable(image_path.name)}: the detector found {analysis.seen} "
                             f"face(s), {len(analysis.usable)} usable; exactly one expected")
        embedding = embedder.embed(analysis.usable[0].aligned)
        try:
            norm = float(np.linalg.norm(embedding))
            finite = bool(np.isfinite(embedding).all())
            size = int(embedding.size)
        finally:
            wipe(embedding)
    finally:
        for face in analysis.usable:
            wipe(face.aligned)
    if not finite or not math.isclose(norm, 1.0, abs_tol=UNIT_NORM_TOLERANCE):
        raise ItemFailed(f"{printable(image_path.name)}: the embedding is not finite and of "
                         f"unit length (finite: {finite}, norm {norm:.4f})")
    return (f"{printable(image_path.name)}: one face found, embedding of {size} finite "
            f"values, norm {norm:.4f}"), True


# -- cameras ---------------------------------------------------------------------------------


class _CameraWarnings(logging.Handler):
    """Keeps the last warning each camera logged (why a live source does not open: it is
    retried until the timeout), one short text per configured camera."""

    def __init__(self, cameras: tuple[CameraEntry, ...]) -> None:
        super().__init__(logging.WARNING)
        self._prefixes = {f"camera {printable(c.camera_id)}: ": c.camera_id for c in cameras}
        self.last: dict[str, str] = {}
        """The last warning by camera id (at most one per configured camera)."""

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        for prefix, camera_id in self._prefixes.items():
            if text.startswith(prefix):
                self.last[camera_id] = printable(text[len(prefix):], max_chars=300)


async def _check_camera(system: ActorSystem, camera: CameraEntry, timeout_s: float,
                        warnings: _CameraWarnings) -> str:
    """Open ``camera`` with the node's own ``Camera`` actor, under its own supervisor, and wait
    for its first frame; the frame's size is all that is kept."""
    loop = asyncio.get_running_loop()
    seen: asyncio.Future[tuple[int, int] | None] = loop.create_future()
    progress = CameraProgress()
    settings = CameraConfig(camera.source, camera_id=camera.camera_id,
                            open_timeout_s=timeout_s, read_timeout_s=timeout_s)
    name = f"self-test:{camera.camera_id}"
    supervisor = await system.spawn_supervisor(name, CAMERA_SUPERVISION)
    started = time.monotonic()
    try:
        probe = await supervisor.spawn(f"first-frame:{camera.camera_id}",
                                       lambda: _FirstFrame(seen),
                                       MailboxConfig(1, MailboxPolicy.DROP_OLDEST))
        await supervisor.spawn(f"camera:{camera.camera_id}",
                               lambda: Camera(settings, probe, progress))
        try:
            async with asyncio.timeout(timeout_s):
                size = await asyncio.shield(seen)
        except TimeoutError:
            last = warnings.last.get(camera.camera_id)
            raise ItemFailed(f"{printable(_shown(camera))}: no frame within {timeout_s:g} s"
                             + (f"; last: {last}" if last else "")) from None
    finally:
        await supervisor.stop(system.config.shutdown_drain_s)
    if size is None:
        raise ItemFailed(printable(progress.failure or f"{_shown(camera)}: the stream ended "
                                                       "before its first frame"))
    width, height = size
    return (f"{printable(_shown(camera))}: a {width}x{height} frame in "
            f"{time.monotonic() - started:.1f} s")


def _shown(camera: CameraEntry) -> str:
    return redact(camera.source)


class _FirstFrame(Actor[CameraOutput]):
    """Takes the size of a camera's first frame (or its end) and drops every frame."""

    def __init__(self, seen: asyncio.Future[tuple[int, int] | None]) -> None:
        self._seen = seen

    async def receive(self, message: CameraOutput) -> None:
        if self._seen.done():
            return
        if isinstance(message, Frame):
            height, width = message.pixels.shape[:2]
            self._seen.set_result((width, height))  # the pixels are not kept
        else:
            self._seen.set_result(None)


# -- the van and the clock -------------------------------------------------------------------


async def _ask_van(config: UnitConfig, timeout_s: float, clock: Callable[[], float]
                   ) -> VanAnswer:
    """One ``GET`` of the unit's signaling URL, trusting only the pinned certificate."""
    url = f"{config.van_url.rstrip('/')}/units/{config.unit_id}/offer"
    timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=timeout_s)
    try:
        async with asyncio.timeout(timeout_s + 1.0):
            sent = clock()
            async with aiohttp.ClientSession(timeout=timeout) as session, session.get(
                    url, ssl=aiohttp.Fingerprint(config.van_tls_fingerprint),
                    allow_redirects=False) as response:
                received = clock()
                status, date = response.status, response.headers.get("Date")
    except aiohttp.ServerFingerprintMismatch:
        raise ItemFailed(f"{printable(config.van_url)}: the server's TLS certificate is not the "
                         "pinned one (van.tls_fingerprint); someone else answers there") from None
    except aiohttp.ClientConnectorError as exc:  # its text would show the ssl object
        raise ItemFailed(f"cannot reach the van at {printable(config.van_url)}: "
                         f"{printable(exc.os_error.strerror or exc.os_error)}") from None
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise ItemFailed(f"cannot reach the van at {printable(config.van_url)} within "
                         f"{timeout_s:g} s: {type(exc).__name__}: {printable(exc)}") from None
    return VanAnswer(status, _http_date(date), (sent + received) / 2)


def _http_date(text: str | None) -> datetime.datetime | None:
    if text is None:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return parsed if parsed.tzinfo is not None else None


def _van_detail(config: UnitConfig, answer: VanAnswer) -> str:
    return (f"{printable(config.van_url)} answered over HTTPS with the pinned certificate "
            f"(HTTP {answer.status})")


def _clock_result(answer: VanAnswer | None, why_not: str, settings: SelfTestConfig,
                  clock: Callable[[], float]) -> ItemResult:
    now = clock()
    shown = _utc(now)
    if now <= settings.clock_floor.timestamp():
        return ItemResult("clock", Outcome.FAIL, f"the clock says {shown}, before "
                          f"{_utc(settings.clock_floor.timestamp())}: it is not set (no "
                          "network time yet?)")
    if answer is None:
        return ItemResult("clock", Outcome.SKIPPED, f"because the van could not be reached to "
                          f"compare with (the clock says {shown}, after the floor)")
    if answer.date is None:
        return ItemResult("clock", Outcome.FAIL, "the van's answer had no valid Date header "
                          f"to compare with (the clock says {shown})")
    # Date is whole seconds: the van's clock lay in [date, date + 1) when it answered.
    skew = answer.local_time - (answer.date.timestamp() + 0.5)
    if abs(skew) > settings.max_clock_skew_s:
        side = "ahead of" if skew > 0 else "behind"
        return ItemResult("clock", Outcome.FAIL, f"{abs(skew):.0f} s {side} the van's clock "
                          f"(at most {settings.max_clock_skew_s:g} s; the van refuses offers "
                          "more than 30 s off)")
    return ItemResult("clock", Outcome.PASS, f"{shown}, within {abs(skew):.1f} s of the van's")


def _utc(epoch_s: float) -> str:
    try:
        moment = datetime.datetime.fromtimestamp(epoch_s, datetime.UTC)
    except (OverflowError, OSError, ValueError):
        return f"{epoch_s:.0f} s after 1970"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
