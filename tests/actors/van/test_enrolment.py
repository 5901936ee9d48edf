"""The van's enrolment: enrol, look up, revoke; strict file; envelopes from whom it opens."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import stat
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

import actors.van.enrolment as enrolment_module
from actors.van.enrolment import _CODEC as ENROLMENT_CODEC
from actors.van.enrolment import (
    ENROLMENT_FILE,
    FORMAT_VERSION,
    MAGIC,
    MAX_ENROLMENT_FILE_BYTES,
    MAX_UNITS,
    Enrolment,
    EnrolmentError,
    EnrolmentRecord,
    encode_enrolment,
)
from secure.envelope import EventKind, SignerLookup, UnknownSigner, open_envelope, seal_envelope
from secure.key_files import encode_public_keys
from secure.node_keys import NodeKeys, NodeRole
from tests.secure.envelope_support import VAN_KEY

UNIT_A = NodeKeys.generate(NodeRole.UNIT, "unit-a")
UNIT_B = NodeKeys.generate(NodeRole.UNIT, "unit-b")
UNIT_A_NEW = NodeKeys.generate(NodeRole.UNIT, "unit-a")  # same id, new keys
A_TWIN = NodeKeys(NodeRole.UNIT, "unit-c", UNIT_A.signing, None)  # A's keys, another id
VAN = NodeKeys.generate(NodeRole.VAN, "van-1")
AUTHORITY = NodeKeys.generate(NodeRole.AUTHORITY, "authority-1")


def public_file(folder: Path, keys: NodeKeys, name: str | None = None) -> Path:
    path = folder / (name or f"{keys.node_id}-{keys.signing.key_id.hex()}.keys")
    path.write_bytes(encode_public_keys(keys.public()))
    return path


@pytest.fixture
def state(tmp_path: Path) -> Path:
    folder = tmp_path / "state"
    folder.mkdir()
    return folder


@pytest.fixture
def keys_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "keys"
    folder.mkdir()
    return folder


def enrolled(state: Path, keys_dir: Path, *units: NodeKeys) -> Enrolment:
    enrolment = Enrolment.open(state, clock=lambda: 1_732_590_000.0)
    for unit in units:
        enrolment.enrol(public_file(keys_dir, unit))
    return enrolment


# -- enrol, look up, revoke ------------------------------------------------------------------


def test_enrol_lookup_revoke(state: Path, keys_dir: Path) -> None:
    enrolment = enrolled(state, keys_dir)
    assert enrolment.units() == ()
    unit = enrolment.enrol(public_file(keys_dir, UNIT_A), unit_id="unit-a")
    assert (unit.unit_id, unit.signing_key_id, unit.enrolled_at) == (
        "unit-a", UNIT_A.signing.key_id, 1_732_590_000.0)
    assert enrolment.lookup("unit-a", UNIT_A.signing.key_id) == UNIT_A.signing.verify_key
    assert enrolment.lookup("unit-a", UNIT_B.signing.key_id) is None  # another key
    assert enrolment.lookup("unit-b", UNIT_B.signing.key_id) is None  # never enrolled
    enrolment.enrol(public_file(keys_dir, UNIT_B))
    assert [u.unit_id for u in enrolment.units()] == ["unit-a", "unit-b"]
    assert enrolment.revoke("unit-a") == unit
    assert enrolment.lookup("unit-a", UNIT_A.signing.key_id) is None
    assert [u.unit_id for u in enrolment.units()] == ["unit-b"]
    with pytest.raises(EnrolmentError, match="unit-a is not enrolled"):
        enrolment.revoke("unit-a")


def test_the_registry_survives_a_reopen_in_a_0600_file(state: Path, keys_dir: Path) -> None:
    before = enrolled(state, keys_dir, UNIT_A, UNIT_B).units()
    assert stat.S_IMODE((state / ENROLMENT_FILE).stat().st_mode) == 0o600
    reopened = Enrolment.open(state)
    assert reopened.units() == before
    assert reopened.lookup("unit-b", UNIT_B.signing.key_id) == UNIT_B.signing.verify_key


@pytest.mark.parametrize(("keys", "role"), [(VAN, "van"), (AUTHORITY, "authority")])
def test_only_a_units_keys_are_enrolled(state: Path, keys_dir: Path, keys: NodeKeys,
                                        role: str) -> None:
    enrolment = enrolled(state, keys_dir)
    path = public_file(keys_dir, keys)
    with pytest.raises(EnrolmentError, match=f"{path}: holds the keys of {role} "
                                             f"{keys.node_id}; only units are enrolled"):
        enrolment.enrol(path)
    assert enrolment.units() == ()
    assert not (state / ENROLMENT_FILE).exists()


def test_the_file_must_be_the_named_units(state: Path, keys_dir: Path) -> None:
    with pytest.raises(EnrolmentError, match="keys of unit unit-a, not of unit-b"):
        enrolled(state, keys_dir).enrol(public_file(keys_dir, UNIT_A), unit_id="unit-b")


def test_other_keys_under_an_enrolled_id_are_refused_until_revoked(state: Path,
                                                                   keys_dir: Path) -> None:
    enrolment = enrolled(state, keys_dir, UNIT_A)
    first = enrolment.units()
    assert enrolment.enrol(public_file(keys_dir, UNIT_A, "again.keys")) == first[0]  # no-op
    with pytest.raises(EnrolmentError, match=r"unit-a is already enrolled with signing key .*"
                                             r"revoke unit unit-a first"):
        enrolment.enrol(public_file(keys_dir, UNIT_A_NEW))
    assert enrolment.units() == first
    assert Enrolment.open(state).units() == first
    enrolment.revoke("unit-a")
    enrolment.enrol(public_file(keys_dir, UNIT_A_NEW))
    assert enrolment.lookup("unit-a", UNIT_A_NEW.signing.key_id) is not None
    assert enrolment.lookup("unit-a", UNIT_A.signing.key_id) is None


def test_no_more_than_max_units_are_enrolled(state: Path, keys_dir: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(enrolment_module, "MAX_UNITS", 1)
    enrolment = enrolled(state, keys_dir, UNIT_A)
    with pytest.raises(EnrolmentError, match="already 1 units enrolled"):
        enrolment.enrol(public_file(keys_dir, UNIT_B))
    assert [u.unit_id for u in Enrolment.open(state).units()] == ["unit-a"]


def test_one_signing_key_is_never_enrolled_for_two_units(state: Path, keys_dir: Path) -> None:
    enrolment = enrolled(state, keys_dir, UNIT_A)
    with pytest.raises(EnrolmentError, match="already enrolled for unit unit-a"):
        enrolment.enrol(public_file(keys_dir, A_TWIN))
    assert enrolment.lookup("unit-c", UNIT_A.signing.key_id) is None


def test_a_bad_public_keys_file_is_refused_naming_it(state: Path, keys_dir: Path) -> None:
    path = keys_dir / "broken.keys"
    path.write_bytes(b"not keys")
    with pytest.raises(EnrolmentError, match=f"{path}: not an lfr key file"):
        enrolled(state, keys_dir).enrol(path)


# -- the file, read strictly -------------------------------------------------------------------


def valid_file(state: Path, keys_dir: Path) -> bytes:
    enrolled(state, keys_dir, UNIT_A, UNIT_B)
    return (state / ENROLMENT_FILE).read_bytes()


def write_raw(state: Path, data: bytes) -> Path:
    path = state / ENROLMENT_FILE
    path.write_bytes(data)
    path.chmod(0o600)
    return path


@pytest.mark.parametrize("where", [0, len(MAGIC), len(MAGIC) + 2, 20, 500, 3000, -40, -1])
def test_a_flipped_byte_is_refused_naming_the_file(state: Path, keys_dir: Path,
                                                   where: int) -> None:
    data = bytearray(valid_file(state, keys_dir))
    data[where] ^= 0x01
    path = write_raw(state, bytes(data))
    with pytest.raises(EnrolmentError, match=f"enrolment file {path}: "):
        Enrolment.open(state)


@pytest.mark.parametrize(("keep", "problem"), [
    (0, "not an enrolment file"), (5, "not an enrolment file"),
    (len(MAGIC) + 2, "cut short"), (len(MAGIC) + 2 + 31, "cut short"),
    (100, "checksum mismatch"), (-33, "checksum mismatch"), (-1, "checksum mismatch")])
def test_a_cut_file_is_refused_naming_the_file(state: Path, keys_dir: Path, keep: int,
                                               problem: str) -> None:
    data = valid_file(state, keys_dir)
    path = write_raw(state, data[:keep])
    with pytest.raises(EnrolmentError, match=f"enrolment file {path}: {problem}"):
        Enrolment.open(state)


def test_another_kind_of_file_is_named_as_such(state: Path) -> None:
    path = write_raw(state, encode_public_keys(UNIT_A.public()))
    with pytest.raises(EnrolmentError, match=f"enrolment file {path}: not an enrolment file"):
        Enrolment.open(state)


def crafted(state: Path, units: tuple[object, ...], *, version: int = FORMAT_VERSION) -> None:
    """A file with a valid checksum around ``units`` (the checks after the checksum)."""
    data = encode_enrolment(EnrolmentRecord(units))  # type: ignore[arg-type]
    if version != FORMAT_VERSION:
        head = MAGIC + version.to_bytes(2, "big") + data[len(MAGIC) + 2:-32]
        data = head + hashlib.sha256(head).digest()
    write_raw(state, data)


def test_every_unit_is_checked_again_behind_a_valid_checksum(state: Path,
                                                             keys_dir: Path) -> None:
    good = enrolled(state, keys_dir, UNIT_A, UNIT_B).units()
    a, b = good
    cases: list[tuple[tuple[object, ...], str]] = [
        ((dataclasses.replace(a, signing_key_id=b.signing_key_id),), "signing_key_id does not"),
        ((dataclasses.replace(a, ml_dsa_65_public=a.ml_dsa_65_public[:-1]),), "not a valid key"),
        ((dataclasses.replace(a, unit_id="bad\nid"),), "unit_id"),
        ((a, dataclasses.replace(b, unit_id="unit-a")), "enrolled twice"),
        ((a, dataclasses.replace(a, unit_id="unit-z")), "enrolled twice"),
        ((dataclasses.replace(a, enrolled_at=float("nan")),), "enrolled_at"),
        ((dataclasses.replace(a, enrolled_at=-1.0),), "enrolled_at"),
        ((a,) * (MAX_UNITS + 1), f"at most {MAX_UNITS}"),
    ]
    for units, problem in cases:
        crafted(state, units)
        with pytest.raises(EnrolmentError, match=problem):
            Enrolment.open(state)
    crafted(state, good, version=2)
    with pytest.raises(EnrolmentError, match="format version 2"):
        Enrolment.open(state)
    write_raw(state, encode_enrolment(EnrolmentRecord(good)))
    assert Enrolment.open(state).units() == good


def test_a_record_of_another_type_is_refused(state: Path, keys_dir: Path) -> None:
    (unit, *_) = enrolled(state, keys_dir, UNIT_A).units()
    head = MAGIC + FORMAT_VERSION.to_bytes(2, "big") + ENROLMENT_CODEC.encode(unit)
    write_raw(state, head + hashlib.sha256(head).digest())
    with pytest.raises(EnrolmentError, match="holds a EnrolledUnit, not an EnrolmentRecord"):
        Enrolment.open(state)


def test_only_a_private_regular_file_is_read(state: Path, keys_dir: Path,
                                             tmp_path: Path) -> None:
    data = valid_file(state, keys_dir)
    path = state / ENROLMENT_FILE
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_bytes(data)
    elsewhere.chmod(0o600)

    def readable_by_all() -> None:
        path.write_bytes(data)
        path.chmod(0o644)

    def oversize() -> None:
        write_raw(state, b"\x00" * (MAX_ENROLMENT_FILE_BYTES + 1))

    def make_fifo() -> None:
        os.mkfifo(path)

    def link_to_a_copy() -> None:
        path.symlink_to(elsewhere)

    def dangling_link() -> None:
        path.symlink_to(tmp_path / "missing")

    cases: list[tuple[Callable[[], None], str]] = [
        (make_fifo, "is a FIFO"), (path.mkdir, "is a directory"),
        (link_to_a_copy, "is a symbolic link"), (dangling_link, "is a symbolic link"),
        (readable_by_all, "mode 0644"), (oversize, "over the limit"),
    ]
    for make, problem in cases:
        if path.is_dir() and not path.is_symlink():
            path.rmdir()
        else:
            path.unlink(missing_ok=True)
        make()
        with pytest.raises(EnrolmentError, match=f"enrolment file {path}: .*{problem}"):
            Enrolment.open(state)


def test_the_state_folder_must_exist(tmp_path: Path) -> None:
    with pytest.raises(EnrolmentError, match="does not exist or is not a folder"):
        Enrolment.open(tmp_path / "nowhere")


# -- the registry as the signer lookup ---------------------------------------------------------


def envelope_from(unit: NodeKeys, sequence: int = 1) -> bytes:
    return seal_envelope(b"body", kind=EventKind.ALERT, unit_id=unit.node_id, sequence=sequence,
                         signing_key=unit.signing, van_key=VAN_KEY.public_key)


def test_envelopes_open_only_from_enrolled_units(state: Path, keys_dir: Path) -> None:
    enrolment = enrolled(state, keys_dir, UNIT_A)
    signers: SignerLookup = enrolment.lookup  # the shape open_envelope takes
    assert open_envelope(envelope_from(UNIT_A), signers=signers, van_key=VAN_KEY).body == b"body"
    with pytest.raises(UnknownSigner):
        open_envelope(envelope_from(UNIT_B), signers=signers, van_key=VAN_KEY)
    with pytest.raises(UnknownSigner):  # A's id, keys of a unit not enrolled
        open_envelope(envelope_from(UNIT_A_NEW), signers=signers, van_key=VAN_KEY)
    enrolment.revoke("unit-a")
    with pytest.raises(UnknownSigner):
        open_envelope(envelope_from(UNIT_A, 2), signers=signers, van_key=VAN_KEY)


def test_a_running_van_follows_changes_made_by_another_process(state: Path,
                                                               keys_dir: Path) -> None:
    van = enrolled(state, keys_dir)
    command_line = Enrolment.open(state)
    command_line.enrol(public_file(keys_dir, UNIT_A))
    assert van.lookup("unit-a", UNIT_A.signing.key_id) is not None
    command_line.revoke("unit-a")
    assert van.lookup("unit-a", UNIT_A.signing.key_id) is None


def test_writers_start_from_the_file_as_it_is(state: Path, keys_dir: Path) -> None:
    first, second = Enrolment.open(state), Enrolment.open(state)
    first.enrol(public_file(keys_dir, UNIT_A))
    second.enrol(public_file(keys_dir, UNIT_B))  # second never looked at the file since
    assert [u.unit_id for u in Enrolment.open(state).units()] == ["unit-a", "unit-b"]


def test_concurrent_writers_lose_no_enrolment(state: Path, keys_dir: Path) -> None:
    units = [NodeKeys.generate(NodeRole.UNIT, f"unit-{i}") for i in range(16)]
    files = [public_file(keys_dir, unit) for unit in units]

    def enrol_all(share: list[Path]) -> None:
        enrolment = Enrolment.open(state)
        for path in share:
            enrolment.enrol(path)

    threads = [threading.Thread(target=enrol_all, args=(files[i::2],)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(Enrolment.open(state).units()) == len(units)


def test_a_file_spoiled_under_a_running_van_enrols_nobody(state: Path, keys_dir: Path,
                                                          caplog: pytest.LogCaptureFixture
                                                          ) -> None:
    van = enrolled(state, keys_dir, UNIT_A)
    data = bytearray((state / ENROLMENT_FILE).read_bytes())
    data[100] ^= 0x01
    write_raw(state, bytes(data))
    with caplog.at_level(logging.ERROR, logger="lfr.van.enrolment"):
        assert van.lookup("unit-a", UNIT_A.signing.key_id) is None
        assert van.lookup("unit-a", UNIT_A.signing.key_id) is None
    assert [r.getMessage() for r in caplog.records] == [(
        f"enrolment file {state / ENROLMENT_FILE}: "
        "checksum mismatch: the file is corrupt or was cut or changed by hand; restore it "
        "from a backup or enrol the units again; no unit is enrolled until it is repaired")]
    with pytest.raises(EnrolmentError, match="checksum mismatch"):
        van.enrol(public_file(keys_dir, UNIT_B))
