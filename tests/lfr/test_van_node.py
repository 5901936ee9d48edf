"""``lfr van --config van.toml`` as a real process (listening line, a real signed offer, a link,
an alert stored and printed, SIGTERM), its refusals (bad config, port in use, keys of another
van), ``signaling.max_units``, and ``lfr van tls-init``."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from actors.delivery_messages import RECEIVER_ACTOR, Deliver, Outcome, Receipt, Resume, ResumePoint
from actors.unit.event_body import encode_body
from actors.unit.signaling_client import SignalingClientConfig, SignalingFailed, negotiate
from actors.van.enrolment import Enrolment
from actors.van.event_store import EventStore
from actors.van.tls_certificate import (
    certificate_fingerprint,
    format_fingerprint,
    parse_fingerprint,
)
from bench.node_processes import NodeProcess, start_van
from guards.exit_codes import ExitCode
from lfr.cli import main
from lfr.config.van import load_van_config
from lfr.van_node import signaling_config
from runtime import ActorSystem, Codec, LinkConfig, LinkKeys, SystemConfig
from runtime.datachannel import DataOnlyPeerConnection, create_link_channel, open_link
from secure.envelope import EventKind, seal_envelope
from secure.key_files import read_node_keys, read_public_keys, write_node_keys
from secure.node_keys import NodeKeys, NodeRole
from tests.actors.van.delivery_support import alert
from tests.lfr.cli_process import lfr
from tests.lfr.test_node_config import Config, make_van, write_config

WAIT_S = 60.0
"""Every wait on the van process (a loaded machine is slow, never a failure)."""
UNIT_ID = "unit-1"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def van_folder(tmp_path: Path) -> tuple[Path, Config]:
    """A van (keys, TLS, state) listening on a free loopback port, unit-1 enrolled."""
    folder = tmp_path / "van"
    folder.mkdir()
    data = make_van(folder)
    data["signaling"] = {"host": "127.0.0.1", "port": free_port()}
    data["console"] = {"host": "127.0.0.1", "port": free_port()}
    write_node_keys(NodeKeys.generate(NodeRole.UNIT, UNIT_ID), tmp_path / UNIT_ID)
    Enrolment.open(folder / "state").enrol(tmp_path / UNIT_ID / "public.keys")
    return folder, data


@pytest.fixture
def van_toml(van_folder: tuple[Path, Config]) -> Path:
    folder, data = van_folder
    return write_config(folder / "van.toml", data)


@pytest.fixture
def van_process(van_toml: Path) -> Iterator[NodeProcess]:
    van = start_van(van_toml, "--print-alerts", ready_timeout_s=WAIT_S)
    try:
        yield van
    finally:
        van.__exit__()


# -- the node as a process -----------------------------------------------------------------


async def link_and_deliver(van_toml: Path, unit_folder: Path) -> list[object]:
    """Signal the van as unit-1 (no loopback patch: both ends gather the machine's own
    addresses, as real processes do), link with the key from signaling, resume and deliver."""
    config = load_van_config(van_toml)
    van_public = read_public_keys(config.signing_key.parent / "public.keys")
    unit = read_node_keys(unit_folder / "signing.key")
    client = SignalingClientConfig(f"https://127.0.0.1:{config.signaling.port}", van_public,
                                   certificate_fingerprint(config.tls_certificate))
    system = ActorSystem(SystemConfig(name=UNIT_ID, shutdown_drain_s=0.2))
    pc = DataOnlyPeerConnection()
    try:
        async with asyncio.timeout(WAIT_S):
            channel = create_link_channel(pc, 1 << 20)
            key = await negotiate(unit, client, pc)
            await channel.wait_open(WAIT_S)
            link = await open_link(system, channel,
                                   LinkConfig(keys=LinkKeys({"van-1": key}, None, "signaling")),
                                   Codec(), initiator=True)
            run = asyncio.create_task(link.run())
            receiver = link.ref(RECEIVER_ACTOR)
            assert van_public.encryption_key is not None
            envelope = seal_envelope(encode_body(alert(1)), kind=EventKind.ALERT,
                                     unit_id=UNIT_ID, sequence=1, signing_key=unit.signing,
                                     van_key=van_public.encryption_key)
            answers = [await receiver.ask(Resume(1, 0), timeout=WAIT_S),
                       await receiver.ask(Deliver(envelope, 1), timeout=WAIT_S)]
            run.cancel()
            await asyncio.gather(run, return_exceptions=True)
            return answers
    finally:
        await pc.close()
        await system.stop()


async def test_the_van_listens_links_a_unit_stores_its_alert_and_stops_on_sigterm(
        tmp_path: Path, van_toml: Path, van_process: NodeProcess) -> None:
    config = load_van_config(van_toml)
    listening = van_process.wait_for(lambda line: "listening on" in line, WAIT_S)
    pin = format_fingerprint(certificate_fingerprint(config.tls_certificate))
    assert listening == (f"van van-1 listening on https://127.0.0.1:{config.signaling.port} "
                         f"(TLS sha256 {pin})")
    answers = await link_and_deliver(van_toml, tmp_path / UNIT_ID)
    assert answers == [ResumePoint(0), Receipt(1, Outcome.STORED, 1)]
    van_process.wait_for(lambda line: line == f"unit {UNIT_ID} connected", WAIT_S)
    printed = json.loads(van_process.wait_for(lambda line: line.startswith("{"), WAIT_S))
    body = alert(1)
    assert printed == {"unit": UNIT_ID, "seq": 1, "camera": body.camera_id,
                       "subject": body.subject_id, "score": round(body.score, 4),
                       "threshold": body.threshold, "captured_at": body.captured_at}
    van_process.wait_for(lambda line: line.startswith(f"unit {UNIT_ID} dropped: "), WAIT_S)
    assert van_process.stop(timeout_s=WAIT_S) == ExitCode.TERMINATED
    with EventStore.open(config.event_store) as store:
        assert [(e.seq, e.kind) for e in store.by_unit(UNIT_ID)] == [(1, "alert")]
    assert body.crop_jpeg.hex()[:40] not in "\n".join(van_process.stderr)


async def test_the_van_serves_its_console_on_loopback_behind_a_sign_in(
        van_process: NodeProcess, van_toml: Path) -> None:
    config = load_van_config(van_toml)
    url = f"http://127.0.0.1:{config.console.port}"
    van_process.wait_for(lambda line: line.startswith(f"console on {url} "), WAIT_S)
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{url}/", allow_redirects=False) as response:
            assert response.status in (302, 303, 401), response.status  # not signed in
        async with session.get(f"{url}/signin") as response:
            assert response.status == 200
            assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
            assert "<form" in await response.text()


def test_sigint_ends_the_van_with_130(van_process: NodeProcess) -> None:
    van_process.process.send_signal(signal.SIGINT)
    assert van_process.wait(WAIT_S) == ExitCode.INTERRUPTED


async def test_an_offer_from_a_unit_not_enrolled_is_refused(
        tmp_path: Path, van_toml: Path, van_process: NodeProcess) -> None:
    config = load_van_config(van_toml)
    stranger = NodeKeys.generate(NodeRole.UNIT, "unit-9")
    client = SignalingClientConfig(f"https://127.0.0.1:{config.signaling.port}",
                                   read_public_keys(config.signing_key.parent / "public.keys"),
                                   certificate_fingerprint(config.tls_certificate))
    pc = DataOnlyPeerConnection()
    try:
        create_link_channel(pc, 1 << 20)
        with pytest.raises(SignalingFailed, match="403: unknown_unit"):
            await negotiate(stranger, client, pc)
    finally:
        await pc.close()
    van_process.wait_for(lambda line: "unknown_unit" in line, WAIT_S, stream="stderr")


def test_a_port_in_use_is_refused_naming_the_address(van_folder: tuple[Path, Config]) -> None:
    folder, data = van_folder
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        data["signaling"] = {"host": "127.0.0.1", "port": port}
        result = lfr("van", "--config", str(write_config(folder / "van.toml", data)),
                     timeout_s=WAIT_S)
    assert result.returncode == ExitCode.BAD_INPUT, result.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "listening on" not in result.stdout


# -- refused before the node starts -----------------------------------------------------------


@pytest.mark.parametrize(("change", "named"), [
    ({"signaling": {"max_units": 0}}, "signaling.max_units"),
    ({"signaling": {"max_units": 1025}}, "signaling.max_units"),
    ({"signaling": {"max_units": True}}, "signaling.max_units"),
    ({"signaling": {"bogus": 1}}, "signaling.bogus"),
    ({"console": {"max_units": 4}}, "console.max_units"),
])
def test_a_bad_config_is_refused_naming_the_key(
        van_folder: tuple[Path, Config], capsys: pytest.CaptureFixture[str],
        change: Config, named: str) -> None:
    folder, data = van_folder
    data.update(change)
    code, out, err = run_cli(capsys, "van", "--config",
                             str(write_config(folder / "van.toml", data)))
    assert code == ExitCode.BAD_INPUT
    assert named in err
    assert out == ""


def test_the_van_gives_its_ice_servers_to_signaling(van_folder: tuple[Path, Config]) -> None:
    folder, data = van_folder
    assert signaling_config(load_van_config(write_config(folder / "van.toml", data))) \
        .ice_servers == ()
    data["ice_servers"] = [{"urls": ["turn:turn.example.org:3478"], "username": "van",
                            "credential": "s3cret"}]
    (server,) = signaling_config(load_van_config(write_config(folder / "van.toml", data))) \
        .ice_servers
    assert (server.urls, server.username, server.credential) == (
        ["turn:turn.example.org:3478"], "van", "s3cret")


def test_max_units_loads_with_its_default(van_folder: tuple[Path, Config]) -> None:
    folder, data = van_folder
    assert load_van_config(write_config(folder / "van.toml", data)).max_units == 64
    data["signaling"] = {"max_units": 3}
    assert load_van_config(write_config(folder / "van.toml", data)).max_units == 3


def test_the_keys_of_another_van_are_refused(
        tmp_path: Path, van_folder: tuple[Path, Config],
        capsys: pytest.CaptureFixture[str]) -> None:
    folder, data = van_folder
    write_node_keys(NodeKeys.generate(NodeRole.VAN, "van-2"), tmp_path / "van-2")
    data["keys"] = {"signing": str(tmp_path / "van-2" / "signing.key"),
                    "encryption": str(tmp_path / "van-2" / "encryption.key")}
    code, _, err = run_cli(capsys, "van", "--config",
                           str(write_config(folder / "van.toml", data)))
    assert code == ExitCode.BAD_INPUT
    assert "holds the keys of van van-2" in err


def test_a_unit_key_file_is_refused(tmp_path: Path, van_folder: tuple[Path, Config],
                                    capsys: pytest.CaptureFixture[str]) -> None:
    folder, data = van_folder
    data["keys"] = {"signing": str(tmp_path / UNIT_ID / "signing.key"),
                    "encryption": "keys/encryption.key"}
    code, _, err = run_cli(capsys, "van", "--config",
                           str(write_config(folder / "van.toml", data)))
    assert code == ExitCode.BAD_INPUT
    assert "signing.key" in err


def test_lfr_van_without_config_or_action_is_refused(
        capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "van")
    assert code == ExitCode.BAD_INPUT
    assert "--config van.toml" in err


# -- lfr van tls-init ----------------------------------------------------------------------


def test_tls_init_writes_the_certificate_and_prints_the_unit_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "tls"
    code, printed, _ = run_cli(capsys, "van", "tls-init", "--id", "van-1", "--out", str(out))
    assert code == ExitCode.OK
    assert stat.S_IMODE((out / "tls.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((out / "tls.crt").stat().st_mode) == 0o644
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    pin = format_fingerprint(certificate_fingerprint(out / "tls.crt"))
    assert f"TLS sha256 {pin}" in printed
    line = re.search(r'^tls_fingerprint = "([0-9A-F:]+)"$', printed, re.MULTILINE)
    assert line is not None
    assert parse_fingerprint(line.group(1)) == certificate_fingerprint(out / "tls.crt")
    assert "PRIVATE KEY" not in printed


def test_tls_init_never_overwrites(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "tls"
    assert run_cli(capsys, "van", "tls-init", "--id", "van-1", "--out", str(out))[0] == 0
    key = (out / "tls.key").read_bytes()
    code, printed, err = run_cli(capsys, "van", "tls-init", "--id", "van-1", "--out", str(out))
    assert code == ExitCode.BAD_INPUT
    assert "already exists" in err
    assert printed == ""
    assert (out / "tls.key").read_bytes() == key


@pytest.mark.parametrize(("van_id", "out", "problem"), [
    ("*", "tls", "--id"),
    ("van-1", "missing/tls", "parent folder does not exist"),
    ("van-1", "file", "not a folder"),
])
def test_tls_init_refuses_a_bad_id_or_folder(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], van_id: str, out: str,
        problem: str) -> None:
    (tmp_path / "file").write_text("x")
    code, _, err = run_cli(capsys, "van", "tls-init", "--id", van_id, "--out",
                           str(tmp_path / out))
    assert code == ExitCode.BAD_INPUT
    assert problem in err
    assert not (tmp_path / "tls").exists()
