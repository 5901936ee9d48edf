"""The privacy invariant across delivery: a face crop exists in the clear only in memory.

``lfr -v van`` starts, a deployment starts and the clip's watchlist is pushed; ``lfr -v edge``
gets it and the van stops at once, so the unit's one alert on the shared clip (Lin-Manuel
Miranda, played at its frame rate) waits sealed in its outbox with no van to reach; the unit's
folder is read while it waits. Then the van starts again, the unit delivers and ends. The crop
is known only sealed, so the test takes the van's copy (opened from its store with the van's
key) and checks:

- no file under the unit's folder, while the alert waits or after, holds any 32-byte piece of
  the crop: a crop stored in the clear would lie in runs of at least 489 bytes even in SQLite
  overflow pages, so every such run holds one of the pieces taken at every 32nd byte. That the
  search finds what is there is shown on the sealed envelope itself, which the waiting outbox
  holds (most of its pieces are found);
- the run made no file under the unit's folder but its outbox (``state/outbox.sqlite`` and its
  ``-wal``/``-shm``) and its audit trail (``state/audit.log``), changed none that was there,
  and wrote nothing in a fresh HOME, TMPDIR and working directory;
- neither process wrote the crop to stdout or stderr (at debug level), as hex, base64 or raw
  bytes;
- what each side prints instead: the unit's ``--print-alerts`` line carries the crop's size and
  sha256, the van's its seven metadata fields, and the van logs one line per stored alert
  naming unit, sequence number, camera, subject, score and threshold.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
from pathlib import Path

import pytest

from actors.unit.event_body import AlertBody, decode_body
from actors.unit.watchlist import Watchlist
from actors.van.enrolment import Enrolment
from actors.van.event_store import EventStore
from bench.node_processes import MAX_LINES, VAN_READY_TEXT, NodeProcess
from guards.exit_codes import ExitCode
from lfr.local_deployment import CameraPlan, LocalDeployment, create_local_deployment
from secure.envelope import open_envelope
from secure.key_files import read_node_keys
from tests.lfr.conftest import CLIP
from tests.lfr.watchlist_support import run_ok, sign

EDGE_TIMEOUT_S = 300.0
"""For the unit to scan the clip, reach the van (its redial waits up to 30 s) and end."""
ALERT_TIMEOUT_S = 240.0
"""For the unit's alert to be sealed into its outbox while no van answers."""
PIECE_BYTES = 32
"""Length of the pieces of the crop searched for, taken at every ``PIECE_BYTES``-th byte."""
OUTBOX_FILES = {"outbox.sqlite", "outbox.sqlite-wal", "outbox.sqlite-shm"}
UNIT_FILES = {*OUTBOX_FILES, "audit.log"}
"""What a unit writes in its state folder: the outbox (sealed envelopes) and its audit trail."""


@pytest.fixture
def paced_deployment(tmp_path: Path, clip_watchlist: tuple[Watchlist, Path]) -> LocalDeployment:
    """A van and unit-1, whose camera plays the shared clip at its frame rate."""
    return create_local_deployment(tmp_path / "deployment", units=1,
                                   cameras=[CameraPlan("door", CLIP, paced=True)],
                                   watchlist=clip_watchlist[1])


def _files(folder: Path) -> dict[Path, bytes]:
    """Every file under ``folder`` and its bytes (read as they are, also mid-write)."""
    return {path: path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def _pieces(data: bytes) -> list[bytes]:
    return [data[i:i + PIECE_BYTES] for i in range(0, len(data) - PIECE_BYTES + 1, PIECE_BYTES)]


def _verbose_van(config: Path) -> NodeProcess:
    """``lfr -v van --config CONFIG --print-alerts``, once it listens."""
    van = NodeProcess("van", [sys.executable, "-m", "lfr", "-v", "van", "--config", str(config),
                              "--print-alerts"])
    try:
        van.wait_for(lambda line: VAN_READY_TEXT in line, 60)
    except BaseException:
        van.__exit__()
        raise
    return van


def _stored(clip_deployment: LocalDeployment) -> tuple[AlertBody, bytes, int]:
    """The van's one stored alert: its body (opened with the van's key), its envelope as
    stored (sealed), its sequence number."""
    van = read_node_keys(clip_deployment.van_signing_key, clip_deployment.van_encryption_key)
    assert van.encryption is not None
    enrolment = Enrolment.open(clip_deployment.root / "van" / "state")
    with EventStore.open(clip_deployment.event_store) as store:
        alerts = [event for event in store.by_unit("unit-1") if event.kind == "alert"]
    assert len(alerts) == 1, alerts
    (event,) = alerts
    body = decode_body(open_envelope(event.sealed, signers=enrolment.lookup,
                                     van_key=van.encryption).body)
    assert isinstance(body, AlertBody)
    return body, event.sealed, event.seq


def _deploy_watchlist(made: LocalDeployment) -> None:
    """Start a deployment on the running van and push the clip's watchlist, signed."""
    assert made.watchlist is not None
    run_ok("van", "deployment", "start", "--id", "clip", "--threshold", "0.6", "--config",
           str(made.van_config))
    signed = sign(made, made.watchlist, made.root / "clip.signed", version=1,
                  deployment="clip")
    run_ok("watchlist", "push", str(signed), "--config", str(made.van_config))


def _texts_of(crop: bytes) -> list[str]:
    """How the crop would look in a line of text: hex (either case), base64 (standard and
    URL-safe; pieces at multiples of 3 bytes encode as in the whole), Python's escapes."""
    texts: list[str] = []
    for piece in _pieces(crop):
        texts += [piece.hex(), piece.hex().upper()]
    for i in range(0, len(crop) - 48 + 1, 48):
        texts += [base64.b64encode(crop[i:i + 48]).decode(),
                  base64.urlsafe_b64encode(crop[i:i + 48]).decode()]
    texts.append(repr(crop[:4])[2:-1])  # \xff\xd8\xff\xe0: the JPEG's start, as bytes print
    return texts


def test_the_crop_is_in_the_clear_only_in_memory_and_only_metadata_is_printed(
        paced_deployment: LocalDeployment, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    clip_deployment = paced_deployment
    unit_dir = clip_deployment.unit_configs[0].parent
    home, temp, work = tmp_path / "home", tmp_path / "tmp", tmp_path / "work"
    for folder in (home, temp, work):
        folder.mkdir()
    monkeypatch.setenv("HOME", str(home))  # NodeProcess passes os.environ on
    monkeypatch.setenv("TMPDIR", str(temp))
    before = _files(unit_dir)

    with _verbose_van(clip_deployment.van_config) as first_van:
        _deploy_watchlist(clip_deployment)
        edge = NodeProcess("unit-1", [sys.executable, "-m", "lfr", "-v", "edge", "--config",
                                      str(clip_deployment.unit_configs[0]), "--print-alerts"],
                           cwd=work)
        try:
            edge.wait_for(lambda line: "holding deployment clip version 1" in line,
                          ALERT_TIMEOUT_S, stream="stderr")
        except BaseException:
            edge.__exit__()
            raise
        assert first_van.stop() == ExitCode.TERMINATED  # before the clip reaches the alert
    with edge:
        edge.wait_for(lambda line: line.startswith("{"), ALERT_TIMEOUT_S)  # sealed, no van
        waiting = _files(unit_dir)
        with _verbose_van(clip_deployment.van_config) as van:
            code = edge.wait(EDGE_TIMEOUT_S)
            assert code == ExitCode.OK, edge.tail()
            van.wait_for(lambda line: line.startswith("{"), 30)
            assert van.stop() == ExitCode.TERMINATED
    after = _files(unit_dir)
    body, sealed, seq = _stored(clip_deployment)
    crop = body.crop_jpeg
    assert crop.startswith(b"\xff\xd8\xff")
    assert len(crop) > 1000

    # The search finds what is there: the waiting outbox holds the sealed envelope.
    outbox_bytes = b"".join(data for path, data in waiting.items() if path.name in OUTBOX_FILES)
    found = sum(piece in outbox_bytes for piece in _pieces(sealed))
    assert found >= len(_pieces(sealed)) // 2, (found, len(_pieces(sealed)))

    # No piece of the crop in any file of the unit's, while the alert waited or after.
    for snapshot in (waiting, after):
        for path, data in snapshot.items():
            leaked = [i for i, piece in enumerate(_pieces(crop)) if piece in data]
            assert not leaked, f"{path} holds the crop's bytes at pieces {leaked[:5]}"

    # The run wrote nothing but the outbox into the unit's folder, and nothing elsewhere.
    assert {path: after[path] for path in before} == before, "a file of the unit's changed"
    made = {path.relative_to(unit_dir) for path in set(after) | set(waiting)} - {
        path.relative_to(unit_dir) for path in before}
    assert Path("state/outbox.sqlite") in made
    assert all(path.parent == Path("state") and path.name in UNIT_FILES for path in made), made
    for folder in (home, temp, work):
        assert not any(folder.iterdir()), f"{folder}: {list(folder.iterdir())}"

    # Neither process printed or logged the crop, however encoded.
    assert all(len(lines) < MAX_LINES for lines in (edge.stdout, edge.stderr, van.stdout,
                                                     van.stderr)), "output lines were lost"
    texts = _texts_of(crop)
    for name, lines in (("unit stdout", edge.stdout), ("unit stderr", edge.stderr),
                        ("van stdout", van.stdout), ("van stderr", van.stderr)):
        output = "\n".join(lines)
        assert "\ufffd" not in output, f"{name}: bytes that are not text"
        assert not [text for text in texts if text in output], f"{name} holds the crop"

    # What each side prints instead.
    (unit_line,) = [json.loads(line) for line in edge.stdout if line.startswith("{")]
    assert unit_line["event_id"] == body.event_id
    assert unit_line["crop_jpeg_bytes"] == len(crop)
    assert unit_line["crop_jpeg_sha256"] == hashlib.sha256(crop).hexdigest()
    assert not [key for key in unit_line if key.startswith("crop") and key not in (
        "crop_jpeg_bytes", "crop_jpeg_sha256")]
    (van_line,) = [json.loads(line) for line in van.stdout if line.startswith("{")]
    assert set(van_line) == {"unit", "seq", "camera", "subject", "score", "threshold",
                             "captured_at"}
    assert (van_line["unit"], van_line["seq"], van_line["subject"]) == (
        "unit-1", seq, "lin_manuel_miranda")
    logged = [line for line in van.stderr if ": alert seq " in line]
    assert len(logged) == 1, logged
    assert logged[0].endswith(
        f"unit unit-1: alert seq {seq}: camera door, subject lin_manuel_miranda, "
        f"score {body.score:.3f} (threshold {body.threshold:.3f})"), logged
