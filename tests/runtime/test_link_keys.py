"""Key files (0600 or refused, named in every error, never logged) and ``LinkConfig`` checks."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from guards.config_checks import ConfigError
from runtime import KeyFileError, LinkConfig, LinkKeys, write_shared_key_file
from tests.runtime.link_harness import linked
from tests.runtime.link_support import TEST_KEY, service_link_config

HEX = "ab" * 32


def _key_file(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "link.key"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_a_written_key_file_is_private_and_reads_back(tmp_path: Path) -> None:
    path = write_shared_key_file(tmp_path / "link.key")
    assert path.stat().st_mode & 0o777 == 0o600
    keys = LinkKeys.from_file(path)
    key = keys.key_for("anyone")
    assert key is not None
    assert len(key) == 32
    with pytest.raises(FileExistsError):
        write_shared_key_file(path)  # never overwrites a key


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o660])
def test_a_key_file_others_can_touch_is_refused(tmp_path: Path, mode: int) -> None:
    path = _key_file(tmp_path, f"* {HEX}\n", mode)
    with pytest.raises(KeyFileError) as caught:
        LinkKeys.from_file(path)
    assert str(caught.value) == (f"key file {path}: mode {mode:04o} lets others read or change "
                                 f"it; it must be 0600 (chmod 600 {path})")


def test_what_is_not_a_regular_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match=r"key file .*missing\.key: no such file"):
        LinkKeys.from_file(tmp_path / "missing.key")
    with pytest.raises(KeyFileError, match="is a directory"):
        LinkKeys.from_file(tmp_path)
    fifo = tmp_path / "fifo.key"
    os.mkfifo(fifo, 0o600)
    with pytest.raises(KeyFileError, match=r"fifo\.key: is a FIFO"):
        LinkKeys.from_file(fifo)  # refused at once, not blocked waiting for a writer


@pytest.mark.parametrize(("text", "problem"), [
    ("", "holds no key"),
    ("# only a comment\n", "holds no key"),
    (f"* {'ab' * 16}\n", "line 1: the key has 16 bytes; at least 32 are needed (64 hex digits)"),
    ("* not-hex\n", "line 1: the key is not hexadecimal"),
    (f"{HEX}\n", "line 1: expected '<peer name> <hex key>' or '* <hex key>'"),
    (f"* {HEX}\n* {HEX}\n", "line 2: a second key for *"),
    (f"van {HEX}\nvan {HEX}\n", "line 2: a second key for van"),
    ("\xe9\n", "not ASCII text"),
])
def test_a_malformed_key_file_names_the_line(tmp_path: Path, text: str, problem: str) -> None:
    path = _key_file(tmp_path, text)
    with pytest.raises(KeyFileError) as caught:
        LinkKeys.from_file(path)
    assert str(caught.value).startswith(f"key file {path}")
    assert str(caught.value).endswith(problem)


def test_named_keys_and_the_shared_key(tmp_path: Path) -> None:
    path = _key_file(tmp_path, f"# the van's link\nvan {'11' * 32}  # its own key\n* {HEX}\n")
    keys = LinkKeys.from_file(path)
    assert keys.key_for("van") == bytes([0x11] * 32)
    assert keys.key_for("unit-7") == bytes.fromhex(HEX)
    only_named = LinkKeys.from_file(_key_file(tmp_path, f"van {HEX}\n"))
    assert only_named.key_for("unit-7") is None


def test_keys_are_never_shown(tmp_path: Path) -> None:
    path = _key_file(tmp_path, f"van {HEX}\n* {'cd' * 32}\n")
    keys = LinkKeys.from_file(path)
    config = LinkConfig(keys)
    for text in (repr(keys), repr(config), str(config)):
        assert HEX not in text
        assert "cd" * 32 not in text
        assert "\\xab" not in text
    assert repr(keys) == f"LinkKeys(key file {path}, peers=['van'], shared=True)"


async def test_keys_never_reach_the_log(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        async with linked("unix", tmp_path) as pair:
            await pair.client.stop()
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert TEST_KEY.hex() not in logged
    assert repr(TEST_KEY) not in logged


def test_a_short_key_is_refused_in_code_too() -> None:
    with pytest.raises(ValueError, match="has 16 bytes; at least 32 are needed"):
        LinkKeys.shared(b"x" * 16)


@pytest.mark.parametrize(("change", "problem"), [
    ({"max_links": 0}, "LinkConfig.max_links must be an integer >= 1, got 0"),
    ({"max_pending_asks": 0}, "LinkConfig.max_pending_asks must be an integer >= 1"),
    ({"max_peer_asks": -1}, "LinkConfig.max_peer_asks must be an integer >= 1"),
    ({"max_frame_bytes": 100}, "LinkConfig.max_frame_bytes must be an integer >= 1024"),
    ({"read_ahead_bytes": 10}, "LinkConfig.read_ahead_bytes must be an integer >= 1024"),
    ({"handshake_timeout_s": 0}, "LinkConfig.handshake_timeout_s must be > 0"),
    ({"partial_frame_timeout_s": float("nan")}, "LinkConfig.partial_frame_timeout_s must be > 0"),
    ({"max_ask_timeout_s": float("inf")}, "LinkConfig.max_ask_timeout_s must be > 0"),
    ({"exposed": {"svc": ()}}, "LinkConfig.exposed['svc'] must list the message classes"),
    ({"exposed": {"svc": "Ping"}}, "LinkConfig.exposed['svc'] must list the message classes"),
    ({"exposed": {"a\nb": (int,)}}, "LinkConfig.exposed actor name holds control characters"),
])
def test_link_config_refuses_bad_values(change: dict[str, object], problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        LinkConfig(LinkKeys.shared(TEST_KEY), **change)  # type: ignore[arg-type]
    assert str(caught.value).startswith(problem)


def test_the_allow_list_cannot_be_widened_later() -> None:
    exposed: dict[str, list[type[object]]] = {"svc": [int]}
    config = LinkConfig(LinkKeys.shared(TEST_KEY), exposed=exposed)
    exposed["other"] = [int]
    exposed["svc"].append(str)
    assert dict(config.exposed) == {"svc": frozenset({int})}
    with pytest.raises(TypeError):
        config.exposed["x"] = frozenset()  # type: ignore[index]


def test_the_test_config_exposes_what_the_tests_reach() -> None:
    assert sorted(service_link_config().exposed) == ["csvc", "svc"]
