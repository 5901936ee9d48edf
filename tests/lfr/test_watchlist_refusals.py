"""Every kind of bad signed watchlist a supervisor could push, with real processes (``lfr van``,
one ``lfr edge``, the commands): each is refused by ``lfr watchlist push`` with exit 2 and a
reason naming what is wrong, recorded in the van's audit trail, and the unit keeps the list it
holds. (The unit checks the same things again with the same code when it fetches a list:
``actors.unit.watchlist_keeper``, whose refusals the in-process tests cover one by one; a unit
provisioned with another authority refuses what its van pushes: test_watchlist_push.)
"""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path

import pytest

from actors.signed_watchlist import MAX_SIGNED_WATCHLIST_BYTES, sign_watchlist
from actors.unit.watchlist import load_watchlist
from bench.node_processes import start_van
from guards.exit_codes import ExitCode
from lfr.local_deployment import CameraPlan, LocalDeployment, create_local_deployment
from secure.node_keys import NodeKeys, NodeRole
from tests.lfr.cli_process import lfr
from tests.lfr.watchlist_support import (
    DEAD_CAMERA,
    edge,
    made_up_watchlist,
    run_ok,
    sign,
    status,
    until,
)


@pytest.fixture
def deployment(tmp_path: Path) -> LocalDeployment:
    return create_local_deployment(tmp_path / "deployment", units=1,
                                   cameras=[CameraPlan("door", DEAD_CAMERA)])


def _flip(data: bytes, at: int) -> bytes:
    changed = bytearray(data)
    changed[at] ^= 0x01
    return bytes(changed)


def _signature_start(data: bytes) -> int:
    """Where the hybrid signature starts: magic, version, manifest length, manifest, its
    length (docs/WATCHLIST_SIGNING.md)."""
    (manifest_length,) = struct.unpack(">I", data[7:11])
    return 11 + int(manifest_length) + 2


def test_every_bad_watchlist_is_refused_with_its_reason_audited_and_the_unit_keeps_its_list(
        deployment: LocalDeployment, tmp_path: Path) -> None:
    made, config = deployment, str(deployment.van_config)
    lists = tmp_path / "lists"
    made_up_watchlist(lists / "op-1.lfrw")
    good = sign(made, lists / "op-1.lfrw", lists / "v2.signed", version=2)
    data = good.read_bytes()
    signature = _signature_start(data)
    bad: dict[str, tuple[bytes, str]] = {
        "the Ed25519 half": (_flip(data, signature + 10), "signature_ed25519"),
        "the ML-DSA-65 half": (_flip(data, signature + 64 + 100), "signature_ml_dsa"),
        "the payload": (_flip(data, len(data) - 50), "payload_corrupt"),
        "a cut file": (data[:-1000], "payload_corrupt"),
    }
    other = NodeKeys.generate(NodeRole.AUTHORITY, "other-authority")
    listed = load_watchlist(lists / "op-1.lfrw")
    bad["another authority"] = (sign_watchlist(listed, authority=other, deployment_id="op-1",
                                               version=3, not_after=time.time() + 3600),
                                "other_authority")
    made_up_watchlist(lists / "other-model.lfrw", model_id="another-embedder-128")
    bad["another model"] = (sign(made, lists / "other-model.lfrw", lists / "model.signed",
                                 version=3).read_bytes(), "other_model")
    bad["not yet valid"] = (sign(made, lists / "op-1.lfrw", lists / "later.signed", version=3,
                                 extra=("--not-before", "2099-01-01T00:00:00Z"),
                                 not_after="2099-06-01T00:00:00Z").read_bytes(),
                            "not_yet_valid")
    bad["another deployment"] = (sign(made, lists / "op-1.lfrw", lists / "op-9.signed",
                                      version=3, deployment="op-9").read_bytes(),
                                 "other_deployment")
    soon = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3))
    expiring = sign(made, lists / "op-1.lfrw", lists / "soon.signed", version=3,
                    not_after=soon).read_bytes()
    bad["a lower version"] = (sign(made, lists / "op-1.lfrw", lists / "v1.signed",
                                   version=1).read_bytes(), "rollback")

    with start_van(made.van_config), edge(made, 0) as unit:
        run_ok("van", "deployment", "start", "--id", "op-1", "--threshold", "0.6",
               "--config", config)
        run_ok("watchlist", "push", str(good), "--config", config)
        until(made, lambda s: s["unit-1"]["state"] == "held" and s["unit-1"]["version"] == 2,
              "unit-1 holding version 2")
        time.sleep(4.0)  # the expiring list is past its not-after now
        bad["an expired list"] = (expiring, "expired")
        for what, (content, reason) in bad.items():
            path = lists / "bad.signed"
            path.write_bytes(content)
            refused = lfr("watchlist", "push", str(path), "--config", config)
            assert refused.returncode == ExitCode.BAD_INPUT, (what, refused.stderr)
            assert f"the van refused: watchlist refused ({reason}): " in refused.stderr, (
                what, refused.stderr)
            seen = status(made)["unit-1"]
            assert (seen["state"], seen["version"]) == ("held", 2), what
        # Too big to be a signed watchlist: refused before anything is sent.
        huge = lists / "huge.signed"
        with huge.open("wb") as out:
            out.truncate(MAX_SIGNED_WATCHLIST_BYTES + 1)
        refused = lfr("watchlist", "push", str(huge), "--config", config)
        assert refused.returncode == ExitCode.BAD_INPUT
        assert "signed watchlist" in refused.stderr
        assert "bytes" in refused.stderr
        time.sleep(2)  # two more polls: the unit still holds version 2
        seen = status(made)["unit-1"]
        assert (seen["state"], seen["version"], seen["refused_version"]) == ("held", 2, None)
        assert unit.stop() == ExitCode.TERMINATED
    trail = made.root / "van" / "state" / "audit.log"
    refusals = [record["fields"]["reason"] for record in map(json.loads,
                                                             trail.read_text().splitlines())
                if record["kind"] == "watchlist_refused"]
    assert refusals == [reason for _content, reason in bad.values()]
