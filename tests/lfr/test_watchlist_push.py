"""Watchlists as a supervisor handles them, with every node a real process on loopback: ``lfr van``,
three ``lfr edge`` units, and the commands ``lfr van deployment start|end``, ``lfr watchlist
sign|push|purge|status`` and ``lfr audit verify``. Real keys, signatures, HPKE, WebRTC.

The units run a live camera that never delivers a frame (an RTSP address where nothing listens),
so they live until stopped and their detectors have nothing to do; unit-3 was provisioned with
another authority's public keys (a misconfigured unit: it must refuse the van's list, say why,
and the van must show that).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from actors.unit.watchlist import Watchlist
from actors.van.deployment_store import DeploymentStore
from bench.node_processes import NodeProcess, start_van
from guards.exit_codes import ExitCode
from lfr.local_deployment import CameraPlan, LocalDeployment, create_local_deployment
from secure.key_files import read_node_keys, write_node_keys
from secure.node_keys import NodeKeys, NodeRole
from tests.lfr.cli_process import lfr
from tests.lfr.conftest import REPO_ROOT
from tests.lfr.watchlist_support import (
    DEAD_CAMERA,
    WAIT_S,
    edge,
    made_up_watchlist,
    run_ok,
    sign,
    status,
    until,
)


@pytest.fixture
def deployment(tmp_path: Path) -> LocalDeployment:
    made = create_local_deployment(tmp_path / "deployment", units=3,
                                   cameras=[CameraPlan("door", DEAD_CAMERA)])
    # unit-3 trusts another authority: every list the van pushes is refused there.
    other = NodeKeys.generate(NodeRole.AUTHORITY, "authority")
    paths = write_node_keys(other, tmp_path / "other-authority")
    target = made.root / "unit-3" / "authority.public.keys"
    target.unlink()
    target.write_bytes(paths.public.read_bytes())
    return made


@pytest.fixture
def unique_watchlist(tmp_path: Path) -> tuple[Watchlist, Path]:
    path = tmp_path / "lists" / "op-1.lfrw"
    return made_up_watchlist(path), path


def _photo_folders(root: Path) -> Path:
    """Reference photos of subjects a-c (the demo's photos stand in), and one of somebody who
    is not on the list."""
    demo = sorted((REPO_ROOT / "demo" / "watchlist_photos").glob("*/*.jp*g"))
    for name, photo in zip(("subject-a", "subject-b", "subject-c", "not-listed"), demo,
                           strict=False):
        (root / name).mkdir(parents=True)
        shutil.copyfile(photo, root / name / photo.name)
    return root


def _traces(watchlist: Watchlist, signed: Path) -> list[bytes]:
    """Byte strings that would betray the watchlist on a disk: each embedding row (both
    models) and a slice of the signed file's payload."""
    rows = [row.tobytes() for row in watchlist.embeddings]
    rows += [row.tobytes() for row in watchlist.second_embeddings]
    data = signed.read_bytes()
    return [*rows, data[-4096:-2048]]


def _files_under(root: Path, skip: tuple[Path, ...], changed_since: float) -> Iterator[Path]:
    """Regular files under ``root`` (outside the folders in ``skip``) whose status changed at
    or after ``changed_since``: a file written later has a later ctime, and no process can set
    a ctime back (``os.utime`` sets only atime and mtime), so the files left out cannot hold
    bytes that did not exist before ``changed_since``. Walked with ``os.scandir``, whose entries
    know their type without a system call (a tenth of ``os.walk``'s time on a full /tmp)."""
    skipped = tuple(str(path) for path in skip)
    folders = [str(root)]
    while folders:
        try:
            entries = os.scandir(folders.pop())
        except OSError:
            continue
        with entries:
            for entry in entries:
                try:
                    if entry.is_dir(follow_symlinks=False):
                        if not any(entry.path == s or entry.path.startswith(s + os.sep)
                                   for s in skipped):
                            folders.append(entry.path)
                    elif entry.is_file(follow_symlinks=False):
                        facts = entry.stat(follow_symlinks=False)
                        if facts.st_size < 256 << 20 and facts.st_ctime >= changed_since:
                            yield Path(entry.path)
                except OSError:
                    continue


def _holders(roots: list[Path], traces: list[bytes], skip: tuple[Path, ...],
             changed_since: float) -> list[str]:
    """The files under ``roots`` that hold one of ``traces``, among those changed at or after
    ``changed_since`` (the traces are random bytes made after it: no older file holds them)."""
    found = []
    for root in roots:
        for path in _files_under(root, skip, changed_since):
            try:
                data = path.read_bytes()
            except OSError:
                continue
            if any(trace in data for trace in traces):
                found.append(str(path))
    return found


def _stop_together(*units: NodeProcess) -> list[int]:
    """SIGTERM to every unit at once, then each one's exit code (each takes a second to stop:
    one after the other was that many seconds more). A unit still running after 30 s fails
    the test (``with`` kills it)."""
    for unit in units:
        unit.process.send_signal(signal.SIGTERM)
    return [unit.process.wait(timeout=30) for unit in units]


def _rest_of_the_deployment(made: LocalDeployment, watchlist_file: Path, tmp_path: Path) -> None:
    """Expiry, then the deployment's end, with unit-1 and unit-2 running."""
    config = str(made.van_config)
    # A version 2 that expires in a few seconds: units drop it by themselves.
    soon = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 12))
    signed2 = sign(made, watchlist_file, tmp_path / "lists" / "op-1.v2.signed", version=2,
                    not_after=soon)
    run_ok("watchlist", "push", str(signed2), "--units", "unit-2", "--config", config)
    until(made, lambda s: s["unit-2"]["version"] == 2
           and s["unit-2"]["state"] == "held", "unit-2 holding version 2")
    seen = until(made, lambda s: s["unit-2"]["state"] == "expired",
                    "unit-2 dropping the expired version 2")
    assert seen["unit-1"]["state"] == "purged"  # a push to unit-2 only

    # The deployment ends: every unit is told to purge; the van keeps no copy.
    run_ok("watchlist", "push", str(sign(made, watchlist_file,
                                         tmp_path / "lists" / "op-1.v3.signed", version=3)),
         "--config", config)
    until(made, lambda s: s["unit-1"]["state"] == s["unit-2"]["state"] == "held",
           "units holding version 3")
    out = run_ok("van", "deployment", "end", "--config", config)
    assert "ended" in out
    until(made, lambda s: s["unit-1"]["state"] == s["unit-2"]["state"] == "purged",
           "units purged at the deployment's end")
    run_ok("van", "revoke-unit", "unit-3", "--config", config)  # recorded by the running van
    until(made, lambda s: not s["unit-3"]["linked"], "unit-3's link closed on revocation")


def test_a_supervisor_deploys_a_watchlist_units_hold_it_in_memory_and_every_copy_dies(
        deployment: LocalDeployment, unique_watchlist: tuple[Watchlist, Path],
        tmp_path: Path) -> None:
    made, config = deployment, str(deployment.van_config)
    watchlist, watchlist_file = unique_watchlist
    # A second before the list's file was written (ctime is kept at a coarser tick than
    # time.time()): its random embeddings existed nowhere before.
    made_at = watchlist_file.stat().st_ctime - 1.0
    signed = sign(made, watchlist_file, tmp_path / "lists" / "op-1.v1.signed", version=1)
    with start_van(made.van_config) as van, edge(made, 0) as unit1, \
            edge(made, 1) as unit2, edge(made, 2) as unit3:
        # No deployment: a push is refused with the reason, nothing is stored.
        refused = lfr("watchlist", "push", str(signed), "--units", "all", "--config", config)
        assert refused.returncode == ExitCode.BAD_INPUT
        assert "no deployment is active" in refused.stderr
        run_ok("van", "deployment", "start", "--id", "op-1", "--threshold", "0.6",
             "--config", config)
        # A tampered file and a unit that is not enrolled are refused by the van at once.
        tampered = tmp_path / "lists" / "tampered.signed"
        data = bytearray(signed.read_bytes())
        data[-100] ^= 0x01
        tampered.write_bytes(bytes(data))
        refused = lfr("watchlist", "push", str(tampered), "--config", config)
        assert refused.returncode == ExitCode.BAD_INPUT
        assert "payload" in refused.stderr, refused.stderr
        refused = lfr("watchlist", "push", str(signed), "--units", "unit-9", "--config", config)
        assert refused.returncode == ExitCode.BAD_INPUT
        assert "not enrolled at this van: unit-9" in refused.stderr

        photos = _photo_folders(tmp_path / "photos")
        pushed = lfr("watchlist", "push", str(signed), "--units", "all", "--photos",
                     str(photos), "--config", config)
        assert pushed.returncode == 0, pushed.stderr[-2000:]
        assert "pushed watchlist version 1 of deployment op-1: 4 subjects" in pushed.stdout
        assert "stored 3 reference photos at the van" in pushed.stdout
        assert "not-listed: not on the watchlist; no photo kept" in pushed.stderr
        assert "subject-d: no reference photo" in pushed.stderr
        seen = until(made, lambda s: s["unit-1"]["state"] == s["unit-2"]["state"] == "held"
                        and s["unit-3"]["refused_version"] == 1, "units holding version 1")
        for name in ("unit-1", "unit-2"):
            assert (seen[name]["version"], seen[name]["subjects"]) == (1, 4)
        assert seen["unit-3"]["state"] == "none"
        assert seen["unit-3"]["refused_reason"].startswith("other_authority")
        van.wait_for(lambda line: "unit unit-3 refused watchlist version 1: other_authority"
                     in line, 10)

        # A rollback is refused at the van: version 1 again.
        refused = lfr("watchlist", "push", str(signed), "--config", config)
        assert refused.returncode == ExitCode.BAD_INPUT
        assert "rollback" in refused.stderr or "not newer" in refused.stderr, refused.stderr

        # Nothing of the list on a unit's disk (state folder, keys) nor in /tmp outside the
        # test's own copies (the authority's files and the lists it signed).
        # Only files changed since the list was made are read (its embeddings are random
        # bytes made then): reading all of /tmp took a minute for the same answer.
        traces = _traces(watchlist, signed)
        own = (tmp_path / "lists" / "op-1.v1.signed", tmp_path / "tampered.signed",
               watchlist_file.parent, made.root / "van")
        assert _holders([made.root / "unit-1", made.root / "unit-2", Path("/tmp")], traces,
                        own, made_at) == []

        # unit-1 restarts: it scans nothing until the van gives the list back.
        assert unit1.stop() == ExitCode.TERMINATED
        with edge(made, 0) as again:
            until(made, lambda s: s["unit-1"]["state"] == "held"
                   and s["unit-1"]["last_poll_age_s"] is not None
                   and s["unit-1"]["last_poll_age_s"] < 2, "unit-1 holding it again")
            again.wait_for(lambda line: "holding deployment op-1 version 1: 4 subjects" in line,
                           WAIT_S, stream="stderr")
            assert _holders([made.root / "unit-1"], traces, (), made_at) == []

            # Purge unit-1 only: it drops the list and says so; unit-2 keeps it.
            run_ok("watchlist", "purge", "--units", "unit-1", "--config", config)
            seen = until(made, lambda s: s["unit-1"]["state"] == "purged",
                            "unit-1 purged")
            assert seen["unit-1"]["subjects"] == 0
            assert seen["unit-2"]["state"] == "held"
            again.wait_for(lambda line: "dropped deployment op-1 version 1 (4 subjects, "
                           "overwritten)" in line, WAIT_S, stream="stderr")

            # The van restarts: it replays the pushes and the purge, so nobody is told
            # anything new: unit-1 stays without a list, unit-2 keeps version 1.
            assert van.stop() == ExitCode.TERMINATED
            with start_van(made.van_config) as restarted:
                seen = until(made, lambda s: s["unit-1"]["linked"] and s["unit-2"]["linked"]
                                and s["unit-1"]["last_poll_age_s"] is not None
                                and s["unit-2"]["last_poll_age_s"] is not None,
                                "units back on the restarted van")
                assert (seen["unit-1"]["state"], seen["unit-1"]["wanted_version"]) == (
                    "purged", None)
                assert (seen["unit-2"]["state"], seen["unit-2"]["version"],
                        seen["unit-2"]["wanted_version"]) == ("held", 1, 1)
                time.sleep(2)  # two more polls: nothing changes
                assert status(made)["unit-1"]["state"] == "purged"
                _rest_of_the_deployment(made, watchlist_file, tmp_path)
                assert _stop_together(again, unit2, unit3) == [ExitCode.TERMINATED] * 3
                assert restarted.stop() == ExitCode.TERMINATED

    # The van's store holds no sealed list any more (secure_delete, WAL truncated), only facts.
    van_keys = read_node_keys(made.van_signing_key, made.van_encryption_key)
    assert van_keys.encryption is not None
    store_file = made.root / "van" / "state" / "deployments.sqlite"
    with DeploymentStore.open(store_file, van_keys.encryption) as store:
        assert store.current_watchlist() is None
        assert [facts.stored for facts in store.watchlist_facts("op-1")] == [False] * 3
        assert store.reference_photo("op-1", "subject-a") is None  # died with the deployment
    # Every audit trail verifies and holds no embedding.
    for trail in [made.root / "van" / "state" / "audit.log",
                  *(made.root / unit / "state" / "audit.log" for unit in made.unit_ids)]:
        checked = lfr("audit", "verify", str(trail))
        assert checked.returncode == 0, checked.stdout + checked.stderr
        text = trail.read_text()
        for row in watchlist.embeddings:
            assert row.tobytes().hex()[:32] not in text
    van_trail = (made.root / "van" / "state" / "audit.log").read_text()
    records = [json.loads(line) for line in van_trail.splitlines()]
    enrolled = {r["fields"]["unit"] for r in records if r["kind"] == "unit_enrolled"}
    assert enrolled == {"unit-1", "unit-2", "unit-3"}
    assert [r["fields"]["unit"] for r in records if r["kind"] == "unit_revoked"] == ["unit-3"]
    refused_at_van = [r["fields"] for r in records if r["kind"] == "watchlist_refused"
                      and r["fields"].get("where") == "van"]
    assert {f["reason"] for f in refused_at_van} >= {"payload_corrupt", "rollback"}
    ended = next(r["fields"] for r in records if r["kind"] == "deployment_ended")
    assert ended["units_purged"] == 2
    for kind in ("deployment_started", "watchlist_pushed", "watchlist_accepted",
                 "watchlist_refused", "watchlist_purged", "watchlist_expired",
                 "deployment_ended"):
        assert f'"kind":"{kind}"' in van_trail, kind
    unit_trail = (made.root / "unit-2" / "state" / "audit.log").read_text()
    for kind in ("watchlist_accepted", "watchlist_expired", "watchlist_purged"):
        assert f'"kind":"{kind}"' in unit_trail, kind
    assert '"kind":"watchlist_refused"' in (made.root / "unit-3" / "state"
                                            / "audit.log").read_text()

    # The van witnessed unit-2's trail through its signed health reports: a copy cut short
    # before that head no longer verifies against it.
    witness = json.loads(run_ok("van", "audit-witness", "unit-2", "--config", config, "--json"))
    head = witness["audit_head"]
    trail = made.root / "unit-2" / "state" / "audit.log"
    checked = lfr("audit", "verify", str(trail), "--expect-head", head)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    lines = trail.read_bytes().splitlines(keepends=True)
    at = next(i for i, line in enumerate(lines) if json.loads(line)["hash"] == head)
    cut = tmp_path / "unit-2.cut.log"
    cut.write_bytes(b"".join(lines[:at]))
    cut.chmod(0o600)
    checked = lfr("audit", "verify", str(cut), "--expect-head", head)
    assert checked.returncode == ExitCode.VERIFICATION_FAILED, checked.stdout + checked.stderr
