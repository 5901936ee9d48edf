"""``[authority] signing_key`` in van.toml (``lfr.config.van``): optional; when given, checked
when the config is read (so the van never starts with it wrong): the authority's private key
file, 0600, of role authority, the private half of the configured ``public_keys``; and
``lfr.van_node.open_van`` hands it to the console. Every refusal names the key."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lfr.config import NodeConfigError, load_van_config
from lfr.van_node import close_van, open_van
from secure.key_files import write_node_keys
from secure.node_keys import NodeKeys, NodeRole
from tests.lfr.test_node_config import Config, make_van, write_config


@pytest.fixture
def van(tmp_path: Path) -> tuple[Path, Config]:
    folder = tmp_path / "van"
    folder.mkdir()
    return folder, make_van(folder)


def with_key(folder: Path, data: Config, key: str) -> Path:
    data["authority"]["signing_key"] = key
    return write_config(folder / "van.toml", data)


def test_without_a_signing_key_the_van_has_none(van: tuple[Path, Config]) -> None:
    folder, data = van
    assert load_van_config(write_config(folder / "van.toml", data)).authority_signing_key is None


def test_the_authoritys_own_key_is_taken_and_reaches_the_console(
        van: tuple[Path, Config]) -> None:
    folder, data = van
    config = load_van_config(with_key(folder, data, "authority/signing.key"))
    assert config.authority_signing_key == folder / "authority" / "signing.key"
    parts = open_van(config)
    try:
        assert parts.authority_signing is not None
        assert parts.authority_signing.role is NodeRole.AUTHORITY
        assert (parts.authority_signing.signing.verify_key.key_id
                == parts.authority.verify_key.key_id)
    finally:
        close_van(parts)


@pytest.mark.parametrize(("make", "problem"), [
    (lambda folder: write_node_keys(NodeKeys.generate(NodeRole.AUTHORITY, "authority"),
                                    folder / "other").signing,
     "not of the configured authority authority"),
    (lambda folder: write_node_keys(NodeKeys.generate(NodeRole.AUTHORITY, "hq-b"),
                                    folder / "other").signing,
     "the key of authority hq-b"),
    (lambda folder: write_node_keys(NodeKeys.generate(NodeRole.UNIT, "unit-1"),
                                    folder / "other").signing,
     "not of an authority"),
    (lambda folder: folder / "keys" / "signing.key", "a van node"),  # the van's own
])
def test_another_key_is_refused_naming_the_config_key(
        van: tuple[Path, Config], make: object, problem: str) -> None:
    folder, data = van
    path = make(folder)  # type: ignore[operator]
    with pytest.raises(NodeConfigError) as refused:
        load_van_config(with_key(folder, data, str(path)))
    assert "authority.signing_key" in str(refused.value)
    assert problem in str(refused.value)


def test_a_key_file_others_can_read_or_a_missing_one_is_refused(
        van: tuple[Path, Config]) -> None:
    folder, data = van
    key = folder / "authority" / "signing.key"
    os.chmod(key, 0o644)
    with pytest.raises(NodeConfigError, match=r"authority\.signing_key: .*(0600|mode)"):
        load_van_config(with_key(folder, data, "authority/signing.key"))
    with pytest.raises(NodeConfigError, match=r"authority\.signing_key: .*no such file"):
        load_van_config(with_key(folder, data, "authority/missing.key"))
