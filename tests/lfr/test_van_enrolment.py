"""``lfr van enroll-unit``, ``revoke-unit`` and ``units``: what each does and prints, and each
refusal with its exit code; one run as a real process."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from actors.van.enrolment import Enrolment
from guards.exit_codes import ExitCode
from lfr.cli import main
from secure.key_files import read_node_keys, read_public_keys, write_node_keys
from secure.node_keys import NodeKeys, NodeRole
from tests.lfr.cli_process import lfr
from tests.lfr.test_node_config import make_van, write_config


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _unit_keys(folder: Path, unit_id: str, role: NodeRole = NodeRole.UNIT) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_node_keys(NodeKeys.generate(role, unit_id), folder / unit_id)
    return folder / unit_id / "public.keys"


def _key_id(public_keys: Path) -> str:
    return read_public_keys(public_keys).verify_key.key_id.hex()


@pytest.fixture
def van_toml(tmp_path: Path) -> Path:
    folder = tmp_path / "van"
    folder.mkdir()
    return write_config(folder / "van.toml", make_van(folder))


def test_enrol_list_and_revoke_a_unit(tmp_path: Path, van_toml: Path,
                                      capsys: pytest.CaptureFixture[str],
                                      caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    keys = _unit_keys(tmp_path, "unit-1")
    code, out, err = _run(capsys, "van", "enroll-unit", "unit-1", str(keys),
                          "--config", str(van_toml))
    assert code == ExitCode.OK, err
    assert "enrolled unit unit-1" in out
    assert _key_id(keys) in out
    assert [u.unit_id for u in Enrolment.open(van_toml.parent / "state").units()] == ["unit-1"]

    code, out, _ = _run(capsys, "van", "enroll-unit", "unit-1", str(keys),
                        "--config", str(van_toml))
    assert code == ExitCode.OK
    assert "already enrolled" in out
    assert "nothing changed" in out

    _unit_keys(tmp_path, "unit-2")
    _run(capsys, "van", "enroll-unit", "unit-2", str(tmp_path / "unit-2" / "public.keys"),
         "--config", str(van_toml))
    code, out, _ = _run(capsys, "van", "units", "--config", str(van_toml))
    assert code == ExitCode.OK
    assert "van van-1: 2 units enrolled" in out
    assert out.index("unit-1") < out.index("unit-2")
    assert _key_id(keys) in out

    code, out, _ = _run(capsys, "van", "units", "--config", str(van_toml), "--json")
    listed = json.loads(out)
    assert listed["van"] == "van-1"
    assert [u["unit_id"] for u in listed["units"]] == ["unit-1", "unit-2"]
    assert listed["units"][0]["signing_key_id"] == _key_id(keys)
    assert listed["units"][0]["enrolled_at"].endswith("Z")

    code, out, _ = _run(capsys, "van", "revoke-unit", "unit-1", "--config", str(van_toml))
    assert code == ExitCode.OK
    assert "revoked unit unit-1" in out
    assert _key_id(keys) in out
    assert [u.unit_id for u in Enrolment.open(van_toml.parent / "state").units()] == ["unit-2"]

    seeds = read_node_keys(tmp_path / "unit-1" / "signing.key").signing.private_seeds()
    for seed in seeds:
        assert seed.hex() not in caplog.text


def test_other_keys_under_an_enrolled_id_are_refused_with_the_revoke_advice(
        tmp_path: Path, van_toml: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = _unit_keys(tmp_path / "a", "unit-1")
    second = _unit_keys(tmp_path / "b", "unit-1")
    assert _run(capsys, "van", "enroll-unit", "unit-1", str(first),
                "--config", str(van_toml))[0] == ExitCode.OK
    code, out, err = _run(capsys, "van", "enroll-unit", "unit-1", str(second),
                          "--config", str(van_toml))
    assert code == ExitCode.BAD_INPUT
    assert out == ""
    assert "revoke unit unit-1 first" in err
    assert _key_id(first) in err
    assert _key_id(second) in err
    units = Enrolment.open(van_toml.parent / "state").units()
    assert [u.signing_key_id.hex() for u in units] == [_key_id(first)]


@pytest.mark.parametrize(("role", "unit_id", "problem"), [
    (NodeRole.VAN, "unit-1", "holds the keys of van unit-1; only units are enrolled"),
    (NodeRole.AUTHORITY, "unit-1", "only units are enrolled"),
    (NodeRole.UNIT, "unit-9", "holds the keys of unit unit-9, not of unit-1"),
])
def test_a_key_file_not_of_that_unit_is_refused(
        tmp_path: Path, van_toml: Path, capsys: pytest.CaptureFixture[str],
        role: NodeRole, unit_id: str, problem: str) -> None:
    keys = _unit_keys(tmp_path, unit_id, role)
    code, out, err = _run(capsys, "van", "enroll-unit", "unit-1", str(keys),
                          "--config", str(van_toml))
    assert code == ExitCode.BAD_INPUT
    assert out == ""
    assert problem in err
    assert str(keys) in err
    assert Enrolment.open(van_toml.parent / "state").units() == ()


def test_revoking_a_unit_never_enrolled_is_refused(van_toml: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "van", "revoke-unit", "unit-7", "--config", str(van_toml))
    assert code == ExitCode.BAD_INPUT
    assert "unit unit-7 is not enrolled" in err


def test_a_bad_unit_id_is_refused_before_anything_is_read(
        tmp_path: Path, van_toml: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "van", "enroll-unit", "*", str(tmp_path / "none"),
                        "--config", str(van_toml))
    assert code == ExitCode.BAD_INPUT
    assert "UNIT_ID" in err


@pytest.mark.parametrize("command", [["units"], ["revoke-unit", "unit-1"],
                                     ["enroll-unit", "unit-1", "public.keys"]])
def test_a_bad_config_is_refused_naming_the_key_by_every_command(
        van_toml: Path, capsys: pytest.CaptureFixture[str], command: list[str]) -> None:
    van_toml.write_text("colour = 'red'\n" + van_toml.read_text())
    code, out, err = _run(capsys, "van", *command, "--config", str(van_toml))
    assert code == ExitCode.BAD_INPUT
    assert out == ""
    assert f"config file {van_toml}: colour: unknown key" in err


def test_no_unit_enrolled_yet(van_toml: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "van", "units", "--config", str(van_toml), "--json")
    assert code == ExitCode.OK
    assert json.loads(out) == {"van": "van-1", "units": []}


def test_the_van_group_runs_the_node_or_an_action(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "van")
    assert code == ExitCode.BAD_INPUT
    assert "--config" in err
    code, out, _ = _run(capsys, "van", "--help")
    assert code == ExitCode.OK
    for action in ("enroll-unit", "revoke-unit", "units", "tls-init"):
        assert action in out


def test_enrol_and_list_as_a_real_process(tmp_path: Path, van_toml: Path) -> None:
    keys = _unit_keys(tmp_path, "unit-1")
    enrolled = lfr("van", "enroll-unit", "unit-1", str(keys), "--config", str(van_toml),
                   timeout_s=60)
    assert enrolled.returncode == ExitCode.OK, enrolled.stderr
    assert _key_id(keys) in enrolled.stdout
    listed = lfr("van", "units", "--json", "--config", str(van_toml), timeout_s=60)
    assert listed.returncode == ExitCode.OK, listed.stderr
    assert [u["unit_id"] for u in json.loads(listed.stdout)["units"]] == ["unit-1"]
    refused = lfr("van", "revoke-unit", "unit-2", "--config", str(van_toml), timeout_s=60)
    assert refused.returncode == ExitCode.BAD_INPUT
    assert "unit unit-2 is not enrolled" in refused.stderr
