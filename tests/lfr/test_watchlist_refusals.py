"""Every kind of bad signed watchlist a supervisor could push, with real processes (``lfr van``,
one ``lfr edge``, the commands): each is refused by ``lfr watchlist push`` with exit 2 and a
reason naming what is wrong, recorded in the van's audit trail, and the unit keeps the list it
holds. (The unit checks the same things again with the same code when it fetches a list:
``actors.unit.watchlist_keeper``, whose refusals the in-process tests cover one by one; a unit
provisioned with another authority refuses what its van pushes: test_watchlist_push.)
"""

from __future__ import annotations

import calendar
import json
import struct
import time
from pathlib import Path

import pytest

from actors.signed_watchlist import MAX_SIGNED_WATCHLIST_BYTES, sign_watchlist
from actors.unit.watchlist import Watchlist, load_watchlist
from bench.node_processes import start_van
from guards.exit_codes import ExitCode
from lfr.local_deployment import CameraPlan, LocalDeployment, create_local_deployment
from secure.key_files import read_node_keys
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
    # The other bad lists are signed here, by the deployment's authority unless said
    # otherwise (lfr watchlist sign has its own tests; a command each cost 0.7 s).
    authority = read_node_keys(made.authority_signing_key)
    listed = load_watchlist(lists / "op-1.lfrw")
    year_2099 = calendar.timegm((2099, 1, 1, 0, 0, 0))

    def signed(watchlist: Watchlist = listed, *, version: int = 3,
               signer: NodeKeys = authority, deployment: str = "op-1",
               not_after: float = year_2099, not_before: float | None = None) -> bytes:
        return sign_watchlist(watchlist, authority=signer, deployment_id=deployment,
                              version=version, not_after=not_after, not_before=not_before)

    other = NodeKeys.generate(NodeRole.AUTHORITY, "other-authority")
    bad["another authority"] = (signed(signer=other), "other_authority")
    other_model = made_up_watchlist(lists / "other-model.lfrw", model_id="another-embedder-128")
    bad["another model"] = (signed(other_model), "other_model")
    bad["not yet valid"] = (signed(not_before=year_2099, not_after=year_2099 + 3600),
                            "not_yet_valid")
    bad["another deployment"] = (signed(deployment="op-9"), "other_deployment")
    expires_at = time.time() + 3
    expiring = signed(not_after=expires_at)
    bad["a lower version"] = (signed(version=1), "rollback")

    with start_van(made.van_config), edge(made, 0) as unit:
        run_ok("van", "deployment", "start", "--id", "op-1", "--threshold", "0.6",
               "--config", config)
        run_ok("watchlist", "push", str(good), "--config", config)
        until(made, lambda s: s["unit-1"]["state"] == "held" and s["unit-1"]["version"] == 2,
              "unit-1 holding version 2")
        # The expiring list past its not-after (by a second): usually it is already, the
        # van and the unit took longer than 3 s to start.
        while time.time() < expires_at + 1.0:
            time.sleep(0.1)
        bad["an expired list"] = (expiring, "expired")
        for what, (content, reason) in bad.items():
            path = lists / "bad.signed"
            path.write_bytes(content)
            refused = lfr("watchlist", "push", str(path), "--config", config)
            assert refused.returncode == ExitCode.BAD_INPUT, (what, refused.stderr)
            assert f"the van refused: watchlist refused ({reason}): " in refused.stderr, (
                what, refused.stderr)
        # The unit's state is asked once, at the end, not after each push (a command each): a
        # bad list that reached it would show there as held (another version) or refused by
        # it (refused_version), and nothing pushed after it could have undone either.
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
