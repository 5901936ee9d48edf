"""Key files: modes, no overwrite, only regular private files, strict parsing, no leaks."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from runtime.link_keys import MAX_PEER_NAME_CHARS
from secure.key_files import _CODEC as KEY_CODEC
from secure.key_files import (
    ENCRYPTION_KEY_FILE,
    MAGIC,
    MAX_PUBLIC_KEYS_FILE_BYTES,
    PUBLIC_KEYS_FILE,
    SIGNING_KEY_FILE,
    KeyFileError,
    PublicKeysRecord,
    SigningKeyRecord,
    decode_public_keys,
    encode_public_keys,
    read_node_keys,
    read_public_keys,
    write_node_keys,
)
from secure.node_keys import NodeIdError, NodeKeys, NodeRole, check_node_id

VAN = NodeKeys.generate(NodeRole.VAN, "van-1")
UNIT = NodeKeys.generate(NodeRole.UNIT, "unit-1")


def secrets_of(keys: NodeKeys) -> list[bytes]:
    parts = list(keys.signing.private_seeds())
    if keys.encryption is not None:
        parts += keys.encryption.private_parts()
    return parts


def assert_no_secret(text: str, keys: NodeKeys) -> None:
    for secret in secrets_of(keys):
        assert secret.hex() not in text
        assert repr(secret)[2:-1] not in text


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_a_vans_keys_are_written_0600_and_read_back(tmp_path: Path) -> None:
    paths = write_node_keys(VAN, tmp_path / "keys")
    assert mode(tmp_path / "keys") == 0o700
    assert paths.encryption is not None
    assert (mode(paths.signing), mode(paths.encryption), mode(paths.public)) == (
        0o600, 0o600, 0o644)
    keys = read_node_keys(paths.signing, paths.encryption)
    assert (keys.role, keys.node_id) == (NodeRole.VAN, "van-1")
    assert keys.public() == VAN.public() == read_public_keys(paths.public, NodeRole.VAN)


@pytest.mark.parametrize("role", [NodeRole.UNIT, NodeRole.AUTHORITY])
def test_units_and_authorities_get_a_signing_key_only(tmp_path: Path, role: NodeRole) -> None:
    paths = write_node_keys(NodeKeys.generate(role, "n1"), tmp_path)
    assert paths.encryption is None
    assert sorted(p.name for p in tmp_path.iterdir()) == [PUBLIC_KEYS_FILE, SIGNING_KEY_FILE]
    assert read_node_keys(paths.signing).role is role
    assert read_public_keys(paths.public).encryption_key is None
    with pytest.raises(KeyFileError, match="has no encryption key file"):
        read_node_keys(paths.signing, write_node_keys(VAN, tmp_path / "v").encryption)


def test_a_van_without_its_encryption_file_is_refused(tmp_path: Path) -> None:
    paths = write_node_keys(VAN, tmp_path)
    with pytest.raises(KeyFileError, match="needs encryption key file"):
        read_node_keys(paths.signing)


@pytest.mark.parametrize("umask", [0o000, 0o077])
def test_the_umask_does_not_change_the_modes(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        paths = write_node_keys(UNIT, tmp_path)
    finally:
        os.umask(old)
    assert (mode(paths.signing), mode(paths.public)) == (0o600, 0o644)


@pytest.mark.parametrize("existing", [SIGNING_KEY_FILE, ENCRYPTION_KEY_FILE, PUBLIC_KEYS_FILE])
def test_nothing_is_written_when_any_key_file_exists(tmp_path: Path, existing: str) -> None:
    (tmp_path / existing).write_bytes(b"keep me")
    with pytest.raises(KeyFileError, match="already exists"):
        write_node_keys(VAN, tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [existing]
    assert (tmp_path / existing).read_bytes() == b"keep me"


def test_a_dangling_symlink_in_the_way_is_not_followed(tmp_path: Path) -> None:
    (tmp_path / SIGNING_KEY_FILE).symlink_to(tmp_path / "elsewhere")
    with pytest.raises(KeyFileError, match="already exists"):
        write_node_keys(UNIT, tmp_path)
    assert not (tmp_path / "elsewhere").exists()


@pytest.mark.parametrize("bits", [0o640, 0o604, 0o660, 0o606])
def test_a_private_file_others_can_read_or_change_is_refused(tmp_path: Path, bits: int) -> None:
    paths = write_node_keys(UNIT, tmp_path)
    paths.signing.chmod(bits)
    with pytest.raises(KeyFileError, match=f"mode {bits:04o}.*must be 0600"):
        read_node_keys(paths.signing)


def test_a_symlink_to_a_private_file_is_refused(tmp_path: Path) -> None:
    paths = write_node_keys(UNIT, tmp_path / "real")
    link = tmp_path / "link.key"
    link.symlink_to(paths.signing)
    with pytest.raises(KeyFileError, match="symbolic link"):
        read_node_keys(link)


def test_fifos_and_folders_are_refused_as_private_files(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.key"
    os.mkfifo(fifo, 0o600)
    with pytest.raises(KeyFileError, match="FIFO"):
        read_node_keys(fifo)
    with pytest.raises(KeyFileError, match="directory"):
        read_node_keys(tmp_path)
    with pytest.raises(KeyFileError, match="no such file"):
        read_node_keys(tmp_path / "missing.key")


def private_file(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    path.chmod(0o600)
    return path


def test_a_private_file_over_its_limit_or_not_a_key_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="over the limit"):
        read_node_keys(private_file(tmp_path / "big.key", MAGIC + b"\x00" * 5000))
    with pytest.raises(KeyFileError, match="not an lfr key file"):
        read_node_keys(private_file(tmp_path / "text.key", b"hello"))
    with pytest.raises(KeyFileError, match="malformed message"):
        read_node_keys(private_file(tmp_path / "cut.key", MAGIC + b"\x93\xcd"))


def test_a_public_keys_file_given_as_a_signing_key_is_named(tmp_path: Path) -> None:
    paths = write_node_keys(UNIT, tmp_path)
    copy = private_file(tmp_path / "copy", paths.public.read_bytes())
    with pytest.raises(KeyFileError, match="holds a PublicKeysRecord, not a SigningKeyRecord"):
        read_node_keys(copy)


def test_a_corrupt_seed_is_caught_by_the_key_id(tmp_path: Path) -> None:
    seeds = UNIT.signing.private_seeds()
    record = SigningKeyRecord(NodeRole.UNIT, "unit-1", UNIT.signing.key_id,
                              bytes(32), seeds[1])
    path = private_file(tmp_path / "bad.key", MAGIC + KEY_CODEC.encode(record))
    with pytest.raises(KeyFileError, match="signing_key_id does not match") as caught:
        read_node_keys(path)
    assert_no_secret(str(caught.value), UNIT)


def test_a_seed_of_the_wrong_length_is_named_without_its_value(tmp_path: Path) -> None:
    seeds = UNIT.signing.private_seeds()
    record = SigningKeyRecord(NodeRole.UNIT, "unit-1", UNIT.signing.key_id, seeds[0][:31],
                              seeds[1])
    path = private_file(tmp_path / "short.key", MAGIC + KEY_CODEC.encode(record))
    with pytest.raises(KeyFileError, match="ed25519_seed/ml_dsa_65_seed: not a valid key") as c:
        read_node_keys(path)
    assert_no_secret(str(c.value), UNIT)


def public_record(**changes: object) -> bytes:
    keys = VAN.public()
    assert keys.encryption_key is not None
    fields = {"role": keys.role, "node_id": keys.node_id,
              "signing_key_id": keys.verify_key.key_id,
              "ed25519_public": keys.verify_key.ed25519_public,
              "ml_dsa_65_public": keys.verify_key.ml_dsa_65_public,
              "encryption_key_id": keys.encryption_key.key_id,
              "ml_kem_768_public": keys.encryption_key.ml_kem_768_public,
              "x25519_public": keys.encryption_key.x25519_public, **changes}
    return MAGIC + KEY_CODEC.encode(PublicKeysRecord(**fields))  # type: ignore[arg-type]


@pytest.mark.parametrize(("changes", "problem"), [
    ({"signing_key_id": b"\x00" * 8}, "signing_key_id does not match"),
    ({"encryption_key_id": b"\x00" * 8}, "encryption_key_id does not match"),
    ({"ml_dsa_65_public": b"\x00" * 10}, "ml_dsa_65_public: not a valid key"),
    ({"x25519_public": b"\x00" * 31}, "x25519_public: not a valid key"),
    ({"x25519_public": None}, "come together"),
    ({"encryption_key_id": None, "ml_kem_768_public": None, "x25519_public": None},
     "a van has an encryption key"),
    ({"role": NodeRole.UNIT}, "a unit has no encryption key"),
    ({"node_id": "van\n1"}, "node_id"),
])
def test_an_inconsistent_public_keys_file_is_refused_naming_the_field(
        changes: dict[str, object], problem: str) -> None:
    with pytest.raises((KeyFileError, NodeIdError), match=problem) as caught:
        decode_public_keys(public_record(**changes), "public-keys file p.keys")
    assert "p.keys" in str(caught.value)


def test_a_public_keys_file_of_another_role_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "van.keys"
    path.write_bytes(encode_public_keys(VAN.public()))
    with pytest.raises(KeyFileError, match="role is van, expected unit"):
        read_public_keys(path, NodeRole.UNIT)


def test_a_public_keys_file_over_its_limit_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.keys"
    path.write_bytes(MAGIC + b"\x00" * MAX_PUBLIC_KEYS_FILE_BYTES)
    with pytest.raises(KeyFileError, match="over the limit"):
        read_public_keys(path)


@pytest.mark.parametrize("node_id", ["", " ", "*", "a\nb", "x" * (MAX_PEER_NAME_CHARS + 1),
                                     "\u202eevil"])
def test_invalid_node_ids_are_refused(node_id: str) -> None:
    with pytest.raises(NodeIdError):
        check_node_id(node_id)
    with pytest.raises(NodeIdError):
        NodeKeys.generate(NodeRole.UNIT, node_id)


def test_private_material_never_appears_in_reprs_errors_or_logs(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    paths = write_node_keys(VAN, tmp_path)
    keys = read_node_keys(paths.signing, paths.encryption)
    assert paths.encryption is not None
    paths.encryption.chmod(0o644)
    with pytest.raises(KeyFileError) as caught:
        read_node_keys(paths.signing, paths.encryption)
    ed_seed, ml_dsa_seed = VAN.signing.private_seeds()
    record = SigningKeyRecord(NodeRole.VAN, "van-1", VAN.signing.key_id, ed_seed, ml_dsa_seed)
    shown = [repr(keys), str(keys), repr(VAN), repr(keys.signing), repr(keys.encryption),
             repr(record), str(caught.value), caplog.text, repr(paths)]
    for text in shown:
        assert_no_secret(text, VAN)
    assert VAN.signing.key_id.hex() in repr(keys)
