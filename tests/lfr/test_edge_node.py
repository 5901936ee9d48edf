"""``lfr edge``: the config check as a real process; the unit's tree in-process on the shared
clip with the real models, outbox and uplink (no van: a link source that never links), so
every alert and report is read back from the outbox and opened with the van's keys."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import io
import json
import logging
import re
import signal
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import IO, Any

import pytest
import pytest_asyncio

from actors.unit.camera import Frame
from actors.unit.detector import Detector
from actors.unit.event_body import AlertBody, HealthBody, decode_body
from actors.unit.health_reporter import HealthReporterConfig
from actors.unit.outbox import Outbox
from actors.unit.watchlist import DEFAULT_THRESHOLD, Watchlist, load_watchlist
from actors.unit.watchlist_gate import HeldWatchlist, WatchlistGate, held_gallery
from lfr.alert_printer import StreamOutput, alert_body_json
from lfr.edge_node import (
    CAMERA_SUPERVISION,
    EDGE_ROOT,
    EdgeUnit,
    load_edge_unit,
    serve_edge,
    start_edge,
)
from lfr.local_deployment import free_local_port
from runtime.link import Link
from runtime.system import ActorSystem, SystemConfig
from secure.envelope import open_envelope
from secure.key_files import write_node_keys
from secure.node_keys import NodeKeys, NodeRole
from tests.actors.support import eventually
from tests.lfr.cli_process import lfr, stop_with_signal
from tests.lfr.conftest import CLIP
from tests.lfr.test_node_config import make_unit, write_config

Config = dict[str, Any]
CLIP_FRAMES = 275
RUN_S = 120.0
"""Upper bound of an in-process run of the clip (a few seconds here)."""


class NoVan:
    """A link source that never has a link: the van is out of reach for the whole test, so
    everything sealed stays in the outbox."""

    def __init__(self) -> None:
        self.started = self.stopped = False

    def current(self) -> Link | None:
        return None

    async def wait_link(self, timeout_s: float) -> Link:
        await asyncio.sleep(timeout_s)
        raise TimeoutError("no van in this test")

    def drop(self, link: Link, reason: str) -> None:
        raise AssertionError("there is no link to drop")

    def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True


@pytest.fixture
def van(tmp_path: Path) -> NodeKeys:
    """The van's keys: its public.keys go into the unit's config, its private keys open what
    the unit sealed."""
    keys = NodeKeys.generate(NodeRole.VAN, "van-1")
    (tmp_path / "van").mkdir()
    write_node_keys(keys, tmp_path / "van" / "keys")
    return keys


def unit_config(tmp_path: Path, cameras: list[Config], *,
                van_url: str = "https://127.0.0.1:8443") -> Path:
    """A unit's keys and ``unit.toml`` in ``tmp_path/unit`` (the van made by ``van``)."""
    folder = tmp_path / "unit"
    folder.mkdir()
    data = make_unit(folder, tmp_path / "van")
    data |= {"cameras": cameras}
    data["van"]["url"] = van_url
    return write_config(folder / "unit.toml", data)


def holding(watchlist: Watchlist) -> WatchlistGate:
    """A gate holding ``watchlist``, as if the van had given it (no van in these tests)."""
    gate = WatchlistGate()
    gate.install(HeldWatchlist("test-deployment", 1, DEFAULT_THRESHOLD, time.time() + 3600,
                               "0" * 64, held_gallery(watchlist, DEFAULT_THRESHOLD)))
    return gate


def nobody_listening() -> str:
    """A van URL on loopback where nothing listens: every dial fails at once."""
    return f"https://127.0.0.1:{free_local_port()}"


def clip_camera(camera_id: str) -> Config:
    return {"id": camera_id, "source": str(CLIP)}


# -- --check-config, as a user runs it ------------------------------------------------------


def test_check_config_reads_everything_and_says_ok_without_touching_the_network_or_outbox(
        tmp_path: Path, van: NodeKeys) -> None:
    config = unit_config(tmp_path,
                         [clip_camera("gate"), {"id": "door", "source": "rtsp://10.0.0.5/s"}])
    result = lfr("edge", "--config", str(config), "--check-config", timeout_s=60)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout == (f"config {config}: ok (unit unit-1, 2 cameras, "
                             "van https://127.0.0.1:8443)\n")
    assert not (config.parent / "outbox.sqlite").exists()


def _other_unit_key(folder: Path) -> str:
    write_node_keys(NodeKeys.generate(NodeRole.UNIT, "unit-2"), folder / "other")
    return "other/signing.key"


def _van_key(folder: Path) -> str:
    return str(folder.parent / "van" / "keys" / "signing.key")


def _a_watchlist_file(folder: Path) -> str:
    (folder / "old.watchlist").write_bytes(b"LFRW" + b"\0" * 60)
    return "old.watchlist"


def _red(_folder: Path) -> str:
    return "red"


def _an_absent_edge_tpu(folder: Path) -> dict[str, str]:
    """Edge TPU compiled files with their right digests, and no Edge TPU runtime here: the
    unit refuses to start rather than run on the CPU it was not sized for."""
    names = {"detector": "face_detection_full_range_edgetpu.tflite",
             "embedder": "MobileFaceNet_edgetpu.tflite"}
    table = {"kind": "edgetpu"}
    for role, name in names.items():
        (folder / name).write_bytes(b"compiled " + role.encode())
        table[f"{role}_model"] = name
        table[f"{role}_sha256"] = hashlib.sha256(b"compiled " + role.encode()).hexdigest()
    return table


CHECK_REFUSALS: dict[str, tuple[str, Callable[[Path], object], str]] = {
    "unknown key": ("colour", _red, "colour: unknown key"),
    "another unit's key": ("signing_key", _other_unit_key,
                           ("signing_key: {folder}/other/signing.key holds the keys of unit "
                            "unit-2, not of unit unit-1")),
    "a van's key": ("signing_key", _van_key, "signing_key: signing key file"),
    "a watchlist file": ("watchlist", _a_watchlist_file,
                         "watchlist: a unit's config names no watchlist file any more"),
    "an Edge TPU that is absent": ("accelerator", _an_absent_edge_tpu,
                                   "accelerator.library: libedgetpu.so.1 cannot be loaded"),
}


@pytest.mark.parametrize("case", CHECK_REFUSALS)
def test_check_config_refuses_naming_the_file_and_the_key(
        case: str, tmp_path: Path, van: NodeKeys) -> None:
    key, value, expected = CHECK_REFUSALS[case]
    folder = tmp_path / "unit"
    folder.mkdir()
    data = make_unit(folder, tmp_path / "van")
    data |= {"cameras": [clip_camera("gate")]}
    data[key] = value(folder)
    config = write_config(folder / "unit.toml", data)
    result = lfr("edge", "--config", str(config), "--check-config", timeout_s=60)
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"lfr edge: config file {config}: {expected.format(folder=folder)}" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_a_missing_config_is_bad_input(tmp_path: Path) -> None:
    result = lfr("edge", "--config", str(tmp_path / "unit.toml"), "--check-config")
    assert result.returncode == 2
    assert f"config file {tmp_path / 'unit.toml'}: no such file" in result.stderr


# -- the running unit, in-process -------------------------------------------------------------


@pytest_asyncio.fixture
async def system() -> AsyncIterator[ActorSystem]:
    async with ActorSystem(SystemConfig(name="unit-1", root=EDGE_ROOT)) as running:
        yield running


@pytest.fixture
def outbox_of() -> Any:
    opened: list[Outbox] = []

    def open_for(unit: EdgeUnit) -> Outbox:
        opened.append(Outbox.open(unit.config.outbox))
        return opened[-1]

    yield open_for
    for outbox in opened:
        outbox.close()


def sealed_bodies(outbox: Outbox, van: NodeKeys, unit: EdgeUnit) -> list[AlertBody | HealthBody]:
    """Every envelope in the outbox, in order, opened as the van opens it."""
    assert van.encryption is not None
    signer = unit.keys.public().verify_key

    def lookup(unit_id: str, key_id: bytes) -> Any:
        return signer if (unit_id, key_id) == ("unit-1", signer.key_id) else None

    bodies = []
    for envelope in outbox.pending(limit=256):
        opened = open_envelope(envelope.sealed, signers=lookup, van_key=van.encryption)
        bodies.append(decode_body(opened.body))
    return bodies


async def test_a_broken_camera_restarts_alone_and_the_others_run_to_their_end(
        tmp_path: Path, van: NodeKeys, clip_watchlist: tuple[Watchlist, Path],
        system: ActorSystem, outbox_of: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    receive = Detector.receive

    async def broken_for_bad(self: Detector, message: Any) -> None:
        if isinstance(message, Frame) and message.camera == "bad":
            raise RuntimeError("simulated detector failure")
        await receive(self, message)

    monkeypatch.setattr(Detector, "receive", broken_for_bad)
    unit = load_edge_unit(unit_config(tmp_path, [clip_camera("bad"), clip_camera("gate")]))
    outbox = outbox_of(unit)
    node = await start_edge(system, unit, outbox, NoVan(),
                            gate=holding(clip_watchlist[0]))
    gate, bad = node.cameras[1], node.cameras[0]
    await eventually(lambda: node.uplink.streams_ended >= 1, timeout_s=RUN_S)
    assert gate.frames == CLIP_FRAMES
    assert gate.progress.failure is None
    restarts = {cell.name: cell.metrics.restarts for cell in system.cells()}
    assert restarts["detector:bad"] >= 1
    assert restarts["camera:bad"] >= 1  # rest_for_one: the camera after its detector
    for name in ("detector:gate", "camera:gate", "matcher", "uplink", "health"):
        assert restarts[name] == 0, restarts
    assert system.failure is None
    assert bad.frames < CLIP_FRAMES
    # The gate camera's alerts were sealed for the van all the same.
    assert node.uplink.alerts_sealed >= 1


def test_a_broken_camera_subtree_never_gives_up() -> None:
    # CAMERA_SUPERVISION's claim: the 10 restarts that would make it give up cannot lie within
    # its window, because the backoffs before them alone are longer.
    config = CAMERA_SUPERVISION
    waited = sum(config.backoff.delay(j) for j in range(1, config.max_restarts))
    assert waited > config.within_s


async def test_health_reports_reach_the_uplink_and_are_sealed_for_the_van(
        tmp_path: Path, van: NodeKeys, clip_watchlist: tuple[Watchlist, Path],
        system: ActorSystem, outbox_of: Any) -> None:
    unit = load_edge_unit(unit_config(tmp_path, [clip_camera("gate")]))
    outbox = outbox_of(unit)
    node = await start_edge(system, unit, outbox, NoVan(), gate=holding(clip_watchlist[0]),
                            health=HealthReporterConfig(
        interval_s=0.5, model_ids=unit.model_ids))
    await eventually(lambda: node.uplink.streams_ended >= 1, timeout_s=RUN_S)
    sealed = node.uplink.health_sealed
    await eventually(lambda: node.uplink.health_sealed > sealed)  # one after the end
    reports = [body for body in await asyncio.to_thread(sealed_bodies, outbox, van, unit)
               if isinstance(body, HealthBody)]
    assert len(reports) == node.uplink.health_sealed
    last = reports[-1]
    assert [(c.camera_id, c.frames) for c in last.cameras] == [("gate", CLIP_FRAMES)]
    assert last.faces_seen >= last.faces_rejected
    assert last.faces_seen > 0
    assert last.alerts == node.uplink.alerts_sealed
    assert last.outbox_depth >= last.alerts  # nothing acknowledged: no van
    assert last.model_ids == unit.model_ids
    assert any(c.fps > 0 for report in reports for c in report.cameras)


async def test_print_alerts_prints_exactly_what_was_sealed_for_the_van(
        tmp_path: Path, van: NodeKeys, clip_watchlist: tuple[Watchlist, Path],
        system: ActorSystem, outbox_of: Any) -> None:
    unit = load_edge_unit(unit_config(tmp_path, [clip_camera("gate")]))
    outbox = outbox_of(unit)
    out = io.StringIO()
    node = await start_edge(system, unit, outbox, NoVan(), print_to=StreamOutput(out),
                            gate=holding(clip_watchlist[0]))
    await eventually(lambda: node.uplink.streams_ended >= 1, timeout_s=RUN_S)
    await eventually(lambda: node.printed.written == node.uplink.alerts_sealed)
    alerts = [body for body in await asyncio.to_thread(sealed_bodies, outbox, van, unit)
              if isinstance(body, AlertBody)]
    assert alerts, "the clip's watchlisted subjects raised no alert"
    printed = out.getvalue().splitlines()
    assert printed == [alert_body_json(body) for body in alerts]
    lines = [json.loads(line) for line in printed]
    assert {line["subject_id"] for line in lines} >= {"lin_manuel_miranda"}
    for line, body in zip(lines, alerts, strict=True):
        assert "crop_jpeg" not in line
        assert line["crop_jpeg_bytes"] == len(body.crop_jpeg)
        assert line["event_id"].startswith("unit-1/")


async def test_when_every_file_has_ended_and_the_van_acknowledged_everything_the_node_ends(
        tmp_path: Path, van: NodeKeys, clip_watchlist: tuple[Watchlist, Path],
        system: ActorSystem, outbox_of: Any, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    # The notice every 1 s instead of 10 s: the test waited out the first 10 s for it.
    monkeypatch.setattr("lfr.edge_node.WAITING_NOTICE_S", 1.0)
    unit = load_edge_unit(unit_config(tmp_path, [clip_camera("gate")]))
    outbox = outbox_of(unit)
    dialer = NoVan()
    caplog.set_level(logging.INFO, logger="lfr.unit.uplink")
    serving = asyncio.create_task(serve_edge(system, unit=unit, outbox=outbox,
                                             print_alerts=False, dialer=dialer,
                                             gate=holding(clip_watchlist[0])))
    err: list[str] = []

    def said(text: str) -> bool:
        err.append(capsys.readouterr().err)
        return text in "".join(err)

    # The van is out of reach: once the file has ended the node waits for its
    # acknowledgements, and says so every WAITING_NOTICE_S.
    await eventually(lambda: "the stream of camera gate ended" in caplog.text, timeout_s=RUN_S)
    await eventually(lambda: said("waiting for the van to acknowledge "))
    assert not serving.done()
    assert outbox.statistics().alerts > 0

    def van_acknowledges_everything() -> bool:  # as its receipts would make the uplink do
        outbox.acknowledge(outbox.statistics().last_seq)
        return serving.done()

    await eventually(van_acknowledges_everything)
    assert await serving == 0
    assert dialer.started
    assert dialer.stopped
    said("")
    lines = "".join(err).strip().splitlines()
    assert lines[0] == "unit unit-1: 1 camera; van https://127.0.0.1:8443"
    summary = lines[-1]
    assert summary.startswith(f"unit unit-1: {CLIP_FRAMES} frames in ")
    sent = re.search(r" (\d+) alerts? sent, (\d+) acknowledged by the van$", summary)
    assert sent is not None, summary
    assert int(sent[1]) > 0
    assert sent[1] == sent[2]


async def test_a_unit_whose_files_raise_no_alert_ends_without_the_van(
        tmp_path: Path, van: NodeKeys, absent_watchlist: Path, system: ActorSystem,
        outbox_of: Any, capsys: pytest.CaptureFixture[str]) -> None:
    absent = load_watchlist(absent_watchlist)
    unit = load_edge_unit(unit_config(tmp_path, [clip_camera("gate")]))
    async with asyncio.timeout(RUN_S):
        code = await serve_edge(system, unit=unit, outbox=outbox_of(unit), print_alerts=True,
                                dialer=NoVan(), out=StreamOutput(io.StringIO()),
                                gate=holding(absent))
    assert code == 0
    summary = capsys.readouterr().err.strip().splitlines()[-1]
    assert summary.startswith(f"unit unit-1: {CLIP_FRAMES} frames in ")
    assert summary.endswith("0 alerts sent, 0 acknowledged by the van, 0 printed")


# -- the running unit, as a user runs it (the real dialer; no van listens) ---------------------


def test_a_unit_without_its_van_scans_nothing_and_a_signal_ends_it_with_its_summary(
        tmp_path: Path, van: NodeKeys) -> None:
    # No van, so no watchlist: the file camera never starts (it waits for one), no frame is
    # analysed; SIGTERM ends the node with its summary.
    url = nobody_listening()
    config = unit_config(tmp_path, [clip_camera("gate")], van_url=url)

    said: list[str] = []

    def cannot_link(stderr: IO[str]) -> None:
        for line in stderr:
            said.append(line)
            if "cannot link to van van-1: " in line:
                return
        raise AssertionError("the dialer never tried")

    stopped = stop_with_signal(["edge", "--config", str(config), "--print-alerts"],
                               signal.SIGTERM, cannot_link)
    assert stopped.returncode == 143, stopped.stderr[-3000:]
    assert f"unit unit-1: 1 camera; van {url}\n" in said
    summary = stopped.stderr.strip().splitlines()[-1]
    assert summary.startswith("unit unit-1: 0 frames in "), summary
    assert summary.endswith("0 faces seen (0 rejected by quality gates), 0 alerts sent; "
                            "stopped"), summary
    assert "Traceback" not in stopped.stderr
    assert (config.parent / "outbox.sqlite").is_file()
    assert (config.parent / "audit.log").is_file()


class FullDisk:
    """A line output whose every write fails as on a full disk."""

    def write_line(self, line: str) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")


async def test_alerts_that_cannot_be_printed_end_the_node_with_74(
        tmp_path: Path, van: NodeKeys, clip_watchlist: tuple[Watchlist, Path],
        system: ActorSystem, outbox_of: Any, capsys: pytest.CaptureFixture[str]) -> None:
    unit = load_edge_unit(unit_config(tmp_path, [clip_camera("gate")]))
    async with asyncio.timeout(RUN_S):
        code = await serve_edge(system, unit=unit, outbox=outbox_of(unit), print_alerts=True,
                                dialer=NoVan(), out=FullDisk(),
                                gate=holding(clip_watchlist[0]))
    assert code == 74
    summary = capsys.readouterr().err.strip().splitlines()[-1]
    assert ", 0 printed; cannot write alerts: No space left on device" in summary
