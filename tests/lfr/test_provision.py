"""``lfr provision``: the keys, the config and the enrolment record it makes; the record's
command enrols the unit at a van; an existing identity is kept without ``--force``; every bad
input is refused with exit 2, naming it, before anything is written."""

from __future__ import annotations

import os
import shlex
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from actors.van.enrolment import Enrolment
from actors.van.tls_certificate import certificate_fingerprint, format_fingerprint
from guards.exit_codes import ExitCode
from lfr.cli import main
from lfr.config import NodeConfigError, load_unit_config
from secure.key_files import read_node_keys
from tests.lfr.test_node_config import make_van, write_config

REPO_ROOT = Path(__file__).resolve().parents[2]
CLIP = REPO_ROOT / "demo" / "short_hamilton_clip.mp4"


class Setup:
    """A van's folder (keys, TLS, authority) and where the unit's files go."""

    def __init__(self, root: Path) -> None:
        self.van_folder = root / "van"
        self.van_folder.mkdir()
        self.van_toml = write_config(self.van_folder / "van.toml", make_van(self.van_folder))
        self.van_keys = self.van_folder / "keys" / "public.keys"
        self.authority_keys = self.van_folder / "authority" / "public.keys"
        self.pin = format_fingerprint(certificate_fingerprint(self.van_folder / "tls" /
                                                              "tls.crt"))
        self.etc = root / "etc-lfr-edge"
        self.state = root / "var-lib-lfr-edge"

    def args(self, *extra: str, **flags: str) -> list[str]:
        """``provision`` with every required flag (``flags`` override them: van_pubkeys=...)."""
        values = {"unit_id": "unit-7", "van": "https://127.0.0.1:8443",
                  "van_pubkeys": str(self.van_keys),
                  "authority_pubkeys": str(self.authority_keys),
                  "van_tls_fingerprint": self.pin, "out": str(self.etc),
                  "state_dir": str(self.state)} | flags
        args = ["provision"]
        for name, value in values.items():
            args += [f"--{name.replace('_', '-')}", value]
        return [*args, *extra]


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    return Setup(tmp_path)


def _run(capsys: pytest.CaptureFixture[str], args: list[str]) -> tuple[int, str, str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _left_over(*folders: Path) -> list[str]:
    """Temporary files a run may have left (it must leave none)."""
    return [p.name for folder in folders if folder.is_dir() for p in folder.iterdir()
            if p.name.startswith(".")]


def test_provision_makes_the_keys_and_a_config_that_loads_and_prints_the_enrolment_record(
        setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, setup.args())
    assert code == ExitCode.OK, err

    signing = setup.state / "signing.key"
    assert stat.S_IMODE(signing.stat().st_mode) == 0o600
    assert stat.S_IMODE(setup.state.stat().st_mode) == 0o700
    keys = read_node_keys(signing)
    assert (keys.role.value, keys.node_id) == ("unit", "unit-7")
    assert sorted(p.name for p in setup.state.iterdir()) == ["public.keys", "signing.key"]
    assert sorted(p.name for p in setup.etc.iterdir()) == ["authority.keys", "unit.toml",
                                                          "van.keys"]
    assert (setup.etc / "van.keys").read_bytes() == setup.van_keys.read_bytes()
    assert (setup.etc / "authority.keys").read_bytes() == setup.authority_keys.read_bytes()
    assert stat.S_IMODE((setup.etc / "unit.toml").stat().st_mode) == 0o644

    config = load_unit_config(setup.etc / "unit.toml")
    assert config.unit_id == "unit-7"
    assert config.signing_key == signing
    assert (config.outbox, config.audit) == (setup.state / "outbox.sqlite",
                                             setup.state / "audit.log")
    assert config.van_url == "https://127.0.0.1:8443"
    assert config.van_public_keys == setup.etc / "van.keys"
    assert config.authority_public_keys == setup.etc / "authority.keys"
    assert format_fingerprint(config.van_tls_fingerprint) == setup.pin
    assert [(c.camera_id, c.source) for c in config.cameras] == [("cam0", "/dev/video0")]
    assert config.accelerator is None

    key_id = keys.signing.key_id.hex()
    assert "provisioned unit unit-7" in out
    assert f"signing key id  {key_id}" in out
    seeds = keys.signing.private_seeds()
    assert not any(seed.hex() in out.lower() for seed in seeds)  # nothing private printed
    assert _left_over(setup.etc, setup.state) == []

    # The printed command, run at the van as printed, enrols this unit with this key.
    (command,) = [line.strip() for line in out.splitlines()
                  if line.strip().startswith("lfr van enroll-unit")]
    words = shlex.split(command)
    assert words[:5] == ["lfr", "van", "enroll-unit", "unit-7",
                         str(setup.state / "public.keys")]
    words[words.index("VAN_TOML")] = str(setup.van_toml)
    code, enrolled, err = _run(capsys, words[1:])
    assert code == ExitCode.OK, err
    assert f"enrolled unit unit-7: signing key {key_id}" in enrolled
    (unit,) = Enrolment.open(setup.van_folder / "state").units()
    assert unit.signing_key_id == keys.signing.key_id


def test_cameras_are_taken_from_repeated_flags_and_a_file_becomes_an_absolute_path(
        setup: Setup, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
        ) -> None:
    monkeypatch.chdir(CLIP.parent)
    code, _, err = _run(capsys, setup.args("--camera", f"door={CLIP.name}",
                                           "--camera", "gate=rtsp://10.0.0.5/stream",
                                           "--camera", "yard=/dev/video2"))
    assert code == ExitCode.OK, err
    config = load_unit_config(setup.etc / "unit.toml")
    assert [(c.camera_id, c.source) for c in config.cameras] == [
        ("door", str(CLIP)), ("gate", "rtsp://10.0.0.5/stream"), ("yard", "/dev/video2")]


@pytest.mark.parametrize("existing", ["signing.key", "public.keys", "unit.toml"])
def test_an_existing_identity_is_kept_without_force_naming_the_file(
        setup: Setup, capsys: pytest.CaptureFixture[str], existing: str) -> None:
    code, _, err = _run(capsys, setup.args())
    assert code == ExitCode.OK, err
    for name in ("signing.key", "public.keys", "unit.toml"):
        if name != existing:
            (setup.etc / name if name == "unit.toml" else setup.state / name).unlink()
    target = setup.etc / existing if existing == "unit.toml" else setup.state / existing
    before = target.read_bytes()
    code, out, err = _run(capsys, setup.args())
    assert code == ExitCode.BAD_INPUT
    assert f"{target} already exists" in err
    assert "--force" in err
    assert out == ""
    assert target.read_bytes() == before
    assert sorted(p.name for p in target.parent.iterdir() if p.name.endswith(
        (".key", ".keys", ".toml"))) == sorted(
            [existing] if existing != "unit.toml" else ["authority.keys", "unit.toml",
                                                        "van.keys"])


def test_force_replaces_the_identity_by_renames_and_says_the_van_must_revoke_it_first(
        setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, setup.args())
    assert code == ExitCode.OK, err
    old = read_node_keys(setup.state / "signing.key").signing.key_id
    code, out, err = _run(capsys, setup.args("--force", "--camera", "cam1=/dev/video1"))
    assert code == ExitCode.OK, err
    new = read_node_keys(setup.state / "signing.key").signing.key_id
    assert new != old
    assert "lfr van revoke-unit unit-7 first" in out
    assert [c.camera_id for c in load_unit_config(setup.etc / "unit.toml").cameras] == ["cam1"]
    assert stat.S_IMODE((setup.state / "signing.key").stat().st_mode) == 0o600
    assert _left_over(setup.etc, setup.state) == []


def test_a_config_that_fails_its_check_is_never_left_and_the_new_keys_are_taken_back(
        setup: Setup, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
        ) -> None:
    def refuse(path: Path | str) -> None:
        assert Path(path).read_text().startswith("# unit.toml of unit unit-7")  # fully written
        raise NodeConfigError(f"config file {path}: refused for the test")

    monkeypatch.setattr("lfr.config.unit.load_unit_config", refuse)
    code, out, err = _run(capsys, setup.args())
    assert code == ExitCode.BAD_INPUT
    assert "refused for the test" in err
    assert "enroll-unit" not in out
    assert not (setup.etc / "unit.toml").exists()
    assert not (setup.state / "signing.key").exists()
    assert not (setup.state / "public.keys").exists()
    assert _left_over(setup.etc, setup.state) == []


Flags = Callable[[Setup], list[str]]


def _flags(*extra: str, **flags: str) -> Flags:
    return lambda setup: setup.args(*extra, **flags)


def _with(name: str, make: Callable[[Setup], str]) -> Flags:
    return lambda setup: setup.args(**{name: make(setup)})


REFUSALS: dict[str, tuple[Flags, str]] = {
    "bad unit id": (_flags(unit_id="*"), "--unit-id * must be 1 to 64 printable"),
    "unit id with a control character": (_flags(unit_id="unit\x1b[2J"), "--unit-id"),
    "http url": (_flags(van="http://127.0.0.1:8443"), ("--van http://127.0.0.1:8443: must "
                 "start with https://")),
    "url without a port": (_flags(van="https://van.local"), "must name the port"),
    "url with a path": (_flags(van="https://van.local:1/x"), "no path"),
    "van keys of the authority": (_with("van_pubkeys", lambda s: str(s.authority_keys)),
                                  "--van-pubkeys: public-keys file"),
    "authority keys of the van": (_with("authority_pubkeys", lambda s: str(s.van_keys)),
                                  "role is van, expected authority"),
    "van keys not a key file": (_with("van_pubkeys", lambda s: str(s.van_folder / "tls" /
                                                                   "tls.crt")),
                                "not an lfr key file"),
    "van keys a folder": (_with("van_pubkeys", lambda s: str(s.van_folder)),
                          "--van-pubkeys: public-keys file"),
    "van keys a device": (_flags(van_pubkeys="/dev/null"), ("is a character device; only "
                          "regular files are read")),
    "van keys missing": (_with("van_pubkeys", lambda s: str(s.van_folder / "nope.keys")),
                         "--van-pubkeys"),
    "short fingerprint": (_flags(van_tls_fingerprint="AB:CD"),
                          "--van-tls-fingerprint AB:CD: not a sha256 fingerprint"),
    "fingerprint not hex": (_flags(van_tls_fingerprint="zz" * 32), "--van-tls-fingerprint"),
    "camera without a source": (_flags("--camera", "cam0"), "--camera cam0: expected ID=SOURCE"),
    "camera without an id": (_flags("--camera", "=/dev/video0"), "expected ID=SOURCE"),
    "camera named twice": (_flags("--camera", "a=/dev/video0", "--camera", "a=/dev/video1"),
                           "camera a is named twice"),
    "camera file missing": (_flags("--camera", "cam0=nope.mp4"), "is not a video file"),
    "camera id too long": (_flags("--camera", "c" * 129 + "=/dev/video0"), "1-128 characters"),
    "out is a file": (_with("out", lambda s: str(s.van_keys)), ("is a regular file, not a "
                      "folder")),
    "out has no parent": (_with("out", lambda s: str(s.etc / "a" / "b")),
                          "its parent folder does not exist"),
    "out and state the same": (_with("out", lambda s: str(s.state)), "the same folder"),
    "unknown flag": (_flags("--colour", "red"), "unrecognized argument: --colour"),
    "missing pin": (lambda s: [a for a in s.args() if a != "--van-tls-fingerprint"
                               and a != s.pin], "--van-tls-fingerprint"),
}


@pytest.mark.parametrize("case", REFUSALS)
def test_bad_input_is_refused_with_exit_2_naming_it_before_anything_is_written(
        setup: Setup, capsys: pytest.CaptureFixture[str], case: str) -> None:
    flags, problem = REFUSALS[case]
    code, out, err = _run(capsys, flags(setup))
    assert code == ExitCode.BAD_INPUT
    assert problem in err
    assert out == ""
    assert not setup.state.exists()
    assert not setup.etc.exists()


def test_a_unit_provisioned_as_root_keeps_its_folder_private_whatever_the_umask(
        setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    old = os.umask(0)
    try:
        code, _, err = _run(capsys, setup.args())
    finally:
        os.umask(old)
    assert code == ExitCode.OK, err
    assert stat.S_IMODE((setup.state / "signing.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((setup.etc / "unit.toml").stat().st_mode) == 0o644


def test_force_with_another_unit_id_is_refused_while_the_old_units_history_is_there(
        setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, setup.args())
    assert code == ExitCode.OK, err
    (setup.state / "audit.log").write_text("")  # what lfr edge leaves: unit-7's trail
    before = (setup.state / "signing.key").read_bytes()
    code, _, err = _run(capsys, setup.args("--force", unit_id="unit-8"))
    assert code == ExitCode.BAD_INPUT
    assert f"{setup.state / 'audit.log'} is the history of unit unit-7" in err
    assert "unit unit-8 needs a state folder of its own" in err
    assert (setup.state / "signing.key").read_bytes() == before
    (setup.state / "outbox.sqlite").write_text("")
    code, out, err = _run(capsys, setup.args("--force"))  # the same unit again: its history
    assert code == ExitCode.OK, err
    assert (setup.state / "audit.log").exists()
    assert "was signed by the old key, which the van refuses once it is revoked" in out
